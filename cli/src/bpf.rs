//! The benchmark's BPF ring buffer peer (`--features bpf`): the same records
//! as the rmemring ring carries, streamed through a `BPF_MAP_TYPE_RINGBUF`,
//! the way most users would get records from a kernel driver to user space
//! without rmemring.
//!
//! The driver's producer, started with [`PRODUCER_HOOK_ONLY`], emits each
//! record (same sequence numbers, lengths and payload bytes as for the
//! ring, and the same `batch` and rate, [`BpfRunConfig::producer`]) through
//! the tracepoint `rmemring_record_tp` instead of the ring. In hook-only
//! mode a batch is the run of records between two counter updates and
//! `cond_resched()`s, as there is nothing to publish; and the producer
//! cannot wait for room (see below), so it runs flat out where the ring
//! paths run with back-pressure. The BPF program `bpf/rmemring_hook.bpf.c`,
//! attached as a raw tracepoint, reserves a ringbuf record of header +
//! payload, copies the payload with `bpf_probe_read_kernel` and submits it;
//! for a consumer that reads headers only
//! ([`BpfRunConfig::headers_only`]) its header-only twin reserves and
//! submits the 24-byte header alone, and never reads the payload. This
//! module loads the program with libbpf and consumes the records as
//! [`BpfRunConfig::mode`] says, as the ring paths do: libbpf's
//! `ring_buffer__consume` in a loop (busy-poll; the program then submits
//! with `BPF_RB_NO_WAKEUP`), the same loop under a
//! `crossbeam_utils::Backoff` and then `ring_buffer__poll` (blocking:
//! spin, yield, then sleep), or `ring_buffer__poll` at once (poll); each
//! record is checked as the ring paths check theirs. With
//! [`BpfRunConfig::batched`] the benchmark's own consumer ([`Batched`])
//! takes the records instead of libbpf's, in the same three modes (its
//! sleep is `epoll_wait` on the map, as libbpf's): it reads the positions
//! from its own mapping of the ring buffer and stores the consumer position
//! once per batch, where libbpf stores it after every record: the BPF ring
//! buffer's best consumer. After a warm-up as
//! long as theirs, it measures a window: records, the consuming thread's
//! CPU time, the producer kernel thread's (the tracepoint and the program
//! run on it), and the BPF ring buffer's fill, read from its
//! memory-mapped positions.
//!
//! Why a raw tracepoint: it is the cheapest BPF hook the kernel offers
//! without BTF (the reference kernel has none, so no fentry or `tp_btf`):
//! the tracepoint calls the program directly with its arguments as `u64`s,
//! where a kprobe on `rmemring_hook_record` takes a breakpoint trap (or an
//! ftrace trampoline) and a `pt_regs` round trip per record. So BPF is
//! measured at its best. For comparison, `RMEMRING_BPF_HOOK=kprobe` (x86-64)
//! attaches the same program as a kprobe on `rmemring_hook_record` instead.
//! In the reference VM (QEMU TCG, 2 vCPUs, a busy host) at commit
//! `fa14299`, `rmemring bench --impls bpf --workloads headers --sizes 8,4K
//! --no-idle --repeat 3 --duration 1s`, with and without the variable,
//! gave 8 B records 2.4 (busy-poll) and 2.6 (blocking) times slower through
//! the kprobe; at 4 KiB the two were within the runs' spread (kprobe 1.2
//! times slower busy-polling, 1.2 times faster blocking, spreads up to
//! 200%): the payload copy dominates there.
//!
//! The producer cannot wait for room in hook-only mode, so when the
//! consumer falls behind, `bpf_ringbuf_reserve` fails and the record is
//! lost: [`BpfRunResult::lost`] counts them, cross-checked against the
//! program's own count of failed reservations. The ring buffer is as large
//! as the device's ring, so both hold the same bytes.

use std::cell::{
    Cell,
    RefCell, //
};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::atomic::{
    AtomicU32,
    AtomicU64,
    Ordering, //
};
use std::time::{
    Duration,
    Instant, //
};

use anyhow::{
    bail,
    ensure,
    Context,
    Result, //
};
use crossbeam_utils::Backoff;
use hdrhistogram::Histogram;
use libbpf_rs::{
    MapCore,
    MapFlags,
    ObjectBuilder,
    PrintLevel,
    RingBufferBuilder, //
};
use memmap2::{
    Mmap,
    MmapOptions, //
};
use nix::errno::Errno;
use nix::sys::epoll::{
    Epoll,
    EpollCreateFlags,
    EpollEvent,
    EpollFlags,
    EpollTimeout, //
};
use nix::sys::resource::{
    getrusage,
    UsageWho, //
};
use rmemring::monotonic_ns;
use rmemring::pattern;
use rmemring::uapi::{
    ProducerConfig,
    PATTERN_SEQ,
    PRODUCER_HOOK_ONLY, //
};
use rmemring::Device;

use crate::bench::kernel::{first_word_ok, tracks_gaps};
use crate::bench::sides::{
    cpu_between,
    producer_thread_name,
    Fill,
    ProducerThread, //
};
use crate::bench::stall::{
    GapTail,
    Gaps,
    Latencies, //
};
use crate::bench::{
    thread_cpu,
    Mode,
    Workload, //
};

/// The compiled BPF program (`bpf/rmemring_hook.bpf.c`, built by
/// `bpf/build.rs`).
static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/rmemring_hook.bpf.o"));

/// The tracepoint the programs attach to, and the driver's hook function
/// their kprobe twins attach to.
const TRACEPOINT: &str = "rmemring_record_tp";
const HOOK_FUNCTION: &str = "rmemring_hook_record";

/// The program for a run: `rmemring_{record,header}[_kprobe][_nowake]`
/// (header and payload, or the header only; raw tracepoint or kprobe;
/// submitting with the adaptive wake-up or with `BPF_RB_NO_WAKEUP`).
fn program_name(headers_only: bool, kprobe: bool, no_wakeup: bool) -> String {
    format!(
        "rmemring_{}{}{}",
        if headers_only { "header" } else { "record" },
        if kprobe { "_kprobe" } else { "" },
        if no_wakeup { "_nowake" } else { "" }
    )
}

