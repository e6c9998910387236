//! The benchmark's BPF ring buffer peer (`--features bpf`): the same records
//! as the rmemring ring carries, streamed through a `BPF_MAP_TYPE_RINGBUF`,
//! the way most users would get records from a kernel driver to user space
//! without rmemring.
//!
//! The driver's producer, started with [`PRODUCER_HOOK_ONLY`], emits each
//! record (same sequence numbers, lengths and payload bytes as for the
//! ring, and the same `batch`, [`BpfRunConfig::batch`]) through the
//! tracepoint `rmemring_record_tp` instead of the ring. In hook-only mode a
//! batch is the run of records between two counter updates and
//! `cond_resched()`s, as there is nothing to publish; and the producer
//! cannot wait for room (see below), so it runs flat out where the ring
//! paths run with back-pressure. The BPF program `bpf/rmemring_hook.bpf.c`, attached
//! as a raw tracepoint, reserves a ringbuf record of header + payload,
//! copies the payload with `bpf_probe_read_kernel` and submits it; this
//! module loads it with libbpf, consumes the records with libbpf's
//! `ring_buffer__poll` (blocking, adaptive wake-ups) or `ring_buffer__consume`
//! (busy polling, no wake-ups), and checks each one.
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

use std::cell::Cell;
use std::fs::OpenOptions;
use std::os::fd::{
    AsFd,
    OwnedFd, //
};
use std::path::PathBuf;
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
use hdrhistogram::Histogram;
use libbpf_rs::{
    MapCore,
    MapFlags,
    ObjectBuilder,
    PrintLevel,
    RingBufferBuilder, //
};
use rmemring::ioctl;
use rmemring::pattern;
use rmemring::uapi::{
    ProducerConfig,
    PATTERN_NONE,
    PATTERN_SEQ,
    PRODUCER_HOOK_ONLY, //
};

/// The compiled BPF program (`bpf/rmemring_hook.bpf.c`, built by
/// `bpf/build.rs`).
static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/rmemring_hook.bpf.o"));

/// The programs (submitting with the adaptive wake-up, and with
/// `BPF_RB_NO_WAKEUP`) and the tracepoint they attach to.
const PROGRAM: &str = "rmemring_record";
const PROGRAM_NO_WAKEUP: &str = "rmemring_record_nowake";
const TRACEPOINT: &str = "rmemring_record_tp";

/// The same programs as kprobes on the driver's hook function.
const PROGRAM_KPROBE: &str = "rmemring_record_kprobe";
const PROGRAM_KPROBE_NO_WAKEUP: &str = "rmemring_record_kprobe_nowake";
const HOOK_FUNCTION: &str = "rmemring_hook_record";

/// The largest payload the BPF program carries (its `MAX_PAYLOAD`).
pub const MAX_PAYLOAD: u32 = 64 * 1024;

/// The header the BPF program writes before each payload.
const HEADER: usize = 24;

/// Indices of the program's `counters` map.
const COUNTER_DROPPED: u32 = 0;
const COUNTER_TOO_LONG: u32 = 1;
const COUNTER_READ_ERROR: u32 = 2;

/// How long one `ring_buffer__poll` may block.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);

/// Records delivered by one `ring_buffer__consume` at most, so that a busy
/// consumer looks at the clock even while the producer keeps it busy.
const CONSUME_BATCH: usize = 4096;

/// The callback's return value that ends a poll at the deadline.
const STOP: i32 = -libc::ECANCELED;

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
    /// Smallest payload, in bytes.
    pub min_len: u32,
    /// Largest payload, in bytes (at most [`MAX_PAYLOAD`]).
    pub max_len: u32,
    /// How long to consume.
    pub duration: Duration,
    /// Fill every payload with the verifiable pattern and check it
    /// ([`PATTERN_SEQ`]); otherwise only the first word is written and
    /// checked ([`PATTERN_NONE`]).
    pub verify: bool,
    /// Busy-poll with `ring_buffer__consume` (and submit with
    /// `BPF_RB_NO_WAKEUP`) instead of blocking in `ring_buffer__poll`.
    pub busy_poll: bool,
    /// Records per producer batch ([`ProducerConfig::batch`]; 0 is the
    /// driver's default, 64). The benchmark passes what the ring paths get.
    pub batch: u32,
}

