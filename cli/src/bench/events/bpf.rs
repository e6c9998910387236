//! The BPF ring buffer as a peer: `bpf/sched_switch.bpf.c` on the
//! `sched_switch` tracepoint, as a `tracepoint/` or a `raw_tp/` program, or
//! `bpf/sched_switch_btf.bpf.c` as a `tp_btf/` one (on a kernel with BTF),
//! its records read with libbpf's `ring_buffer__poll` (which sleeps in
//! epoll, woken as the program's submit flags say).

use std::path::Path;

use anyhow::{
    ensure,
    Context,
    Result, //
};
use libbpf_rs::{
    MapCore as _,
    MapFlags,
    ObjectBuilder,
    RingBufferBuilder,
    TracepointCategory, //
};

use rmemring::events::SchedSwitch;

use super::tracefs::SchedSwitchFormat;
use super::{
    drive,
    insmod,
    rmmod,
    Consumed,
    Stops,
    Strategy,
    POLL_TIMEOUT,
    RING_BYTES, //
};

static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/sched_switch.bpf.o"));
/// The `tp_btf/` programs: an object of their own, as libbpf refuses to
/// load an object with CO-RE relocations on a kernel without BTF.
static BTF_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/sched_switch_btf.bpf.o"));

/// The running kernel's BTF, which `tp_btf/` programs and CO-RE need.
const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Where the program's `struct sched_switch_args` has the fields it reads.
const PROGRAM_LAYOUT: [(&str, usize); 5] = [
    ("prev_comm", 8),
    ("prev_pid", 24),
    ("prev_state", 32),
    ("next_comm", 40),
    ("next_pid", 56),
];

/// The program's record: the timestamp, then `struct rmemring_sched_switch`.
const RECORD_EVENT: usize = 8;

const COUNTER_CALLS: u32 = 0;
const COUNTER_DROPPED: u32 = 1;
const COUNTER_FAULTS: u32 = 2;

/// Where `task_struct` has the fields a `raw_tp/` program reads, in the
/// running kernel (the program's `task_offsets` map).
#[derive(Clone, Copy, Debug)]
pub(super) struct TaskOffsets {
    pid: u32,
    comm: u32,
}

impl TaskOffsets {
    /// Reads them from the sched_switch tracer module (`tracer`, built
    /// against the running kernel's tree), loaded for the purpose on the
    /// ring `ring` and unloaded: the kernel has no BTF to read them from.
    pub(super) fn read(tracer: &Path, ring: &str) -> Result<Self> {
        insmod(tracer, &[format!("ring={ring}"), "quiet=1".to_owned()])?;
        let module = tracer
            .file_stem()
            .and_then(|s| s.to_str())
            .context("the tracer's file name")?;
        let offset = |name: &str| -> Result<u32> {
            let path = format!("/sys/module/{module}/parameters/{name}");
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
            text.trim()
                .parse()
                .with_context(|| format!("parsing {path}: {text:?}"))
        };
        let offsets = offset("task_pid_offset").and_then(|pid| {
            Ok(Self {
                pid,
                comm: offset("task_comm_offset")?,
            })
        });
        rmmod(tracer)?;
        offsets
    }

    /// As the program's `struct task_offsets`.
    fn to_bytes(self) -> [u8; 8] {
        let mut bytes = [0; 8];
        bytes[..4].copy_from_slice(&self.pid.to_ne_bytes());
        bytes[4..].copy_from_slice(&self.comm.to_ne_bytes());
        bytes
    }
}

/// How the program attaches to `sched_switch`.
#[derive(Clone, Copy, Debug)]
pub(super) enum Attach {
    /// `tracepoint/sched/sched_switch`, reading the event's record (its
    /// layout in this kernel's format file).
    Tracepoint(SchedSwitchFormat),
    /// `raw_tp/sched_switch`, reading the tasks at these offsets.
    Raw(TaskOffsets),
    /// `tp_btf/sched_switch`, reading the tasks' fields directly, where the
    /// kernel's BTF says they are.
    Btf,
}

/// Why the `tp_btf/` peer cannot run on this kernel, if it cannot.
pub(super) fn btf_missing() -> Option<String> {
    (!Path::new(KERNEL_BTF).exists()).then(|| {
        format!("this kernel has no BTF ({KERNEL_BTF}: CONFIG_DEBUG_INFO_BTF), which tp_btf needs")
    })
}

