//! Host throughput: rmemring against `rtrb`, crossbeam's `ArrayQueue` and
//! `memcpy`, two threads on one machine.
//!
//! ```text
//! cargo bench -p rmemring --bench host -- [--quick] [--json] [--no-pin] [--no-nice]
//!                                         [--size BYTES]... [IMPL]...
//! ```
//!
//! Every implementation runs the same workload for each payload size (8 B,
//! 64 B, 1 KiB, 4 KiB, 64 KiB):
//!
//! - a producer thread writes `warm + timed` records; each payload is a stamp
//!   word derived from the sequence number, the middle copied from a source
//!   buffer, and a second stamp word ([`fill`]);
//! - a consumer thread reads every record and checks its sequence number,
//!   its length and the two stamp words ([`check`]);
//! - each ring holds [`RING_BYTES`] bytes; the two ring buffers with a
//!   batch API publish and release records in batches of 4, 16 or 64 KiB of
//!   payload ([`BATCHES`]), each measured, and each is reported at the batch
//!   size that suits it best (`ArrayQueue` has no batching);
//! - the clock starts when the consumer has seen `warm` records (two laps of
//!   the ring, so page faults and cold caches are behind it) and stops at
//!   the last one.
//!
//! How each peer is used, and why, is in `docs/bench/host.md`. `memcpy` is
//! the producer's copy alone on one core: the same bytes in the same sizes
//! into a buffer as large as the ring, the bandwidth limit of any ring.
//!
//! Each measurement is repeated (7 times, 5 with `--quick`) with the
//! implementations interleaved, and the median is reported with its spread,
//! `(max - min) / median`. The producer and the consumer are pinned to two
//! CPUs of different cores ([`cpu_pair`], `sched_setaffinity`; CPUs 0 and 1
//! on the two-CPU development machine) unless `--no-pin` is given; and unless
//! `--no-nice` is given, the process runs at nice -19 in a session of its
//! own where that is allowed (see [`raise_priority`]), so that other work on
//! a shared machine takes the two CPUs less often.
//!
//! Output: a header naming the machine, a Markdown table of records/s, GB/s
//! (10^9 payload bytes per second) and the ratio rmemring/peer, then the
//! issue's targets, met or missed. With `--json`, stdout carries only one
//! JSON object per measurement and line,
//! `{"bench":"host","impl":"rmemring","size":64,"records_per_s":…,"bytes_per_s":…,…}`:
//! those five keys first and in that order, then `batch_bytes`, `runs` and
//! `spread` ([`json_line`]); the human-readable text goes to stderr.

use std::fmt::Write as _;
use std::hint::{
    black_box,
    spin_loop, //
};
use std::mem::MaybeUninit;
use std::ptr::addr_of_mut;
use std::sync::atomic::{
    AtomicBool,
    Ordering, //
};
use std::sync::{
    Arc,
    Barrier, //
};
use std::time::{
    Duration,
    Instant, //
};

use crossbeam_queue::ArrayQueue;
use rmemring::{
    CreateOptions,
    Overflow,
    ProduceError,
    Region, //
};
use rtrb::chunks::ChunkError;
use rtrb::RingBuffer;

/// The payload sizes of the issue, in bytes.
const SIZES: [usize; 5] = [8, 64, 1024, 4096, 65536];

/// Bytes of every ring: the rmemring data area, the `rtrb` buffer, and the
/// `ArrayQueue` slots (stamps included), and the `memcpy` destination.
///
/// 1 MiB fits, with the source buffer, in one core's 2 MiB L2, so the
/// benchmark measures the rings rather than DRAM; it is the smallest power
/// of two that holds several 64 KiB records in rmemring (a record may fill
/// at most a quarter of the data area); and it is the crate's default.
const RING_BYTES: usize = 1 << 20;

/// The batch sizes, in payload bytes per publication and release, that the
/// batching rings are measured with (`--batch` chooses others).
const BATCHES: [usize; 3] = [4 << 10, 16 << 10, 64 << 10];

/// The length prefix of an `rtrb` record: payload length and sequence
/// number, two little-endian `u64`s.
const RTRB_PREFIX: usize = 16;

/// The ring implementations and the baseline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Impl {
    Rmemring,
    Rtrb,
    Crossbeam,
    Memcpy,
}

const IMPLS: [Impl; 4] = [Impl::Rmemring, Impl::Rtrb, Impl::Crossbeam, Impl::Memcpy];

impl Impl {
    fn name(self) -> &'static str {
        match self {
            Impl::Rmemring => "rmemring",
            Impl::Rtrb => "rtrb",
            Impl::Crossbeam => "crossbeam",
            Impl::Memcpy => "memcpy",
        }
    }

    /// Whether the implementation publishes and releases in batches.
    fn batches(self) -> bool {
        matches!(self, Impl::Rmemring | Impl::Rtrb)
    }
}

