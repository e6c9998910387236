//! The peers of `rmemring bench`, in one table ([`PEERS`]): each one's
//! name (on the command line, in the JSON lines and the tables), what it
//! does per record on each side, which modes and cells it runs in, and how
//! to run it. The runner, the report, the verdicts and the chart all read
//! this table; adding a peer is one entry and its `run` function.

use std::path::Path;

use rmemring::uapi::PRODUCER_STAGED;

use super::row::Row;
use super::{
    kernel,
    memcpy,
    Job,
    Mode,
    Timing,
    Workload, //
};

/// The zero-copy consumer, the peer the others are compared with.
pub(crate) const RMEMRING: &str = "rmemring";
/// The zero-copy consumer of a producer that writes each payload into a
/// kernel buffer and then copies it into the ring, as the BPF peers' does.
pub(crate) const RMEMRING_STAGED: &str = "rmemring-staged";
/// The driver's `read()` copy path.
pub(crate) const READ: &str = "read";
/// The BPF ring buffer, consumed by libbpf.
pub(crate) const BPF: &str = "bpf";
/// The BPF ring buffer, consumed by the benchmark's own batched consumer.
pub(crate) const BPF_BATCHED: &str = "bpf-batched";
/// memcpy of the same bytes on one core.
pub(crate) const MEMCPY: &str = "memcpy";

/// What every measurement of a run shares.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Setup<'a> {
    pub(crate) device: &'a Path,
    pub(crate) timing: Timing,
    /// The ring's data area, in bytes.
    pub(crate) data_size: u64,
}

