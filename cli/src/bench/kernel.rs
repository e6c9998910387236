//! The two consumers of the driver's ring: the zero-copy mapping and the
//! `read()` copy path, fed by the same kernel producer.
//!
//! Each run takes the ring fresh (reset: empty, counters zeroed), starts
//! the producer flat out with back-pressure (`PRODUCER_WAIT`, so delivered
//! records per second is the path's capacity, not the producer's drop
//! rate), consumes through a warm-up, then measures a window: records,
//! bytes, the consuming thread's and the producer thread's CPU time, the
//! ring's fill, the driver's wake-up counters and the latency from each
//! record's kernel timestamp to the moment the consumer had it.

use std::hint::black_box;
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::sync::Arc;
use std::time::{
    Duration,
    Instant, //
};

use anyhow::Context;
use crossbeam_utils::Backoff;
use nix::errno::Errno;
use nix::fcntl::{
    fcntl,
    FcntlArg,
    OFlag, //
};
use nix::time::{
    clock_gettime,
    ClockId, //
};
use nix::unistd::read;
use rmemring::layout::record_stride;
use rmemring::stream::Records;
use rmemring::uapi::{
    ProducerConfig,
    ResetConfig,
    RingStats,
    PATTERN_NONE,
    PATTERN_SEQ,
    PRODUCER_WAIT, //
};
use rmemring::{
    monotonic_ns,
    pattern,
    Access,
    Region,
    Wait, //
};

use super::peer::{
    self,
    SyntheticPeer, //
};
use super::row::{
    IdleRow,
    Latency,
    Row, //
};
use super::sides::{
    cpu_between,
    producer_thread_name,
    Fill,
    ProducerThread, //
};
use super::stall::{
    GapTail,
    Gaps,
    Latencies, //
};
use super::{
    thread_cpu,
    Job,
    Mode,
    Timing,
    Workload, //
};
use crate::fail;
use crate::signals;

/// The payload bytes a publication should hold at most: the producer
/// publishes every `min(64, max(1, PUBLISH_BYTES / stride))` records.
const PUBLISH_BYTES: u64 = 64 << 10;

/// The producer configuration both paths get: flat out, or one record at
/// a time at the paced rate.
pub(crate) fn producer_config(workload: Workload, size: u32, timing: &Timing) -> ProducerConfig {
    let (batch, rate) = match workload {
        Workload::Paced => (1, timing.paced_rate),
        _ if timing.batch != 0 => (timing.batch, 0),
        _ => ((PUBLISH_BYTES / record_stride(size)).clamp(1, 64) as u32, 0),
    };
    ProducerConfig {
        min_len: size,
        max_len: size,
        count: 0,
        rate,
        pattern: if workload.filled() {
            PATTERN_SEQ
        } else {
            PATTERN_NONE
        },
        flags: PRODUCER_WAIT,
        batch,
        ..Default::default()
    }
}

/// Opens the device as its consumer, empty, counters zeroed, drop-new.
pub(crate) fn fresh(device: &Path) -> anyhow::Result<Arc<Region>> {
    let mut region = Region::open(device, Access::Consume)?;
    region.reset(&ResetConfig::default()).map_err(|e| {
        anyhow::Error::new(e)
            .context("resetting the ring (is a producer running? `rmemring produce --stop`)")
    })?;
    Ok(Arc::new(region))
}

/// Stops the producer when dropped, so an error cannot leave it running.
struct Running<'a>(&'a Region);

impl<'a> Running<'a> {
    fn start(region: &'a Region, config: &ProducerConfig) -> anyhow::Result<Self> {
        region
            .start(config)
            .context("starting the kernel producer")?;
        Ok(Self(region))
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let _ = self.0.stop();
    }
}

/// What the consumer saw.
struct Tally {
    len: usize,
    /// Every payload byte is read ([`Workload::reads_bytes`]).
    read_bytes: bool,
    /// ...and checked, the producer having filled it
    /// ([`Workload::filled`]); else only the first word is.
    filled: bool,
    records: u64,
    bytes: u64,
    bad: u64,
    next_seq: u64,
    /// Latency is recorded for records whose sequence number has these
    /// bits clear.
    sample_mask: u64,
    /// With the gaps in the consumer's loop, where they are measured
    /// ([`tracks_gaps`]).
    latency: Latencies,
}