/// Command-line settings.
struct Config {
    quick: bool,
    json: bool,
    pin: bool,
    /// The producer's and the consumer's CPU, see [`cpu_pair`].
    cpus: (usize, usize),
    nice: bool,
    reps: usize,
    sizes: Vec<usize>,
    impls: Vec<Impl>,
    batches: Vec<usize>,
}

impl Config {
    fn from_args() -> Result<Self, String> {
        let mut config = Config {
            quick: false,
            json: false,
            pin: true,
            cpus: cpu_pair(),
            nice: true,
            reps: 0,
            sizes: Vec::new(),
            impls: Vec::new(),
            batches: Vec::new(),
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => config.quick = true,
                "--json" => config.json = true,
                "--no-pin" => config.pin = false,
                "--no-nice" => config.nice = false,
                // `cargo bench` passes `--bench` to every bench binary.
                "--bench" => {}
                "--size" => {
                    let size = args.next().ok_or("--size needs a value")?;
                    let size = size
                        .parse::<usize>()
                        .ok()
                        .filter(|s| *s >= 8 && s % 8 == 0 && *s <= RING_BYTES / 8)
                        .ok_or(format!(
                            "--size {size}: need a multiple of 8 from 8 to 131072"
                        ))?;
                    config.sizes.push(size);
                }
                "--batch" => {
                    let batch = args.next().ok_or("--batch needs a value")?;
                    let batch = batch
                        .parse::<usize>()
                        .ok()
                        // rmemring's producer publishes on its own once a
                        // batch reaches a quarter of the ring.
                        .filter(|b| *b > 0 && *b <= RING_BYTES / 4)
                        .ok_or(format!(
                            "--batch {batch}: need 1 to {} bytes",
                            RING_BYTES / 4
                        ))?;
                    config.batches.push(batch);
                }
                "--reps" => {
                    let reps = args.next().ok_or("--reps needs a value")?;
                    config.reps = reps
                        .parse()
                        .ok()
                        .filter(|r| *r > 0)
                        .ok_or(format!("--reps {reps}: need a positive number"))?;
                }
                "-h" | "--help" => {
                    return Err(
                        "usage: host [--quick] [--json] [--no-pin] [--no-nice] [--reps N] [--batch BYTES]... \
                                [--size BYTES]... [rmemring|rtrb|crossbeam|memcpy]..."
                            .into(),
                    )
                }
                name => match IMPLS.iter().find(|i| i.name() == name) {
                    Some(i) => config.impls.push(*i),
                    None => return Err(format!("unknown argument {name:?} (try --help)")),
                },
            }
        }
        if config.sizes.is_empty() {
            config.sizes = SIZES.to_vec();
        }
        if config.impls.is_empty() {
            config.impls = IMPLS.to_vec();
        }
        if config.batches.is_empty() {
            config.batches = BATCHES.to_vec();
        }
        if config.reps == 0 {
            config.reps = if config.quick { 5 } else { 7 };
        }
        Ok(config)
    }
}

/// One measurement's workload.
struct Workload {
    /// Payload bytes per record.
    size: usize,
    /// Records before the clock starts.
    warm: u64,
    /// Records the clock covers (at least).
    timed: u64,
    /// What the producer copies the middle of every payload from.
    src: Vec<u8>,
}

impl Workload {
    fn new(size: usize, quick: bool) -> Self {
        // Enough records for about 0.1-0.5 s of the fastest implementation
        // (0.03-0.1 s with `--quick`), the same number for all of them.
        let (budget, max_records) = if quick {
            (256u64 << 20, 8u64 << 20)
        } else {
            (2u64 << 30, 48u64 << 20)
        };
        let timed = (budget / size as u64).min(max_records);
        // Two laps of the ring, at least.
        let warm = (2 * RING_BYTES / size).max(1024) as u64;
        let src = (0..size).map(|i| i as u8).collect();
        Self {
            size,
            warm,
            timed,
            src,
        }
    }

    fn total(&self) -> u64 {
        self.warm + self.timed
    }

    /// Records per publication and release for batches of `bytes` of payload.
    fn records_per_batch(&self, bytes: usize) -> usize {
        (bytes / self.size).max(1)
    }
}

