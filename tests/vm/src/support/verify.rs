//! Streams and their verification: a producer run consumed through the
//! mapping or `read()`, every record checked against the payload pattern,
//! its length, its sequence number and its timestamp, and every loss
//! counted.

use std::os::fd::AsRawFd;
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
    KIND_DATA,
    KIND_PAD, //
};
use rmemring::uapi::{
    ProducerConfig,
    RingStats,
    PRODUCER_WAIT, //
};
use rmemring::{
    monotonic_ns,
    pattern,
    Consumer,
    Region, //
};
use rmemring_proto::modes::Overflow;
use rmemring_proto::stream::Records;
use rmemring_proto::view::split_word0;

use super::env::Env;
use super::fd::{
    read_into,
    set_nonblocking, //
};
use super::mapping::map_data;
use super::ring::open_fresh;

/// How to run one stream.
#[derive(Clone, Copy)]
pub(crate) struct StreamOptions {
    pub(crate) overflow: Overflow,
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
    /// Producer flags besides `PRODUCER_WAIT` (`wait`).
    pub(crate) flags: u32,
}

impl Default for StreamOptions {
    fn default() -> Self {
        Self {
            overflow: Overflow::DropNew,
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
            flags: 0,
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

    /// All `count` records delivered, none lost before or after the last,
    /// and [`Self::clean`].
    pub(crate) fn all_delivered(&self, count: u64) -> bool {
        self.records == count && self.clean() && self.gaps == 0 && self.trailing() == 0
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

/// Runs one stream and checks every record.
pub(crate) fn run(env: &Env, options: &StreamOptions) -> anyhow::Result<Tally> {
    let region = open_fresh(env, options.overflow)?;
    // Through read() the kernel consumes; the mapping's consumer stays idle.
    let mut consumer = region.consumer()?;
    let config = ProducerConfig {
        min_len: options.min_len,
        max_len: options.max_len,
        count: options.count,
        rate: options.rate,
        flags: options.flags | if options.wait { PRODUCER_WAIT } else { 0 },
        batch: options.batch,
        ..Default::default()
    };
    let mut tally = Tally {
        started_ns: monotonic_ns(),
        ..Default::default()
    };
    let start = Instant::now();
    region.start(&config).context("RMEMRING_IOC_START")?;
    let mut buf = vec![0u8; options.read_buffer];
    loop {
        let seen = tally.records + tally.gaps;
        if options.count != 0 && seen >= options.count {
            break;
        }
        let stats = region.stats()?;
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
    region.stop()?;
    tally.elapsed = start.elapsed();
    if !options.read_syscall {
        // Whatever was published before the stop.
        consume(&mut consumer, &mut tally, options)?;
    }
    tally.stats = region.stats()?;
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
    if options.overflow == Overflow::OverwriteOldest {
        // The producer may overwrite what is lent: copies only.
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
        set_nonblocking(fd, true);
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
    let n = match read_into(fd, buf) {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => return Ok(None),
        Err(e) => return Err(e).context("read()"),
    };
    let mut records = Records::new(&buf[..n]);
    for record in records.by_ref() {
        let record = record.map_err(|e| anyhow::anyhow!("read() returned a bad record: {e}"))?;
        f(
            record.header.seq,
            record.header.timestamp_ns,
            record.payload,
        );
    }
    // read() returns whole records only.
    if !records.remainder().is_empty() {
        bail!(
            "read() returned {n} bytes, ending in {} bytes of a record",
            records.remainder().len()
        );
    }
    Ok(Some(n))
}

/// The sequence numbers of the records in a `read()` buffer (up to the
/// first that is not a whole data record, if any).
pub(crate) fn seqs(data: &[u8]) -> Vec<u64> {
    Records::new(data)
        .map_while(Result::ok)
        .map(|record| record.header.seq)
        .collect()
}

/// Walks the records an overwrite-mode ring retains once its producer
/// has stopped, `[overwrite_pos, producer_pos)`, through a read-only
/// mapping: returns the first sequence number and how many there are, and
/// fails unless they are consecutive and intact.
pub(crate) fn retained(region: &Region, options: &StreamOptions) -> anyhow::Result<(u64, u64)> {
    let l = *region.layout();
    let control = region.control();
    let bytes = map_data(region.fd().as_raw_fd(), &l)?.bytes();
    let (mut pos, end) = (control.overwrite_pos, control.producer_pos);
    if end.wrapping_sub(pos) > l.data_size {
        bail!("overwrite_pos {pos} is more than the data area behind producer_pos {end}");
    }
    let (mut first, mut count) = (None, 0u64);
    while pos != end {
        let off = (pos % l.data_size) as usize;
        // Only the first word of a pad is defined (as little as 8 bytes
        // may be left before the end).
        let word0 = u64::from_le_bytes(bytes[off..off + 8].try_into().expect("8 bytes"));
        let (len, kind, _) = split_word0(word0);
        let stride = if kind == KIND_PAD {
            u64::from(len)
        } else if kind == KIND_DATA {
            // A record never wraps: it lies whole before the end.
            let record = Records::new(&bytes[off..])
                .next()
                .context("a retained record runs past the data area")?
                .map_err(|e| anyhow::anyhow!("a retained record: {e}"))?;
            let header = record.header;
            let seq = *first.get_or_insert(header.seq);
            let len = pattern::payload_len(header.seq, options.min_len, options.max_len);
            if header.seq != seq + count
                || header.len != len
                || !pattern::verify(header.seq, record.payload)
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

/// [`run`], failing unless all `options.count` records arrived intact.
pub(crate) fn run_whole(env: &Env, options: &StreamOptions) -> anyhow::Result<Tally> {
    let t = run(env, options)?;
    if t.records != options.count || t.bad != 0 {
        bail!("{}", t.summary());
    }
    Ok(t)
}

/// Streams a few records with a well-behaved consumer (after abuse).
pub(crate) fn still_works(env: &Env) -> anyhow::Result<()> {
    let options = StreamOptions {
        count: 50_000,
        wait: true,
        ..Default::default()
    };
    run_whole(env, &options).map(drop)
}
