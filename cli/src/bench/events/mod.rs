//! `rmemring bench-events`: real events, the peers a tracing expert would
//! name, the same tracepoint.
//!
//! A fixed load makes context switches on one CPU, or with `--load both`
//! on both (on each, two threads handing a byte back and forth over
//! pipes, [`load`]); each peer records every
//! `sched_switch` on every CPU into its ring while a consumer on another
//! CPU reads each event's `next_pid` (so every peer's consumer touches
//! every event), sleeping in the peer's own wake-up mechanism when there
//! is nothing to read.
//!
//! The peers, `none` (no tracer, the baseline) among them, are the
//! entries of the one table of the kernel benchmarks' peers,
//! [`peer::PEERS`], that have an [`Events`](peer::Events) part: what each
//! side does per event, what it needs, and its `consume` function (here,
//! or in [`bpf`], [`tracefs`], [`perf`], [`relay`]); `--list` prints them.
//!
//! Each peer's cost is what it adds to a context switch: the load's round
//! trip (two switches) with the tracer against without it, in the same
//! run, halved. Peers run in turn, repeated, with a `none` run before each
//! peer's, and every ring holds the same bytes (16 MiB). Every run, the
//! `none` runs too, first runs the load unmeasured for `--warmup` with the
//! peer attached and its consumer reading (its code, caches and pages
//! warm); the consumer then reads everything there is, and the measured
//! window opens ([`Stops`]).

mod load;
mod perf;
mod relay;
mod skip;
mod tracefs;

use std::cell::RefCell;
use std::fmt::Write as _;
use std::path::{
    Path,
    PathBuf, //
};
use std::process::Command;
use std::sync::atomic::{
    AtomicBool,
    Ordering, //
};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use anyhow::{
    ensure,
    Context,
    Result, //
};
use clap::builder::{
    PossibleValuesParser,
    TypedValueParser as _, //
};
use clap::ValueEnum;
use rmemring::events::SchedSwitch;
use rmemring::uapi::ResetConfig;
use rmemring::{
    Access,
    Region,
    Wait, //
};

use super::peer::{
    self,
    EventsPeer,
    NONE,
    RMEMRING, //
};
use crate::args::parse_duration;
use crate::DeviceArg;

/// How long a consumer sleeps at most before it looks at the stop flag.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);
/// Every peer wakes a sleeping consumer at least every this many events
/// (the tracer's `WAKE_EVERY`).
const WAKE_EVERY: u32 = 64;
/// The CPU the load runs on; the consumers run on the next one (beside the
/// load's second pair with [`Load::Both`]).
const LOAD_CPU: usize = 0;
const CONSUMER_CPU: usize = 1;
/// Each peer's ring: 16 MiB, over all CPUs where it has one per CPU.
const RING_BYTES: u64 = 16 << 20;

/// Benchmark real events: the cost the sched_switch tracer adds to a
/// context switch, against the BPF ring buffer, ftrace and perf.
///
/// Needs root, two CPUs, the driver loaded and the tracer module
/// (examples/kernel/sched_switch) at --tracer. Compare ratios between
/// peers of one run, not rates across machines.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    #[command(flatten)]
    ring: DeviceArg,
    /// How long each peer's run lasts.
    #[arg(long, short, default_value = "3s", value_parser = parse_duration)]
    duration: Duration,
    /// Runs of each peer (each with a `none` run before it).
    #[arg(long, default_value_t = 3)]
    repeat: u32,
    /// How long each run's load runs unmeasured first, every peer attached
    /// and its consumer reading (the `none` runs too; deferred runs at
    /// most 400 ms, so that the rings hold it).
    #[arg(long, default_value = "250ms", value_parser = parse_duration)]
    warmup: Duration,
    /// The peers, in order.
    #[arg(
        long,
        value_delimiter = ',',
        value_parser = PossibleValuesParser::new(peer::values(peer::events()))
            .try_map(|name| peer::find_events(&name).ok_or("no such peer")),
        default_values = peer::default_events()
    )]
    peers: Vec<EventsPeer>,
    /// How the consumers wait, each a table of its own.
    #[arg(long, value_delimiter = ',', default_values = ["deferred", "periodic", "woken"])]
    strategies: Vec<Strategy>,
    /// Where the load switches: on CPU 0 only (the consumer on CPU 1), or
    /// on both CPUs at once (the consumer on CPU 1 beside it).
    #[arg(long, value_enum, default_value = "one")]
    load: Load,
    /// The sched_switch tracer module.
    #[arg(long, default_value = "/lib/modules/rmemring_sched_switch.ko")]
    tracer: PathBuf,
    /// The relay peer's tracer module (examples/kernel/sched_switch_relay).
    #[arg(long, default_value = "/lib/modules/rmemring_sched_switch_relay.ko")]
    relay_tracer: PathBuf,
    /// Also print one JSON object per run on stdout (the tables go to
    /// stderr).
    #[arg(long)]
    json: bool,
    /// Print the tables of the JSON lines in FILE (from --json) instead of
    /// running.
    #[arg(long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Print the peers of --peers (the default ones), what each side of
    /// each does per event and what it needs, and run nothing.
    #[arg(long)]
    list: bool,
}

/// How every peer's consumer waits for events: the same for all of them in
/// each run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Strategy {
    /// No consumer runs while the load does: the rings fill (each holds
    /// what a run of [`DEFERRED_RUN`] writes), and are drained after.
    /// Nobody wakes anyone (as `periodic`). The producers' cost alone.
    Deferred,
    /// The consumer drains its ring every [`PERIOD`] and nobody wakes it:
    /// the tracer with quiet=1, the BPF program submitting with
    /// BPF_RB_NO_WAKEUP, perf waking only when a ring is full, ftrace with
    /// buffer_percent=100. The producers' cost without any wake-up.
    Periodic,
    /// The consumer sleeps in the peer's own wake-up mechanism, which may
    /// wake it at every [`WAKE_EVERY`]-th event: the tracer with
    /// wake_every=64, the BPF program forcing a wake-up every 64th record
    /// and submitting the others with BPF_RB_NO_WAKEUP, perf's
    /// wakeup_events=64; ftrace has no such count, so buffer_percent=0
    /// (a waiting reader is woken at the next event).
    Woken,
}

