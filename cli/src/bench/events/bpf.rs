//! The BPF ring buffer as a peer: `bpf/sched_switch.bpf.c` on the
//! `sched_switch` tracepoint, its records read with libbpf's
//! `ring_buffer__poll` (which sleeps in epoll, woken as the program's
//! submit flags say).

use std::sync::atomic::AtomicBool;

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

use super::tracefs::SchedSwitchFormat;
use super::{
    drive,
    Consumed,
    Strategy,
    POLL_TIMEOUT,
    RING_BYTES, //
};

static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/sched_switch.bpf.o"));

/// Where the program's `struct sched_switch_args` has the fields it reads.
const PROGRAM_LAYOUT: [(&str, usize); 5] = [
    ("prev_comm", 8),
    ("prev_pid", 24),
    ("prev_state", 32),
    ("next_comm", 40),
    ("next_pid", 56),
];

/// Offset of `next_pid` in the program's record (after the timestamp, the
/// CPU, the previous pid and state).
const RECORD_NEXT_PID: usize = 20;

const COUNTER_CALLS: u32 = 0;
const COUNTER_DROPPED: u32 = 1;

pub(super) fn consume(
    strategy: Strategy,
    stop: &AtomicBool,
    ready: impl FnOnce(),
    format: SchedSwitchFormat,
) -> Result<Consumed> {
    for (field, offset) in PROGRAM_LAYOUT {
        ensure!(
            format.offset(field) == Some(offset),
            "sched_switch's {field} is at {:?} in this kernel's format, the BPF program reads it at {offset}",
            format.offset(field)
        );
    }
    let mut open = ObjectBuilder::default()
        .open_memory(OBJECT)
        .context("opening the BPF object")?;
    for mut map in open.maps_mut() {
        if map.name() == "events" {
            map.set_max_entries(RING_BYTES as u32)?;
        }
    }
    let wanted = match strategy {
        Strategy::Woken => "sched_switch",
        Strategy::Deferred | Strategy::Periodic => "sched_switch_quiet",
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
        let pid = data
            .get(RECORD_NEXT_PID..RECORD_NEXT_PID + 4)
            .map_or(0, |b| u32::from_ne_bytes(b.try_into().unwrap_or([0; 4])));
        consumed.borrow_mut().event(u64::from(pid));
        0
    })?;
    let ring = builder.build()?;
    let link = program
        .attach_tracepoint(TracepointCategory::Sched, "sched_switch")
        .context("attaching to tracepoint sched/sched_switch")?;
    ready();
    // `ring_buffer__poll` waits in epoll, then reads everything;
    // `ring_buffer__consume` reads everything.
    drive(strategy, stop, |wait| {
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