/// The largest payload the BPF program carries (its `MAX_PAYLOAD`).
pub const MAX_PAYLOAD: u32 = 64 * 1024;

/// The header the BPF program writes before each payload.
const HEADER: usize = 24;

/// Indices of the program's `counters` map.
const COUNTER_DROPPED: u32 = 0;
const COUNTER_TOO_LONG: u32 = 1;
const COUNTER_READ_ERROR: u32 = 2;

/// How long one `ring_buffer__poll` (or the batched consumer's
/// `epoll_wait`) may block, in milliseconds.
const POLL_TIMEOUT_MS: u16 = 100;
const POLL_TIMEOUT: Duration = Duration::from_millis(POLL_TIMEOUT_MS as u64);

/// Records delivered by one `ring_buffer__consume` at most, so that a busy
/// consumer looks at the clock (and the ring's fill) even while the
/// producer keeps it busy.
const CONSUME_BATCH: usize = 4096;

/// The callback's return value that ends a poll at the deadline.
const STOP: i32 = -(Errno::ECANCELED as i32);

/// Latency is recorded for the records whose sequence number is a multiple
/// of this, as on the bench's other paths: reading the clock and recording
/// costs as much as the rest of the consumer's work on a small record.
const LATENCY_SAMPLE: u64 = 8;

/// Records between two looks at the clock for the deadline, at most (when
/// no sampled record comes).
const DEADLINE_EVERY: u64 = 64;

/// What to run.
#[derive(Clone, Debug)]
pub struct BpfRunConfig {
    /// The ring device (`/dev/rmemringN`) whose producer emits the records.
    pub device: PathBuf,
    /// The producer's configuration as the ring paths get it (lengths, at
    /// most [`MAX_PAYLOAD`]; pattern; rate; batch), run with
    /// [`PRODUCER_HOOK_ONLY`] as its only flag.
    pub producer: ProducerConfig,
    /// How long to consume before measuring.
    pub warmup: Duration,
    /// How long to measure.
    pub duration: Duration,
    /// Carry the header only (the consumer reads headers only); else header
    /// and payload, of which the consumer reads every byte (and checks it
    /// against the pattern where the producer filled it, `PATTERN_SEQ`;
    /// else the first word).
    pub headers_only: bool,
    /// How the consumer waits for records.
    pub mode: Mode,
    /// Take the records with the benchmark's own batched consumer
    /// ([`Batched`]: positions read directly, one release per batch)
    /// instead of libbpf's `ring_buffer__consume`.
    pub batched: bool,
    /// The paced workload: every record's latency is recorded (else every
    /// [`LATENCY_SAMPLE`]th, as on the ring paths), and, busy-polling, the
    /// gaps in the consumer's loop are counted, where the ring buffer's
    /// fill is not sampled (as on the ring paths).
    pub paced: bool,
}

/// What a run measured, in the window after the warm-up.
#[derive(Clone, Debug)]
pub struct BpfRunResult {
    /// Records delivered to user space (good or bad).
    pub records: u64,
    /// Payload bytes of the records delivered (carried or not).
    pub bytes: u64,
    /// The window's length.
    pub elapsed: Duration,
    /// CPU time of the consuming thread (user + system).
    pub consumer_cpu: Duration,
    /// CPU time of the producer's kernel thread, which runs the tracepoint
    /// and the BPF program; `None` if it was not found.
    pub producer_cpu: Option<Duration>,
    /// The BPF ring buffer's mean fill, 0 to 1.
    pub fill: Option<f64>,
    /// Times the consuming thread slept and was woken: its voluntary
    /// context switches (`getrusage(RUSAGE_THREAD)`), each one a sleep in
    /// `epoll_wait` ended by the BPF ring buffer's notification (or, rarely,
    /// the poll timeout), or a yield of the blocking mode's spin. Near 0
    /// when busy-polling.
    pub wakeups: u64,
    /// Records the producer emitted that never arrived (sequence gaps).
    pub lost: u64,
    /// Records with a wrong length, sequence number or payload (over the
    /// whole run, warm-up included).
    pub bad: u64,
    /// Delivery latency in nanoseconds: `CLOCK_MONOTONIC` when the record is
    /// consumed minus its timestamp, for the records whose sequence number
    /// is a multiple of [`LATENCY_SAMPLE`] (8), or of every record paced.
    pub latency: Histogram<u64>,
    /// The gaps in the consumer's loop over the window, where counted
    /// ([`BpfRunConfig::paced`], busy-polling).
    pub gaps: Option<Gaps>,
    /// Where the gaps are counted: how much of the latency tail waited
    /// through one of them.
    pub gap_tail: Option<GapTail>,
}