/// A path from the kernel producer to user space, or the limit.
#[derive(Debug)]
pub(crate) struct Peer {
    /// Its name on the command line (`--impls`), in the JSON lines (`impl`)
    /// and in the tables' `impl` column.
    pub(crate) name: &'static str,
    /// How the tables name it where that differs (`read()`).
    pub(crate) label: &'static str,
    /// How the targets name it.
    pub(crate) title: &'static str,
    /// What its producer side does per record.
    pub(crate) producer: &'static str,
    /// What its consumer side does per record.
    pub(crate) consumer: &'static str,
    /// Whether it runs in every consumer [`Mode`]; else once, as
    /// `one-core`.
    pub(crate) modes: bool,
    /// Whether it runs only where the consumer reads every byte.
    pub(crate) bytes_only: bool,
    /// Whether it runs only where the producer fills the payload.
    pub(crate) filled_only: bool,
    /// The modes in which its idle blocking consumer is measured.
    pub(crate) idle: &'static [Mode],
    /// A BPF peer: needs the `bpf` feature, and a failed measurement is
    /// left out and reported instead of ending the run.
    pub(crate) bpf: bool,
    /// Whether rmemring's ratio over it is shown (the summaries, the
    /// ratios) and judged (the targets).
    pub(crate) compared: bool,
    /// The target on rmemring's records/s over its own, filled payload,
    /// every byte read, from 4 KiB (the synthetic target).
    pub(crate) filled_target: Option<f64>,
    /// Whether its producer copies the payload it was handed (the BPF
    /// program): then the filled target is judged for `rmemring-staged`
    /// too, the like-for-like comparison.
    pub(crate) copies_payload: bool,
    /// Its colour in the chart.
    pub(crate) colour: (u8, u8, u8),
    /// One measurement.
    pub(crate) run: fn(&Setup<'_>, &Job) -> anyhow::Result<Row>,
}

/// The peers, in the order of the tables; rmemring first, as the ratios
/// are its over each other's.
pub(crate) const PEERS: &[Peer] = &[
    Peer {
        name: RMEMRING,
        label: RMEMRING,
        title: "zero-copy",
        producer: "the driver's kernel thread reserves the record in the ring, writes the \
                   header and the payload words (first word or all, one u64 store each), \
                   commits; publishes every min(64, 64 KiB / stride) records; waits for \
                   room when the ring is full",
        consumer: "Consumer::batch: each header validated and checked in place in the \
                   mapping, the payload read in place where the cell says so; one release \
                   per batch",
        modes: true,
        bytes_only: false,
        filled_only: false,
        idle: &[Mode::Blocking, Mode::Poll],
        bpf: false,
        compared: false,
        filled_target: None,
        copies_payload: false,
        colour: (0x1f, 0x77, 0xb4),
        run: |setup, job| kernel::zero_copy(setup.device, job, setup.timing, 0),
    },
    Peer {
        name: RMEMRING_STAGED,
        label: RMEMRING_STAGED,
        title: "zero-copy, payload staged",
        producer: "as rmemring's, started with PRODUCER_STAGED: the thread first fills a \
                   private buffer as bpf's does (the same function), then reserves the \
                   record and copies the payload into it (one u64 load and store per word, \
                   as bpf_probe_read_kernel copies it): two passes per byte, as bpf's \
                   producer makes where it copies the payload",
        consumer: "as rmemring's",
        modes: true,
        bytes_only: false,
        filled_only: true,
        idle: &[],
        bpf: false,
        compared: false,
        filled_target: None,
        copies_payload: false,
        colour: (0x94, 0x67, 0xbd),
        run: |setup, job| kernel::zero_copy(setup.device, job, setup.timing, PRODUCER_STAGED),
    },
    Peer {
        name: READ,
        label: "read()",
        title: "read()",
        producer: "as rmemring's: the same thread, ring and records",
        consumer: "read() into a 1 MiB buffer: the kernel copies whole records, one \
                   copy_to_user per contiguous run, in the consumer's system time; then \
                   the same checks as rmemring's, on the copy",
        modes: true,
        bytes_only: false,
        filled_only: false,
        idle: &[Mode::Blocking],
        bpf: false,
        compared: true,
        filled_target: Some(2.0),
        copies_payload: false,
        colour: (0xd6, 0x27, 0x28),
        run: |setup, job| kernel::read_copy(setup.device, job, setup.timing),
    },
    Peer {
        name: BPF,
        label: BPF,
        title: "BPF",
        producer: "the same thread fills a private buffer the same way and hands each \
                   record to a tracepoint; the BPF program reserves a BPF ring buffer \
                   record, writes the header and, where the consumer reads every byte, \
                   copies the payload; submits. It cannot wait for room: a full ring \
                   buffer drops",
        consumer: "libbpf's ring_buffer__consume / ring_buffer__poll: one callback per \
                   record, the same checks as rmemring's; libbpf releases each record's \
                   space as the callback returns",
        modes: true,
        bytes_only: false,
        filled_only: false,
        idle: &[],
        bpf: true,
        compared: true,
        filled_target: Some(1.5),
        copies_payload: true,
        colour: (0x2c, 0xa0, 0x2c),
        run: |setup, job| bpf(setup, job, false),
    },
    Peer {
        name: BPF_BATCHED,
        label: BPF_BATCHED,
        title: "BPF batched",
        producer: "as bpf's: the same program and ring buffer",
        consumer: "the ring buffer mapped by the benchmark itself (consumer page read-write, \
                   producer page and data read-only, the data twice): producer position \
                   read with acquire, records walked in place (busy and discarded ones \
                   honoured), the same checks as rmemring's; one release per batch, at \
                   most an eighth of the ring buffer, as rmemring's consumer",
        modes: true,
        bytes_only: false,
        filled_only: false,
        idle: &[],
        bpf: true,
        compared: true,
        filled_target: Some(1.5),
        copies_payload: true,
        colour: (0x17, 0xbe, 0xcf),
        run: |setup, job| bpf(setup, job, true),
    },
    Peer {
        name: MEMCPY,
        label: MEMCPY,
        title: MEMCPY,
        producer: "-",
        consumer: "one core copies each record's whole stride, 16 MiB source to 16 MiB \
                   destination: the limit of moving the bytes once",
        modes: false,
        bytes_only: true,
        filled_only: false,
        idle: &[],
        bpf: false,
        compared: true,
        filled_target: None,
        copies_payload: false,
        colour: (0x55, 0x55, 0x55),
        run: |setup, job| {
            memcpy::run(
                job.workload,
                job.size,
                setup.data_size as usize,
                setup.timing,
            )
        },
    },
];

/// The peer named `name`.
pub(crate) fn find(name: &str) -> Option<&'static Peer> {
    PEERS.iter().find(|p| p.name == name)
}

/// Every peer's name, in order.
pub(crate) fn names() -> Vec<&'static str> {
    PEERS.iter().map(|p| p.name).collect()
}

