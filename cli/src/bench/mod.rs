//! `rmemring bench`: kernel producer to user consumer, every path (on a
//! ring file, the user-space producer and consumer: `file.rs`).
//!
//! For each cell of a 2×2 workload (the producer fills the payload or
//! not; the consumer reads the headers only or every byte) and record
//! size, in one run, every peer of the one table of the kernel benchmarks' peers
//! ([`peer::PEERS`]) that has a [`Synthetic`](peer::Synthetic) part:
//! rmemring's zero-copy consumer, the same with its producer staging each
//! payload (`PRODUCER_STAGED`, as the BPF peers' producer does), the
//! driver's `read()`, the BPF ring buffer (with the `bpf` feature; see
//! `bpf.rs`) consumed by libbpf and by the benchmark's own batched
//! consumer, and `memcpy`, a reference for moving the bytes once;
//! `--list` prints what each does.
//!
//! Every peer in the same three modes: busy-poll, blocking (spin, yield,
//! then sleep: `crossbeam_utils::Backoff`, rmemring's `Wait::Backoff`) and
//! poll (sleep as soon as nothing is there). Each row has both sides'
//! costs: the consumer's CPU time and the producer kernel thread's
//! (`sides.rs`), and the ring's fill, which says which side bounds it.
//! Then the paced workload (latency below saturation) and an idle blocking
//! consumer's CPU use. The method is in `docs/bench/kernel.md`.

mod env;
pub(crate) mod events;
mod file;
pub(crate) mod kernel;
mod memcpy;
pub(crate) mod peer;
mod plot;
mod report;
mod row;
pub(crate) mod sides;
pub(crate) mod stall;

use std::fs;
use std::path::{
    Path,
    PathBuf, //
};
use std::time::Duration;

use anyhow::Context;
use clap::builder::{
    PossibleValuesParser,
    TypedValueParser as _, //
};
use clap::ValueEnum;
use indicatif::{
    ProgressBar,
    ProgressStyle, //
};
use nix::time::{
    clock_gettime,
    ClockId, //
};

use self::env::Env;
use self::peer::{
    Need,
    Setup,
    SyntheticPeer, //
};
use self::row::{
    Cell,
    IdleRow,
    Round,
    Row,
    Skip, //
};
use self::stall::Stalls;
use crate::args::{
    parse_duration,
    parse_size, //
};
use crate::fail;
use crate::snapshot::cache_name;
use crate::DeviceArg;