/// The CPUs the load runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Load {
    /// One pair on CPU 0: every switch is on CPU 0, the consumer has CPU 1
    /// to itself (no producer ever contends with another CPU's).
    One,
    /// A pair on each of CPUs 0 and 1 at once: switches on both CPUs, so
    /// every tracer writes from two CPUs together, and the consumer shares
    /// CPU 1 with the second pair.
    Both,
}

impl Load {
    fn name(self) -> &'static str {
        match self {
            Self::One => "one",
            Self::Both => "both",
        }
    }

    /// The CPUs the load's pairs run on.
    fn cpus(self) -> &'static [usize] {
        match self {
            Self::One => &[LOAD_CPU],
            Self::Both => &[LOAD_CPU, CONSUMER_CPU],
        }
    }

    /// The heading's words for the tables of this load.
    fn describe(self) -> &'static str {
        match self {
            Self::One => "the load on CPU 0",
            Self::Both => "the load on both CPUs (the consumer on CPU 1 beside it)",
        }
    }
}

impl Strategy {
    fn name(self) -> &'static str {
        match self {
            Self::Deferred => "deferred",
            Self::Periodic => "periodic",
            Self::Woken => "woken",
        }
    }
}

/// How often a [`Strategy::Periodic`] consumer drains its ring.
const PERIOD: Duration = Duration::from_millis(10);
/// How long a [`Strategy::Deferred`] run lasts at most: its events must fit
/// the smallest ring (perf's 8 MiB for one CPU, at 96 bytes a sample, is
/// about 87 000 events, which the load makes in about 0.45 s of guest time
/// under `-icount`).
const DEFERRED_RUN: Duration = Duration::from_millis(400);

/// What a consumer read, and the checks every event goes through.
#[derive(Debug, Default)]
pub(crate) struct Consumed {
    pub(super) events: u64,
    /// The sum of every event's `next_pid`.
    pub(super) checksum: u64,
    /// Events the peer says it dropped (as far as the consumer learns).
    pub(super) dropped: u64,
    /// Per CPU, the `next_pid` of its last event.
    last_next: Vec<Option<u32>>,
    /// Events whose `prev_pid` is not the `next_pid` of the event before
    /// them on their CPU: the task a switch brings in is the one the CPU's
    /// next switch takes out, so each break is an event lost (or a peer
    /// reading the wrong field).
    pub(super) chain_breaks: u64,
    /// Events that switch to one of the load's threads: at least two a
    /// round trip (see [`load::LoadTids`]).
    pub(super) load_events: u64,
    /// The counts when the measured window opened, after the warm-up.
    opened: Option<Opened>,
}

/// What a consumer had counted, and its thread's usage, when the measured
/// window opened.
#[derive(Clone, Copy, Debug, Default)]
struct Opened {
    events: u64,
    load_events: u64,
    /// The consumer thread's CPU time, nanoseconds, and voluntary context
    /// switches ([`thread_usage`]).
    cpu_ns: u64,
    sleeps: u64,
}

impl Consumed {
    /// One event, its pids read by the peer's consumer from its record.
    pub(super) fn event(&mut self, cpu: usize, prev_pid: u32, next_pid: u32) {
        self.events += 1;
        self.checksum = self.checksum.wrapping_add(u64::from(next_pid));
        if cpu >= self.last_next.len() {
            self.last_next.resize(cpu + 1, None);
        }
        if let Some(last) = self.last_next[cpu].replace(next_pid) {
            self.chain_breaks += u64::from(last != prev_pid);
        }
        self.load_events += u64::from(load::TIDS.contains(next_pid));
    }

    /// Marks the start of the measured window (on the consumer's thread).
    fn open(&mut self) -> Result<()> {
        let (cpu_ns, sleeps) = thread_usage()?;
        self.opened = Some(Opened {
            events: self.events,
            load_events: self.load_events,
            cpu_ns,
            sleeps,
        });
        Ok(())
    }

    /// The events read since the window opened (all of them if it never
    /// did).
    fn measured_events(&self) -> u64 {
        self.events - self.opened.map_or(0, |o| o.events)
    }

    /// Checks what the consumer read against the measured load's `trips`
    /// round trips: the pid chain unbroken but where events were dropped
    /// (over the whole run, warm-up included), and every switch of the
    /// measured load delivered or dropped.
    fn check(&self, trips: u64) -> Result<()> {
        ensure!(
            self.chain_breaks <= self.dropped,
            "the per-CPU pid chain broke {} times ({} events, {} dropped)",
            self.chain_breaks,
            self.events,
            self.dropped
        );
        // Every switch of the load is an event (two a round trip), besides
        // the other CPU's: a peer that delivered and dropped fewer lost
        // some without saying so, or read the wrong pids.
        let load_events = self.load_events - self.opened.map_or(0, |o| o.load_events);
        ensure!(
            load_events + self.dropped >= 2 * trips,
            "{} events switched to the load's threads and {} were dropped, but the load \
             switched {} times",
            load_events,
            self.dropped,
            2 * trips
        );
        Ok(())
    }
}

/// One run of one peer.
#[derive(Debug)]
struct Run {
    peer: EventsPeer,
    /// Where the load ran.
    load: Load,
    /// Its round, from 1; `None` in results from before rounds were
    /// recorded.
    round: Option<u32>,
    /// The unmeasured load before the window, seconds; `None` in results
    /// from before `--warmup`, which had none.
    warmup: Option<f64>,
    /// Load round trips per second.
    trips_per_sec: f64,
    events: u64,
    dropped: u64,
    seconds: f64,
    /// The consumer thread's CPU time, nanoseconds.
    consumer_cpu_ns: u64,
    /// The consumer thread's voluntary context switches: its sleeps.
    consumer_sleeps: u64,
}