/// What a run measured.
#[derive(Clone, Debug)]
pub struct BpfRunResult {
    /// Records delivered to user space (good or bad).
    pub records: u64,
    /// Payload bytes delivered.
    pub bytes: u64,
    /// From starting the producer until the last record was consumed.
    pub elapsed: Duration,
    /// CPU time of the consuming thread over `elapsed` (user + system).
    pub consumer_cpu: Duration,
    /// Times the consuming thread slept and was woken: its voluntary
    /// context switches (`getrusage(RUSAGE_THREAD)`), each one a sleep in
    /// `epoll_wait` ended by the BPF ring buffer's notification (or, rarely,
    /// the poll timeout). Near 0 when busy-polling.
    pub wakeups: u64,
    /// Records the producer emitted that never arrived (sequence gaps, and
    /// the missing tail), equal to the program's failed reservations.
    pub lost: u64,
    /// Records with a wrong length, sequence number or payload.
    pub bad: u64,
    /// Delivery latency in nanoseconds: `CLOCK_MONOTONIC` when the record is
    /// consumed minus its timestamp, for the records whose sequence number
    /// is a multiple of [`LATENCY_SAMPLE`] (8).
    pub latency: Histogram<u64>,
}

/// Loads and attaches the BPF program, starts the device's producer in
/// hook-only mode, consumes for `config.duration`, stops the producer,
/// drains the ring buffer and returns what was measured.
pub fn run(config: &BpfRunConfig) -> Result<BpfRunResult> {
    ensure!(
        config.min_len <= config.max_len,
        "min_len {} is above max_len {}",
        config.min_len,
        config.max_len
    );
    ensure!(
        config.max_len <= MAX_PAYLOAD,
        "the BPF peer carries payloads up to {MAX_PAYLOAD} bytes, not {}",
        config.max_len
    );

    // A controller: may start and stop the producer beside any consumer;
    // closing it stops the producer it started.
    let device: OwnedFd = OpenOptions::new()
        .write(true)
        .open(&config.device)
        .with_context(|| format!("opening {} write-only", config.device.display()))?
        .into();
    let info = ioctl::info(device.as_fd())
        .with_context(|| format!("RMEMRING_IOC_INFO on {}", config.device.display()))?;
    // The same capacity as the ring the BPF peer is compared with.
    let ring_size = u32::try_from(info.data_size)
        .ok()
        .filter(|size| size.is_power_of_two() && *size >= 4096)
        .with_context(|| format!("unusable ring size {}", info.data_size))?;
    let hooked_before = ioctl::stats(device.as_fd())?.records_hooked;

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
    // Of the programs, the one for this hook that submits with the flags
    // this consumer wants.
    let kprobe = std::env::var("RMEMRING_BPF_HOOK").as_deref() == Ok("kprobe");
    let wanted = match (kprobe, config.busy_poll) {
        (false, false) => PROGRAM,
        (false, true) => PROGRAM_NO_WAKEUP,
        (true, false) => PROGRAM_KPROBE,
        (true, true) => PROGRAM_KPROBE_NO_WAKEUP,
    };
    let mut found = false;
    for mut program in open.progs_mut() {
        let load = program.name() == wanted;
        found |= load;
        program.set_autoload(load);
    }
    ensure!(found, "no program {wanted} in the BPF object");
    let object = open.load().context("loading the BPF program")?;
    let program = object
        .progs_mut()
        .find(|p| p.name() == wanted)
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

    let mut check = Checker::new(config)?;
    // CLOCK_MONOTONIC nanoseconds at which the callback ends a poll;
    // u64::MAX while draining.
    let deadline_ns = Cell::new(u64::MAX);
    let (elapsed, consumer_cpu, wakeups) = {
        let mut builder = RingBufferBuilder::new();
        builder.add(&records_map, |data| check.record(data, deadline_ns.get()))?;
        let ring = builder.build()?;

        let producer = ProducerConfig {
            min_len: config.min_len,
            max_len: config.max_len,
            count: 0,
            rate: 0,
            pattern: if config.verify {
                PATTERN_SEQ
            } else {
                PATTERN_NONE
            },
            flags: PRODUCER_HOOK_ONLY,
            batch: config.batch,
            reserved: [0; 7],
        };
        let usage_start = thread_usage()?;
        let start = Instant::now();
        let deadline = start + config.duration;
        deadline_ns.set(monotonic_ns().saturating_add(config.duration.as_nanos() as u64));
        ioctl::start(device.as_fd(), &producer)
            .context("starting the producer (RMEMRING_IOC_START)")?;
        let consumed = consume(&ring, config.busy_poll, deadline);
        let stopped =
            ioctl::stop(device.as_fd()).context("stopping the producer (RMEMRING_IOC_STOP)");
        consumed?;
        stopped?;
        // Everything emitted is in the ring buffer now: take the rest.
        deadline_ns.set(u64::MAX);
        let drained = ring.consume_raw();
        ensure!(drained >= 0, "ring_buffer__consume: {}", errno(drained));
        let elapsed = start.elapsed();
        let usage_end = thread_usage()?;
        (
            elapsed,
            usage_end.cpu.saturating_sub(usage_start.cpu),
            usage_end.voluntary_switches - usage_start.voluntary_switches,
        )
    };

    let hooked = ioctl::stats(device.as_fd())?.records_hooked - hooked_before;
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
        records: check.records,
        bytes: check.bytes,
        elapsed,
        consumer_cpu,
        wakeups,
        lost,
        bad: check.bad,
        latency: check.latency,
    })
}