/// The first stamp word of record `seq`.
#[inline(always)]
fn first_word(seq: u64) -> u64 {
    seq.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// The last stamp word of record `seq` of `size` bytes (the first one
/// again when the payload is a single word).
#[inline(always)]
fn last_word(seq: u64, size: usize) -> u64 {
    if size > 8 {
        !seq
    } else {
        first_word(seq)
    }
}

/// Writes record `seq`'s `size`-byte payload at `dst`: a stamp word, the
/// middle copied from `src`, a closing stamp word. Every implementation
/// writes its payloads with this.
///
/// # Safety
///
/// `dst` must be valid for `size` bytes of writes; `size` must be a
/// multiple of 8 of at least 8, and `src` at least `size` bytes long.
#[inline(always)]
unsafe fn fill(dst: *mut u8, size: usize, seq: u64, src: &[u8]) {
    debug_assert!(size >= 8 && size % 8 == 0 && src.len() >= size);
    // SAFETY: The caller provides `size >= 8` writable bytes at `dst`.
    unsafe { dst.cast::<u64>().write_unaligned(first_word(seq).to_le()) };
    if size > 8 {
        // SAFETY: `8 + (size - 16) + 8 == size` bytes, all inside `dst` and
        // `src`; `src` is the caller's own buffer, so they cannot overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr().add(8), dst.add(8), size - 16);
            dst.add(size - 8)
                .cast::<u64>()
                .write_unaligned(last_word(seq, size).to_le());
        }
    }
}

/// The light check every consumer applies to every record: the sequence
/// number, the length and both stamp words.
#[inline(always)]
fn check(seq: u64, expected: u64, payload: &[u8], size: usize) -> bool {
    if payload.len() != size || payload.len() < 8 {
        return false;
    }
    let word = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&payload[at..at + 8]);
        u64::from_le_bytes(w)
    };
    (seq == expected)
        & (word(0) == first_word(expected))
        & (word(size - 8) == last_word(expected, size))
}

/// Starts the clock when the consumer has seen the warm-up records.
struct Clock {
    warm: u64,
    start: Option<(Instant, u64)>,
}

impl Clock {
    fn new(warm: u64) -> Self {
        Self { warm, start: None }
    }

    /// Notes that `seen` records have been consumed so far.
    #[inline(always)]
    fn tick(&mut self, seen: u64) {
        if self.start.is_none() && seen >= self.warm {
            self.start = Some((Instant::now(), seen));
        }
    }

    /// Stops the clock after `seen` records and `bad` failed checks.
    fn stop(self, seen: u64, bad: u64) -> Timing {
        let end = Instant::now();
        let (start, at) = self.start.expect("the clock started");
        assert_eq!(bad, 0, "records failed the consumer's check");
        Timing {
            records: seen - at,
            elapsed: end - start,
        }
    }
}

/// What one measurement took.
#[derive(Clone, Copy, Debug)]
struct Timing {
    records: u64,
    elapsed: Duration,
}

impl Timing {
    fn records_per_s(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }
}

/// Pins the calling thread to `cpu`; says whether that worked.
fn pin(cpu: usize) -> bool {
    if cpu >= libc::CPU_SETSIZE as usize {
        return false;
    }
    // SAFETY: `cpu_set_t` is plain data for which all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` is below `CPU_SETSIZE`, checked above.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid, initialised `cpu_set_t` of the size passed.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0 }
}

/// The CPUs for the producer and the consumer: the first this process may
/// run on, and the first other one that is not a hyperthread of it (two
/// hyperthreads would share one core's caches and execution units), or just
/// the first other one.
fn cpu_pair() -> (usize, usize) {
    // SAFETY: `cpu_set_t` is plain data for which all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid `cpu_set_t` of the size passed.
    let ok =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    let allowed: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below `CPU_SETSIZE`; `set` is initialised.
        .filter(|&cpu| ok == 0 && unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect();
    let Some(&first) = allowed.first() else {
        return (0, 1);
    };
    // A list such as "0,8" or "0-1".
    let siblings: Vec<usize> = std::fs::read_to_string(format!(
        "/sys/devices/system/cpu/cpu{first}/topology/thread_siblings_list"
    ))
    .unwrap_or_default()
    .trim()
    .split(',')
    .filter_map(|part| {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        Some(lo.parse().ok()?..=hi.parse().ok()?)
    })
    .flatten()
    .collect();
    let other = |skip_siblings: bool| {
        allowed
            .iter()
            .copied()
            .find(|&cpu| cpu != first && !(skip_siblings && siblings.contains(&cpu)))
    };
    (first, other(true).or(other(false)).unwrap_or(first))
}

/// Set when either thread of a measurement panics, so the other one stops
/// spinning on a ring that will never move again.
struct Stop(AtomicBool);

impl Stop {
    /// Called where a thread waits for the other: panics if it is gone.
    #[inline(always)]
    fn check(&self) {
        if self.0.load(Ordering::Relaxed) {
            Self::fail();
        }
    }

    #[cold]
    fn fail() -> ! {
        panic!("the other thread failed");
    }
}

/// Sets the [`Stop`] flag if the thread it lives in panics.
struct PanicFlag<'a>(&'a Stop);

impl Drop for PanicFlag<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0 .0.store(true, Ordering::Relaxed);
        }
    }
}

/// Waits a moment for the other thread, unless it is gone.
#[inline(always)]
fn idle(stop: &Stop) {
    spin_loop();
    stop.check();
}