/// Whether a measurement counts the gaps in its consumer's own loop: the
/// paced workload (every record's latency recorded, so the loop reads the
/// clock per record as well as per look at the ring), busy-polling (in the
/// other modes a gap cannot be told from a sleep).
pub(crate) fn tracks_gaps(workload: Workload, mode: Mode) -> bool {
    workload == Workload::Paced && mode == Mode::BusyPoll
}

/// Flat out, latency is sampled on every [`LATENCY_SAMPLE`]th record (by
/// sequence number, so the same records on every path): recording it (a
/// clock read and a histogram update) costs on the order of the consumer's
/// own work on a small record, and the measurement must not be what it
/// measures. The
/// paced workload records every one.
const LATENCY_SAMPLE: u64 = 8;

impl Tally {
    fn new(workload: Workload, mode: Mode, size: u32) -> anyhow::Result<Self> {
        Ok(Self {
            len: size as usize,
            read_bytes: workload.reads_bytes(),
            filled: workload.filled(),
            records: 0,
            bytes: 0,
            bad: 0,
            next_seq: 0,
            sample_mask: match workload {
                Workload::Paced => 0,
                _ => LATENCY_SAMPLE - 1,
            },
            latency: Latencies::new(tracks_gaps(workload, mode))?,
        })
    }

    /// Checks one record: its sequence number and length always; where the
    /// consumer reads every byte, the payload against the pattern (a blank
    /// payload holds the pattern in its first word only: the pass over the
    /// rest is made all the same, its result thrown away).
    ///
    /// A sampled record's latency ends when the consumer reaches it, as in
    /// the BPF path's callback: not at the start of its batch, which
    /// left out the records before it and, as a batch takes records
    /// published while it runs, counted those as delivered before they
    /// were written.
    #[inline]
    fn record(&mut self, seq: u64, timestamp_ns: u64, payload: &[u8]) {
        if seq & self.sample_mask == 0 && self.latency.wants(timestamp_ns) {
            self.latency.record(monotonic_ns(), timestamp_ns);
        }
        let mut ok = seq == self.next_seq && payload.len() == self.len;
        if self.read_bytes {
            let whole = pattern::verify(seq, payload);
            ok &= if self.filled {
                whole
            } else {
                black_box(whole);
                first_word_ok(seq, payload)
            };
        }
        self.bad += u64::from(!ok);
        self.next_seq = seq.wrapping_add(1);
        self.records += 1;
        self.bytes += payload.len() as u64;
    }

    /// Forgets the warm-up as the window opens at `opened_ns`
    /// (`CLOCK_MONOTONIC`).
    fn restart(&mut self, opened_ns: u64) {
        self.records = 0;
        self.bytes = 0;
        self.latency.restart(opened_ns);
    }
}

/// Whether a payload starts with record `seq`'s first pattern word, all
/// that a blank payload (`PATTERN_NONE`) holds.
pub(crate) fn first_word_ok(seq: u64, payload: &[u8]) -> bool {
    let n = payload.len().min(8);
    payload[..n] == pattern::word(seq, 0).to_le_bytes()[..n]
}

/// The counters at one edge of the measured window.
struct Mark {
    at: Instant,
    cpu: Duration,
    producer_cpu: Option<Duration>,
    stats: RingStats,
}

impl Mark {
    fn take(region: &Region, producer: Option<&ProducerThread>) -> anyhow::Result<Self> {
        let stats = region.stats()?;
        Ok(Self {
            at: Instant::now(),
            cpu: thread_cpu(),
            producer_cpu: producer.and_then(ProducerThread::cpu),
            stats,
        })
    }
}

/// The warm-up, then the measured window.
struct Window<'a> {
    timing: Timing,
    region: &'a Region,
    /// The ring's data area, for its fill.
    data_size: u64,
    /// The producer's kernel thread, looked up at the first check, in the
    /// warm-up: the lookup walks `/proc`, a stall the window must not hold.
    thread_name: String,
    producer: Option<ProducerThread>,
    looked_up: bool,
    fill: Fill,
    started: Instant,
    start: Option<Mark>,
}