/// Benchmark the kernel-to-user paths: zero-copy, read() and BPF ring buffer
/// (on a ring file: the user-space producer and consumer).
///
/// The driver's producer runs flat out and waits for room when the ring is
/// full (the BPF peer's cannot: it drops), so records/s is what the slower
/// side allows; each row shows both sides' CPU time and the ring's fill,
/// which says which side that was. The workloads are two by two: the producer
/// fills every payload byte or only the first word (blank), and the
/// consumer reads the headers only or every byte. Every size and workload
/// is measured for every path in the same run; compare ratios between
/// paths, not absolute rates across machines. Prints a table; with --json,
/// JSON lines on stdout and the table on stderr.
///
/// Under QEMU TCG it runs itself again with
/// GLIBC_TUNABLES=glibc.cpu.hwcaps=-ERMS,-FSRM (unless GLIBC_TUNABLES sets
/// glibc.cpu.hwcaps already): TCG emulates glibc's `rep movsb` memcpy a
/// byte at a time, which would make the memcpy row a fact about QEMU.
///
/// On a ring file (`rmemring create`), no kernel: two user threads of this
/// process through the shared mapping, the crate's Producer writing the
/// test pattern and its zero-copy Consumer reading and verifying every
/// record (copied, in an overwrite-oldest ring), for --duration per size
/// after --warmup. Prints records/s, GB/s, records verified and lost (0 in
/// a drop-new ring, whose producer waits for room); --json, one line per
/// size. The other options are the device's. Other user-space rings
/// (rtrb, crossbeam) are compared in `cargo xtask bench --host`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    #[command(flatten)]
    ring: DeviceArg,
    /// Payload sizes, comma-separated (like 8,64,1K).
    #[arg(long, value_delimiter = ',', value_parser = parse_size,
          default_value = "8,64,256,1K,4K,16K,64K")]
    sizes: Vec<u32>,
    /// Measured time per path, size and workload (like 1s or 500ms).
    #[arg(long, short, default_value = "1s", value_parser = parse_duration)]
    duration: Duration,
    /// Unmeasured time before each measurement.
    #[arg(long, default_value = "250ms", value_parser = parse_duration)]
    warmup: Duration,
    /// Paths to measure.
    #[arg(
        long,
        value_delimiter = ',',
        value_parser = PossibleValuesParser::new(peer::values(peer::synthetic()))
            .try_map(|name| peer::find(&name).ok_or("no such peer")),
        default_values = peer::names()
    )]
    impls: Vec<SyntheticPeer>,
    /// Consumer modes to measure (memcpy has none).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "busy-poll,blocking,poll"
    )]
    modes: Vec<Mode>,
    /// Workloads to measure.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "blank-headers,filled-headers,blank-bytes,filled-bytes,paced"
    )]
    workloads: Vec<Workload>,
    /// Records per second of the paced workload.
    #[arg(long, default_value = "20k", value_parser = crate::args::parse_count)]
    paced_rate: u64,
    /// Records per producer publication; 0 picks min(64, 64 KiB / record).
    #[arg(long, default_value_t = 0)]
    batch: u32,
    /// The read() path's buffer.
    #[arg(long, default_value = "1M", value_parser = parse_size)]
    read_buffer: u32,
    /// Measure everything N times, interleaved: each round's row is kept
    /// (with --json, a `kernel-round` line), the tables show each
    /// measurement's median round, and rmemring's ratios over the others
    /// are paired by round (its round k over the peer's round k).
    #[arg(long, value_name = "N", default_value_t = 1)]
    repeat: u32,
    /// Skip the idle-consumer measurement.
    #[arg(long)]
    no_idle: bool,
    /// JSON lines on stdout (one per measurement); the table goes to stderr.
    #[arg(long)]
    json: bool,
    /// Also write a chart of records/s against record size: SVG or PNG, as
    /// FILE's extension (.svg, .png) says.
    #[arg(long, value_name = "FILE", value_parser = parse_plot)]
    plot: Option<PathBuf>,
    /// Print the tables as Markdown.
    #[arg(long)]
    markdown: bool,
    /// Measure nothing: read the JSON lines of an earlier run (`-` for
    /// stdin) and print its tables and chart.
    #[arg(long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Print the paths of --impls (the default ones), what each side of
    /// each does per record and what it needs, and measure nothing.
    #[arg(long)]
    list: bool,
}

/// A `--plot` file: checked before the run, not after it.
fn parse_plot(s: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(s);
    plot::Format::of(&path)?;
    Ok(path)
}

/// How a consumer waits for records; every path offers each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Mode {
    /// Never sleep.
    BusyPoll,
    /// Spin briefly, yield, then sleep (`crossbeam_utils::Backoff`, as in
    /// rmemring's default `Wait::Backoff`).
    Blocking,
    /// Sleep as soon as nothing is there (rmemring's `Wait::Spin(0)`, a
    /// blocking read(), libbpf's `ring_buffer__poll`).
    Poll,
}

impl Mode {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Mode::BusyPoll => "busy-poll",
            Mode::Blocking => "blocking",
            Mode::Poll => "poll",
        }
    }
}

/// What the producer writes and what the consumer reads: a 2×2 of the
/// payload filled or blank (only its first word written, as if the rest had
/// been placed by DMA) and the consumer reading the headers only or every
/// byte; and the paced workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Workload {
    /// Blank payloads; the consumer checks each header and sequence number.
    #[value(alias = "headers")]
    BlankHeaders,
    /// Every payload byte filled; the consumer checks the headers only.
    FilledHeaders,
    /// Blank payloads; the consumer reads every byte (the same pass as the
    /// verification, its result ignored but for the first word).
    BlankBytes,
    /// Every payload byte filled; the consumer reads and verifies every
    /// byte.
    #[value(alias = "verify")]
    FilledBytes,
    /// Latency below saturation: 64 B records at --paced-rate, published
    /// one at a time, headers checked.
    Paced,
}

impl Workload {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Workload::BlankHeaders => "blank-headers",
            Workload::FilledHeaders => "filled-headers",
            Workload::BlankBytes => "blank-bytes",
            Workload::FilledBytes => "filled-bytes",
            Workload::Paced => "paced",
        }
    }

    /// Whether the producer fills every payload byte (`PATTERN_SEQ`) or
    /// only the first word (`PATTERN_NONE`).
    pub(crate) fn filled(self) -> bool {
        matches!(self, Workload::FilledHeaders | Workload::FilledBytes)
    }

    /// Whether the consumer reads every payload byte.
    pub(crate) fn reads_bytes(self) -> bool {
        matches!(self, Workload::BlankBytes | Workload::FilledBytes)
    }
}