/// Gives this process a larger share of the CPUs than other work on a
/// shared machine: nice -19, in a session of its own, because with
/// autogroups (`/proc/sys/kernel/sched_autogroup_enabled`) the scheduler
/// shares the CPUs between sessions first, whatever their processes' nice
/// values. The session, and so the priority, ends with the process. Needs
/// root (CAP_SYS_NICE), and a parent such as cargo: a process group leader
/// (a command run straight from a shell) cannot start a session. Says
/// whether it worked.
fn raise_priority() -> bool {
    // SAFETY: `prctl(PR_SET_PDEATHSIG)`, `setsid` and `setpriority` have no
    // memory-safety preconditions.
    unsafe {
        // Out of the terminal's session Ctrl-C reaches only cargo; follow it.
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
        if libc::setsid() < 0 || libc::setpriority(libc::PRIO_PROCESS, 0, -19) < 0 {
            return false;
        }
    }
    // Without autogroups the file is missing and the nice value suffices.
    let autogroups = std::fs::read_to_string("/proc/sys/kernel/sched_autogroup_enabled")
        .is_ok_and(|v| v.trim() == "1");
    !autogroups || std::fs::write("/proc/self/autogroup", "-19").is_ok()
}

/// Runs `producer` and `consumer` on the CPUs of [`Config::cpus`], started
/// together, and returns the consumer's timing.
fn two_threads(
    config: &Config,
    producer: impl FnOnce(&Stop) + Send,
    consumer: impl FnOnce(&Stop) -> Timing + Send,
) -> Timing {
    let start = Barrier::new(2);
    let stop = Stop(AtomicBool::new(false));
    std::thread::scope(|s| {
        let (start, stop) = (&start, &stop);
        let (pin_on, (producer_cpu, consumer_cpu)) = (config.pin, config.cpus);
        let p = s.spawn(move || {
            let _flag = PanicFlag(stop);
            if pin_on {
                pin(producer_cpu);
            }
            start.wait();
            producer(stop);
        });
        let c = s.spawn(move || {
            let _flag = PanicFlag(stop);
            if pin_on {
                pin(consumer_cpu);
            }
            start.wait();
            consumer(stop)
        });
        p.join().expect("producer thread");
        c.join().expect("consumer thread")
    })
}

/// rmemring: a memfd ring, records reserved and written in place, published
/// once per batch; the consumer reads them in place and releases once per
/// batch.
fn run_rmemring(config: &Config, w: &Workload, batch: usize) -> Timing {
    let options = CreateOptions {
        data_size: RING_BYTES as u64,
        overflow: Overflow::DropNew,
    };
    let region = Arc::new(Region::memfd(options).expect("memfd ring"));
    let mut producer = region.producer().expect("producer");
    let mut consumer = region.consumer().expect("consumer");
    let (size, total, src) = (w.size, w.total(), &w.src[..]);
    two_threads(
        config,
        move |stop| {
            let mut seq = 0u64;
            while seq < total {
                let end = total.min(seq + batch as u64);
                while seq < end {
                    match producer.reserve(size) {
                        Ok(mut record) => {
                            let payload = record.payload().expect("a drop-new ring");
                            // SAFETY: The reservation is `size` writable bytes.
                            unsafe { fill(payload.as_mut_ptr(), size, seq, src) };
                            record.commit();
                            seq += 1;
                        }
                        Err(ProduceError::Full) => {
                            if producer.unpublished() != 0 {
                                producer.publish();
                            }
                            idle(stop);
                        }
                        Err(e) => panic!("reserve: {e}"),
                    }
                }
                producer.publish();
            }
        },
        move |stop| {
            let mut clock = Clock::new(w.warm);
            let (mut seen, mut bad) = (0u64, 0u64);
            while seen < total {
                let before = seen;
                let mut records = consumer.batch().expect("a drop-new ring");
                for record in records.iter().take(batch) {
                    let record = record.expect("a valid record");
                    bad += u64::from(!check(record.seq, seen, record.payload, size));
                    seen += 1;
                }
                // Releases the batch with one store.
                drop(records);
                if seen == before {
                    idle(stop);
                } else {
                    clock.tick(seen);
                }
            }
            clock.stop(seen, bad)
        },
    )
}