impl<'a> Window<'a> {
    fn new(timing: Timing, device: &Path, region: &'a Region) -> Self {
        Self {
            timing,
            region,
            data_size: region.layout().data_size,
            thread_name: producer_thread_name(device),
            producer: None,
            looked_up: false,
            fill: Fill::new(),
            started: Instant::now(),
            start: None,
        }
    }

    /// Between batches: opens the window after the warm-up and samples the
    /// ring's fill; `false` once the window is over.
    fn check(&mut self, tally: &mut Tally) -> anyhow::Result<bool> {
        if signals::stop_requested() {
            return Err(fail::with_status(fail::INTERRUPTED, "interrupted"));
        }
        tally.latency.tick();
        let now = Instant::now();
        // Not where the loop's gaps are counted: the sample is a system
        // call, which would make gaps of the loop's own (and the paced
        // ring is nearly empty by design).
        if !tally.latency.tracks_gaps() && self.fill.due(now) {
            let stats = self.region.stats()?;
            self.fill.add(
                stats.producer_pos.wrapping_sub(stats.consumer_pos),
                self.data_size,
            );
        }
        match &self.start {
            None => {
                if !self.looked_up {
                    self.producer = ProducerThread::find(&self.thread_name);
                    self.looked_up = true;
                }
                if now.duration_since(self.started) >= self.timing.warmup {
                    tally.restart(monotonic_ns());
                    self.start = Some(Mark::take(self.region, self.producer.as_ref())?);
                    self.fill.restart();
                }
                Ok(true)
            }
            Some(start) => Ok(now.duration_since(start.at) < self.timing.duration),
        }
    }

    /// How long a wait may block before the window needs checking: no
    /// time where the loop's gaps are counted, so that a busy-polling wait
    /// returns to the loop (and its clock) after each round of polls.
    fn slice(&self, tally: &Tally) -> Duration {
        if tally.latency.tracks_gaps() {
            Duration::ZERO
        } else {
            Duration::from_millis(50)
        }
    }

    /// Closes the window into a row.
    fn finish(self, tally: &Tally) -> anyhow::Result<Measured> {
        let end = Mark::take(self.region, self.producer.as_ref())?;
        let start = self.start.context("the measured window never opened")?;
        Ok(Measured {
            elapsed: end.at - start.at,
            cpu: end.cpu.saturating_sub(start.cpu),
            producer_cpu: cpu_between(start.producer_cpu, end.producer_cpu),
            fill: self.fill.mean(),
            wakeups: end.stats.wakeups - start.stats.wakeups,
            sleeps: end.stats.sleeps - start.stats.sleeps,
            dropped: end.stats.records_dropped - start.stats.records_dropped,
            latency: Latency::of(tally.latency.histogram()),
            gaps: tally.latency.gaps(),
            gap_tail: tally.latency.tail(),
            records: tally.records,
            bytes: tally.bytes,
            bad: tally.bad,
        })
    }
}

struct Measured {
    elapsed: Duration,
    cpu: Duration,
    producer_cpu: Option<Duration>,
    fill: Option<f64>,
    wakeups: u64,
    sleeps: u64,
    dropped: u64,
    latency: Option<Latency>,
    gaps: Option<Gaps>,
    gap_tail: Option<GapTail>,
    records: u64,
    bytes: u64,
    bad: u64,
}

impl Measured {
    fn row(self, imp: &str, mode: Mode, workload: Workload, size: u32) -> Row {
        Row {
            imp: imp.to_owned(),
            mode: mode.name().to_owned(),
            workload: workload.name().to_owned(),
            size,
            records: self.records,
            bytes: self.bytes,
            elapsed: self.elapsed,
            consumer_cpu: self.cpu,
            producer_cpu: self.producer_cpu,
            fill: self.fill,
            wakeups: self.wakeups,
            sleeps: self.sleeps,
            dropped: self.dropped,
            bad: self.bad,
            latency: self.latency,
            gaps: self.gaps,
            gap_tail: self.gap_tail,
            spread: None,
        }
    }
}