/// How long the scheduling-stall probe spins, before and after the run.
const STALL_PROBE: Duration = Duration::from_millis(500);

/// The record size of the paced workload.
pub(crate) const PACED_SIZE: u32 = 64;

/// How long each measurement runs, and the knobs every path shares.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timing {
    pub(crate) warmup: Duration,
    pub(crate) duration: Duration,
    pub(crate) batch: u32,
    pub(crate) read_buffer: usize,
    pub(crate) paced_rate: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            warmup: Duration::from_millis(250),
            duration: Duration::from_secs(1),
            batch: 0,
            read_buffer: 1 << 20,
            paced_rate: 20_000,
        }
    }
}

/// Everything a run produced.
#[derive(Debug, Default)]
pub(crate) struct Results {
    pub(crate) env: Env,
    /// Each measurement's median round (all of it without `--repeat`).
    pub(crate) rows: Vec<Row>,
    /// With `--repeat N` (N > 1), every round of every measurement: the
    /// ratios are paired by round (`report.rs`).
    pub(crate) rounds: Vec<Round>,
    pub(crate) idle: Vec<IdleRow>,
    pub(crate) skips: Vec<Skip>,
    /// Before and after the measurements: how much a spinning thread was
    /// kept off its CPU.
    pub(crate) stalls: Vec<Stalls>,
}

impl Results {
    /// Reads the JSON lines of a run; other lines are ignored.
    fn load(path: &Path) -> anyhow::Result<Self> {
        let text = if path == Path::new("-") {
            std::io::read_to_string(std::io::stdin())?
        } else {
            fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        };
        let mut results = Results::default();
        for line in text.lines() {
            let Ok(value) = serde_json::from_str::<serde_json::Value>(line.trim()) else {
                continue;
            };
            match value["bench"].as_str() {
                Some("kernel") => results.rows.extend(Row::from_json(&value)),
                Some("kernel-round") => results.rounds.extend(Round::from_json(&value)),
                Some("kernel-idle") => results.idle.extend(IdleRow::from_json(&value)),
                Some("kernel-skip") => results.skips.extend(Skip::from_json(&value)),
                Some("kernel-stall") => results.stalls.extend(Stalls::from_json(&value)),
                Some("kernel-env") => results.env = Env::from_json(&value).unwrap_or_default(),
                _ => {}
            }
        }
        if results.rows.is_empty() {
            return Err(fail::usage(format!(
                "{}: no benchmark results (`{{\"bench\":\"kernel\",...}}` lines)",
                path.display()
            )));
        }
        Ok(results)
    }
}

/// CPU time (user + system) of the calling thread, in nanoseconds
/// (`CLOCK_THREAD_CPUTIME_ID`).
pub(crate) fn thread_cpu() -> Duration {
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).map_or(Duration::ZERO, Duration::from)
}

/// One measurement to make.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Job {
    pub(crate) peer: SyntheticPeer,
    pub(crate) mode: Mode,
    pub(crate) workload: Workload,
    pub(crate) size: u32,
}

/// The measurements of a run, in order: per workload, size and mode, every
/// path, so that the series one ratio compares (rmemring and a peer in the
/// same mode) run one after the other in each round; then, per workload
/// and size, the peers without modes (the memcpy reference), once.
fn plan(args: &Args) -> Vec<Job> {
    let mut jobs = Vec::new();
    for &workload in &args.workloads {
        let sizes = if workload == Workload::Paced {
            vec![PACED_SIZE]
        } else {
            args.sizes.clone()
        };
        for &size in &sizes {
            let peers = || args.impls.iter().copied().filter(|p| p.runs(workload));
            let job = |peer, mode| Job {
                peer,
                mode,
                workload,
                size,
            };
            for &mode in &args.modes {
                jobs.extend(peers().filter(|p| p.modes).map(|p| job(p, mode)));
            }
            jobs.extend(peers().filter(|p| !p.modes).map(|p| job(p, Mode::BusyPoll)));
        }
    }
    jobs
}