/// Writes record `seq` (prefix and payload) at byte `off` of a write chunk
/// split in `a` and `b`.
#[inline(always)]
fn rtrb_write(
    a: &mut [MaybeUninit<u8>],
    b: &mut [MaybeUninit<u8>],
    off: usize,
    seq: u64,
    size: usize,
    src: &[u8],
    scratch: &mut [u8],
) {
    let len = RTRB_PREFIX + size;
    let put = |dst: *mut u8| {
        // SAFETY: `dst` is valid for `len` bytes (checked by the callers
        // below), the prefix is 16 and the payload `size` of them.
        unsafe {
            dst.cast::<u64>().write_unaligned((size as u64).to_le());
            dst.add(8).cast::<u64>().write_unaligned(seq.to_le());
            fill(dst.add(RTRB_PREFIX), size, seq, src);
        }
    };
    let in_b = off.checked_sub(a.len()).and_then(|o| b.get_mut(o..o + len));
    if let Some(dst) = a.get_mut(off..off + len).or(in_b) {
        put(dst.as_mut_ptr().cast());
    } else {
        // The record straddles the end of the buffer (once per lap): build
        // it aside and copy it in two parts.
        let scratch = &mut scratch[..len];
        put(scratch.as_mut_ptr());
        let first = a.len().saturating_sub(off).min(len);
        let (head, tail) = scratch.split_at(first);
        let b_off = off + first - a.len();
        let (a, b) = (&mut a[off..off + first], &mut b[b_off..b_off + tail.len()]);
        // SAFETY: Each destination is exactly as long as its source, and
        // `scratch` is not part of the ring buffer.
        unsafe {
            std::ptr::copy_nonoverlapping(head.as_ptr(), a.as_mut_ptr().cast(), head.len());
            std::ptr::copy_nonoverlapping(tail.as_ptr(), b.as_mut_ptr().cast(), tail.len());
        }
    }
}

/// Copies `out.len()` bytes from byte `off` of a read chunk split in `a` and
/// `b` into `out`.
fn gather(a: &[u8], b: &[u8], off: usize, out: &mut [u8]) {
    let first = a.len().saturating_sub(off).min(out.len());
    let b_off = off + first - a.len().min(off + first);
    let (head, tail) = out.split_at_mut(first);
    head.copy_from_slice(&a[off..off + first]);
    tail.copy_from_slice(&b[b_off..b_off + tail.len()]);
}

/// Reads the record at byte `off` of a read chunk split in `a` and `b`:
/// its sequence number, and its payload (in place, or copied to `scratch`
/// if it straddles the end of the buffer). Returns the record's length too.
#[inline(always)]
fn rtrb_read<'a>(a: &'a [u8], b: &'a [u8], off: usize, scratch: &'a mut [u8]) -> (u64, &'a [u8]) {
    // The part of the chunk from byte `at` on, if `n` bytes of it are in
    // one piece.
    let whole = |at: usize, n: usize| {
        a.get(at..at + n)
            .or_else(|| at.checked_sub(a.len()).and_then(|o| b.get(o..o + n)))
    };
    let mut prefix = [0u8; RTRB_PREFIX];
    match whole(off, RTRB_PREFIX) {
        Some(bytes) => prefix.copy_from_slice(bytes),
        None => gather(a, b, off, &mut prefix),
    }
    let (l, s) = prefix.split_at(8);
    let len = u64::from_le_bytes(l.try_into().expect("8 bytes")) as usize;
    let seq = u64::from_le_bytes(s[..8].try_into().expect("8 bytes"));
    let start = off + RTRB_PREFIX;
    match whole(start, len) {
        Some(payload) => (seq, payload),
        None => {
            let payload = &mut scratch[..len];
            gather(a, b, start, payload);
            (seq, payload)
        }
    }
}

/// rtrb: a `RingBuffer<u8>` of length-prefixed records; the producer writes
/// a batch into one `write_chunk_uninit` and commits it, the consumer parses
/// a `read_chunk` in place and commits it.
fn run_rtrb(config: &Config, w: &Workload, batch: usize) -> Timing {
    let (mut producer, mut consumer) = RingBuffer::<u8>::new(RING_BYTES);
    let (size, total, src) = (w.size, w.total(), &w.src[..]);
    let len = RTRB_PREFIX + size;
    two_threads(
        config,
        move |stop| {
            let mut scratch = vec![0u8; len];
            let mut seq = 0u64;
            while seq < total {
                let want = total.min(seq + batch as u64) - seq;
                let mut chunk = match producer.write_chunk_uninit(want as usize * len) {
                    Ok(chunk) => chunk,
                    Err(ChunkError::TooFewSlots(free)) if free >= len => producer
                        .write_chunk_uninit(free / len * len)
                        .expect("free slots stay free"),
                    Err(ChunkError::TooFewSlots(_)) => {
                        idle(stop);
                        continue;
                    }
                };
                let records = chunk.len() / len;
                let (a, b) = chunk.as_mut_slices();
                for i in 0..records {
                    rtrb_write(a, b, i * len, seq, size, src, &mut scratch);
                    seq += 1;
                }
                // SAFETY: The loop above initialised `records * len`, which
                // is the whole chunk.
                unsafe { chunk.commit_all() };
            }
        },
        move |stop| {
            let mut scratch = vec![0u8; len];
            let mut clock = Clock::new(w.warm);
            let (mut seen, mut bad) = (0u64, 0u64);
            while seen < total {
                let want = (total - seen).min(batch as u64) as usize * len;
                let chunk = match consumer.read_chunk(want) {
                    Ok(chunk) => chunk,
                    Err(ChunkError::TooFewSlots(0)) => {
                        idle(stop);
                        continue;
                    }
                    Err(ChunkError::TooFewSlots(n)) => {
                        consumer.read_chunk(n).expect("written slots stay written")
                    }
                };
                let (a, b) = chunk.as_slices();
                let end = chunk.len();
                let mut off = 0;
                // Variable-length records: walk them by their prefixes.
                while off < end {
                    let (seq, payload) = rtrb_read(a, b, off, &mut scratch);
                    bad += u64::from(!check(seq, seen, payload, size));
                    off += RTRB_PREFIX + payload.len();
                    seen += 1;
                }
                chunk.commit(off);
                clock.tick(seen);
            }
            clock.stop(seen, bad)
        },
    )
}