pub(crate) fn run(args: &Args) -> Result<()> {
    if args.list {
        out!("{}", peer::list(args.peers.iter().copied()))?;
        return Ok(());
    }
    if let Some(input) = &args.input {
        let text = std::fs::read_to_string(input)
            .with_context(|| format!("reading {}", input.display()))?;
        let mut runs: Vec<(Strategy, Run)> = Vec::new();
        let mut skipped = Vec::new();
        for line in text.lines() {
            let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if value["bench"] == "events" {
                runs.push(Run::from_json(&value)?);
            } else if value["bench"] == "events-skip" {
                skipped.push(skip::Skipped::from_json(&value)?);
            }
        }
        ensure!(
            !runs.is_empty(),
            "no bench-events results in {}",
            input.display()
        );
        out!("{}{}", tables(&runs), skip::describe(&skipped))?;
        return Ok(());
    }
    let cpus = std::thread::available_parallelism()?.get();
    ensure!(
        cpus >= 2,
        "needs two CPUs: the load on one, the consumer on another"
    );
    ensure!(
        args.load.cpus().iter().all(|&cpu| cpu < cpus),
        "--load {}: needs CPUs {:?}",
        args.load.name(),
        args.load.cpus()
    );
    let root = tracefs::root()?;
    let format = tracefs::SchedSwitchFormat::read(&root)?;
    #[cfg(feature = "bpf")]
    let task_offsets = if args.peers.iter().any(|p| p.needs(peer::Need::TaskOffsets)) {
        Some(bpf::TaskOffsets::read(&args.tracer, device_name(args)?)?)
    } else {
        None
    };
    let skipped = skip::Skipped::find(&args.peers);
    for skip in &skipped {
        eprintln!("rmemring: {}; skipping it", skip.describe());
        if args.json {
            crate::out::json_line(&skip.to_json())?;
        }
    }
    // Each peer's run after a `none` run of its own, so that a drift of the
    // machine's speed over the whole run shows in both.
    let none = peer::find_events(NONE).context("no baseline peer")?;
    let mut order = Vec::new();
    for &peer in args
        .peers
        .iter()
        .filter(|p| p.name() != NONE && !skipped.iter().any(|s| s.peer == **p))
    {
        order.extend([none, peer]);
    }
    if order.is_empty() {
        order.push(none);
    }
    let mut runs = Vec::new();
    for &strategy in &args.strategies {
        for round in 0..args.repeat {
            // Each round starts with another peer (and its `none` run), so
            // that no peer always runs first or last.
            let mut order = order.clone();
            let shift = 2 * round as usize % order.len().max(1);
            order.rotate_left(shift);
            for &peer in &order {
                let setup = Setup {
                    args,
                    peer,
                    strategy,
                    cpus,
                    root: &root,
                    format,
                    #[cfg(feature = "bpf")]
                    task_offsets,
                };
                let mut run = run_one(&setup).with_context(|| {
                    format!("{peer}, {} consumer, round {}", strategy.name(), round + 1)
                })?;
                run.round = Some(round + 1);
                if args.json {
                    crate::out::json_line(&run.to_json(strategy))?;
                }
                runs.push((strategy, run));
            }
        }
    }
    let tables = tables(&runs) + &skip::describe(&skipped);
    if args.json {
        eprint!("{tables}");
    } else {
        out!("{tables}")?;
    }
    Ok(())
}

/// A table per load and strategy, in the order they ran.
fn tables(runs: &[(Strategy, Run)]) -> String {
    let mut cases: Vec<(Load, Strategy)> = Vec::new();
    for (strategy, run) in runs {
        if !cases.contains(&(run.load, *strategy)) {
            cases.push((run.load, *strategy));
        }
    }
    let mut out = String::new();
    let _ = writeln!(out, "\n{}", method(runs.iter().map(|(_, r)| r)));
    for (load, strategy) in cases {
        let mine: Vec<&Run> = runs
            .iter()
            .filter(|(s, r)| *s == strategy && r.load == load)
            .map(|(_, r)| r)
            .collect();
        let _ = writeln!(
            out,
            "\n{} consumers, {}:\n",
            strategy.name(),
            load.describe()
        );
        out.push_str(&report(&mine));
        for line in targets(&mine) {
            let _ = writeln!(out, "- {line}");
        }
    }
    out
}

/// Each peer run with the `none` run just before it, its baseline.
fn with_baseline<'a>(runs: &[&'a Run]) -> Vec<(&'a Run, &'a Run)> {
    let mut pairs = Vec::new();
    let mut last_none = None;
    for &run in runs {
        if run.peer.name() == NONE {
            last_none = Some(run);
        } else if let Some(none) = last_none {
            pairs.push((run, none));
        }
    }
    pairs
}

/// A run's added cost per context switch: its round trip's time less its
/// baseline's, over the round trip's two switches.
fn added_per_switch(run: &Run, none: &Run) -> f64 {
    (1e9 / run.trips_per_sec - 1e9 / none.trips_per_sec) / 2.0
}

/// The smallest and largest of `v` (NaN if it is empty).
fn range(v: &[f64]) -> (f64, f64) {
    rmemring_bench::range(v).unwrap_or((f64::NAN, f64::NAN))
}