/// Loads and attaches the BPF program, starts the device's producer in
/// hook-only mode, consumes through the warm-up and the measured window,
/// stops the producer, drains the ring buffer, checks that every record
/// emitted arrived or was counted lost, and returns what the window saw.
pub fn run(config: &BpfRunConfig) -> Result<BpfRunResult> {
    let (min_len, max_len) = (config.producer.min_len, config.producer.max_len);
    ensure!(
        min_len <= max_len,
        "min_len {min_len} is above max_len {max_len}"
    );
    ensure!(
        max_len <= MAX_PAYLOAD,
        "the BPF peer carries payloads up to {MAX_PAYLOAD} bytes, not {max_len}"
    );

    // A controller: may start and stop the producer beside any consumer;
    // closing it stops the producer it started.
    let device = Device::controller(&config.device)?;
    let info = device.info()?;
    // The same capacity as the ring the BPF peer is compared with.
    let ring_size = u32::try_from(info.data_size)
        .ok()
        .filter(|size| size.is_power_of_two() && *size >= 4096)
        .with_context(|| format!("unusable ring size {}", info.data_size))?;
    let hooked_before = device.stats()?.records_hooked;

    // libbpf's warnings (a verifier log among them) go to stderr; all of its
    // messages with RMEMRING_BPF_DEBUG set.
    let level = if std::env::var_os("RMEMRING_BPF_DEBUG").is_some() {
        PrintLevel::Debug
    } else {
        PrintLevel::Warn
    };
    libbpf_rs::set_print(Some((level, |_, msg| eprint!("{msg}"))));
    let mut open = ObjectBuilder::default()
        .open_memory(OBJECT)
        .context("opening the BPF object")?;
    for mut map in open.maps_mut() {
        if map.name() == "records" {
            map.set_max_entries(ring_size)?;
        }
    }
    // Of the programs, the one for this hook that carries what the
    // consumer reads and submits with the flags it wants.
    let kprobe = std::env::var("RMEMRING_BPF_HOOK").as_deref() == Ok("kprobe");
    let wanted = program_name(config.headers_only, kprobe, config.mode == Mode::BusyPoll);
    let mut found = false;
    for mut program in open.progs_mut() {
        let load = program.name() == wanted.as_str();
        found |= load;
        program.set_autoload(load);
    }
    ensure!(found, "no program {wanted} in the BPF object");
    let object = open.load().context("loading the BPF program")?;
    let program = object
        .progs_mut()
        .find(|p| p.name() == wanted.as_str())
        .with_context(|| format!("no program {wanted} in the BPF object"))?;
    let _link = if kprobe {
        program
            .attach_kprobe(false, HOOK_FUNCTION)
            .with_context(|| format!("attaching a kprobe to {HOOK_FUNCTION}"))?
    } else {
        program.attach_raw_tracepoint(TRACEPOINT).with_context(|| {
            format!("attaching to raw tracepoint {TRACEPOINT} (is the driver loaded?)")
        })?
    };
    let records_map = object
        .maps()
        .find(|m| m.name() == "records")
        .context("no map records")?;
    let counters_map = object
        .maps()
        .find(|m| m.name() == "counters")
        .context("no map counters")?;
    let gaps = tracks_gaps(
        if config.paced {
            Workload::Paced
        } else {
            Workload::BlankHeaders
        },
        config.mode,
    );
    let probe = FillProbe {
        positions: Positions::map(&records_map)?,
        size: u64::from(ring_size),
        fill: RefCell::new(Fill::new()),
        on: !gaps,
    };

    let check = RefCell::new(
        Checker::new(
            min_len,
            max_len,
            config.headers_only,
            config.producer.pattern == PATTERN_SEQ,
        )?
        .paced(config.paced, gaps)?,
    );
    let thread_name = producer_thread_name(&config.device);
    // CLOCK_MONOTONIC nanoseconds at which the callback ends a poll;
    // u64::MAX while draining.
    let deadline_ns = Cell::new(u64::MAX);
    let producer = ProducerConfig {
        flags: PRODUCER_HOOK_ONLY,
        ..config.producer
    };
    let sides = Sides {
        device: &device,
        producer: &producer,
        thread_name: &thread_name,
        config,
        check: &check,
        probe: &probe,
        deadline_ns: &deadline_ns,
    };
    let window = if config.batched {
        let ring = Batched::map(&records_map, ring_size)?;
        sides.measure(
            |deadline| ring.consume(config.mode, deadline, &check, &probe, &deadline_ns),
            || ring.drain(&check, &probe),
        )?
    } else {
        let mut builder = RingBufferBuilder::new();
        builder.add(&records_map, |data| {
            let mut check = check.borrow_mut();
            let result = check.record(data, deadline_ns.get());
            if check.records % FILL_EVERY == 0 {
                probe.sample();
            }
            result
        })?;
        let ring = builder.build()?;
        sides.measure(
            |deadline| consume(&ring, config.mode, deadline, &probe, &check),
            || {
                let drained = ring.consume_raw();
                ensure!(drained >= 0, "ring_buffer__consume: {}", errno(drained));
                Ok(())
            },
        )?
    };
    let check = check.into_inner();

    let hooked = device.stats()?.records_hooked - hooked_before;
    ensure!(
        hooked > 0,
        "the producer emitted no record through the hook: does the driver support PRODUCER_HOOK_ONLY?"
    );
    // Every sequence number the producer emitted that never arrived.
    let lost = check.lost + hooked.saturating_sub(check.next_seq);
    let dropped = counter(&counters_map, COUNTER_DROPPED)?;
    let too_long = counter(&counters_map, COUNTER_TOO_LONG)?;
    let read_errors = counter(&counters_map, COUNTER_READ_ERROR)?;
    ensure!(
        too_long == 0 && read_errors == 0,
        "the BPF program could not carry {too_long} records over {MAX_PAYLOAD} bytes \
         and could not read {read_errors} payloads"
    );
    ensure!(
        lost == dropped,
        "{lost} records missing from the sequence, but the BPF program counted {dropped} failed reservations"
    );
    ensure!(
        check.next_seq <= hooked,
        "records up to sequence number {} arrived, but the producer emitted only {hooked}",
        check.next_seq
    );

    Ok(BpfRunResult {
        records: window.records,
        bytes: window.bytes,
        elapsed: window.elapsed,
        consumer_cpu: window.consumer_cpu,
        producer_cpu: window.producer_cpu,
        fill: window.fill,
        wakeups: window.wakeups,
        lost: window.lost,
        bad: check.bad,
        latency: window.latency,
        gaps: window.gaps,
        gap_tail: window.gap_tail,
    })
}

/// What both sides of a run share, whichever consumer takes the records.
struct Sides<'a> {
    /// The device, as the producer's controller.
    device: &'a Device,
    producer: &'a ProducerConfig,
    thread_name: &'a str,
    config: &'a BpfRunConfig,
    check: &'a RefCell<Checker>,
    probe: &'a FillProbe,
    /// `CLOCK_MONOTONIC` nanoseconds at which the checker ends a
    /// consumer's walk; `u64::MAX` while draining.
    deadline_ns: &'a Cell<u64>,
}