/// Where the peer named `name` comes in the tables (unknown names last).
pub(crate) fn position(name: &str) -> usize {
    PEERS
        .iter()
        .position(|p| p.name == name)
        .unwrap_or(PEERS.len())
}

/// How the tables name the peer called `name`.
pub(crate) fn label(name: &str) -> &str {
    find(name).map_or(name, |p| p.label)
}

/// How the targets name the peer called `name`.
pub(crate) fn title(name: &str) -> &str {
    find(name).map_or(name, |p| p.title)
}

impl Peer {
    /// Whether it runs in `workload`.
    pub(crate) fn runs(&self, workload: Workload) -> bool {
        (!self.bytes_only || workload.reads_bytes()) && (!self.filled_only || workload.filled())
    }

    /// The mode name of its rows in `mode`: `one-core` for a peer without
    /// modes.
    pub(crate) fn mode_name(&self, mode: Mode) -> &'static str {
        if self.modes {
            mode.name()
        } else {
            "one-core"
        }
    }
}

/// Why the BPF peers are missing from a build without them.
pub(crate) const BPF_NOT_BUILT_IN: &str =
    "the BPF ring buffer peers are not built in (build rmemring-cli with `--features bpf`)";

#[cfg(feature = "bpf")]
fn bpf(setup: &Setup<'_>, job: &Job, batched: bool) -> anyhow::Result<Row> {
    let config = crate::bpf::BpfRunConfig {
        device: setup.device.to_owned(),
        // What the ring paths get for this workload and size.
        producer: kernel::producer_config(job.workload, job.size, &setup.timing),
        warmup: setup.timing.warmup,
        duration: setup.timing.duration,
        headers_only: !job.workload.reads_bytes(),
        mode: job.mode,
        batched,
        paced: job.workload == Workload::Paced,
    };
    let result = crate::bpf::run(&config)?;
    Ok(Row {
        imp: job.peer.name.to_owned(),
        mode: job.mode.name().to_owned(),
        workload: job.workload.name().to_owned(),
        size: job.size,
        records: result.records,
        bytes: result.bytes,
        elapsed: result.elapsed,
        consumer_cpu: result.consumer_cpu,
        producer_cpu: result.producer_cpu,
        fill: result.fill,
        wakeups: result.wakeups,
        sleeps: 0,
        dropped: result.lost,
        bad: result.bad,
        latency: super::row::Latency::of(&result.latency),
        gaps: result.gaps,
        gap_tail: result.gap_tail,
        spread: None,
    })
}

#[cfg(not(feature = "bpf"))]
fn bpf(_setup: &Setup<'_>, _job: &Job, _batched: bool) -> anyhow::Result<Row> {
    anyhow::bail!(BPF_NOT_BUILT_IN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_names_each_peer_once_rmemring_first() {
        let names = names();
        assert_eq!(names[0], RMEMRING);
        for (i, name) in names.iter().enumerate() {
            assert_eq!(position(name), i);
            assert!(!names[i + 1..].contains(name), "{name} twice");
        }
        for name in [READ, BPF, BPF_BATCHED, MEMCPY] {
            assert!(find(name).is_some_and(|p| p.compared), "{name}");
        }
        assert_eq!(label(READ), "read()");
        assert_eq!(label("other"), "other");
        assert_eq!(position("other"), PEERS.len());
    }

    #[test]
    fn memcpy_runs_once_where_every_byte_is_read_staged_where_the_payload_is_filled() {
        let memcpy = find(MEMCPY).unwrap();
        assert!(!memcpy.runs(Workload::BlankHeaders));
        assert!(memcpy.runs(Workload::FilledBytes));
        assert_eq!(memcpy.mode_name(Mode::Poll), "one-core");
        let staged = find(RMEMRING_STAGED).unwrap();
        assert!(staged.runs(Workload::FilledBytes) && staged.runs(Workload::FilledHeaders));
        assert!(!staged.runs(Workload::BlankBytes) && !staged.runs(Workload::Paced));
        assert!(!staged.compared && staged.mode_name(Mode::Poll) == "poll");
        let batched = find(BPF_BATCHED).unwrap();
        assert!(batched.runs(Workload::Paced) && batched.bpf);
        assert_eq!(batched.mode_name(Mode::Poll), "poll");
    }
}