/// The real-event target, judged: rmemring adds less per context
/// switch than each BPF program, ftrace and perf, paired by round (met
/// only if it does in every round, missed only if in none, otherwise not
/// resolved), and drops nothing where the peer drops nothing.
fn targets(runs: &[&Run]) -> Vec<String> {
    let pairs = with_baseline(runs);
    let of = |peer: &str| -> Vec<(Option<u32>, f64)> {
        pairs
            .iter()
            .filter(|(r, _)| r.peer.name() == peer)
            .map(|(r, none)| (r.round, added_per_switch(r, none)))
            .collect()
    };
    let dropped = |peer: &str| -> u64 {
        runs.iter()
            .filter(|r| r.peer.name() == peer)
            .map(|r| r.dropped)
            .sum()
    };
    let mine = of(RMEMRING);
    if mine.is_empty() {
        return Vec::new();
    }
    let mut lines = Vec::new();
    let mut peers: Vec<EventsPeer> = Vec::new();
    for r in runs {
        if r.peer.judged && !peers.contains(&r.peer) {
            peers.push(r.peer);
        }
    }
    for peer in peers {
        let theirs = of(peer.name());
        // Round by round where both recorded rounds; else in run order.
        let diffs: Vec<f64> = if mine.iter().chain(&theirs).all(|(r, _)| r.is_some()) {
            mine.iter()
                .filter_map(|(round, a)| {
                    let (_, b) = theirs.iter().find(|(r, _)| r == round)?;
                    Some(a - b)
                })
                .collect()
        } else {
            mine.iter()
                .zip(&theirs)
                .map(|((_, a), (_, b))| a - b)
                .collect()
        };
        if diffs.is_empty() {
            continue;
        }
        // The rule every rmemring benchmark judges paired rounds by.
        let Some(j) = rmemring_bench::judge(&diffs, rmemring_bench::Target::Below(0.0)) else {
            continue;
        };
        lines.push(format!(
            "rmemring adds less per switch than {peer}: {} (rmemring's added cost minus \
             {peer}'s, round by round: {:+.0}..{:+.0} over {} rounds, less in {})",
            j.verdict, j.min, j.max, j.rounds, j.clear
        ));
        let (me, them) = (dropped(RMEMRING), dropped(peer.name()));
        if them == 0 {
            lines.push(format!(
                "no drops where {peer} drops none: {} (rmemring dropped {me})",
                if me == 0 { "met" } else { "MISSED" }
            ));
        }
    }
    lines
}

/// How the runs were made, in a paragraph: the pairing, and the warm-up
/// (the largest of the runs', as a deferred one's is shorter).
fn method<'a>(runs: impl Iterator<Item = &'a Run> + Clone) -> String {
    let warmup = runs.clone().filter_map(|r| r.warmup).reduce(f64::max);
    let rounds = runs.filter_map(|r| r.round).max();
    let mut text = "Each peer's run is paired with the `none` run made just before it".to_owned();
    if let Some(rounds) = rounds.filter(|&n| n > 1) {
        let _ = write!(text, ", in the same one of {rounds} rounds");
    }
    text += ": `vs none` and `added per switch` are the median of the paired figures, their \
             range in brackets.";
    match warmup {
        Some(w) if w > 0.0 => {
            let _ = write!(
                text,
                " Every run, `none`'s too, first ran the load unmeasured for {} with the \
                 peer attached and its consumer reading (a deferred consumer reads nothing \
                 until the end of the warm-up); the consumer then read all there was and \
                 the measured window opened: round trips, events, consumer CPU and sleeps \
                 count from there, `dropped` over the whole run.",
                crate::args::nanos(w * 1e9)
            );
        }
        Some(_) => text += " No run had a warm-up (`--warmup 0`).",
        None => text += " These runs had no warm-up (they predate `--warmup`).",
    }
    text
}

impl Run {
    /// The JSON line (`"bench":"events"`), fields in alphabetical order
    /// (the order they had as a `serde_json` map).
    fn to_json(&self, strategy: Strategy) -> impl serde::Serialize {
        #[derive(serde::Serialize)]
        struct Json {
            bench: &'static str,
            consumer_cpu_ns: u64,
            consumer_sleeps: u64,
            dropped: u64,
            events: u64,
            load: &'static str,
            peer: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            round: Option<u32>,
            seconds: f64,
            strategy: &'static str,
            trips_per_sec: f64,
            #[serde(skip_serializing_if = "Option::is_none")]
            warmup_seconds: Option<f64>,
        }
        Json {
            bench: "events",
            consumer_cpu_ns: self.consumer_cpu_ns,
            consumer_sleeps: self.consumer_sleeps,
            dropped: self.dropped,
            events: self.events,
            load: self.load.name(),
            peer: self.peer.name(),
            round: self.round,
            seconds: self.seconds,
            strategy: strategy.name(),
            trips_per_sec: self.trips_per_sec,
            warmup_seconds: self.warmup,
        }
    }

    fn from_json(v: &serde_json::Value) -> Result<(Strategy, Self)> {
        let text = |k: &str| v[k].as_str().with_context(|| format!("no {k} in {v}"));
        let number = |k: &str| v[k].as_f64().with_context(|| format!("no {k} in {v}"));
        let count = |k: &str| v[k].as_u64().with_context(|| format!("no {k} in {v}"));
        let strategy =
            Strategy::from_str(text("strategy")?, false).map_err(|e| anyhow::anyhow!("{e}"))?;
        let peer =
            peer::find_events(text("peer")?).with_context(|| format!("no such peer in {v}"))?;
        // Runs from before `--load` had the load on one CPU.
        let load = match v["load"].as_str() {
            Some(load) => Load::from_str(load, false).map_err(|e| anyhow::anyhow!("{e}"))?,
            None => Load::One,
        };
        Ok((
            strategy,
            Self {
                peer,
                load,
                round: v["round"].as_u64().and_then(|r| u32::try_from(r).ok()),
                warmup: v["warmup_seconds"].as_f64(),
                trips_per_sec: number("trips_per_sec")?,
                events: count("events")?,
                dropped: count("dropped")?,
                seconds: number("seconds")?,
                consumer_cpu_ns: count("consumer_cpu_ns")?,
                consumer_sleeps: count("consumer_sleeps")?,
            },
        ))
    }
}

/// What one run needs.
pub(crate) struct Setup<'a> {
    args: &'a Args,
    peer: EventsPeer,
    strategy: Strategy,
    cpus: usize,
    root: &'a std::path::Path,
    format: tracefs::SchedSwitchFormat,
    /// For a peer that needs them ([`Need::TaskOffsets`](peer::Need::TaskOffsets)).
    #[cfg(feature = "bpf")]
    task_offsets: Option<bpf::TaskOffsets>,
}

