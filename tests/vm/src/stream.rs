//! Streaming: every record verified, and loss accounted exactly.

use std::time::{
    Duration,
    Instant, //
};

use anyhow::{
    bail,
    Context, //
};
use rmemring::layout::record_stride;
use rmemring::uapi::{
    ProducerConfig,
    PRODUCER_STAGED, //
};
use rmemring::{
    Access,
    Region, //
};
use rmemring_proto::modes::Overflow;

use crate::support::ring::{
    open_fresh,
    produce, //
};
use crate::support::verify::{
    retained,
    run,
    StreamOptions,
    Tally, //
};
use crate::support::{
    Env,
    Report, //
};

/// Records per second of the long drop-new stream: far below what the
/// consumer sustains (see `stream`), so that it keeps up without any
/// back-pressure.
const KEEP_UP_RATE: u64 = 100_000;

/// The mean stride of records of `min..=max` payload bytes, in bytes.
fn mean_stride(min: u32, max: u32) -> f64 {
    let n = u64::from(max - min) + 1;
    (min..=max).map(record_stride).sum::<u64>() as f64 / n as f64
}

/// The large verified streams.
pub(crate) fn stream(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    // Drop-new, no back-pressure: the producer drops whatever does not fit,
    // so every record arriving shows that the consumer kept up. It paces
    // itself at KEEP_UP_RATE in publications of 256 records (about 40 KiB,
    // 2.6 ms apart). The consumer takes whole batches: each ends where the
    // producer was when it began, so its release comes while records keep
    // arriving, and it never holds much of the ring back.
    let options = StreamOptions {
        count: env.scaled(10_000_000),
        min_len: 8,
        max_len: 256,
        rate: KEEP_UP_RATE,
        batch: 256,
        ..Default::default()
    };
    // The margins: the consumer may stall (its vCPU descheduled by a
    // loaded host, or preempted in the guest) for as long as the ring
    // takes to fill, and must on average run faster than the stream.
    let (data_size, pace) = drain_pace(env, &options)?;
    let ring_records = data_size as f64 / mean_stride(options.min_len, options.max_len);
    println!(
        "# the ring holds {ring_records:.0} records of 8..256 B: {:.0} ms of the stream at {} k records/s; \
         the consumer drains and verifies {:.0} k records/s, {:.1} times the stream's rate",
        ring_records / KEEP_UP_RATE as f64 * 1e3,
        KEEP_UP_RATE / 1000,
        pace / 1e3,
        pace / KEEP_UP_RATE as f64
    );
    let t = run(env, &options)?;
    println!("# drop-new: {}", t.summary());
    report.expect(
        &format!(
            "stream: {} M mixed-size records (8..256 B), drop-new without back-pressure: every one verified, none dropped",
            options.count as f64 / 1e6
        ),
        t.all_delivered(options.count) && t.stats.records_dropped == 0,
        || t.summary(),
    );
    let payload = env.scaled(1 << 30);
    report.expect(
        &format!("stream: at least {} MiB of payload", payload >> 20),
        t.bytes >= payload,
        || t.summary(),
    );
    report.check(
        "stream: debugfs stats match the STATS ioctl",
        debugfs_matches(env),
    );

    // Flat out with back-pressure: the producer waits for room, so the
    // consumer sets the pace (its rate is the margin of the stream above).
    let options = StreamOptions {
        count: 2_000_000,
        min_len: 8,
        max_len: 256,
        wait: true,
        ..Default::default()
    };
    let t = run(env, &options)?;
    println!("# back-pressure: {}", t.summary());
    report.expect(
        "stream: 2 M mixed-size records with back-pressure (PRODUCER_WAIT), every one verified, none lost",
        t.all_delivered(options.count),
        || t.summary(),
    );

    // PRODUCER_STAGED (the benchmark's like-for-like peer of BPF's): each
    // payload written into a kernel buffer, then copied into the ring. A
    // copy that misses or shifts a word, or copies a stale record's, fails
    // the pattern check; sizes 0 to 4 KiB end in every partial word.
    let options = StreamOptions {
        count: 200_000,
        min_len: 0,
        max_len: 4096,
        wait: true,
        flags: PRODUCER_STAGED,
        ..Default::default()
    };
    let t = run(env, &options)?;
    println!("# staged: {}", t.summary());
    report.expect(
        "stream: 200 k records of 0 to 4096 B staged and copied in (PRODUCER_STAGED), every one verified, none lost",
        t.all_delivered(options.count),
        || t.summary(),
    );

    let options = StreamOptions {
        count: 300_000,
        min_len: 0,
        max_len: 4096,
        wait: true,
        read_syscall: true,
        ..Default::default()
    };
    let t = run(env, &options)?;
    println!("# read(): {}", t.summary());
    report.expect(
        "stream: read() copies out the same records, every one verified",
        t.records == options.count
            && t.clean()
            && t.gaps == 0
            && t.stats.records_read == options.count,
        || t.summary(),
    );
    Ok(())
}

