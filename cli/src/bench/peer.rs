//! Every peer of the kernel benchmarks, in one table ([`PEERS`]): the
//! synthetic 2×2 of `rmemring bench` and the real events of `rmemring
//! bench-events`. Each entry names a peer once (on the command line, in the
//! JSON lines and the tables) and says, for each benchmark it takes part
//! in, what it does per record on each side, what it needs, and how to run
//! it. Both benchmarks' `--impls`/`--peers` (values, help, defaults) and
//! `--list`, their runners, reports, verdicts and the chart read this
//! table; adding a peer is one entry and its `run` or `consume` function.

use std::fmt::{
    self,
    Write as _, //
};
use std::ops::Deref;
use std::path::Path;

use clap::builder::PossibleValue;
use rmemring::uapi::PRODUCER_STAGED;

use super::row::Row;
use super::{
    events,
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
/// No tracer: the real-event benchmark's baseline.
pub(crate) const NONE: &str = "none";

/// What every measurement of a run shares.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Setup<'a> {
    pub(crate) device: &'a Path,
    pub(crate) timing: Timing,
    /// The ring's data area, in bytes.
    pub(crate) data_size: u64,
}

/// What a peer needs that a build or a machine may lack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Need {
    /// rmemring-cli built with `--features bpf`. Without it the peer is
    /// left out of the defaults (`rmemring bench` says so), and a failed
    /// measurement of it is reported rather than ending the run.
    Bpf,
    /// The running kernel's BTF: without it the peer is left out, with the
    /// reason.
    Btf,
    /// `task_struct`'s offsets, read from the `sched_switch` tracer module.
    TaskOffsets,
    /// The `sched_switch` tracer module (`--tracer`).
    Tracer,
    /// The relay tracer module (`--relay-tracer`), on a kernel with
    /// `CONFIG_RELAY`.
    RelayTracer,
}

impl Need {
    /// What it is, in a few words (`--list`, `--help`).
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Need::Bpf => "the bpf feature",
            Need::Btf => "kernel BTF",
            Need::TaskOffsets => "task_struct offsets from the tracer module",
            Need::Tracer => "the sched_switch tracer module",
            Need::RelayTracer => "the relay tracer module and CONFIG_RELAY",
        }
    }
}

/// What a peer is in one benchmark: for `--help`, `--list` and the
/// reports.
#[derive(Debug)]
pub(crate) struct About {
    /// How `--help` and the targets name it.
    pub(crate) title: &'static str,
    /// What its producer side does per record.
    pub(crate) producer: &'static str,
    /// What its consumer side does per record.
    pub(crate) consumer: &'static str,
    /// What it needs.
    pub(crate) needs: &'static [Need],
}

/// A peer's part in one benchmark.
pub(crate) trait Part: 'static {
    /// What the peer is in that benchmark.
    fn about(&self) -> &About;
}

impl Part for Synthetic {
    fn about(&self) -> &About {
        &self.about
    }
}

impl Part for Events {
    fn about(&self) -> &About {
        &self.about
    }
}

/// A peer of the kernel benchmarks: a path from a kernel producer to user
/// space, or the baseline, or the memcpy reference.
#[derive(Debug)]
pub(crate) struct Peer {
    /// Its name on the command line (`--impls`, `--peers`), in the JSON
    /// lines (`impl`, `peer`) and in the tables.
    pub(crate) name: &'static str,
    /// Its part in `rmemring bench`, the synthetic 2×2, if it takes part.
    pub(crate) synthetic: Option<Synthetic>,
    /// Its part in `rmemring bench-events`, real events, if it takes part.
    pub(crate) events: Option<Events>,
}