/// The wait strategy of a consumer mode.
fn wait_of(mode: Mode) -> Wait {
    match mode {
        Mode::BusyPoll => Wait::BusyPoll,
        Mode::Blocking => Wait::Backoff,
        Mode::Poll => Wait::Spin(0),
    }
}

/// The zero-copy consumer: records read in place from the mapping; the
/// producer started with [`producer_config`]'s flags and `flags` (the
/// `rmemring-staged` peer's `PRODUCER_STAGED`).
pub(crate) fn zero_copy(
    device: &Path,
    job: &Job,
    timing: Timing,
    flags: u32,
) -> anyhow::Result<Row> {
    let (mode, workload, size) = (job.mode, job.workload, job.size);
    let region = fresh(device)?;
    let mut consumer = region.consumer()?;
    consumer.set_wait(wait_of(mode));
    // Hand space back at least every eighth of the ring, so the producer
    // never waits for one long batch to finish.
    let per_batch = (region.layout().data_size / 8 / record_stride(size)).max(1) as usize;
    let mut tally = Tally::new(workload, mode, size)?;
    let mut window = Window::new(timing, device, &region);
    let mut config = producer_config(workload, size, &timing);
    config.flags |= flags;
    let running = Running::start(&region, &config)?;
    while window.check(&mut tally)? {
        if !consumer.wait(Some(window.slice(&tally)))? {
            continue;
        }
        let mut batch = consumer.batch()?;
        for record in batch.iter().take(per_batch) {
            let record = record?;
            tally.record(record.seq, record.timestamp_ns, record.payload);
        }
    }
    let measured = window.finish(&tally)?;
    drop(running);
    Ok(measured.row(job.peer.name(), mode, workload, size))
}

/// The copy path: whole records through `read()` into a private buffer.
/// Busy-poll: `O_NONBLOCK`, retried. Poll: a blocking `read()`, which
/// sleeps in the driver as soon as the ring is empty. Blocking: as the
/// other peers, spin and yield first (`O_NONBLOCK` reads retried under a
/// `crossbeam_utils::Backoff`), and only then one blocking `read()`.
pub(crate) fn read_copy(device: &Path, job: &Job, timing: Timing) -> anyhow::Result<Row> {
    let (mode, workload, size) = (job.mode, job.workload, job.size);
    let region = fresh(device)?;
    let fd = region.fd();
    let mut blocking = mode == Mode::Poll;
    set_blocking(fd, blocking)?;
    let buf_len = timing.read_buffer.max(record_stride(size) as usize);
    // u64s, so that headers are aligned like in the ring.
    let mut buf = vec![0u64; buf_len.div_ceil(8)];
    let mut tally = Tally::new(workload, mode, size)?;
    let mut window = Window::new(timing, device, &region);
    let backoff = Backoff::new();
    let running = Running::start(&region, &producer_config(workload, size, &timing))?;
    while window.check(&mut tally)? {
        // The spin is over: this read() may sleep.
        let sleep = mode == Mode::Blocking && backoff.is_completed();
        if sleep != blocking && mode == Mode::Blocking {
            set_blocking(fd, sleep)?;
            blocking = sleep;
        }
        let n = match read(fd, &mut bytemuck::cast_slice_mut(&mut buf)[..buf_len]) {
            Ok(n) => n,
            Err(Errno::EAGAIN) if mode == Mode::Blocking => {
                backoff.snooze();
                continue;
            }
            Err(Errno::EAGAIN | Errno::EINTR) => continue,
            Err(e) => return Err(anyhow::Error::new(e).context("read() from the ring")),
        };
        backoff.reset();
        let bytes: &[u8] = bytemuck::cast_slice(&buf);
        parse_records(&bytes[..n], &mut tally);
    }
    // The producer's wake-ups, as for the zero-copy consumer: of a reader
    // asleep in `read()`, or armed by an `O_NONBLOCK` one that found the
    // ring empty (the driver arms the wake-up for the `poll` an event loop
    // makes next).
    let measured = window.finish(&tally)?;
    drop(running);
    Ok(measured.row(job.peer.name(), mode, workload, size))
}