impl Sides<'_> {
    /// Starts the producer, consumes through the warm-up and the window
    /// with `consume_until` (which consumes until the deadline it is given,
    /// or the checker's [`STOP`]), stops the producer and takes what is
    /// left with `drain`.
    fn measure(
        &self,
        mut consume_until: impl FnMut(Instant) -> Result<()>,
        drain: impl FnOnce() -> Result<()>,
    ) -> Result<Window> {
        let mut consume_for = |duration: Duration| {
            self.deadline_ns
                .set(monotonic_ns().saturating_add(duration.as_nanos() as u64));
            consume_until(Instant::now() + duration)
        };
        self.device
            .start(self.producer)
            .context("starting the producer")?;
        let measured = (|| -> Result<Window> {
            // Before the warm-up, as on the ring paths: the lookup walks
            // `/proc`, a stall the window must not hold.
            let thread = ProducerThread::find(self.thread_name);
            consume_for(self.config.warmup)?;
            let (records, bytes, lost) = self.check.borrow_mut().restart(monotonic_ns());
            let start = WindowMark::take(thread.as_ref())?;
            self.probe.fill.borrow_mut().restart();
            consume_for(self.config.duration)?;
            let end = WindowMark::take(thread.as_ref())?;
            let check = self.check.borrow();
            let (records_end, bytes_end, lost_end) = check.counts();
            Ok(Window {
                latency: check.latency.histogram().clone(),
                gaps: check.latency.gaps(),
                gap_tail: check.latency.tail(),
                records: records_end - records,
                bytes: bytes_end - bytes,
                lost: lost_end - lost,
                elapsed: end.at - start.at,
                consumer_cpu: end.cpu.saturating_sub(start.cpu),
                producer_cpu: cpu_between(start.producer_cpu, end.producer_cpu),
                wakeups: end.voluntary_switches - start.voluntary_switches,
                fill: self.probe.fill.borrow().mean(),
            })
        })();
        let stopped = self.device.stop().context("stopping the producer");
        let window = measured?;
        stopped?;
        // Everything emitted is in the ring buffer now: take the rest.
        self.deadline_ns.set(u64::MAX);
        drain()?;
        Ok(window)
    }
}

/// What the measured window saw.
struct Window {
    records: u64,
    bytes: u64,
    lost: u64,
    elapsed: Duration,
    consumer_cpu: Duration,
    producer_cpu: Option<Duration>,
    wakeups: u64,
    fill: Option<f64>,
    latency: Histogram<u64>,
    gaps: Option<Gaps>,
    gap_tail: Option<GapTail>,
}

/// The clocks and counters at one edge of the window.
struct WindowMark {
    at: Instant,
    cpu: Duration,
    producer_cpu: Option<Duration>,
    voluntary_switches: u64,
}

impl WindowMark {
    fn take(producer: Option<&ProducerThread>) -> Result<Self> {
        Ok(Self {
            at: Instant::now(),
            cpu: thread_cpu(),
            producer_cpu: producer.and_then(ProducerThread::cpu),
            voluntary_switches: voluntary_switches()?,
        })
    }
}

/// The BPF ring buffer's consumer and producer positions, mapped read-only
/// (the map's first page holds the consumer position, the second the
/// producer's), for its fill.
struct Positions {
    pages: Mmap,
    page: usize,
}

impl Positions {
    fn map(map: &libbpf_rs::Map<'_>) -> Result<Self> {
        let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .and_then(|page| usize::try_from(page).ok())
            .context("the page size")?;
        // SAFETY: A new shared read-only mapping of the map's descriptor,
        // which only the kernel and libbpf write, and only through the
        // atomic positions `used` loads. The kernel allows a read-only
        // mapping of a ring buffer's first pages.
        let pages = unsafe {
            MmapOptions::new()
                .len(2 * page)
                .map(std::os::fd::AsRawFd::as_raw_fd(&map.as_fd()))
        }
        .context("mapping the BPF ring buffer's positions")?;
        Ok(Self { pages, page })
    }

    /// Bytes between the consumer and the producer position.
    fn used(&self) -> u64 {
        let at = |offset: usize| {
            // SAFETY: Both pages are mapped for as long as `self` lives, and
            // each starts with the kernel's 8-byte-aligned position, which
            // the kernel and libbpf update atomically.
            let word = unsafe { &*self.pages.as_ptr().add(offset).cast::<AtomicU64>() };
            word.load(Ordering::Acquire)
        };
        let consumer = at(0);
        at(self.page).wrapping_sub(consumer)
    }
}

/// Records between two looks at the ring buffer's fill inside libbpf's
/// callback, at most: as a ring path looks between batches.
const FILL_EVERY: u64 = 64;

/// The BPF ring buffer's fill, sampled as the ring paths sample theirs: at
/// most every `sides::FILL_PERIOD`, whenever the consumer looks for more
/// records and between runs of [`FILL_EVERY`] records inside libbpf's
/// callback (one `ring_buffer__consume` may take the whole ring buffer;
/// sampled only between calls, the fill would be that of a drained ring).
struct FillProbe {
    positions: Positions,
    size: u64,
    fill: RefCell<Fill>,
    /// Sampled at all: not where the loop's gaps are counted.
    on: bool,
}

impl FillProbe {
    fn sample(&self) {
        if !self.on {
            return;
        }
        let mut fill = self.fill.borrow_mut();
        if fill.due(Instant::now()) {
            fill.add(self.positions.used(), self.size);
        }
    }
}