/// The order of `jobs` in `round`: each cell's paths (consecutive jobs of
/// one workload, size and mode) in table order in odd rounds and reversed
/// in even ones, so that over the rounds each runs before its rivals as
/// well as after them and an order effect (a warm cache, the host's
/// scheduling) does not always favour the same side of a paired ratio.
fn round_order(jobs: &[Job], round: u32) -> Vec<usize> {
    let cell = |j: &Job| (j.workload, j.size, j.mode);
    let mut order = Vec::with_capacity(jobs.len());
    let mut start = 0;
    while let Some(first) = jobs.get(start) {
        let end = start
            + jobs[start..]
                .iter()
                .take_while(|j| cell(j) == cell(first))
                .count();
        if round % 2 == 0 {
            order.extend((start..end).rev());
        } else {
            order.extend(start..end);
        }
        start = end;
    }
    order
}

pub(crate) fn run(args: &Args) -> anyhow::Result<()> {
    if args.list {
        out!("{}", peer::list(args.impls.iter().copied()))?;
        return Ok(());
    }
    if let Some(input) = &args.input {
        let results = Results::load(input)?;
        return output(args, &results);
    }
    if args.impls.iter().any(|p| p.name() == peer::MEMCPY)
        && cfg!(target_arch = "x86_64")
        && env::under_tcg()
    {
        rerun_with_tcg_tunables()?;
    }
    let device = &args.ring.device;
    let region = crate::snapshot::observe(device)?;
    if region.backend() != rmemring::Backend::Device {
        drop(region);
        return file::run(args, device);
    }
    let layout = *region.layout();
    drop(region);
    if let Some(&size) = args.sizes.iter().find(|&&s| s > layout.max_payload) {
        return Err(fail::usage(format!(
            "--sizes: {size} exceeds the ring's largest payload, {} bytes",
            layout.max_payload
        )));
    }
    if args.sizes.is_empty() {
        return Err(fail::usage("--sizes: no sizes"));
    }
    let timing = Timing {
        warmup: args.warmup,
        duration: args.duration,
        batch: args.batch,
        read_buffer: args.read_buffer as usize,
        paced_rate: args.paced_rate,
    };
    let mut results = Results {
        env: Env::probe(layout.data_size, cache_name(&layout)),
        ..Results::default()
    };
    emit(args, &results.env.to_json())?;
    if !args.json {
        for line in results.env.describe() {
            crate::out::print_stderr(&format!("{line}\n"))?;
        }
    }

    let mut jobs = plan(args);
    if !cfg!(feature = "bpf") {
        // One line for each whole peer, not one per measurement.
        for &peer in args.impls.iter().filter(|p| p.needs(Need::Bpf)) {
            let skip = Skip {
                imp: peer.name().to_owned(),
                cell: None,
                reason: peer::BPF_NOT_BUILT_IN.to_owned(),
            };
            eprintln!(
                "rmemring: {}: {}; skipping it",
                peer.name(),
                peer::BPF_NOT_BUILT_IN
            );
            emit(args, &skip.to_json())?;
            results.skips.push(skip);
        }
        jobs.retain(|j| !j.peer.needs(Need::Bpf));
    }
    let setup = Setup {
        device,
        timing,
        data_size: layout.data_size,
    };
    let idle_jobs = idle_plan(args);
    let rounds = args.repeat.max(1);
    let bar = ProgressBar::new((jobs.len() * rounds as usize + idle_jobs.len()) as u64);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} {elapsed_precise} [{bar:30}] {pos}/{len} {msg} (about {eta} left)",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    // Every job once per round, so that a spell of interference (other
    // work on the machine, or the host of a VM) hits one sample of many
    // jobs rather than every sample of one.
    let stalls = Stalls::measure(STALL_PROBE);
    emit(args, &stalls.to_json())?;
    results.stalls.push(stalls);
    let mut samples: Vec<Vec<Row>> = vec![Vec::new(); jobs.len()];
    for round in 1..=rounds {
        for i in round_order(&jobs, round) {
            let (job, samples) = (&jobs[i], &mut samples[i]);
            bar.set_message(format!(
                "round {round}/{rounds}: {} {} {} {} B",
                job.workload.name(),
                job.peer.name(),
                job.peer.mode_name(job.mode),
                job.size
            ));
            let row = match (job.peer.run)(&setup, job) {
                Ok(row) => Some(row),
                // A BPF peer's failure fails this measurement only,
                // reported; the peer's other sizes and modes still run.
                Err(e) if job.peer.needs(Need::Bpf) => {
                    let skip = Skip {
                        imp: job.peer.name().to_owned(),
                        cell: Some(Cell {
                            mode: job.mode.name().to_owned(),
                            workload: job.workload.name().to_owned(),
                            size: job.size,
                            round,
                            rounds,
                        }),
                        reason: format!("{e:#}"),
                    };
                    bar.suspend(|| eprintln!("rmemring: {}; left out", skip.describe()));
                    emit(args, &skip.to_json())?;
                    results.skips.push(skip);
                    None
                }
                Err(e) => return Err(e),
            };
            if let Some(row) = &row {
                if rounds > 1 {
                    let round = Round {
                        round,
                        rounds,
                        row: row.clone(),
                    };
                    emit(args, &round.to_json())?;
                    results.rounds.push(round);
                }
            }
            samples.extend(row);
            bar.inc(1);
        }
    }
    for samples in samples {
        if let Some(row) = row::median(samples) {
            emit(args, &row.to_json())?;
            results.rows.push(row);
        }
    }
    for (peer, mode) in idle_jobs {
        bar.set_message(format!("idle {} {}", peer.name(), mode.name()));
        let row = kernel::idle(
            device,
            peer,
            mode,
            args.duration.max(Duration::from_secs(1)),
        )?;
        emit(args, &row.to_json())?;
        results.idle.push(row);
        bar.inc(1);
    }
    let stalls = Stalls::measure(STALL_PROBE);
    emit(args, &stalls.to_json())?;
    results.stalls.push(stalls);
    bar.finish_and_clear();
    output(args, &results)?;
    // Every round's, not only the median rounds' the tables show.
    let bad: u64 = results
        .rows
        .iter()
        .map(|r| report::over_every_round(&results, r).1)
        .sum();
    if bad != 0 {
        return Err(fail::with_status(
            fail::DATA,
            format!("{bad} records failed the consumers' checks (see the `bad` fields)"),
        ));
    }
    Ok(())
}