/// Walks the records `read()` returned (a chunk of the protocol's record
/// stream, `rmemring_proto::stream`); a read() returns whole records, so a
/// part of one left over is as wrong as a bad header.
fn parse_records(bytes: &[u8], tally: &mut Tally) {
    let mut records = Records::new(bytes);
    for record in records.by_ref() {
        match record {
            Ok(r) => tally.record(r.header.seq, r.header.timestamp_ns, r.payload),
            Err(_) => {
                tally.bad += 1;
                return;
            }
        }
    }
    if !records.remainder().is_empty() {
        tally.bad += 1;
    }
}

/// Makes `read()` on `fd` block (or not: `O_NONBLOCK`).
fn set_blocking(fd: BorrowedFd<'_>, blocking: bool) -> anyhow::Result<()> {
    let flags = fcntl(fd, FcntlArg::F_GETFL).context("getting the file status flags")?;
    let mut flags = OFlag::from_bits_retain(flags);
    flags.set(OFlag::O_NONBLOCK, !blocking);
    fcntl(fd, FcntlArg::F_SETFL(flags)).context("setting O_NONBLOCK")?;
    Ok(())
}

/// An idle blocking consumer: its thread waits on an empty ring while this
/// one reads the waiting thread's CPU clock across `idle`, leaving out the
/// first [`SETTLE`] (a blocking consumer spins and yields briefly before it
/// sleeps) and the wake-up at the end (one record, to let it go).
pub(crate) fn idle(
    device: &Path,
    peer: SyntheticPeer,
    mode: Mode,
    idle: Duration,
) -> anyhow::Result<IdleRow> {
    let imp = peer.name();
    let region = fresh(device)?;
    let waiter = {
        let region = region.clone();
        let use_read = imp == peer::READ;
        std::thread::spawn(move || -> anyhow::Result<bool> {
            if use_read {
                let mut buf = [0u64; 64];
                let n = read(region.fd(), bytemuck::cast_slice_mut(&mut buf))
                    .context("read() from the ring")?;
                return Ok(n > 0);
            }
            let mut consumer = region.consumer()?;
            consumer.set_wait(wait_of(mode));
            Ok(consumer.wait(Some(SETTLE + idle + Duration::from_secs(10)))?)
        })
    };
    let clock = thread_clock(&waiter)?;
    std::thread::sleep(SETTLE);
    let (cpu, at) = (cpu_time(clock)?, Instant::now());
    std::thread::sleep(idle);
    let (cpu, wall) = (cpu_time(clock)?.saturating_sub(cpu), at.elapsed());
    let config = ProducerConfig {
        min_len: 8,
        max_len: 8,
        count: 1,
        ..Default::default()
    };
    region
        .start(&config)
        .context("starting the kernel producer")?;
    let arrived = waiter
        .join()
        .map_err(|_| anyhow::anyhow!("the idle consumer panicked"))??;
    let _ = region.stop();
    if !arrived {
        anyhow::bail!("idle {imp} {}: the record never arrived", mode.name());
    }
    Ok(IdleRow {
        imp: imp.to_owned(),
        mode: mode.name().to_owned(),
        wall,
        cpu,
    })
}

/// How long an idle consumer may take to fall asleep before it is measured.
const SETTLE: Duration = Duration::from_millis(200);

/// The CPU-time clock of `thread`. (nix has no `pthread_getcpuclockid`.)
fn thread_clock<T>(thread: &std::thread::JoinHandle<T>) -> anyhow::Result<ClockId> {
    use std::os::unix::thread::JoinHandleExt;
    let mut clock: libc::clockid_t = 0;
    // SAFETY: The thread is joinable (its handle is alive), so its
    // `pthread_t` is valid; `clock` is a valid out-pointer.
    let r = unsafe { libc::pthread_getcpuclockid(thread.as_pthread_t(), &mut clock) };
    if r != 0 {
        return Err(anyhow::Error::new(std::io::Error::from_raw_os_error(r))
            .context("pthread_getcpuclockid"));
    }
    Ok(ClockId::from_raw(clock))
}

/// The time on the CPU clock `clock`.
fn cpu_time(clock: ClockId) -> anyhow::Result<Duration> {
    Ok(clock_gettime(clock).context("clock_gettime")?.into())
}