/// Attaches the peer, runs the load on its CPUs while its consumer reads on
/// [`CONSUMER_CPU`], detaches it and drains what is left.
fn run_one(setup: &Setup<'_>) -> Result<Run> {
    let stop = Stops::default();
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    std::thread::scope(|scope| {
        let consumer = scope.spawn(|| -> Result<(Consumed, u64, u64)> {
            load::pin(CONSUMER_CPU)?;
            // The consumer's CPU from the moment the measured window opens
            // (from the moment the peer is attached where it never opens:
            // `none`): setting a peer up (loading a BPF program, zeroing its
            // ring) and the warm-up are not measured.
            let start = std::cell::Cell::new((0, 0));
            let mut ready = || {
                start.set(thread_usage().unwrap_or_default());
                let _ = ready_tx.send(());
            };
            let consumed = (setup.peer.consume)(setup, &stop, &mut ready)?;
            let end = thread_usage()?;
            let start = consumed
                .opened
                .map_or(start.get(), |o| (o.cpu_ns, o.sleeps));
            Ok((consumed, end.0 - start.0, end.1 - start.1))
        });
        let limit = |d: Duration| match setup.strategy {
            Strategy::Deferred => d.min(DEFERRED_RUN),
            _ => d,
        };
        let cpus = setup.args.load.cpus();
        // The peer is attached (or failed) once `ready` is sent or dropped.
        // Then the warm-up, unmeasured; the consumer reads what it wrote
        // and opens the window (a consumer that has ended, as `none`'s
        // does at once, opens none); then the measured load.
        let load = ready_rx.recv().ok().map(|()| {
            if !setup.args.warmup.is_zero() {
                load::ping_pong(cpus, limit(setup.args.warmup))?;
            }
            stop.warm.store(true, Ordering::Release);
            while !stop.opened.load(Ordering::Acquire) && !consumer.is_finished() {
                std::thread::sleep(Duration::from_millis(1));
            }
            load::ping_pong(cpus, limit(setup.args.duration))
        });
        stop.end.store(true, Ordering::Relaxed);
        let (consumed, consumer_cpu_ns, consumer_sleeps) = consumer
            .join()
            .map_err(|_| anyhow::anyhow!("the consumer thread panicked"))??;
        let (trips, took) = load.context("the peer did not attach")??;
        if setup.peer.name() != NONE {
            consumed.check(trips)?;
        }
        Ok(Run {
            peer: setup.peer,
            load: setup.args.load,
            round: None,
            warmup: Some(limit(setup.args.warmup).as_secs_f64()),
            trips_per_sec: trips as f64 / took.as_secs_f64(),
            events: consumed.measured_events(),
            dropped: consumed.dropped,
            seconds: took.as_secs_f64(),
            consumer_cpu_ns,
            consumer_sleeps,
        })
    })
}

/// The points where the load stops during a run, as its consumer learns
/// of them ([`drive`]): the end of the warm-up, after which the consumer
/// reads everything there is and opens the measured window, and the end
/// of the measured load.
#[derive(Debug, Default)]
pub(crate) struct Stops {
    /// The warm-up is over.
    warm: AtomicBool,
    /// The consumer has read what the warm-up wrote and opened the window.
    opened: AtomicBool,
    /// The measured load is over.
    end: AtomicBool,
}