/// A peer's part in `rmemring bench`: the driver's kernel thread produces
/// (or, for the memcpy reference, nobody), the peer carries the records to user space.
#[derive(Debug)]
pub(crate) struct Synthetic {
    /// How the tables name it where that differs (`read()`).
    pub(crate) label: &'static str,
    /// How the targets name it, what each side does per record and what
    /// it needs; with [`Need::Bpf`], a failed measurement is left out and
    /// reported instead of ending the run.
    pub(crate) about: About,
    /// Whether it runs in every consumer [`Mode`]; else once, as
    /// `one-core`.
    pub(crate) modes: bool,
    /// Whether it runs only where the consumer reads every byte.
    pub(crate) bytes_only: bool,
    /// Whether it runs only where the producer fills the payload.
    pub(crate) filled_only: bool,
    /// The modes in which its idle blocking consumer is measured.
    pub(crate) idle: &'static [Mode],
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
    /// Whether, where its consumer may sleep (`blocking`, `poll`), its
    /// producer notifies the consumer by BPF's adaptive rule (flags 0:
    /// whenever a record is committed at the consumer's position, the
    /// consumer asleep or not) rather than only a consumer that has said
    /// it sleeps, as rmemring's: a choice the verdicts state beside
    /// rmemring's ratio over it.
    pub(crate) adaptive_wakeups: bool,
    /// Its colour in the chart.
    pub(crate) colour: (u8, u8, u8),
    /// One measurement.
    pub(crate) run: fn(&Setup<'_>, &Job) -> anyhow::Result<Row>,
}

/// A peer's part in `rmemring bench-events`: it records every
/// `sched_switch` into its ring while its consumer reads each event's pids.
#[derive(Debug)]
pub(crate) struct Events {
    /// What it is, what each side does per event (the producer's in the
    /// `sched_switch` probe) and what it needs.
    pub(crate) about: About,
    /// Whether the real-event target judges rmemring against it.
    pub(crate) judged: bool,
    /// Attaches it, reads until the run's end, detaches it, reads the rest.
    pub(crate) consume: events::Consume,
}

/// The peers, in the order of the tables; rmemring first of the 2×2's, as
/// the ratios are its over each other's, and the baseline first of the
/// real events'.
pub(crate) const PEERS: &[Peer] = &[
    Peer {
        name: NONE,
        synthetic: None,
        events: Some(Events {
            about: About {
                title: "no tracer: the load's own rate, the baseline",
                producer: "-",
                consumer: "-",
                needs: &[],
            },
            judged: false,
            consume: events::consume_none,
        }),
    },
    Peer {
        name: RMEMRING,
        synthetic: Some(Synthetic {
            label: RMEMRING,
            about: About {
                title: "zero-copy",
                producer: "the driver's kernel thread reserves the record in the ring, writes the \
                           header and the payload words (first word or all, one u64 store each), \
                           commits; publishes every min(64, 64 KiB / stride) records; waits for \
                           room when the ring is full",
                consumer: "Consumer::batch: each header validated and checked in place in the \
                           mapping, the payload read in place where the cell says so; one release \
                           per batch",
                needs: &[],
            },
            modes: true,
            bytes_only: false,
            filled_only: false,
            idle: &[Mode::Blocking, Mode::Poll],
            compared: false,
            filled_target: None,
            copies_payload: false,
            adaptive_wakeups: false,
            colour: (0x1f, 0x77, 0xb4),
            run: |setup, job| kernel::zero_copy(setup.device, job, setup.timing, 0),
        }),
        events: Some(Events {
            about: About {
                title: "the sched_switch tracer module into the device's ring",
                producer: "the tracer of examples/kernel/sched_switch: rmemring_reserve() of a \
                           48-byte record, its fields filled in place, rmemring_commit()",
                consumer: "Consumer::batch on the mapped ring: each record cast in place, its \
                           pids read; one release per batch",
                needs: &[Need::Tracer],
            },
            judged: false,
            consume: |setup, stop, ready| events::consume_rmemring(setup, stop, ready),
        }),
    },
    Peer {
        name: RMEMRING_STAGED,
        synthetic: Some(Synthetic {
            label: RMEMRING_STAGED,
            about: About {
                title: "zero-copy, payload staged",
                producer: "as rmemring's, started with PRODUCER_STAGED: the thread first fills a \
                           private buffer as bpf's does (the same function), then reserves the \
                           record and copies the payload into it (one u64 load and store per word, \
                           as bpf_probe_read_kernel copies it): two passes per byte, as bpf's \
                           producer makes where it copies the payload",
                consumer: "as rmemring's",
                needs: &[],
            },
            modes: true,
            bytes_only: false,
            filled_only: true,
            idle: &[],
            compared: false,
            filled_target: None,
            copies_payload: false,
            adaptive_wakeups: false,
            colour: (0x94, 0x67, 0xbd),
            run: |setup, job| kernel::zero_copy(setup.device, job, setup.timing, PRODUCER_STAGED),
        }),
        events: None,
    },
    Peer {
        name: READ,
        synthetic: Some(Synthetic {
            label: "read()",
            about: About {
                title: "read()",
                producer: "as rmemring's: the same thread, ring and records",
                consumer: "read() into a 1 MiB buffer: the kernel copies whole records, one \
                           copy_to_user per contiguous run, in the consumer's system time; then \
                           the same checks as rmemring's, on the copy",
                needs: &[],
            },
            modes: true,
            bytes_only: false,
            filled_only: false,
            idle: &[Mode::Blocking],
            compared: true,
            filled_target: Some(2.0),
            copies_payload: false,
            adaptive_wakeups: false,
            colour: (0xd6, 0x27, 0x28),
            run: |setup, job| kernel::read_copy(setup.device, job, setup.timing),
        }),
        events: None,
    },
    Peer {
        name: BPF,
        synthetic: Some(Synthetic {
            label: BPF,
            about: About {
                title: "BPF",
                producer: "the same thread fills a private buffer the same way and hands each \
                           record to a tracepoint; the BPF program reserves a BPF ring buffer \
                           record, writes the header and, where the consumer reads every byte, \
                           copies the payload; submits. It cannot wait for room: a full ring \
                           buffer drops",
                consumer: "libbpf's ring_buffer__consume / ring_buffer__poll: one callback per \
                           record, the same checks as rmemring's; libbpf releases each record's \
                           space as the callback returns",
                needs: &[Need::Bpf],
            },
            modes: true,
            bytes_only: false,
            filled_only: false,
            idle: &[],
            compared: true,
            filled_target: Some(1.5),
            copies_payload: true,
            adaptive_wakeups: true,
            colour: (0x2c, 0xa0, 0x2c),
            run: |setup, job| bpf(setup, job, false),
        }),
        events: Some(Events {
            about: About {
                title: "a tracepoint/ BPF program into a BPF ring buffer",
                producer: "a tracepoint/sched/sched_switch program: the kernel builds the event's \
                           record, the program copies its fields into a 56-byte BPF ring buffer \
                           record",
                consumer: "libbpf's ring_buffer__poll / __consume, the pids read in the callback",
                needs: &[Need::Bpf],
            },
            judged: true,
            consume: |setup, stop, ready| {
                events::consume_bpf(setup, stop, ready, events::Program::Tracepoint)
            },
        }),
    },
    Peer {
        name: BPF_BATCHED,
        synthetic: Some(Synthetic {
            label: BPF_BATCHED,
            about: About {
                title: "BPF batched",
                producer: "as bpf's: the same program and ring buffer",
                consumer: "the ring buffer mapped by the benchmark itself (consumer page \
                           read-write, producer page and data read-only, the data twice): \
                           producer position read with acquire, records walked in place (busy \
                           and discarded ones honoured), the same checks as rmemring's; one \
                           release per batch, at most an eighth of the ring buffer, as \
                           rmemring's consumer",
                needs: &[Need::Bpf],
            },
            modes: true,
            bytes_only: false,
            filled_only: false,
            idle: &[],
            compared: true,
            filled_target: Some(1.5),
            copies_payload: true,
            adaptive_wakeups: true,
            colour: (0x17, 0xbe, 0xcf),
            run: |setup, job| bpf(setup, job, true),
        }),
        events: None,
    },
    Peer {
        name: "bpf-raw",
        synthetic: None,
        events: Some(Events {
            about: About {
                title: "a raw_tp/ BPF program into a BPF ring buffer",
                producer: "a raw_tp/sched_switch program: no record is built for it; it reads \
                           pid and comm of prev and next with bpf_probe_read_kernel() at the \
                           tracer module's task_struct offsets and writes bpf's record",
                consumer: "as bpf's",
                needs: &[Need::Bpf, Need::TaskOffsets],
            },
            judged: true,
            consume: |setup, stop, ready| {
                events::consume_bpf(setup, stop, ready, events::Program::Raw)
            },
        }),
    },
    Peer {
        name: "bpf-btf",
        synthetic: None,
        events: Some(Events {
            about: About {
                title: "a tp_btf/ BPF program into a BPF ring buffer",
                producer: "a tp_btf/sched_switch program: the tasks' fields loaded directly, at \
                           offsets relocated from the kernel's BTF (CO-RE); bpf's record",
                consumer: "as bpf's",
                needs: &[Need::Bpf, Need::Btf],
            },
            judged: true,
            consume: |setup, stop, ready| {
                events::consume_bpf(setup, stop, ready, events::Program::Btf)
            },
        }),
    },
    Peer {
        name: "ftrace",
        synthetic: None,
        events: Some(Events {
            about: About {
                title: "ftrace's own event in a tracefs instance",
                producer: "ftrace's own sched_switch event, in a tracefs instance of its own",
                consumer: "each CPU's trace_pipe_raw read a page at a time with read(), every \
                           event parsed",
                needs: &[],
            },
            judged: true,
            consume: events::consume_ftrace,
        }),
    },
    Peer {
        name: "perf",
        synthetic: None,
        events: Some(Events {
            about: About {
                title: "perf_event_open on the tracepoint",
                producer: "perf_event_open on the tracepoint, one event per CPU, every event \
                           sampled (time, CPU, raw record)",
                consumer: "each CPU's mmap ring read in place, data_tail released once per pass",
                needs: &[],
            },
            judged: true,
            consume: events::consume_perf,
        }),
    },
    Peer {
        name: "relay",
        synthetic: None,
        events: Some(Events {
            about: About {
                title: "a relay tracer module into a relay channel",
                producer: "the tracer of examples/kernel/sched_switch_relay: the same 48-byte \
                           record, written with __relay_write() into a relay channel, a buffer \
                           per CPU",
                consumer: "each CPU's debugfs file read with read() into a buffer of whole records",
                needs: &[Need::RelayTracer],
            },
            judged: false,
            consume: events::consume_relay,
        }),
    },
    Peer {
        name: MEMCPY,
        synthetic: Some(Synthetic {
            label: MEMCPY,
            about: About {
                title: MEMCPY,
                producer: "-",
                consumer: "one core copies each record's whole stride, 16 MiB source to 16 MiB \
                           destination: a reference for moving the bytes once on one core, \
                           not a limit (the ring paths write and read on two CPUs, and an \
                           emulated copy costs more than the reads alone)",
                needs: &[],
            },
            modes: false,
            bytes_only: true,
            filled_only: false,
            idle: &[],
            compared: true,
            filled_target: None,
            copies_payload: false,
            adaptive_wakeups: false,
            colour: (0x55, 0x55, 0x55),
            run: |setup, job| {
                memcpy::run(
                    job.workload,
                    job.size,
                    setup.data_size as usize,
                    setup.timing,
                )
            },
        }),
        events: None,
    },
];

/// A peer as one benchmark sees it: its entry in [`PEERS`] and its part
/// `P` in that benchmark ([`Synthetic`] or [`Events`]), which it
/// dereferences to.
pub(crate) struct Entry<P: 'static> {
    /// The whole entry.
    pub(crate) peer: &'static Peer,
    part: &'static P,
}