/// Consumes until `deadline` (or the callback's [`STOP`]), as `mode` says,
/// sampling the ring buffer's fill whenever it looks for more records.
fn consume(
    ring: &libbpf_rs::RingBuffer<'_>,
    mode: Mode,
    deadline: Instant,
    probe: &FillProbe,
    check: &RefCell<Checker>,
) -> Result<()> {
    let backoff = Backoff::new();
    loop {
        check.borrow_mut().tick();
        if Instant::now() >= deadline {
            return Ok(());
        }
        probe.sample();
        let sleep = match mode {
            Mode::BusyPoll => false,
            Mode::Poll => true,
            Mode::Blocking => backoff.is_completed(),
        };
        let n = if sleep {
            backoff.reset();
            ring.poll_raw(POLL_TIMEOUT)
        } else {
            ring.consume_raw_n(CONSUME_BATCH)
        };
        if n == STOP {
            return Ok(());
        }
        if n < 0 && n != -(Errno::EINTR as i32) {
            let call = if sleep {
                "ring_buffer__poll"
            } else {
                "ring_buffer__consume_n"
            };
            bail!("{call}: {}", errno(n));
        }
        if mode == Mode::Blocking && !sleep {
            if n == 0 {
                backoff.snooze();
            } else {
                backoff.reset();
            }
        }
    }
}

/// The kernel's BPF ring buffer record header (`BPF_RINGBUF_HDR_SZ`): a
/// 32-bit length word, whose two top bits are flags, and the record's page
/// offset.
const RINGBUF_HEADER: u64 = 8;
/// The producer has reserved the record but not yet committed it
/// (`BPF_RINGBUF_BUSY_BIT`).
const RINGBUF_BUSY: u32 = 1 << 31;
/// The producer discarded the record: skip it (`BPF_RINGBUF_DISCARD_BIT`).
const RINGBUF_DISCARD: u32 = 1 << 30;

/// Where the record after one of `len` sample bytes starts: header and
/// sample, rounded up to 8 bytes, as the kernel lays them out.
fn ringbuf_stride(len: u32) -> u64 {
    (u64::from(len & !(RINGBUF_BUSY | RINGBUF_DISCARD)) + RINGBUF_HEADER).next_multiple_of(8)
}

/// Where a walk over a BPF ring buffer's records ended.
#[derive(Debug, PartialEq, Eq)]
struct Walked {
    /// The position of the first record not consumed.
    pos: u64,
    /// Records handed to the callback (discarded ones are skipped).
    records: u64,
    /// The callback asked to stop (after its record, which is consumed).
    stop: bool,
}

/// Walks the records of a BPF ring buffer from position `start` until
/// `until` (at least one record, if there is one), a record not yet
/// committed (`BPF_RINGBUF_BUSY_BIT`), or `sample` returning `true`;
/// skips discarded records (`BPF_RINGBUF_DISCARD_BIT`).
///
/// # Safety
///
/// `data` is valid for reads of `2 * size` bytes, the ring buffer's data
/// twice in a row (`size` a power of two), 8-byte aligned; every record
/// header between `start` and `until` is one the producer has reserved, and
/// the samples of those committed are not written while this runs.
unsafe fn walk(
    data: *const u8,
    size: u64,
    start: u64,
    until: u64,
    mut sample: impl FnMut(&[u8]) -> bool,
) -> Walked {
    let mut walked = Walked {
        pos: start,
        records: 0,
        stop: false,
    };
    while walked.pos < until && !walked.stop {
        let offset = (walked.pos & (size - 1)) as usize;
        // SAFETY: `offset` is inside the data and 8-byte aligned (the kernel
        // aligns every record); the header's first word is the length, which
        // the kernel stores with release when it commits.
        let len = unsafe { &*data.add(offset).cast::<AtomicU32>() }.load(Ordering::Acquire);
        if len & RINGBUF_BUSY != 0 {
            break;
        }
        if len & RINGBUF_DISCARD == 0 {
            // SAFETY: A committed record's sample is `len` bytes after its
            // header; the data is there twice, so a sample that wraps around
            // the end is contiguous.
            let bytes = unsafe {
                std::slice::from_raw_parts(data.add(offset + RINGBUF_HEADER as usize), len as usize)
            };
            walked.stop = sample(bytes);
            walked.records += 1;
        }
        walked.pos += ringbuf_stride(len);
    }
    walked
}

/// The BPF ring buffer's best consumer: the map mapped by the benchmark
/// itself, as libbpf maps it (the consumer page read-write; the producer
/// page and the data read-only, the data twice in a row, so that a record
/// that wraps around the end reads as one slice), records walked in place,
/// and the consumer position stored once per batch instead of once per
/// record as `ring_buffer__consume` does. A batch ends where the producer
/// position read (with acquire) at its start ends, at a record not yet
/// committed, or after an eighth of the ring buffer, so that the producer
/// is never kept from space for long, as rmemring's consumer hands space
/// back at least every eighth of its ring. Blocking, it waits in
/// `epoll_wait` on the map, as libbpf does.
struct Batched<'a> {
    /// The first page: the consumer position.
    consumer: *mut libc::c_void,
    /// The producer page, then the data twice.
    producer: *mut libc::c_void,
    page: usize,
    size: u64,
    epoll: Epoll,
    /// Ties the mappings to the map they map.
    _map: std::marker::PhantomData<&'a ()>,
}