pub(super) fn consume(
    strategy: Strategy,
    stop: &Stops,
    ready: impl FnOnce(),
    attach: Attach,
) -> Result<Consumed> {
    let object = match attach {
        Attach::Btf => BTF_OBJECT,
        Attach::Tracepoint(_) | Attach::Raw(_) => OBJECT,
    };
    let mut open = ObjectBuilder::default()
        .open_memory(object)
        .context("opening the BPF object")?;
    for mut map in open.maps_mut() {
        if map.name() == "events" {
            map.set_max_entries(RING_BYTES as u32)?;
        }
    }
    if let Attach::Tracepoint(format) = attach {
        for (field, offset) in PROGRAM_LAYOUT {
            ensure!(
                format.offset(field) == Some(offset),
                "sched_switch's {field} is at {:?} in this kernel's format, the BPF program \
                 reads it at {offset}",
                format.offset(field)
            );
        }
    }
    let wanted = match (attach, strategy) {
        (Attach::Tracepoint(_), Strategy::Woken) => "sched_switch",
        (Attach::Tracepoint(_), _) => "sched_switch_quiet",
        (Attach::Raw(_), Strategy::Woken) => "sched_switch_raw",
        (Attach::Raw(_), _) => "sched_switch_raw_quiet",
        (Attach::Btf, Strategy::Woken) => "sched_switch_btf",
        (Attach::Btf, _) => "sched_switch_btf_quiet",
    };
    for mut program in open.progs_mut() {
        let load = program.name() == wanted;
        program.set_autoload(load);
    }
    let object = open.load().context("loading the BPF program")?;
    let program = object
        .progs_mut()
        .find(|p| p.name() == wanted)
        .with_context(|| format!("no program {wanted}"))?;
    let counters = object
        .maps()
        .find(|m| m.name() == "counters")
        .context("no map counters")?;
    let events = object
        .maps()
        .find(|m| m.name() == "events")
        .context("no map events")?;
    let consumed = std::cell::RefCell::new(Consumed::default());
    let mut builder = RingBufferBuilder::new();
    builder.add(&events, |data| {
        // A record that is not one counts as an event with pids that break
        // the chain.
        let (cpu, prev, next) = data
            .get(RECORD_EVENT..)
            .and_then(|event| bytemuck::try_from_bytes::<SchedSwitch>(event).ok())
            .map_or((0, u32::MAX, u32::MAX), |e| {
                (e.cpu as usize, e.prev_pid, e.next_pid)
            });
        consumed.borrow_mut().event(cpu, prev, next);
        0
    })?;
    let ring = builder.build()?;
    if let Attach::Raw(offsets) = attach {
        object
            .maps()
            .find(|m| m.name() == "task_offsets")
            .context("no map task_offsets")?
            .update(&0u32.to_ne_bytes(), &offsets.to_bytes(), MapFlags::ANY)
            .context("setting task_offsets")?;
    }
    let link = match attach {
        Attach::Tracepoint(_) => program
            .attach_tracepoint(TracepointCategory::Sched, "sched_switch")
            .context("attaching to tracepoint sched/sched_switch")?,
        Attach::Raw(_) => program
            .attach_raw_tracepoint("sched_switch")
            .context("attaching to raw tracepoint sched_switch")?,
        Attach::Btf => program
            .attach_trace()
            .context("attaching to tp_btf sched_switch")?,
    };
    ready();
    // `ring_buffer__poll` waits in epoll, then reads everything;
    // `ring_buffer__consume` reads everything.
    drive(strategy, stop, &consumed, |wait| {
        if wait {
            ring.poll(POLL_TIMEOUT).context("ring_buffer__poll")
        } else {
            ring.consume().context("ring_buffer__consume")
        }
    })?;
    drop(link);
    ring.consume().context("ring_buffer__consume")?;
    drop(ring);
    let mut consumed = consumed.into_inner();
    let calls = counter(&counters, COUNTER_CALLS)?;
    consumed.dropped = counter(&counters, COUNTER_DROPPED)?;
    let faults = counter(&counters, COUNTER_FAULTS)?;
    ensure!(
        faults == 0,
        "{faults} records had a task field the program could not read"
    );
    ensure!(
        consumed.events + consumed.dropped == calls,
        "the program was called {calls} times, but {} events arrived and {} were dropped",
        consumed.events,
        consumed.dropped
    );
    Ok(consumed)
}

fn counter(map: &libbpf_rs::Map<'_>, index: u32) -> Result<u64> {
    let value = map
        .lookup(&index.to_ne_bytes(), MapFlags::ANY)?
        .with_context(|| format!("no counter {index}"))?;
    Ok(u64::from_ne_bytes(
        value.get(..8).context("a short counter")?.try_into()?,
    ))
}