/// The idle measurements: each blocking consumer that sleeps, in the
/// modes its peer's entry names.
fn idle_plan(args: &Args) -> Vec<(SyntheticPeer, Mode)> {
    if args.no_idle {
        return Vec::new();
    }
    let mut jobs = Vec::new();
    for &mode in &args.modes {
        for &peer in &args.impls {
            if peer.idle.contains(&mode) {
                jobs.push((peer, mode));
            }
        }
    }
    jobs
}

/// A JSON line on stdout, with --json. Its error (a closed pipe) ends the
/// run.
fn emit(args: &Args, line: &impl serde::Serialize) -> std::io::Result<()> {
    if args.json {
        crate::out::json_line(line)?;
    }
    Ok(())
}

/// The tables (stdout, or stderr with --json) and the chart.
fn output(args: &Args, results: &Results) -> anyhow::Result<()> {
    let text = if args.markdown {
        report::markdown(results)
    } else {
        report::text(results)
    };
    if args.json && args.input.is_none() {
        crate::out::print_stderr(&text)?;
    } else {
        out!("{text}")?;
    }
    if let Some(path) = &args.plot {
        plot::write(results, path)
            .with_context(|| format!("writing the chart {}", path.display()))?;
    }
    Ok(())
}

/// The glibc tunables that keep `memcpy` off `rep movsb` (ERMS, FSRM).
pub(crate) const TCG_HWCAPS: &str = "glibc.cpu.hwcaps=-ERMS,-FSRM";

/// `GLIBC_TUNABLES` with [`TCG_HWCAPS`] added, or `None` where it already
/// sets `glibc.cpu.hwcaps` (the user's choice stands).
fn tcg_tunables(current: Option<&str>) -> Option<String> {
    match current {
        Some(t) if t.split(':').any(|t| t.starts_with("glibc.cpu.hwcaps=")) => None,
        Some(t) if !t.is_empty() => Some(format!("{t}:{TCG_HWCAPS}")),
        _ => Some(TCG_HWCAPS.to_owned()),
    }
}

