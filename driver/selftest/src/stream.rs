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
    KIND_DATA, //
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
    /// The sequence number after the last record delivered.
    pub(crate) next_seq: u64,
    pub(crate) stats: RingStats,
    pub(crate) elapsed: Duration,
}

impl Tally {
    fn check(&mut self, seq: u64, payload: &[u8], options: &StreamOptions) {
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
        self.gaps += seq.saturating_sub(self.next_seq);
        self.next_seq = seq + 1;
        self.records += 1;
        self.bytes += payload.len() as u64;
    }

    /// Records the producer dropped or overwrote after the last delivered one.
    pub(crate) fn trailing(&self) -> u64 {
        (self.stats.records_produced + self.stats.records_dropped).saturating_sub(self.next_seq)
    }

    /// Records the producer attempted (written or dropped).
    pub(crate) fn attempted(&self) -> u64 {
        self.stats.records_produced + self.stats.records_dropped
    }

    pub(crate) fn summary(&self) -> String {
        let secs = self.elapsed.as_secs_f64();
        format!(
            "{} records, {:.0} MiB in {secs:.1} s ({:.2} M records/s, {:.3} GB/s); lost {} + {} trailing; dropped {}, overwritten {}",
            self.records,
            self.bytes as f64 / (1u64 << 20) as f64,
            self.records as f64 / secs / 1e6,
            self.bytes as f64 / secs / 1e9,
            self.gaps,
            self.trailing(),
            self.stats.records_dropped,
            self.stats.records_overwritten
        )
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
        ..Default::default()
    };
    let start = Instant::now();
    device::start(region.fd(), &config).context("RMEMRING_IOC_START")?;
    let mut tally = Tally::default();
    // read() in overwrite mode wants room for the largest possible record.
    let mut buf = vec![0u8; (region.layout().max_payload as usize + 64).max(1 << 20)];
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
            tally.check(record.seq, record.payload, options);
        }
        consumer.release();
    } else {
        for record in consumer.batch()?.iter().take(options.max_batch) {
            let record = record?;
            tally.check(record.seq, record.payload, options);
        }
    }
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
    // SAFETY: `buf` is valid for `buf.len()` bytes of writes.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EAGAIN) {
            return Ok(());
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
        tally.check(header.seq, payload, options);
        data = &data[stride..];
    }
    Ok(())
}

/// The large verified streams.
pub(crate) fn stream(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    let options = StreamOptions {
        count: 10_000_000,
        min_len: 8,
        max_len: 256,
        wait: true,
        ..Default::default()
    };
    let t = run(env, &options)?;
    println!("# {}", t.summary());
    report.expect(
        "stream: 10 M mixed-size records (8..256 B) with back-pressure, every one verified, none lost",
        t.records == options.count && t.bad == 0 && t.gaps == 0 && t.trailing() == 0,
        || t.summary(),
    );
    report.expect(
        "stream: at least 1 GiB of payload",
        t.bytes >= 1 << 30,
        || t.summary(),
    );

    let options = StreamOptions {
        count: 300_000,
        rate: 100_000,
        min_len: 8,
        max_len: 512,
        ..Default::default()
    };
    let t = run(env, &options)?;
    println!("# {}", t.summary());
    report.expect(
        "stream: a consumer that keeps up loses nothing in drop-new mode (100 k records/s, no back-pressure)",
        t.records == options.count && t.bad == 0 && t.stats.records_dropped == 0 && t.gaps == 0,
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
            && t.bad == 0
            && t.gaps == 0
            && t.stats.records_read == options.count,
        || t.summary(),
    );
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
        t.bad == 0
            && t.stats.records_dropped > 0
            && t.records == t.stats.records_produced
            && t.gaps + t.trailing() == t.stats.records_dropped
            && t.records + t.gaps + t.trailing() == options.count,
        || t.summary(),
    );

    let options = StreamOptions {
        overwrite: true,
        ..options
    };
    let t = run(env, &options)?;
    println!("# overwrite: {}", t.summary());
    report.expect(
        "loss: overwrite-oldest, slow consumer: delivered + lost == produced, exactly, none torn",
        t.bad == 0
            && t.gaps > 0
            && t.records + t.gaps + t.trailing() == t.attempted()
            && t.attempted() == options.count
            && t.gaps + t.trailing() <= t.stats.records_overwritten,
        || t.summary(),
    );

    let options = StreamOptions {
        read_syscall: true,
        count: 200_000,
        ..options
    };
    let t = run(env, &options)?;
    println!("# overwrite read(): {}", t.summary());
    report.expect(
        "loss: overwrite-oldest through read(): delivered + lost == produced, none torn",
        t.bad == 0 && t.records + t.gaps + t.trailing() == t.attempted(),
        || t.summary(),
    );
    Ok(())
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