/// Consumes until `deadline`.
fn consume(ring: &libbpf_rs::RingBuffer<'_>, busy_poll: bool, deadline: Instant) -> Result<()> {
    loop {
        let n = if busy_poll {
            ring.consume_raw_n(CONSUME_BATCH)
        } else {
            ring.poll_raw(POLL_TIMEOUT)
        };
        if n == STOP {
            return Ok(());
        }
        if n < 0 && n != -libc::EINTR {
            let call = if busy_poll {
                "ring_buffer__consume_n"
            } else {
                "ring_buffer__poll"
            };
            bail!("{call}: {}", errno(n));
        }
        if n == 0 && Instant::now() >= deadline {
            return Ok(());
        }
        if busy_poll {
            std::hint::spin_loop();
        }
    }
}

/// Checks each record and keeps the counts.
struct Checker {
    min_len: u32,
    max_len: u32,
    verify: bool,
    next_seq: u64,
    records: u64,
    bytes: u64,
    lost: u64,
    bad: u64,
    latency: Histogram<u64>,
}

impl Checker {
    fn new(config: &BpfRunConfig) -> Result<Self> {
        Ok(Self {
            min_len: config.min_len,
            max_len: config.max_len,
            verify: config.verify,
            next_seq: 0,
            records: 0,
            bytes: 0,
            lost: 0,
            bad: 0,
            // The same histogram as the ring paths'.
            latency: crate::bench::latency_histogram()?,
        })
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
        let sampled = seq & (LATENCY_SAMPLE - 1) == 0;
        let mut result = 0;
        if sampled || self.records % DEADLINE_EVERY == 0 {
            let now = monotonic_ns();
            if sampled {
                self.latency
                    .saturating_record(now.saturating_sub(timestamp_ns));
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
        let Some(payload) = rest.get(..len as usize) else {
            self.bad += 1;
            return result;
        };
        self.bytes += u64::from(len);
        let good = len == pattern::payload_len(seq, self.min_len, self.max_len)
            && if self.verify {
                pattern::verify(seq, payload)
            } else {
                // PATTERN_NONE writes the first word only.
                let n = payload.len().min(8);
                payload[..n] == pattern::word(seq, 0).to_le_bytes()[..n]
            };
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

/// `CLOCK_MONOTONIC` in nanoseconds, the clock of the records' timestamps.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The calling thread's CPU time and voluntary context switches.
struct ThreadUsage {
    cpu: Duration,
    voluntary_switches: u64,
}

fn thread_usage() -> Result<ThreadUsage> {
    // SAFETY: An all-zero rusage is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid rusage to write to.
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) } != 0 {
        return Err(std::io::Error::last_os_error()).context("getrusage(RUSAGE_THREAD)");
    }
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Ok(ThreadUsage {
        cpu: time(usage.ru_utime) + time(usage.ru_stime),
        voluntary_switches: usage.ru_nvcsw as u64,
    })
}

/// A libbpf error return as text.
fn errno(ret: i32) -> std::io::Error {
    std::io::Error::from_raw_os_error(-ret)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(min_len: u32, max_len: u32, verify: bool) -> BpfRunConfig {
        BpfRunConfig {
            device: PathBuf::new(),
            min_len,
            max_len,
            duration: Duration::ZERO,
            verify,
            busy_poll: false,
            batch: 0,
        }
    }

    /// A ringbuf sample as the BPF program writes it: header, payload and
    /// the rest of the size class.
    fn sample(seq: u64, len: u32, verify: bool) -> Vec<u8> {
        let mut data = Vec::new();
        data.extend_from_slice(&seq.to_le_bytes());
        data.extend_from_slice(&monotonic_ns().to_le_bytes());
        data.extend_from_slice(&len.to_le_bytes());
        data.extend_from_slice(&0u32.to_le_bytes());
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
    fn in_order_records_are_good() {
        for verify in [false, true] {
            let mut check = Checker::new(&config(0, 300, verify)).unwrap();
            for seq in 0..1000 {
                let len = pattern::payload_len(seq, 0, 300);
                assert_eq!(check.record(&sample(seq, len, verify), u64::MAX), 0);
            }
            assert_eq!((check.records, check.lost, check.bad), (1000, 0, 0));
            assert_eq!(check.next_seq, 1000);
            assert_eq!(check.latency.len(), 1000 / LATENCY_SAMPLE);
            let bytes: u64 = (0..1000)
                .map(|s| u64::from(pattern::payload_len(s, 0, 300)))
                .sum();
            assert_eq!(check.bytes, bytes);
        }
    }

    #[test]
    fn gaps_are_lost_and_repeats_bad() {
        let mut check = Checker::new(&config(64, 64, true)).unwrap();
        for seq in [0, 1, 5, 6, 6, 2, 9] {
            check.record(&sample(seq, 64, true), u64::MAX);
        }
        assert_eq!(check.lost, 3 + 2);
        assert_eq!(check.bad, 2);
        assert_eq!(check.next_seq, 10);
    }

    #[test]
    fn wrong_length_payload_or_size_is_bad() {
        let mut check = Checker::new(&config(64, 64, true)).unwrap();
        check.record(&sample(0, 32, true), u64::MAX);
        let mut corrupt = sample(1, 64, true);
        corrupt[HEADER + 63] ^= 1;
        check.record(&corrupt, u64::MAX);
        let mut truncated = sample(2, 64, true);
        truncated.truncate(HEADER + 10);
        check.record(&truncated, u64::MAX);
        check.record(&[0u8; 10], u64::MAX);
        assert_eq!((check.records, check.bad, check.lost), (4, 4, 0));

        // Without verification, only the first word is checked.
        let mut check = Checker::new(&config(64, 64, false)).unwrap();
        let mut tail = sample(0, 64, false);
        tail[HEADER + 63] ^= 1;
        check.record(&tail, u64::MAX);
        let mut head = sample(1, 64, false);
        head[HEADER] ^= 1;
        check.record(&head, u64::MAX);
        assert_eq!(check.bad, 1);
    }

    #[test]
    fn the_deadline_stops_a_poll() {
        let mut check = Checker::new(&config(8, 8, false)).unwrap();
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