/// A peer of `rmemring bench`.
pub(crate) type SyntheticPeer = Entry<Synthetic>;
/// A peer of `rmemring bench-events`.
pub(crate) type EventsPeer = Entry<Events>;

impl<P> Entry<P> {
    /// Its name.
    pub(crate) fn name(&self) -> &'static str {
        self.peer.name
    }
}

impl<P> Clone for Entry<P> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<P> Copy for Entry<P> {}

impl<P> PartialEq for Entry<P> {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.peer, other.peer)
    }
}

impl<P> Eq for Entry<P> {}

impl<P> Deref for Entry<P> {
    type Target = P;

    fn deref(&self) -> &P {
        self.part
    }
}

impl<P> fmt::Debug for Entry<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl<P> fmt::Display for Entry<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The peers of `rmemring bench`, in order.
pub(crate) fn synthetic() -> impl Iterator<Item = SyntheticPeer> {
    PEERS.iter().filter_map(|peer| {
        let part = peer.synthetic.as_ref()?;
        Some(Entry { peer, part })
    })
}

/// The peers of `rmemring bench-events`, in order.
pub(crate) fn events() -> impl Iterator<Item = EventsPeer> {
    PEERS.iter().filter_map(|peer| {
        let part = peer.events.as_ref()?;
        Some(Entry { peer, part })
    })
}