/// A fixed-size record for `ArrayQueue`.
#[repr(C)]
struct Fixed<const N: usize> {
    seq: u64,
    payload: [u8; N],
}

/// crossbeam: an `ArrayQueue<Fixed<N>>`, one record pushed and popped by
/// value at a time.
fn run_crossbeam<const N: usize>(config: &Config, w: &Workload) -> Timing {
    let slot = std::mem::size_of::<Fixed<N>>() + std::mem::size_of::<usize>();
    let queue = ArrayQueue::<Fixed<N>>::new(RING_BYTES / slot);
    let (total, src) = (w.total(), &w.src[..]);
    let queue = &queue;
    two_threads(
        config,
        move |stop| {
            for seq in 0..total {
                let mut record = MaybeUninit::<Fixed<N>>::uninit();
                let p = record.as_mut_ptr();
                // SAFETY: Both fields are written through raw pointers
                // into `record`, which then is fully initialised.
                let mut record = unsafe {
                    addr_of_mut!((*p).seq).write(seq);
                    fill(addr_of_mut!((*p).payload).cast(), N, seq, src);
                    record.assume_init()
                };
                while let Err(back) = queue.push(record) {
                    record = back;
                    idle(stop);
                }
            }
        },
        move |stop| {
            let mut clock = Clock::new(w.warm);
            let (mut seen, mut bad) = (0u64, 0u64);
            while seen < total {
                match queue.pop() {
                    Some(record) => {
                        bad += u64::from(!check(record.seq, seen, &record.payload, N));
                        seen += 1;
                        clock.tick(seen);
                    }
                    None => idle(stop),
                }
            }
            clock.stop(seen, bad)
        },
    )
}

fn run_crossbeam_sized(config: &Config, w: &Workload) -> Option<Timing> {
    Some(match w.size {
        8 => run_crossbeam::<8>(config, w),
        64 => run_crossbeam::<64>(config, w),
        1024 => run_crossbeam::<1024>(config, w),
        4096 => run_crossbeam::<4096>(config, w),
        65536 => run_crossbeam::<65536>(config, w),
        _ => return None,
    })
}

/// memcpy: one thread copies each record's bytes from the source buffer
/// into a ring-sized destination, round and round.
fn run_memcpy(config: &Config, w: &Workload) -> Timing {
    if config.pin {
        pin(config.cpus.0);
    }
    let mut dst = vec![1u8; RING_BYTES];
    dst.iter_mut().for_each(|b| *b = black_box(0));
    let (size, src) = (w.size, &w.src[..]);
    let mut clock = Clock::new(w.warm);
    let mut off = 0;
    for seen in 0..w.total() {
        if seen == w.warm {
            clock.tick(seen);
        }
        // SAFETY: `off + size <= RING_BYTES` (it wraps below) and `src`
        // holds `size` bytes; the buffers are distinct.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_mut_ptr().add(off), size) };
        off += size;
        if off + size > RING_BYTES {
            off = 0;
            black_box(&mut dst);
        }
    }
    black_box(&dst);
    clock.stop(w.total(), 0)
}

/// Measures `which` once, with batches of `batch` payload bytes where it
/// batches.
fn run(config: &Config, which: Impl, w: &Workload, batch: Option<usize>) -> Option<Timing> {
    let batch = w.records_per_batch(batch.unwrap_or(0));
    match which {
        Impl::Rmemring => Some(run_rmemring(config, w, batch)),
        Impl::Rtrb => Some(run_rtrb(config, w, batch)),
        Impl::Crossbeam => run_crossbeam_sized(config, w),
        Impl::Memcpy => Some(run_memcpy(config, w)),
    }
}

/// The repeated measurements of one implementation at one size (and one
/// batch size, for those that batch).
struct Summary {
    which: Impl,
    size: usize,
    batch: Option<usize>,
    runs: Vec<f64>,
}

impl Summary {
    fn median(&self) -> f64 {
        let mut r = self.runs.clone();
        r.sort_by(f64::total_cmp);
        let n = r.len();
        if n % 2 == 1 {
            r[n / 2]
        } else {
            (r[n / 2 - 1] + r[n / 2]) / 2.0
        }
    }