impl<'a> Batched<'a> {
    fn map(map: &'a libbpf_rs::Map<'_>, size: u32) -> Result<Self> {
        // SAFETY: `sysconf` reads a constant.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .context("the page size")?;
        let fd = map.as_fd();
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).context("epoll_create1")?;
        epoll
            .add(fd, EpollEvent::new(EpollFlags::EPOLLIN, 0))
            .context("adding the BPF ring buffer to the epoll set")?;
        let mapping = |len: usize, prot: i32, offset: usize| {
            // SAFETY: A new shared mapping of the map's descriptor at an
            // address the kernel picks: it aliases no Rust object. The
            // kernel allows the consumer page to be mapped writable, and the
            // producer page and the data (mapped twice by the kernel itself,
            // so `2 * size` long) read-only.
            let base = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    prot,
                    libc::MAP_SHARED,
                    std::os::fd::AsRawFd::as_raw_fd(&fd),
                    offset as libc::off_t,
                )
            };
            if base == libc::MAP_FAILED {
                return Err(std::io::Error::last_os_error())
                    .context("mapping the BPF ring buffer for the batched consumer");
            }
            Ok(base)
        };
        let consumer = mapping(page, libc::PROT_READ | libc::PROT_WRITE, 0)?;
        let producer = match mapping(page + 2 * size as usize, libc::PROT_READ, page) {
            Ok(p) => p,
            Err(e) => {
                // SAFETY: The page just mapped, used by nothing.
                unsafe { libc::munmap(consumer, page) };
                return Err(e);
            }
        };
        Ok(Self {
            consumer,
            producer,
            page,
            size: u64::from(size),
            epoll,
            _map: std::marker::PhantomData,
        })
    }

    /// The consumer position, which only this consumer writes.
    fn consumer_pos(&self) -> &AtomicU64 {
        // SAFETY: The consumer page is mapped for as long as `self` lives
        // and starts with the kernel's 8-byte-aligned consumer position.
        unsafe { &*self.consumer.cast::<AtomicU64>() }
    }

    /// The producer position, which the kernel writes.
    fn producer_pos(&self) -> &AtomicU64 {
        // SAFETY: As for `consumer_pos`, the producer page.
        unsafe { &*self.producer.cast::<AtomicU64>() }
    }

    /// The data, twice in a row.
    fn data(&self) -> *const u8 {
        // SAFETY: The data follows the producer page in the mapping.
        unsafe { self.producer.cast::<u8>().add(self.page) }
    }

    /// One batch: the records committed since the last one, each checked in
    /// place, then one release of their space. Returns the records checked
    /// (discarded ones are skipped), whether the walk moved at all, and
    /// whether the checker asked to stop (the deadline passed).
    fn batch(
        &self,
        check: &RefCell<Checker>,
        probe: &FillProbe,
        deadline_ns: u64,
    ) -> (u64, bool, bool) {
        let start = self.consumer_pos().load(Ordering::Relaxed);
        let end = self.producer_pos().load(Ordering::Acquire);
        let limit = start + (self.size / 8).max(1);
        let mut check = check.borrow_mut();
        // SAFETY: The data is mapped twice in a row, `size` bytes each, for
        // as long as `self` lives; the kernel committed the records up to
        // `end` that the walk finds not busy, and writes none of them until
        // the consumer position passes them.
        let walked = unsafe {
            walk(self.data(), self.size, start, end.min(limit), |sample| {
                let stop = check.record(sample, deadline_ns) == STOP;
                if check.records % FILL_EVERY == 0 {
                    probe.sample();
                }
                stop
            })
        };
        if walked.pos != start {
            self.consumer_pos().store(walked.pos, Ordering::Release);
        }
        (walked.records, walked.pos != start, walked.stop)
    }

    /// Sleeps in `epoll_wait` until the kernel signals records (or the
    /// timeout), unless records are there. The consumer position was
    /// stored before: the fence orders that store before the load of the
    /// producer position, so that a producer that committed a record at the
    /// consumer position after it either saw the position (and wakes the
    /// epoll) or is seen here.
    fn sleep(&self) -> Result<()> {
        std::sync::atomic::fence(Ordering::SeqCst);
        let available = self.producer_pos().load(Ordering::Acquire)
            != self.consumer_pos().load(Ordering::Relaxed);
        if available {
            return Ok(());
        }
        let mut events = [EpollEvent::empty()];
        match self
            .epoll
            .wait(&mut events, EpollTimeout::from(POLL_TIMEOUT_MS))
        {
            Ok(_) | Err(nix::errno::Errno::EINTR) => Ok(()),
            Err(e) => Err(anyhow::Error::new(e).context("epoll_wait on the BPF ring buffer")),
        }
    }

    /// Consumes until `deadline` (or the checker's [`STOP`]), as `mode`
    /// says: the same strategies as libbpf's consumer gets.
    fn consume(
        &self,
        mode: Mode,
        deadline: Instant,
        check: &RefCell<Checker>,
        probe: &FillProbe,
        deadline_ns: &Cell<u64>,
    ) -> Result<()> {
        let backoff = Backoff::new();
        loop {
            check.borrow_mut().tick();
            if Instant::now() >= deadline {
                return Ok(());
            }
            probe.sample();
            let (records, _, stop) = self.batch(check, probe, deadline_ns.get());
            if stop {
                return Ok(());
            }
            if records > 0 {
                backoff.reset();
                continue;
            }
            match mode {
                Mode::BusyPoll => {}
                Mode::Blocking if !backoff.is_completed() => backoff.snooze(),
                Mode::Blocking | Mode::Poll => {
                    backoff.reset();
                    self.sleep()?;
                }
            }
        }
    }

    /// Takes every record left.
    fn drain(&self, check: &RefCell<Checker>, probe: &FillProbe) -> Result<()> {
        while self.batch(check, probe, u64::MAX).1 {}
        Ok(())
    }
}

impl Drop for Batched<'_> {
    fn drop(&mut self) {
        // SAFETY: The two mappings made in `map`, which nothing borrows any
        // longer.
        unsafe {
            libc::munmap(self.consumer, self.page);
            libc::munmap(self.producer, self.page + 2 * self.size as usize);
        }
    }
}

/// Checks each record and keeps the counts.
struct Checker {
    min_len: u32,
    max_len: u32,
    /// Records carry their header only.
    headers_only: bool,
    /// Payloads are filled (`PATTERN_SEQ`) and checked whole; else only
    /// their first word is checked (but every byte read).
    filled: bool,
    next_seq: u64,
    records: u64,
    bytes: u64,
    lost: u64,
    bad: u64,
    /// Latency is recorded for records whose sequence number has these bits
    /// clear.
    sample_mask: u64,
    /// With the gaps in the consumer's loop, where counted.
    latency: Latencies,
}

impl Checker {
    fn new(min_len: u32, max_len: u32, headers_only: bool, filled: bool) -> Result<Self> {
        Ok(Self {
            min_len,
            max_len,
            headers_only,
            filled,
            next_seq: 0,
            records: 0,
            bytes: 0,
            lost: 0,
            bad: 0,
            sample_mask: LATENCY_SAMPLE - 1,
            // The same latencies as the ring paths'.
            latency: Latencies::new(false)?,
        })
    }