/// A peer's side of a run ([`Events::consume`](peer::Events::consume)):
/// attaches the peer, calls `ready`, reads until `stop`'s end (opening the
/// measured window after the warm-up), then detaches it and reads what is
/// left.
pub(crate) type Consume = fn(&Setup<'_>, &Stops, &mut dyn FnMut()) -> Result<Consumed>;

/// The baseline's: no tracer, nothing to read.
pub(super) fn consume_none(
    _setup: &Setup<'_>,
    _stop: &Stops,
    ready: &mut dyn FnMut(),
) -> Result<Consumed> {
    ready();
    Ok(Consumed::default())
}

/// The BPF peers' programs.
#[derive(Clone, Copy, Debug)]
pub(super) enum Program {
    /// `tracepoint/sched/sched_switch`.
    Tracepoint,
    /// `raw_tp/sched_switch`, at the tracer module's `task_struct`
    /// offsets.
    Raw,
    /// `tp_btf/sched_switch`.
    Btf,
}

/// A BPF peer's: `program` into a BPF ring buffer.
pub(super) fn consume_bpf(
    setup: &Setup<'_>,
    stop: &Stops,
    ready: &mut dyn FnMut(),
    program: Program,
) -> Result<Consumed> {
    #[cfg(feature = "bpf")]
    {
        let attach = match program {
            Program::Tracepoint => bpf::Attach::Tracepoint(setup.format),
            Program::Raw => bpf::Attach::Raw(setup.task_offsets.context("no task_struct offsets")?),
            Program::Btf => bpf::Attach::Btf,
        };
        bpf::consume(setup.strategy, stop, ready, attach)
    }
    #[cfg(not(feature = "bpf"))]
    {
        let _ = (setup, stop, ready, program);
        anyhow::bail!("this rmemring was built without the bpf feature")
    }
}

/// ftrace's: its own event in a tracefs instance.
pub(super) fn consume_ftrace(
    setup: &Setup<'_>,
    stop: &Stops,
    ready: &mut dyn FnMut(),
) -> Result<Consumed> {
    let per_cpu_kb = RING_BYTES / setup.cpus as u64 / 1024;
    let woken = setup.strategy == Strategy::Woken;
    let ftrace = tracefs::Ftrace::attach(
        setup.root,
        setup.cpus,
        per_cpu_kb,
        woken,
        LOAD_CPU,
        setup.format,
    )?;
    consume_source(ftrace, setup.strategy, stop, ready)
}

/// perf's: the tracepoint sampled, one event per CPU.
pub(super) fn consume_perf(
    setup: &Setup<'_>,
    stop: &Stops,
    ready: &mut dyn FnMut(),
) -> Result<Consumed> {
    let per_cpu = (RING_BYTES / setup.cpus as u64).next_power_of_two();
    let woken = setup.strategy == Strategy::Woken;
    let perf = perf::Perf::attach(setup.cpus, per_cpu, woken, setup.format)?;
    consume_source(perf, setup.strategy, stop, ready)
}

/// relay's: the relay tracer module's channel.
pub(super) fn consume_relay(
    setup: &Setup<'_>,
    stop: &Stops,
    ready: &mut dyn FnMut(),
) -> Result<Consumed> {
    let per_cpu = RING_BYTES / setup.cpus as u64;
    let relay = relay::Relay::attach(&setup.args.relay_tracer, setup.cpus, per_cpu)?;
    consume_source(relay, setup.strategy, stop, ready)
}

/// A peer whose events the consumer reads from per-CPU files: ftrace's,
/// perf's and relay's.
pub(super) trait Source {
    /// The descriptors to `poll` for a wake-up.
    fn fds(&self) -> Vec<std::os::fd::BorrowedFd<'_>>;
    /// Reads every event there is now.
    fn drain(&mut self, consumed: &mut Consumed) -> Result<()>;
    /// Stops recording; what is buffered stays to be drained.
    fn detach(&mut self) -> Result<()>;
    /// Events the peer dropped, as far as it says apart from the stream.
    fn dropped(&self) -> Result<u64> {
        Ok(0)
    }
    /// The probe's calls, once detached, where the peer counts them: then
    /// the events read and dropped must add up to them exactly.
    fn calls(&self) -> Result<Option<u64>> {
        Ok(None)
    }
}

/// Reads `source` until `stop`'s end, then detaches it and reads the rest.
fn consume_source(
    mut source: impl Source,
    strategy: Strategy,
    stop: &Stops,
    ready: impl FnOnce(),
) -> Result<Consumed> {
    ready();
    let consumed = RefCell::new(Consumed::default());
    drive(strategy, stop, &consumed, |wait| {
        if wait {
            wait_any(&source.fds())?;
        }
        source.drain(&mut consumed.borrow_mut())
    })?;
    let mut consumed = consumed.into_inner();
    source.detach()?;
    source.drain(&mut consumed)?;
    consumed.dropped += source.dropped()?;
    if let Some(calls) = source.calls()? {
        ensure!(
            consumed.events + consumed.dropped == calls,
            "the probe was called {calls} times, but {} events arrived and {} were dropped",
            consumed.events,
            consumed.dropped
        );
    }
    Ok(consumed)
}

/// Waits up to [`POLL_TIMEOUT`] for any of `fds` to be readable.
fn wait_any(fds: &[std::os::fd::BorrowedFd<'_>]) -> Result<()> {
    use nix::poll::{
        PollFd,
        PollFlags,
        PollTimeout, //
    };
    let mut polled: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
        .collect();
    match nix::poll::poll(&mut polled, PollTimeout::try_from(POLL_TIMEOUT)?) {
        Ok(_) | Err(nix::errno::Errno::EINTR) => Ok(()),
        Err(e) => Err(e).context("poll"),
    }
}

/// The consumer loop every peer shares: until `stop`'s end, `step(true)`
/// (wait in the peer's own mechanism, up to [`POLL_TIMEOUT`], then read
/// everything) or, periodic, a sleep of [`PERIOD`] and `step(false)` (read
/// everything); deferred, only sleeps. Once the warm-up is over,
/// whatever the strategy, `step(false)` reads everything it wrote, then
/// `consumed` notes the start of the measured window.
pub(super) fn drive(
    strategy: Strategy,
    stop: &Stops,
    consumed: &RefCell<Consumed>,
    mut step: impl FnMut(bool) -> Result<()>,
) -> Result<()> {
    while !stop.end.load(Ordering::Relaxed) {
        if stop.warm.load(Ordering::Acquire) && !stop.opened.load(Ordering::Relaxed) {
            step(false)?;
            consumed.borrow_mut().open()?;
            stop.opened.store(true, Ordering::Release);
            continue;
        }
        match strategy {
            Strategy::Deferred => std::thread::sleep(PERIOD),
            Strategy::Periodic => {
                std::thread::sleep(PERIOD);
                step(false)?;
            }
            Strategy::Woken => step(true)?,
        }
    }
    Ok(())
}

/// The tracer module into the device's ring (fresh, drop-new), read with
/// the crate's consumer, which sleeps in `poll(2)` as soon as the ring is
/// empty (`Wait::Spin(0)`: every other peer's consumer sleeps at once too).
pub(super) fn consume_rmemring(
    setup: &Setup<'_>,
    stop: &Stops,
    ready: impl FnOnce(),
) -> Result<Consumed> {
    let device = &setup.args.ring.device;
    let tracer = &setup.args.tracer;
    let name = device_name(setup.args)?;
    let mut region = Region::open(device, Access::Consume)
        .with_context(|| format!("opening {}", device.display()))?;
    region.reset(&ResetConfig::default())?;
    let region = Arc::new(region);
    let mut consumer = region.consumer()?;
    consumer.set_wait(Wait::Spin(0));
    let wake = match setup.strategy {
        Strategy::Deferred | Strategy::Periodic => "quiet=1".to_owned(),
        Strategy::Woken => format!("wake_every={WAKE_EVERY}"),
    };
    insmod(tracer, &[format!("ring={name}"), wake])?;
    ready();
    let consumed = RefCell::new(Consumed::default());
    let read = |consumer: &mut rmemring::Consumer, consumed: &mut Consumed| -> Result<u64> {
        let mut n = 0;
        for record in consumer.batch()?.iter() {
            let record = record?;
            let event = record
                .try_cast::<SchedSwitch>()
                .context("a short sched_switch record")?;
            consumed.event(event.cpu as usize, event.prev_pid, event.next_pid);
            n += 1;
        }
        Ok(n)
    };
    let consuming = drive(setup.strategy, stop, &consumed, |wait| {
        let consumed = &mut consumed.borrow_mut();
        if read(&mut consumer, consumed)? == 0 && wait {
            consumer.wait(Some(POLL_TIMEOUT))?;
            read(&mut consumer, consumed)?;
        }
        Ok(())
    });
    let mut consumed = consumed.into_inner();
    let unloaded = rmmod(tracer);
    consuming?;
    unloaded?;
    while read(&mut consumer, &mut consumed)? != 0 {}
    consumed.dropped = region.stats()?.records_dropped;
    // The tracer's own account, final once it is unloaded: every probe
    // call delivered, dropped or refused (as the BPF and relay peers are
    // held to theirs).
    let counts = tracer_counts()?;
    let count = |key: &str| counts.iter().find(|(k, _)| k == key).map_or(0, |(_, v)| *v);
    let refused = count("refused") + count("gone") + count("failed");
    ensure!(
        consumed.events + consumed.dropped + refused == count("calls")
            && consumed.events == count("written"),
        "the tracer was called {} times and wrote {}, but {} events arrived, {} were dropped \
         and {refused} refused",
        count("calls"),
        count("written"),
        consumed.events,
        consumed.dropped
    );
    Ok(consumed)
}

/// The counts the `sched_switch` tracer logs as it unloads (`calls=N
/// written=N ...`): the last such line of the kernel log.
fn tracer_counts() -> Result<Vec<(String, u64)>> {
    let out = Command::new("dmesg").output().context("running dmesg")?;
    let log = String::from_utf8_lossy(&out.stdout);
    let line = log
        .lines()
        .rev()
        .find_map(|l| l.split_once("rmemring_sched_switch: calls="))
        .map(|(_, rest)| format!("calls={rest}"))
        .context("the tracer logged no counts")?;
    line.split_whitespace()
        .map(|w| {
            let (k, v) = w.split_once('=').context("a count without =")?;
            Ok((
                k.to_owned(),
                v.parse().with_context(|| format!("in {line:?}"))?,
            ))
        })
        .collect()
}

/// The device's name, as the tracer's `ring` parameter wants it.
fn device_name(args: &Args) -> Result<&str> {
    args.ring
        .device
        .file_name()
        .and_then(|n| n.to_str())
        .context("the device has no name")
}

/// Loads the module at `path` with `params`.
pub(super) fn insmod(path: &Path, params: &[String]) -> Result<()> {
    let status = Command::new("insmod")
        .arg(path)
        .args(params)
        .status()
        .context("running insmod")?;
    ensure!(status.success(), "insmod {}: {status}", path.display());
    Ok(())
}

/// Unloads the module loaded from `path`.
pub(super) fn rmmod(path: &Path) -> Result<()> {
    let module = path
        .file_stem()
        .and_then(|s| s.to_str())
        .context("the module's file name")?;
    let status = Command::new("rmmod")
        .arg(module)
        .status()
        .context("running rmmod")?;
    ensure!(status.success(), "rmmod {module}: {status}");
    Ok(())
}

/// The calling thread's CPU time (nanoseconds) and voluntary context
/// switches.
fn thread_usage() -> Result<(u64, u64)> {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_THREAD)?;
    let ns =
        |t: nix::sys::time::TimeVal| t.tv_sec() as u64 * 1_000_000_000 + t.tv_usec() as u64 * 1000;
    Ok((
        ns(usage.user_time()) + ns(usage.system_time()),
        usage.voluntary_context_switches() as u64,
    ))
}

/// Each peer against the `none` run just before each of its runs (so that
/// the machine's drift over the whole benchmark cancels out): the median
/// of those paired ratios, with their range, and the rest summed over its
/// runs.
fn report(runs: &[&Run]) -> String {
    let median = |v: &[f64]| rmemring_bench::median(v).unwrap_or(f64::NAN);
    let pairs = with_baseline(runs);
    let mut peers: Vec<EventsPeer> = Vec::new();
    for r in runs {
        if !peers.contains(&r.peer) {
            peers.push(r.peer);
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| peer | round trips/s | vs none (range) | added per switch (range) | events/s | dropped | consumer CPU/event | events per consumer sleep |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for peer in peers {
        let mine: Vec<&Run> = runs.iter().copied().filter(|r| r.peer == peer).collect();
        let trips: Vec<f64> = mine.iter().map(|r| r.trips_per_sec).collect();
        let (vs, added) = if peer.name() == NONE {
            let (lo, hi) = range(&trips);
            (
                format!("1 ({:.2}..{:.2})", lo / median(&trips), hi / median(&trips)),
                "-".to_owned(),
            )
        } else {
            let ratios: Vec<f64> = pairs
                .iter()
                .filter(|(r, _)| r.peer == peer)
                .map(|(r, none)| r.trips_per_sec / none.trips_per_sec)
                .collect();
            let added: Vec<f64> = pairs
                .iter()
                .filter(|(r, _)| r.peer == peer)
                .map(|(r, none)| added_per_switch(r, none))
                .collect();
            let (rlo, rhi) = range(&ratios);
            let (alo, ahi) = range(&added);
            (
                format!("{:.2} ({rlo:.2}..{rhi:.2})", median(&ratios)),
                format!("{:.0} ns ({alo:.0}..{ahi:.0})", median(&added)),
            )
        };
        let seconds: f64 = mine.iter().map(|r| r.seconds).sum();
        let events: u64 = mine.iter().map(|r| r.events).sum();
        let dropped: u64 = mine.iter().map(|r| r.dropped).sum();
        let cpu: u64 = mine.iter().map(|r| r.consumer_cpu_ns).sum();
        let sleeps: u64 = mine.iter().map(|r| r.consumer_sleeps).sum();
        let (per_event, per_sleep) = if events == 0 {
            ("-".to_owned(), "-".to_owned())
        } else {
            (
                format!("{:.0} ns", cpu as f64 / events as f64),
                format!("{:.1}", events as f64 / sleeps.max(1) as f64),
            )
        };
        let _ = writeln!(
            out,
            "| {peer} | {:.0} | {vs} | {added} | {:.0} | {dropped} | {per_event} | {per_sleep} |",
            median(&trips),
            events as f64 / seconds,
        );
    }
    out
}

#[cfg(feature = "bpf")]
mod bpf;

#[cfg(test)]
mod tests {
    use super::*;

    /// The peer named `name`.
    fn peer(name: &str) -> EventsPeer {
        peer::find_events(name).unwrap()
    }

    /// A run of `peer` in `round` at `ns` per round trip.
    fn timed(peer: &str, round: u32, ns: f64, dropped: u64) -> Run {
        Run {
            peer: self::peer(peer),
            load: Load::One,
            round: Some(round),
            warmup: Some(0.1),
            trips_per_sec: 1e9 / ns,
            events: 1000,
            dropped,
            seconds: 1.0,
            consumer_cpu_ns: 1000,
            consumer_sleeps: 10,
        }
    }

    #[test]
    fn the_real_event_target_is_judged_round_by_round() {
        // Round trips of 10 000 ns without a tracer; each peer's own
        // added cost per switch is half its excess.
        let rounds = |rmemring: [f64; 3], bpf: [f64; 3], bpf_dropped: u64| -> Vec<Run> {
            let mut runs = Vec::new();
            for k in 0..3 {
                let round = k as u32 + 1;
                runs.push(timed(NONE, round, 10_000.0, 0));
                runs.push(timed(RMEMRING, round, 10_000.0 + 2.0 * rmemring[k], 0));
                runs.push(timed(NONE, round, 10_000.0, 0));
                runs.push(timed("bpf", round, 10_000.0 + 2.0 * bpf[k], bpf_dropped));
            }
            runs
        };
        let judge = |runs: &[Run]| targets(&runs.iter().collect::<Vec<_>>());
        let met = judge(&rounds([400.0, 420.0, 410.0], [500.0, 430.0, 520.0], 0));
        assert!(met[0].contains("than bpf: met"), "{met:?}");
        assert!(
            met[0].contains("-110..-10 over 3 rounds, less in 3"),
            "{met:?}"
        );
        assert!(met[1].contains("drops none: met"), "{met:?}");
        // Less in two rounds of three: not resolved, though the medians
        // (410 against 500) would say met.
        let mixed = judge(&rounds([400.0, 520.0, 410.0], [500.0, 430.0, 520.0], 0));
        assert!(mixed[0].contains("than bpf: not resolved"), "{mixed:?}");
        let missed = judge(&rounds([600.0, 620.0, 610.0], [500.0, 430.0, 520.0], 5));
        assert!(missed[0].contains("than bpf: MISSED"), "{missed:?}");
        // BPF dropped: no drop target against it.
        assert_eq!(missed.len(), 1, "{missed:?}");
    }

    #[test]
    fn runs_survive_json() {
        let run = Run {
            peer: peer("bpf"),
            load: Load::Both,
            round: Some(2),
            warmup: Some(0.25),
            trips_per_sec: 13127.5,
            events: 26482,
            dropped: 3,
            seconds: 1.25,
            consumer_cpu_ns: 59_000_000,
            consumer_sleeps: 74,
        };
        let line = crate::bench::row::json(run.to_json(Strategy::Woken));
        assert_eq!(line["bench"], "events");
        let (strategy, back) = Run::from_json(&line).unwrap();
        assert_eq!(strategy, Strategy::Woken);
        assert_eq!(format!("{back:?}"), format!("{run:?}"));
        // A line from before `--load`: the load was on one CPU; from
        // before rounds and `--warmup`: neither.
        let mut old = line.clone();
        for key in ["load", "round", "warmup_seconds"] {
            old.as_object_mut().unwrap().remove(key);
        }
        let (_, old) = Run::from_json(&old).unwrap();
        assert_eq!((old.load, old.round, old.warmup), (Load::One, None, None));
        let text = tables(&[(Strategy::Woken, old)]);
        assert!(text.contains("predate `--warmup`"), "{text}");
        let text = tables(&[(Strategy::Woken, back)]);
        assert!(
            text.contains("in the same one of 2 rounds")
                && text.contains("unmeasured for 250.0 ms"),
            "{text}"
        );
    }

    /// The measured window opens once the consumer has read what the
    /// warm-up wrote, whatever its strategy: events written before count
    /// as warm-up even where nothing reads them until then (deferred).
    #[test]
    fn the_window_opens_after_the_warm_up_is_read() {
        use std::sync::atomic::AtomicU64;
        // A peer that has `written` events waiting; each step reads them.
        let written = AtomicU64::new(0);
        let stop = Stops::default();
        let consumer = || -> Result<Consumed> {
            let consumed = RefCell::new(Consumed::default());
            let step = |_wait: bool| {
                for _ in 0..written.swap(0, Ordering::SeqCst) {
                    consumed.borrow_mut().event(0, 1, 1);
                }
                Ok(())
            };
            drive(Strategy::Deferred, &stop, &consumed, step)?;
            // What is left, read after the end (as every peer does).
            step(false)?;
            Ok(consumed.into_inner())
        };
        let consumed = std::thread::scope(|scope| {
            let consumer = scope.spawn(consumer);
            written.fetch_add(5, Ordering::SeqCst);
            stop.warm.store(true, Ordering::Release);
            while !stop.opened.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(1));
            }
            written.fetch_add(7, Ordering::SeqCst);
            stop.end.store(true, Ordering::Relaxed);
            consumer.join().unwrap()
        })
        .unwrap();
        assert_eq!((consumed.events, consumed.measured_events()), (12, 7));
        assert_eq!(consumed.opened.map(|o| o.events), Some(5));
    }

    #[test]
    fn the_pid_chain_breaks_where_an_event_is_missing() {
        let mut consumed = Consumed::default();
        // CPU 0: 1 -> 2 -> 3; CPU 1 interleaved: 0 -> 5, then 7 -> 0
        // (the event taking 5 out is missing).
        consumed.event(0, 1, 2);
        consumed.event(1, 0, 5);
        consumed.event(0, 2, 3);
        consumed.event(1, 7, 0);
        assert_eq!((consumed.events, consumed.chain_breaks), (4, 1));
        assert!(consumed.check(0).is_err(), "a break with nothing dropped");
        consumed.dropped = 1;
        consumed.check(0).unwrap();
        // None of those switched to the load's threads.
        assert!(consumed.check(1).is_err());
    }
}
