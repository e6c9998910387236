//! Streaming: every record verified, and loss accounted exactly.

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{
    Duration,
    Instant, //
};

use anyhow::{
    bail,
    Context, //
};
use rmemring::layout::{
    record_stride,
    RecordHeader,
    FLAG_OVERWRITE,
    HEADER_SIZE,
    KIND_DATA,
    KIND_PAD, //
};
use rmemring::uapi::{
    ProducerConfig,
    ResetConfig,
    RingStats,
    PRODUCER_WAIT, //
};
use rmemring::{
    device,
    pattern,
    Access,
    Consumer,
    Region, //
};

use crate::misuse::map_data;
use crate::{
    Env,
    Report, //
};

/// How to run one stream.
#[derive(Clone, Copy)]
pub(crate) struct StreamOptions {
    pub(crate) overwrite: bool,
    pub(crate) min_len: u32,
    pub(crate) max_len: u32,
    pub(crate) count: u64,
    pub(crate) rate: u64,
    /// The producer waits for room instead of dropping.
    pub(crate) wait: bool,
    /// Sleep after every batch: a deliberately slow consumer.
    pub(crate) slow: Duration,
    /// Take at most this many records per batch (with `slow`, a bound on
    /// the consumer's rate, whatever the kernel's speed).
    pub(crate) max_batch: usize,
    /// Read through `read()` instead of the mapping.
    pub(crate) read_syscall: bool,
    /// The `read()` buffer, in bytes (at least the largest record).
    pub(crate) read_buffer: usize,
    /// Records per producer publication (0: the driver's default).
    pub(crate) batch: u32,
}

impl Default for StreamOptions {
    fn default() -> Self {
        Self {
            overwrite: false,
            min_len: 8,
            max_len: 256,
            count: 100_000,
            rate: 0,
            wait: false,
            slow: Duration::ZERO,
            max_batch: usize::MAX,
            read_syscall: false,
            read_buffer: 1 << 20,
            batch: 0,
        }
    }
}

/// What a stream delivered.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) records: u64,
    pub(crate) bytes: u64,
    pub(crate) bad: u64,
    /// Records missing between delivered ones.
    pub(crate) gaps: u64,
    /// Each run of missing records: its first sequence number and length.
    pub(crate) gap_runs: Vec<(u64, u64)>,
    /// The sequence number after the last record delivered.
    pub(crate) next_seq: u64,
    /// `CLOCK_MONOTONIC` just before the producer started.
    pub(crate) started_ns: u64,
    /// The timestamp of the last record delivered.
    pub(crate) last_ts: u64,
    /// Records whose timestamp went backwards, was before the start or was
    /// after the moment the consumer had read it.
    pub(crate) bad_ts: u64,
    pub(crate) stats: RingStats,
    pub(crate) elapsed: Duration,
}