    fn spread(&self) -> f64 {
        let max = self.runs.iter().copied().fold(f64::MIN, f64::max);
        let min = self.runs.iter().copied().fold(f64::MAX, f64::min);
        (max - min) / self.median()
    }

    fn bytes_per_s(&self) -> f64 {
        self.median() * self.size as f64
    }
}

fn human_size(size: usize) -> String {
    if size >= 1024 && size % 1024 == 0 {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

fn human_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.1} M", r / 1e6)
    } else {
        format!("{:.1} k", r / 1e3)
    }
}

/// CPU time counters, to tell how much of the machine others took.
#[derive(Clone, Copy)]
struct CpuSample {
    /// Busy ticks of all CPUs (`/proc/stat`), steal excluded.
    busy: u64,
    /// All ticks of all CPUs, steal included.
    total: u64,
    /// Ticks the hypervisor gave to other guests.
    steal: u64,
    /// Ticks this process ran (`/proc/self/stat`).
    ours: u64,
}

impl CpuSample {
    fn now() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let cpu: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        // user nice system idle iowait irq softirq steal ...
        let field = |i: usize| cpu.get(i).copied().unwrap_or(0);
        let busy = field(0) + field(1) + field(2) + field(5) + field(6);
        let total = busy + field(3) + field(4) + field(7);
        let own = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the parenthesised command name; utime and stime are
        // the 14th and 15th of the whole line.
        let rest = own.rsplit_once(')')?.1;
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        let ours = f.get(11)? + f.get(12)?;
        Some(Self {
            busy,
            total,
            steal: field(7),
            ours,
        })
    }

    /// The share of all CPUs' time since `earlier` that other processes
    /// ran, and that the hypervisor stole, in percent.
    fn others_since(&self, earlier: &Self) -> (f64, f64) {
        let ticks = (self.total - earlier.total).max(1) as f64;
        let others = (self.busy - earlier.busy).saturating_sub(self.ours - earlier.ours);
        let steal = self.steal - earlier.steal;
        (100.0 * others as f64 / ticks, 100.0 * steal as f64 / ticks)
    }
}

/// The machine and settings, for the header.
fn header(config: &Config, niced: bool) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let usable = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut h = String::new();
    let _ = writeln!(
        h,
        "# rmemring host benchmark: one producer and one consumer thread"
    );
    let _ = writeln!(
        h,
        "machine: {model}, {cpus} CPUs ({usable} usable), Linux {}",
        kernel.trim()
    );
    let _ = writeln!(
        h,
        "ring: {} KiB each; rmemring and rtrb publish and release batches of {} of payload, \
         and each is shown at its best; {} runs per cell, median shown, \
         spread = (max - min) / median{}",
        RING_BYTES >> 10,
        config
            .batches
            .iter()
            .map(|&b| human_size(b))
            .collect::<Vec<_>>()
            .join(" / "),
        config.reps,
        if config.quick { "; --quick" } else { "" }
    );
    let (producer_cpu, consumer_cpu) = config.cpus;
    let _ = writeln!(
        h,
        "threads: {}; {}",
        if config.pin {
            format!(
                "producer pinned to CPU {producer_cpu}, consumer to CPU {consumer_cpu} \
                 (sched_setaffinity), memcpy on CPU {producer_cpu}"
            )
        } else {
            "not pinned".into()
        },
        if niced {
            "a session of its own at nice -19"
        } else {
            "default priority"
        }
    );
    h
}

const TABLE_HEAD: &str = "| size | impl | batch | records/s | GB/s | spread | rmemring/impl |\n\
                          |-----:|------|------:|----------:|-----:|-------:|--------------:|";

fn table_rows(results: &[Summary]) -> String {
    let ours = results
        .iter()
        .find(|s| s.which == Impl::Rmemring)
        .map(Summary::median);
    let mut out = String::new();
    for s in results {
        let ratio = match ours {
            Some(r) if s.which != Impl::Rmemring => format!("{:.2}×", r / s.median()),
            _ => "".into(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.2} | {:.1}% | {} |",
            human_size(s.size),
            s.which.name(),
            s.batch.map_or("-".into(), human_size),
            human_rate(s.median()),
            s.bytes_per_s() / 1e9,
            s.spread() * 100.0,
            ratio
        );
    }
    out
}

/// One measurement as a JSON object: the issue's five keys first, in the
/// issue's order, then the extras (`serde_json`'s maps would sort the keys).
fn json_line(s: &Summary) -> String {
    let fields: [(&str, serde_json::Value); 8] = [
        ("bench", "host".into()),
        ("impl", s.which.name().into()),
        ("size", s.size.into()),
        ("records_per_s", s.median().into()),
        ("bytes_per_s", s.bytes_per_s().into()),
        ("batch_bytes", s.batch.into()),
        ("runs", s.runs.len().into()),
        ("spread", s.spread().into()),
    ];
    let body: Vec<String> = fields
        .iter()
        .map(|(key, value)| format!("{}:{value}", serde_json::Value::from(*key)))
        .collect();
    format!("{{{}}}", body.join(","))
}