    /// For the paced workload (`paced`): every record's latency recorded;
    /// and with `gaps`, the gaps in the consumer's loop counted.
    fn paced(self, paced: bool, gaps: bool) -> Result<Self> {
        Ok(Self {
            sample_mask: if paced { 0 } else { self.sample_mask },
            latency: Latencies::new(gaps)?,
            ..self
        })
    }

    /// One look at the ring buffer by the consumer's loop.
    fn tick(&mut self) {
        self.latency.tick();
    }

    /// Records, payload bytes and records lost so far.
    fn counts(&self) -> (u64, u64, u64) {
        (self.records, self.bytes, self.lost)
    }

    /// Forgets the latencies so far (the warm-up's) as the window opens at
    /// `opened_ns` (`CLOCK_MONOTONIC`), and returns the counts.
    fn restart(&mut self, opened_ns: u64) -> (u64, u64, u64) {
        self.latency.restart(opened_ns);
        self.counts()
    }

    /// libbpf's sample callback: one record. Returns [`STOP`] once
    /// `deadline_ns` has passed (the record is consumed all the same).
    fn record(&mut self, data: &[u8], deadline_ns: u64) -> i32 {
        self.records += 1;
        let Some((header, rest)) = data.split_first_chunk::<HEADER>() else {
            self.bad += 1;
            return 0;
        };
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&header[i * 8..i * 8 + 8]);
            u64::from_le_bytes(w)
        };
        let (seq, timestamp_ns) = (word(0), word(1));
        let len = word(2) as u32;
        // The clock is read for sampled records, and now and then for the
        // deadline.
        // As on the ring paths, no latency for a record written before the
        // window opened.
        let sampled = seq & self.sample_mask == 0 && self.latency.wants(timestamp_ns);
        let mut result = 0;
        if sampled || self.records % DEADLINE_EVERY == 0 {
            let now = monotonic_ns();
            if sampled {
                self.latency.record(now, timestamp_ns);
            }
            if now >= deadline_ns {
                result = STOP;
            }
        }

        if seq < self.next_seq {
            self.bad += 1;
        } else {
            self.lost += seq - self.next_seq;
            self.next_seq = seq + 1;
        }
        let mut good = len == pattern::payload_len(seq, self.min_len, self.max_len);
        if self.headers_only {
            // The header alone: nothing more may come.
            good &= rest.is_empty();
        } else {
            let Some(payload) = rest.get(..len as usize) else {
                self.bad += 1;
                return result;
            };
            // Every byte is read, as the ring paths read theirs.
            let whole = pattern::verify(seq, payload);
            good &= if self.filled {
                whole
            } else {
                std::hint::black_box(whole);
                first_word_ok(seq, payload)
            };
        }
        // The payload bytes of the record, carried or not, as the ring
        // paths count theirs.
        self.bytes += u64::from(len);
        if !good {
            self.bad += 1;
        }
        result
    }
}

/// Sums a per-CPU counter of the program.
fn counter(map: &libbpf_rs::Map<'_>, index: u32) -> Result<u64> {
    let values = map
        .lookup_percpu(&index.to_ne_bytes(), MapFlags::ANY)?
        .with_context(|| format!("no counter {index}"))?;
    Ok(values
        .iter()
        .map(|v| {
            v.get(..8)
                .map_or(0, |b| u64::from_ne_bytes(b.try_into().unwrap_or([0; 8])))
        })
        .sum())
}

/// The calling thread's voluntary context switches.
fn voluntary_switches() -> Result<u64> {
    let usage = getrusage(UsageWho::RUSAGE_THREAD).context("getrusage(RUSAGE_THREAD)")?;
    Ok(usage.voluntary_context_switches() as u64)
}