/// How fast this consumer verifies records of `options`' sizes when it
/// need not wait for them: the producer first fills the ring most of the
/// way (90 000 records, about 86% of it for 8..256 B), then the consumer
/// reads them all. Returns the data area's size and the records per
/// second.
fn drain_pace(env: &Env, options: &StreamOptions) -> anyhow::Result<(u64, f64)> {
    const RECORDS: u64 = 90_000;
    let region = open_fresh(env, Overflow::DropNew)?;
    let mut consumer = region.consumer()?;
    let config = ProducerConfig {
        min_len: options.min_len,
        max_len: options.max_len,
        count: RECORDS,
        ..Default::default()
    };
    produce(&region, &config)?;
    let mut tally = Tally::default();
    let start = Instant::now();
    for record in consumer.batch()?.iter() {
        let record = record?;
        tally.check(record.seq, record.timestamp_ns, record.payload, options);
    }
    let took = start.elapsed();
    if tally.records != RECORDS || tally.bad != 0 || tally.bad_ts != 0 {
        bail!("draining the full ring: {}", tally.summary());
    }
    Ok((
        region.layout().data_size,
        RECORDS as f64 / took.as_secs_f64(),
    ))
}

/// The debugfs `stats` file of the reference device says what the STATS
/// and INFO ioctls say (read with the producer stopped, so nothing moves).
fn debugfs_matches(env: &Env) -> anyhow::Result<()> {
    let name = env.device.rsplit('/').next().unwrap_or_default();
    let path = format!("/sys/kernel/debug/{name}/stats");
    let observer = Region::open(&env.device, Access::Observe)?;
    let before = observer.stats()?;
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let after = observer.stats()?;
    if before != after {
        bail!("the counters moved while reading debugfs: {before:?} then {after:?}");
    }
    let info = observer.info()?;
    let s = before;
    let expected: Vec<(&str, String)> = vec![
        ("phys_base", format!("{:#x}", info.phys_base)),
        ("region_size", format!("{:#x}", info.region_size)),
        ("data_size", format!("{:#x}", info.data_size)),
        (
            "overwrite",
            (Overflow::from_flags(info.flags) == Overflow::OverwriteOldest).to_string(),
        ),
        ("producer_running", s.producer_running.to_string()),
        ("consumer_open", s.consumer_open.to_string()),
        ("producer_pos", s.producer_pos.to_string()),
        ("consumer_pos", s.consumer_pos.to_string()),
        ("records_produced", s.records_produced.to_string()),
        ("bytes_produced", s.bytes_produced.to_string()),
        ("records_dropped", s.records_dropped.to_string()),
        ("records_overwritten", s.records_overwritten.to_string()),
        ("wakeups", s.wakeups.to_string()),
        ("consumer_errors", s.consumer_errors.to_string()),
        ("records_consumed", s.records_consumed.to_string()),
        ("bytes_consumed", s.bytes_consumed.to_string()),
        ("records_lost", s.records_lost.to_string()),
        ("sleeps", s.sleeps.to_string()),
        ("records_read", s.records_read.to_string()),
        ("records_hooked", s.records_hooked.to_string()),
        ("records_refused", s.records_refused.to_string()),
    ];
    let fields: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|l| l.split_once(char::is_whitespace))
        .map(|(k, v)| (k, v.trim()))
        .collect();
    for (key, value) in &expected {
        match fields.iter().find(|(k, _)| k == key) {
            Some((_, v)) if v == value => {}
            Some((_, v)) => bail!("{key} is {v} in {path}, {value} by ioctl:\n{text}"),
            None => bail!("no {key} in {path}:\n{text}"),
        }
    }
    // The stream before this left something to compare.
    if s.records_produced == 0 || s.records_consumed == 0 {
        bail!("nothing streamed before the comparison: {s:?}");
    }
    Ok(())
}