/// The peer of `rmemring bench` named `name`.
pub(crate) fn find(name: &str) -> Option<SyntheticPeer> {
    synthetic().find(|p| p.name() == name)
}

/// The peer of `rmemring bench-events` named `name`.
pub(crate) fn find_events(name: &str) -> Option<EventsPeer> {
    events().find(|p| p.name() == name)
}

/// The names of `rmemring bench`'s peers, in order.
pub(crate) fn names() -> Vec<&'static str> {
    synthetic().map(|p| p.name()).collect()
}

/// The peers `rmemring bench-events` measures by default, in order: all
/// but the baseline (which runs before each of them anyway), and the BPF
/// ones only where they are built in.
pub(crate) fn default_events() -> Vec<&'static str> {
    events()
        .filter(|p| p.name() != NONE && (cfg!(feature = "bpf") || !p.needs(Need::Bpf)))
        .map(|p| p.name())
        .collect()
}

/// Where the peer called `name` comes in the tables (unknown names last).
pub(crate) fn position(name: &str) -> usize {
    PEERS
        .iter()
        .position(|p| p.name == name)
        .unwrap_or(PEERS.len())
}

/// How the tables of `rmemring bench` name the peer called `name`.
pub(crate) fn label(name: &str) -> &str {
    find(name).map_or(name, |p| p.label)
}