/// The issue's targets, as lines saying met or missed.
fn targets(all: &[Summary]) -> String {
    let get = |which: Impl, size: usize| {
        all.iter()
            .find(|s| s.which == which && s.size == size)
            .map(Summary::median)
    };
    let mut out = String::from("targets:\n");
    let mut line = |what: String, value: String, met: bool| {
        let _ = writeln!(
            out,
            "  {what:<36} {value:<22} {}",
            if met { "met" } else { "MISSED" }
        );
    };
    if let Some(ours) = get(Impl::Rmemring, 64) {
        if let Some(peer) = get(Impl::Rtrb, 64) {
            let r = ours / peer;
            line(
                "64 B: rmemring / rtrb >= 1.5x".into(),
                format!("{r:.2}x"),
                r >= 1.5,
            );
        }
        if let Some(peer) = get(Impl::Crossbeam, 64) {
            let r = ours / peer;
            line(
                "64 B: rmemring / crossbeam >= 3x".into(),
                format!("{r:.2}x"),
                r >= 3.0,
            );
        }
    }
    if let Some(ours) = get(Impl::Rmemring, 8) {
        line(
            "8 B: rmemring >= 100 M records/s".into(),
            format!("{:.1} M records/s", ours / 1e6),
            ours >= 100e6,
        );
    }
    for size in [4096, 65536] {
        if let (Some(ours), Some(limit)) = (get(Impl::Rmemring, size), get(Impl::Memcpy, size)) {
            let r = ours / limit;
            line(
                format!("{}: rmemring >= 80% of memcpy", human_size(size)),
                format!("{:.0}%", r * 100.0),
                r >= 0.8,
            );
        }
    }
    out
}

fn main() {
    let config = match Config::from_args() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    // Human-readable text goes to stdout, or to stderr when stdout is JSON.
    let say = |text: &str| {
        if config.json {
            eprint!("{text}");
        } else {
            print!("{text}");
        }
    };
    let niced = config.nice && raise_priority();
    say(&header(&config, niced));
    say(&format!("\n{TABLE_HEAD}\n"));
    let began = Instant::now();
    let mut all = Vec::new();
    let mut load = Vec::new();
    let mut sweep = Vec::new();
    for &size in &config.sizes {
        let w = Workload::new(size, config.quick);
        let before = CpuSample::now();
        // One variant per implementation, and per batch size for those
        // that batch.
        let mut variants: Vec<Summary> = Vec::new();
        for &which in &config.impls {
            let batches: Vec<Option<usize>> = if which.batches() {
                config.batches.iter().copied().map(Some).collect()
            } else {
                vec![None]
            };
            for batch in batches {
                variants.push(Summary {
                    which,
                    size,
                    batch,
                    runs: Vec::new(),
                });
            }
        }
        for rep in 0..config.reps {
            // Rotate the order so no variant always runs first.
            let n = variants.len();
            for k in 0..n {
                let v = &mut variants[(k + rep) % n];
                if let Some(t) = run(&config, v.which, &w, v.batch) {
                    v.runs.push(t.records_per_s());
                }
            }
        }
        variants.retain(|s| !s.runs.is_empty());
        // Each implementation at the batch size that suits it best.
        let mut cell: Vec<Summary> = Vec::new();
        for v in variants.iter().filter(|v| v.batch.is_some()) {
            sweep.push(format!(
                "{} {} batch {}: {}",
                human_size(size),
                v.which.name(),
                human_size(v.batch.unwrap_or(0)),
                human_rate(v.median())
            ));
        }
        for v in variants {
            match cell.iter_mut().find(|c| c.which == v.which) {
                Some(c) if c.median() >= v.median() => {}
                Some(c) => *c = v,
                None => cell.push(v),
            }
        }
        if let (Some(before), Some(after)) = (before, CpuSample::now()) {
            let (others, steal) = after.others_since(&before);
            load.push(format!(
                "{}: {others:.0}% others, {steal:.0}% steal",
                human_size(size)
            ));
        }
        say(&table_rows(&cell));
        if config.json {
            for s in &cell {
                println!("{}", json_line(s));
            }
        }
        all.extend(cell);
    }
    say(&format!(
        "\n{}\nrecords per cell: {} timed after a warm-up of two ring laps; total time {:.1} s\n\
         CPU time not ours during each size (of all CPUs): {}\n\
         medians of every batch size (records/s):\n  {}\n",
        targets(&all),
        config
            .sizes
            .iter()
            .map(|&s| format!(
                "{}: {}",
                human_size(s),
                human_rate(Workload::new(s, config.quick).timed as f64)
            ))
            .collect::<Vec<_>>()
            .join(", "),
        began.elapsed().as_secs_f64(),
        load.join("; "),
        sweep.join("\n  ")
    ));
}