/// A libbpf error return as text.
fn errno(ret: i32) -> std::io::Error {
    std::io::Error::from_raw_os_error(-ret)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A checker of records carrying their payload (every byte read),
    /// filled with the pattern (`verify`) or blank.
    fn checker(min_len: u32, max_len: u32, verify: bool) -> Checker {
        Checker::new(min_len, max_len, false, verify).unwrap()
    }

    /// The header the BPF programs write.
    fn header(seq: u64, len: u32) -> Vec<u8> {
        let mut data = Vec::new();
        data.extend_from_slice(&seq.to_le_bytes());
        data.extend_from_slice(&monotonic_ns().to_le_bytes());
        data.extend_from_slice(&len.to_le_bytes());
        data.extend_from_slice(&0u32.to_le_bytes());
        data
    }

    /// A ringbuf sample as the BPF program writes it: header, payload and
    /// the rest of the size class.
    fn sample(seq: u64, len: u32, verify: bool) -> Vec<u8> {
        let mut data = header(seq, len);
        let mut payload = vec![0u8; len as usize];
        if verify {
            pattern::fill(seq, &mut payload);
        } else {
            let n = payload.len().min(8);
            payload[..n].copy_from_slice(&pattern::word(seq, 0).to_le_bytes()[..n]);
        }
        data.extend_from_slice(&payload);
        data.resize(HEADER + (len as usize).next_power_of_two().max(8), 0);
        data
    }

    #[test]
    fn program_names_match_the_object() {
        assert_eq!(program_name(false, false, false), "rmemring_record");
        assert_eq!(program_name(true, false, true), "rmemring_header_nowake");
        assert_eq!(
            program_name(true, true, true),
            "rmemring_header_kprobe_nowake"
        );
        // Every name the benchmark may ask for is a program of the object.
        let object = String::from_utf8_lossy(OBJECT);
        for headers_only in [false, true] {
            for no_wakeup in [false, true] {
                let name = program_name(headers_only, false, no_wakeup);
                assert!(object.contains(&name), "{name}");
            }
        }
    }

    #[test]
    fn in_order_records_are_good() {
        for verify in [false, true] {
            let mut check = checker(0, 300, verify);
            for seq in 0..1000 {
                let len = pattern::payload_len(seq, 0, 300);
                assert_eq!(check.record(&sample(seq, len, verify), u64::MAX), 0);
            }
            assert_eq!((check.records, check.lost, check.bad), (1000, 0, 0));
            assert_eq!(check.next_seq, 1000);
            assert_eq!(check.latency.histogram().len(), 1000 / LATENCY_SAMPLE);
            let bytes: u64 = (0..1000)
                .map(|s| u64::from(pattern::payload_len(s, 0, 300)))
                .sum();
            assert_eq!(check.bytes, bytes);
            // The window's counts start where the warm-up's end.
            assert_eq!(check.restart(0), (1000, bytes, 0));
            assert!(check.latency.histogram().is_empty());
        }
    }

    #[test]
    fn headers_only_records_carry_no_payload() {
        let mut check = Checker::new(64, 64, true, true).unwrap();
        check.record(&header(0, 64), u64::MAX);
        check.record(&header(1, 64), u64::MAX);
        assert_eq!((check.records, check.bad, check.bytes), (2, 0, 128));
        // A payload where none belongs, or a wrong length, is bad.
        check.record(&sample(2, 64, true), u64::MAX);
        check.record(&header(3, 32), u64::MAX);
        assert_eq!((check.records, check.bad), (4, 2));
    }

    #[test]
    fn gaps_are_lost_and_repeats_bad() {
        let mut check = checker(64, 64, true);
        for seq in [0, 1, 5, 6, 6, 2, 9] {
            check.record(&sample(seq, 64, true), u64::MAX);
        }
        assert_eq!(check.lost, 3 + 2);
        assert_eq!(check.bad, 2);
        assert_eq!(check.next_seq, 10);
    }

    #[test]
    fn wrong_length_payload_or_size_is_bad() {
        let mut check = checker(64, 64, true);
        check.record(&sample(0, 32, true), u64::MAX);
        let mut corrupt = sample(1, 64, true);
        corrupt[HEADER + 63] ^= 1;
        check.record(&corrupt, u64::MAX);
        let mut truncated = sample(2, 64, true);
        truncated.truncate(HEADER + 10);
        check.record(&truncated, u64::MAX);
        check.record(&[0u8; 10], u64::MAX);
        assert_eq!((check.records, check.bad, check.lost), (4, 4, 0));

        // Blank payloads: every byte is read, the first word checked.
        let mut check = checker(64, 64, false);
        let mut tail = sample(0, 64, false);
        tail[HEADER + 63] ^= 1;
        check.record(&tail, u64::MAX);
        let mut head = sample(1, 64, false);
        head[HEADER] ^= 1;
        check.record(&head, u64::MAX);
        assert_eq!(check.bad, 1);
    }

    /// A BPF ring buffer's data twice in a row, as the kernel maps it, with
    /// records of these sample lengths and flags from position `start`.
    fn ringbuf(size: usize, start: u64, records: &[(u32, u32)]) -> Vec<u64> {
        let mut data = vec![0u8; size];
        let mut pos = start;
        for (i, &(len, flags)) in records.iter().enumerate() {
            let at = |k: u64| ((pos + k) as usize) & (size - 1);
            for (k, b) in (len | flags).to_le_bytes().into_iter().enumerate() {
                data[at(k as u64)] = b;
            }
            for k in 0..u64::from(len) {
                data[at(RINGBUF_HEADER + k)] = i as u8;
            }
            pos += ringbuf_stride(len);
        }
        data.extend_from_within(..);
        data.chunks(8)
            .map(|w| u64::from_le_bytes(w.try_into().unwrap()))
            .collect()
    }

    #[test]
    fn the_batched_walk_honours_busy_discard_rounding_and_wrapping() {
        assert_eq!(ringbuf_stride(0), 8);
        assert_eq!(ringbuf_stride(1), 16);
        assert_eq!(ringbuf_stride(24 | RINGBUF_DISCARD), 32);
        // From near the end, so that the third record wraps around it.
        let size = 256;
        let start = 1024 + 200;
        let records = [
            (5, 0),
            (9, RINGBUF_DISCARD),
            (40, 0),
            (8, RINGBUF_BUSY),
            (8, 0),
        ];
        let data = ringbuf(size, start, &records);
        let mut seen = Vec::new();
        // SAFETY: `data` is the ring's data twice, as `walk` wants it.
        let walked = unsafe {
            walk(data.as_ptr().cast(), size as u64, start, u64::MAX, |s| {
                seen.push(s.to_vec());
                false
            })
        };
        // The discarded record is skipped, the busy one ends the walk.
        assert_eq!(seen, [vec![0u8; 5], vec![2u8; 40]]);
        assert_eq!(
            walked,
            Walked {
                pos: start + 16 + 24 + 48,
                records: 2,
                stop: false
            }
        );
        // A walk ends at its end position (after one record at least), and
        // where the callback says stop.
        // SAFETY: As above.
        let one = unsafe {
            walk(data.as_ptr().cast(), size as u64, start, start + 1, |_| {
                false
            })
        };
        assert_eq!((one.pos, one.records), (start + 16, 1));
        // SAFETY: As above.
        let stopped = unsafe { walk(data.as_ptr().cast(), size as u64, start, u64::MAX, |_| true) };
        assert_eq!(
            stopped,
            Walked {
                pos: start + 16,
                records: 1,
                stop: true
            }
        );
    }

    #[test]
    fn the_deadline_stops_a_poll() {
        let mut check = checker(8, 8, false);
        assert_eq!(check.record(&sample(0, 8, false), u64::MAX), 0);
        // Not sampled: the clock is not read.
        assert_eq!(check.record(&sample(1, 8, false), 0), 0);
        assert_eq!(check.record(&sample(8, 8, false), 0), STOP);
        // Every DEADLINE_EVERY records, sampled or not.
        for seq in 9..DEADLINE_EVERY + 6 {
            let stop = check.record(&sample(seq, 8, false), 0) == STOP;
            assert_eq!(stop, seq % LATENCY_SAMPLE == 0 || seq == DEADLINE_EVERY + 5);
        }
    }
}