/// How the targets of `rmemring bench` name the peer called `name`.
pub(crate) fn title(name: &str) -> &str {
    find(name).map_or(name, |p| p.about.title)
}

impl About {
    /// Whether it needs `need`.
    pub(crate) fn needs(&self, need: Need) -> bool {
        self.needs.contains(&need)
    }

    /// `TITLE (needs: A, B)`, or the title alone where it needs nothing.
    fn summary(&self) -> String {
        if self.needs.is_empty() {
            return self.title.to_owned();
        }
        let needs: Vec<&str> = self.needs.iter().map(|n| n.describe()).collect();
        format!("{} (needs: {})", self.title, needs.join(", "))
    }
}

impl<P: Part> Entry<P> {
    /// Whether it needs `need` in this benchmark.
    pub(crate) fn needs(&self, need: Need) -> bool {
        self.part.about().needs(need)
    }
}

/// `--impls`' or `--peers`' values: `peers`' names, each with its help.
pub(crate) fn values<P: Part>(peers: impl Iterator<Item = Entry<P>>) -> Vec<PossibleValue> {
    peers
        .map(|p| PossibleValue::new(p.name()).help(p.part.about().summary()))
        .collect()
}

/// `--list`: a line per peer of `peers`, `NAME: TITLE (needs: A, B)`, and
/// under it what each side does per record.
pub(crate) fn list<P: Part>(peers: impl Iterator<Item = Entry<P>>) -> String {
    let mut out = String::new();
    for p in peers {
        let about = p.part.about();
        let _ = write!(
            out,
            "{}: {}\n  producer: {}\n  consumer: {}\n",
            p.name(),
            about.summary(),
            about.producer,
            about.consumer
        );
    }
    out
}

impl Synthetic {
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
        imp: job.peer.name().to_owned(),
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
        for (i, peer) in PEERS.iter().enumerate() {
            assert_eq!(position(peer.name), i);
            assert!(
                !PEERS[i + 1..].iter().any(|p| p.name == peer.name),
                "{} twice",
                peer.name
            );
            assert!(
                peer.synthetic.is_some() || peer.events.is_some(),
                "{} in no benchmark",
                peer.name
            );
        }
        let names = names();
        assert_eq!(names[0], RMEMRING);
        assert!(names.windows(2).all(|w| position(w[0]) < position(w[1])));
        for name in [READ, BPF, BPF_BATCHED, MEMCPY] {
            assert!(find(name).is_some_and(|p| p.compared), "{name}");
        }
        assert_eq!(label(READ), "read()");
        assert_eq!(label("other"), "other");
        assert_eq!(position("other"), PEERS.len());
        // The real events' baseline first, then rmemring, the one judged
        // against the others.
        let events: Vec<&str> = events().map(|p| p.name()).collect();
        assert_eq!(events[..2], [NONE, RMEMRING]);
        assert!(find(NONE).is_none() && find_events(READ).is_none());
        assert!(find_events(BPF).is_some_and(|p| p.judged && p.needs(Need::Bpf)));
        assert!(!find_events(RMEMRING).unwrap().judged);
    }

    /// `bench-events` measures every peer but the baseline by default, the
    /// BPF ones where they are built in; `--list` and `--help` say what
    /// each needs.
    #[test]
    fn the_events_defaults_and_listing_come_from_the_table() {
        let defaults = default_events();
        assert!(!defaults.contains(&NONE));
        let bpf: Vec<&str> = events()
            .filter(|p| p.needs(Need::Bpf))
            .map(|p| p.name())
            .collect();
        assert!(bpf.len() >= 3, "{bpf:?}");
        for name in &bpf {
            assert_eq!(defaults.contains(name), cfg!(feature = "bpf"), "{name}");
        }
        assert_eq!(
            defaults.len(),
            events().count() - 1 - if cfg!(feature = "bpf") { 0 } else { bpf.len() }
        );
        let btf: Vec<EventsPeer> = events().filter(|p| p.needs(Need::Btf)).collect();
        let listed = list(btf.iter().copied());
        assert_eq!(btf.len(), 1, "{listed}");
        assert!(
            listed.starts_with(&format!("{}: ", btf[0].name()))
                && listed.contains("(needs: the bpf feature, kernel BTF)\n  producer: "),
            "{listed}"
        );
        let values = values(events());
        assert_eq!(values.len(), events().count());
        assert!(values.iter().all(|v| v.get_help().is_some()));
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
        assert!(batched.runs(Workload::Paced) && batched.needs(Need::Bpf));
        assert_eq!(batched.mode_name(Mode::Poll), "poll");
    }
}