/// A deliberately slow consumer, in both overflow modes.
pub(crate) fn loss(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    // At most 1000 records per 5 ms, 200 000 a second: slower than the
    // producer on either kernel, so the ring overflows.
    let options = StreamOptions {
        count: 1_000_000,
        min_len: 8,
        max_len: 1024,
        slow: Duration::from_millis(5),
        max_batch: 1000,
        ..Default::default()
    };
    let t = run(env, &options)?;
    println!("# drop-new: {}", t.summary());
    report.expect(
        "loss: drop-new, slow consumer: every record delivered or counted dropped, exactly",
        t.clean()
            && t.stats.records_dropped > 0
            && t.records == t.stats.records_produced
            && t.gaps + t.trailing() == t.stats.records_dropped
            && t.records + t.gaps + t.trailing() == options.count,
        || t.summary(),
    );

    // Overwrite mode. Once the producer has stopped and the consumer has
    // drained the ring, with P records produced, D delivered, G missing
    // between delivered ones and O overwritten (`records_overwritten`):
    //
    // - nothing is dropped and nothing trails: D + G = P, and the last
    //   record delivered is P - 1 (the newest records survive);
    // - the producer retires records oldest first, so the overwritten
    //   ones are exactly 0..O, and the ring still holds O..P, starting at
    //   `overwrite_pos`;
    // - a consumer never skips a record that was not retired (it jumps
    //   only to `overwrite_pos`), so every missing record is below O, and
    //   G = O - (records below O read before they were overwritten): G <= O,
    //   and G = O exactly when the consumer never read a record in time.
    //
    // The consumer page's `records_lost` is the consumer's own count of G.
    let exact = |t: &Tally, (first, count): (u64, u64), produced: u64| {
        t.clean()
            && t.gaps > 0
            && t.stats.records_dropped == 0
            && t.stats.records_produced == produced
            && t.trailing() == 0
            && t.records + t.gaps == produced
            && first == t.stats.records_overwritten
            && first + count == produced
            && t.all_gaps_below(t.stats.records_overwritten)
    };
    let options = StreamOptions {
        overflow: Overflow::OverwriteOldest,
        ..options
    };
    let (t, kept) = run_retained(env, &options)?;
    println!("# overwrite: {}; the ring retains {kept:?}", t.summary());
    report.expect(
        "loss: overwrite-oldest, slow consumer: delivered + missing == produced, every missing record overwritten, every other one delivered, none torn",
        exact(&t, kept, options.count),
        || format!("{}; retained (first, count) {kept:?}; gap runs {:?}", t.summary(), &t.gap_runs[..t.gap_runs.len().min(8)]),
    );

    // Through read(), 32 KiB per 5 ms (at most 6.6 MB/s): far slower than
    // the producer, so it laps the reader.
    let options = StreamOptions {
        read_syscall: true,
        read_buffer: 32 << 10,
        count: 200_000,
        ..options
    };
    let (t, kept) = run_retained(env, &options)?;
    println!(
        "# overwrite read(): {}; the ring retains {kept:?}",
        t.summary()
    );
    report.expect(
        "loss: overwrite-oldest through read(), slow reader: the same exact accounting",
        exact(&t, kept, options.count),
        || {
            format!(
                "{}; retained (first, count) {kept:?}; gap runs {:?}",
                t.summary(),
                &t.gap_runs[..t.gap_runs.len().min(8)]
            )
        },
    );
    Ok(())
}

/// [`run`], then [`retained`] on the ring it left behind.
fn run_retained(env: &Env, options: &StreamOptions) -> anyhow::Result<(Tally, (u64, u64))> {
    let t = run(env, options)?;
    let region = Region::open(&env.device, Access::Observe)?;
    let kept = retained(&region, options)?;
    Ok((t, kept))
}