/// Under QEMU TCG, glibc's `rep movsb` memcpy (which it picks on a CPU
/// with ERMS or FSRM) is emulated a byte at a time, so the memcpy row
/// would measure QEMU, not the copy; glibc's vector loop is what the
/// emulated core can copy (`docs/bench/kernel.md`). glibc reads its
/// tunables when the process starts, so this runs the command again with
/// them set, unless `GLIBC_TUNABLES` already chooses `glibc.cpu.hwcaps`.
/// The environment lines record the tunables either way.
fn rerun_with_tcg_tunables() -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt as _;

    let current = std::env::var("GLIBC_TUNABLES").ok();
    let Some(tunables) = tcg_tunables(current.as_deref()) else {
        return Ok(());
    };
    eprintln!(
        "rmemring: QEMU TCG emulates glibc's `rep movsb` memcpy a byte at a time; running again \
         with GLIBC_TUNABLES={tunables}, so that the memcpy row measures a copy loop \
         (set glibc.cpu.hwcaps yourself to choose otherwise)"
    );
    let mut argv = std::env::args_os();
    let arg0 = argv.next().unwrap_or_else(|| "rmemring".into());
    let err = std::process::Command::new("/proc/self/exe")
        .arg0(arg0)
        .args(argv)
        .env("GLIBC_TUNABLES", tunables)
        .exec();
    Err(anyhow::Error::new(err).context("running again with GLIBC_TUNABLES (/proc/self/exe)"))
}

/// The latency histogram of every path: 1 ns to an hour, two significant
/// digits (a value is recorded within 1%).
pub(crate) fn latency_histogram() -> anyhow::Result<hdrhistogram::Histogram<u64>> {
    Ok(hdrhistogram::Histogram::new_with_bounds(
        1,
        3_600_000_000_000,
        2,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `rmemring bench ARGS`'s arguments.
    fn args(line: &[&str]) -> Args {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: Args,
        }
        <Cli as clap::Parser>::try_parse_from(std::iter::once("bench").chain(line.iter().copied()))
            .unwrap()
            .args
    }

    /// Within a round, the series a ratio compares, rmemring and each peer
    /// in one mode, cell and size, are measured one after the other, in
    /// turn first and last; the memcpy reference once per cell; every measurement
    /// once.
    #[test]
    fn the_plan_puts_the_series_of_one_ratio_side_by_side() {
        let jobs = plan(&args(&[
            "--sizes",
            "64,4K",
            "--workloads",
            "blank-headers,filled-bytes",
            "--impls",
            "rmemring,read,memcpy",
            "--modes",
            "busy-poll,poll",
        ]));
        let names: Vec<String> = jobs
            .iter()
            .map(|j| {
                format!(
                    "{} {} {} {}",
                    j.workload.name(),
                    j.size,
                    j.mode.name(),
                    j.peer.name()
                )
            })
            .collect();
        let at = |w: &str, size: u32, mode: &str| -> Vec<String> {
            ["rmemring", "read"]
                .map(|p| format!("{w} {size} {mode} {p}"))
                .to_vec()
        };
        assert_eq!(names[..2], at("blank-headers", 64, "busy-poll"));
        assert_eq!(names[2..4], at("blank-headers", 64, "poll"));
        assert_eq!(names[4..6], at("blank-headers", 4096, "busy-poll"));
        // memcpy runs where every byte is read, once, after the modes.
        assert_eq!(names[10..12], at("filled-bytes", 64, "poll"));
        assert_eq!(names[12], "filled-bytes 64 busy-poll memcpy");
        assert_eq!(jobs.len(), 2 * 2 * 2 * 2 + 2);
        // Odd rounds in this order; even ones with each cell's paths
        // reversed, every job still once, each pair still side by side.
        let n = jobs.len();
        assert_eq!(round_order(&jobs, 1), (0..n).collect::<Vec<_>>());
        assert_eq!(round_order(&jobs, 3), (0..n).collect::<Vec<_>>());
        let even = round_order(&jobs, 2);
        assert_eq!(even[..4], [1, 0, 3, 2]);
        assert_eq!(even[12], 12);
        let mut sorted = even.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..n).collect::<Vec<_>>());
    }

    #[test]
    fn tcg_tunables_keep_the_users_choice() {
        assert_eq!(tcg_tunables(None).as_deref(), Some(TCG_HWCAPS));
        assert_eq!(tcg_tunables(Some("")).as_deref(), Some(TCG_HWCAPS));
        assert_eq!(
            tcg_tunables(Some("glibc.malloc.check=3")).as_deref(),
            Some("glibc.malloc.check=3:glibc.cpu.hwcaps=-ERMS,-FSRM")
        );
        assert_eq!(tcg_tunables(Some(TCG_HWCAPS)), None);
        assert_eq!(tcg_tunables(Some("a=1:glibc.cpu.hwcaps=-AVX2")), None);
    }
}