/// `CLOCK_MONOTONIC` now, in nanoseconds: the clock of record timestamps.
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` fills the struct we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Tally {
    pub(crate) fn check(
        &mut self,
        seq: u64,
        timestamp_ns: u64,
        payload: &[u8],
        options: &StreamOptions,
    ) {
        let len = pattern::payload_len(seq, options.min_len, options.max_len) as usize;
        if seq < self.next_seq || payload.len() != len || !pattern::verify(seq, payload) {
            if self.bad < 3 {
                eprintln!(
                    "bad record: seq {seq} (next expected {}), len {} (expected {len})",
                    self.next_seq,
                    payload.len()
                );
            }
            self.bad += 1;
        }
        // One producer thread stamps the records in sequence order.
        if timestamp_ns < self.last_ts.max(self.started_ns) {
            if self.bad_ts < 3 {
                eprintln!(
                    "bad timestamp: seq {seq} at {timestamp_ns} ns, after {} ns (start {} ns)",
                    self.last_ts, self.started_ns
                );
            }
            self.bad_ts += 1;
        }
        self.last_ts = timestamp_ns;
        if seq > self.next_seq {
            self.gap_runs.push((self.next_seq, seq - self.next_seq));
        }
        self.gaps += seq.saturating_sub(self.next_seq);
        self.next_seq = seq + 1;
        self.records += 1;
        self.bytes += payload.len() as u64;
    }

    /// After a batch was read: no record can be stamped later than now.
    pub(crate) fn end_batch(&mut self) {
        let now = monotonic_ns();
        if self.last_ts > now {
            if self.bad_ts < 3 {
                eprintln!(
                    "bad timestamp: {} ns, after the consumer's clock ({now} ns)",
                    self.last_ts
                );
            }
            self.bad_ts += 1;
        }
    }

    /// Whether every missing record has a sequence number below `seq`.
    pub(crate) fn all_gaps_below(&self, seq: u64) -> bool {
        self.gap_runs.iter().all(|&(first, n)| first + n <= seq)
    }

    /// Records the producer dropped or overwrote after the last delivered one.
    pub(crate) fn trailing(&self) -> u64 {
        (self.stats.records_produced + self.stats.records_dropped).saturating_sub(self.next_seq)
    }

    pub(crate) fn summary(&self) -> String {
        let secs = self.elapsed.as_secs_f64();
        format!(
            "{} records, {:.0} MiB in {secs:.1} s ({:.2} M records/s, {:.3} GB/s); lost {} + {} trailing; dropped {}, overwritten {}; consumer page: {} consumed, {} lost; {} bad, {} bad timestamps",
            self.records,
            self.bytes as f64 / (1u64 << 20) as f64,
            self.records as f64 / secs / 1e6,
            self.bytes as f64 / secs / 1e9,
            self.gaps,
            self.trailing(),
            self.stats.records_dropped,
            self.stats.records_overwritten,
            self.stats.records_consumed,
            self.stats.records_lost,
            self.bad,
            self.bad_ts,
        )
    }

    /// Every record delivered was intact, in order and stamped sanely, and
    /// the consumer page counts what this consumer saw.
    pub(crate) fn clean(&self) -> bool {
        self.bad == 0
            && self.bad_ts == 0
            && self.stats.records_consumed == self.records
            && self.stats.records_lost == self.gaps
    }
}

/// Opens the device as its consumer, in a fresh ring of the given mode.
pub(crate) fn open_fresh(env: &Env, overwrite: bool) -> anyhow::Result<Arc<Region>> {
    env.kmod.ensure_loaded()?;
    let mut region = Region::open(&env.device, Access::Consume)?;
    let reset = ResetConfig {
        flags: if overwrite { FLAG_OVERWRITE } else { 0 },
        ..Default::default()
    };
    region.reset(&reset)?;
    Ok(Arc::new(region))
}

/// Runs one stream and checks every record.
pub(crate) fn run(env: &Env, options: &StreamOptions) -> anyhow::Result<Tally> {
    let region = open_fresh(env, options.overwrite)?;
    // Through read() the kernel consumes; the mapping's consumer stays idle.
    let mut consumer = region.consumer()?;
    let config = ProducerConfig {
        min_len: options.min_len,
        max_len: options.max_len,
        count: options.count,
        rate: options.rate,
        flags: if options.wait { PRODUCER_WAIT } else { 0 },
        batch: options.batch,
        ..Default::default()
    };
    let mut tally = Tally {
        started_ns: monotonic_ns(),
        ..Default::default()
    };
    let start = Instant::now();
    device::start(region.fd(), &config).context("RMEMRING_IOC_START")?;
    let mut buf = vec![0u8; options.read_buffer];
    loop {
        let seen = tally.records + tally.gaps;
        if options.count != 0 && seen >= options.count {
            break;
        }
        let stats = device::stats(region.fd())?;
        if !options.read_syscall && stats.producer_running == 0 && consumer.backlog()? == 0 {
            break;
        }
        if options.read_syscall {
            read_records(
                &region,
                &mut buf,
                &mut tally,
                options,
                stats.producer_running == 0,
            )?;
            if stats.producer_running == 0
                && tally.next_seq >= stats.records_produced + stats.records_dropped
            {
                break;
            }
        } else {
            consume(&mut consumer, &mut tally, options)?;
        }
        if !options.slow.is_zero() {
            std::thread::sleep(options.slow);
        }
    }
    device::stop(region.fd())?;
    tally.elapsed = start.elapsed();
    if !options.read_syscall {
        // Whatever was published before the stop.
        consume(&mut consumer, &mut tally, options)?;
    }
    tally.stats = device::stats(region.fd())?;
    Ok(tally)
}

fn consume(
    consumer: &mut Consumer,
    tally: &mut Tally,
    options: &StreamOptions,
) -> anyhow::Result<()> {
    if !consumer.wait(Some(Duration::from_millis(200)))? {
        return Ok(());
    }
    if options.overwrite {
        for _ in 0..options.max_batch {
            let Some(record) = consumer.read_copy()? else {
                break;
            };
            tally.check(record.seq, record.timestamp_ns, record.payload, options);
        }
        consumer.release();
    } else {
        for record in consumer.batch()?.iter().take(options.max_batch) {
            let record = record?;
            tally.check(record.seq, record.timestamp_ns, record.payload, options);
        }
    }
    tally.end_batch();
    Ok(())
}

/// Reads records through `read()` and checks them.
fn read_records(
    region: &Region,
    buf: &mut [u8],
    tally: &mut Tally,
    options: &StreamOptions,
    nonblock: bool,
) -> anyhow::Result<()> {
    let fd = region.fd().as_raw_fd();
    if nonblock {
        // SAFETY: Plain fcntl on our own descriptor.
        unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK) };
    }
    if read_each(fd, buf, |seq, ts, payload| {
        tally.check(seq, ts, payload, options)
    })?
    .is_some()
    {
        tally.end_batch();
    }
    Ok(())
}

/// One `read()` into `buf`; calls `f` with the sequence number, timestamp
/// and payload of each record it returned. `None` when it would block.
pub(crate) fn read_each(
    fd: std::os::fd::RawFd,
    buf: &mut [u8],
    mut f: impl FnMut(u64, u64, &[u8]),
) -> anyhow::Result<Option<usize>> {
    // SAFETY: `buf` is valid for `buf.len()` bytes of writes.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EAGAIN) {
            return Ok(None);
        }
        return Err(e).context("read()");
    }
    let mut data = &buf[..n as usize];
    while !data.is_empty() {
        if data.len() < HEADER_SIZE as usize {
            bail!("read() returned a truncated header");
        }
        let header: RecordHeader = bytemuck::pod_read_unaligned(&data[..HEADER_SIZE as usize]);
        let stride = record_stride(header.len) as usize;
        if header.kind != KIND_DATA || stride > data.len() {
            bail!("read() returned a bad record header {header:?}");
        }
        let payload = &data[HEADER_SIZE as usize..HEADER_SIZE as usize + header.len as usize];
        f(header.seq, header.timestamp_ns, payload);
        data = &data[stride..];
    }
    Ok(Some(n as usize))
}

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
        count: 10_000_000,
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
        "stream: 10 M mixed-size records (8..256 B), drop-new without back-pressure: every one verified, none dropped",
        t.records == options.count
            && t.clean()
            && t.gaps == 0
            && t.trailing() == 0
            && t.stats.records_dropped == 0,
        || t.summary(),
    );
    report.expect(
        "stream: at least 1 GiB of payload",
        t.bytes >= 1 << 30,
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
        t.records == options.count && t.clean() && t.gaps == 0 && t.trailing() == 0,
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
    let region = open_fresh(env, false)?;
    let mut consumer = region.consumer()?;
    let config = ProducerConfig {
        min_len: options.min_len,
        max_len: options.max_len,
        count: RECORDS,
        ..Default::default()
    };
    device::start(region.fd(), &config)?;
    let start = Instant::now();
    while device::stats(region.fd())?.producer_running != 0 {
        if start.elapsed() > Duration::from_secs(60) {
            bail!("the producer did not write {RECORDS} records in 60 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
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
    let before = device::stats(observer.fd())?;
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let after = device::stats(observer.fd())?;
    if before != after {
        bail!("the counters moved while reading debugfs: {before:?} then {after:?}");
    }
    let info = device::info(observer.fd())?;
    let s = before;
    let expected: Vec<(&str, String)> = vec![
        ("phys_base", format!("{:#x}", info.phys_base)),
        ("region_size", format!("{:#x}", info.region_size)),
        ("data_size", format!("{:#x}", info.data_size)),
        ("overwrite", (info.flags & FLAG_OVERWRITE != 0).to_string()),
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

/// Walks the records an overwrite-mode ring retains once its producer
/// has stopped, `[overwrite_pos, producer_pos)`, through a read-only
/// mapping: returns the first sequence number and how many there are, and
/// fails unless they are consecutive and intact.
pub(crate) fn retained(region: &Region, options: &StreamOptions) -> anyhow::Result<(u64, u64)> {
    let l = *region.layout();
    let control = region.control();
    let data = map_data(region.fd().as_raw_fd(), &l)?;
    // SAFETY: The producer has stopped, so nothing writes the data area
    // while the slice lives; the mapping is `data_size` bytes.
    let bytes = unsafe { std::slice::from_raw_parts(data.ptr.cast_const(), data.len) };
    let (mut pos, end) = (control.overwrite_pos, control.producer_pos);
    if end.wrapping_sub(pos) > l.data_size {
        bail!("overwrite_pos {pos} is more than the data area behind producer_pos {end}");
    }
    let (mut first, mut count) = (None, 0u64);
    while pos != end {
        let off = (pos % l.data_size) as usize;
        // Only the first word of a pad is defined (as little as 8 bytes
        // may be left before the end).
        let word0: [u8; 8] = bytemuck::pod_read_unaligned(&bytes[off..off + 8]);
        let (len, kind) = (
            u32::from_le_bytes([word0[0], word0[1], word0[2], word0[3]]),
            u16::from_le_bytes([word0[4], word0[5]]),
        );
        let stride = if kind == KIND_PAD {
            u64::from(len)
        } else if kind == KIND_DATA {
            let header: RecordHeader = bytemuck::pod_read_unaligned(
                bytes
                    .get(off..off + HEADER_SIZE as usize)
                    .context("a retained header runs past the data area")?,
            );
            let start = off + HEADER_SIZE as usize;
            let payload = bytes
                .get(start..start + header.len as usize)
                .context("a retained record runs past the data area")?;
            let seq = *first.get_or_insert(header.seq);
            let len = pattern::payload_len(header.seq, options.min_len, options.max_len);
            if header.seq != seq + count
                || header.len != len
                || !pattern::verify(header.seq, payload)
            {
                bail!("retained record {count} after seq {seq} is {header:?}");
            }
            count += 1;
            record_stride(header.len)
        } else {
            bail!("a retained record at {pos} has kind {kind}");
        };
        if stride == 0 || stride > end.wrapping_sub(pos) {
            bail!("a retained record of stride {stride} at {pos} passes producer_pos {end}");
        }
        pos = pos.wrapping_add(stride);
    }
    Ok((first.unwrap_or(control.records_produced), count))
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
        overwrite: true,
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

/// Streams a few records with a well-behaved consumer (after abuse).
pub(crate) fn still_works(env: &Env) -> anyhow::Result<()> {
    let options = StreamOptions {
        count: 50_000,
        wait: true,
        ..Default::default()
    };
    let t = run(env, &options)?;
    if t.records != options.count || t.bad != 0 {
        bail!("{}", t.summary());
    }
    Ok(())
}

/// Starts the producer for a run of `config.count` records (not 0) and
/// waits until it has finished.
pub(crate) fn produce(region: &Region, config: &ProducerConfig) -> anyhow::Result<()> {
    device::start(region.fd(), config)?;
    let start = Instant::now();
    while device::stats(region.fd())?.producer_running != 0 {
        if start.elapsed() > Duration::from_secs(60) {
            bail!(
                "the producer did not write {} records in 60 s",
                config.count
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}
