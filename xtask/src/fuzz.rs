//! `cargo xtask fuzz`: builds the libFuzzer targets of `fuzz/` on stable
//! Rust and runs each on a copy of its checked-in corpus.
//!
//! libFuzzer's coverage instrumentation needs no nightly: the flags below
//! are stable (they are what `cargo fuzz build --sanitizer none` passes),
//! and `libfuzzer-sys` builds libFuzzer itself with the C++ compiler. So
//! the targets are built here directly, into the cache's `fuzz-target/`,
//! and `cargo fuzz` is not needed (it works too: see `fuzz/README.md`). Without
//! AddressSanitizer, the harness's guard pages make out-of-bounds accesses
//! crash.
//!
//! Each run works on a copy of `fuzz/corpus/<target>/`, so the checked-in
//! corpus changes only with `--update-corpus`, which replaces it (but its
//! seeds) with the fewest inputs covering every edge that it and the run
//! covered (libFuzzer's `-merge=1`). A crash fails the task and leaves its
//! input in `target/fuzz/artifacts/<target>/`.

use std::fs;
use std::path::{
    Path,
    PathBuf, //
};
use std::time::Instant;

use anyhow::{
    bail,
    Context,
    Result, //
};
use xshell::{
    cmd,
    Shell, //
};

use crate::cache;
use crate::exec::{
    tail,
    Log, //
};
use crate::flags;

/// The fuzz targets, `fuzz/fuzz_targets/<name>.rs`.
pub const TARGETS: [&str; 2] = ["consumer", "producer"];

/// Seconds per target in `cargo xtask test`. A build with nothing cached
/// took 95-120 s at a load average of 7 on two cores (45 s nearly idle),
/// three quarters of it libFuzzer's C++ (which at `-O0` builds in half the
/// time and runs three to four times slower); with the cache's target
/// directory a new checkout rebuilds only the fuzz crates, and the check
/// takes about 40 s.
pub const TEST_SECONDS: u64 = 15;

/// libFuzzer's instrumentation: edge counters, their PC table, comparison
/// tracing and stack depth, all stable `rustc` flags; `--cfg fuzzing` as
/// cargo-fuzz sets it.
const RUSTFLAGS: &[&str] = &[
    "-Cpasses=sancov-module",
    "-Cllvm-args=-sanitizer-coverage-level=4",
    "-Cllvm-args=-sanitizer-coverage-inline-8bit-counters",
    "-Cllvm-args=-sanitizer-coverage-pc-table",
    "-Cllvm-args=-sanitizer-coverage-trace-compares",
    "-Cllvm-args=-sanitizer-coverage-stack-depth",
    "--cfg",
    "fuzzing",
];

/// Where runs keep their corpus copies and crash inputs, in the checkout.
const RUN_DIR: &str = "target/fuzz";

/// The target directory of the instrumented build: in the cache, shared by
/// every fuzz task and check of every checkout on the machine. A fresh
/// clone (CI's) then builds only the fuzz crate itself, not libFuzzer's
/// C++, which is three quarters of a cold build.
fn target_dir() -> Result<PathBuf> {
    Ok(cache::root()?.join("fuzz-target"))
}

impl flags::Fuzz {
    pub fn run(self, sh: &Shell) -> Result<std::process::ExitCode> {
        let targets = selected(&self.target)?;
        let log = Log::terminal();
        let bins = build(sh, &log)?;
        let mut reports = Vec::new();
        for target in targets {
            let report = run(sh, &log, &bins, target, self.seconds, self.update_corpus)?;
            eprintln!("{report}");
            reports.push(report);
        }
        println!();
        for report in &reports {
            println!("{report}");
        }
        Ok(std::process::ExitCode::SUCCESS)
    }
}

/// The targets `--target` names (all when it names none).
fn selected(names: &[String]) -> Result<Vec<&'static str>> {
    if names.is_empty() {
        return Ok(TARGETS.to_vec());
    }
    names
        .iter()
        .map(|name| {
            TARGETS
                .iter()
                .find(|t| *t == name)
                .copied()
                .with_context(|| format!("no fuzz target {name:?}; there are {TARGETS:?}"))
        })
        .collect()
}

/// `cargo` with the instrumentation flags, for the fuzz workspace.
/// `CARGO_ENCODED_RUSTFLAGS` replaces any `RUSTFLAGS` of the caller's.
fn fuzz_cargo<'a>(sh: &'a Shell, subcommand: &str, host: &str) -> Result<xshell::Cmd<'a>> {
    let flags = RUSTFLAGS.join("\x1f");
    let dir = target_dir()?;
    Ok(cmd!(
        sh,
        "cargo {subcommand} --release --manifest-path fuzz/Cargo.toml --target {host} --target-dir {dir}"
    )
    .env("CARGO_ENCODED_RUSTFLAGS", flags)
    .env_remove("RUSTFLAGS"))
}

/// The host's target triple. Naming it makes cargo keep the flags off
/// build scripts and proc macros, which must not be instrumented.
fn host_triple(sh: &Shell) -> Result<String> {
    let version = cmd!(sh, "rustc -vV").quiet().read()?;
    version
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(str::to_owned)
        .context("`rustc -vV` names no host")
}

/// Clippy on the fuzz workspace, with the same flags and target directory
/// as the build, so the two share libFuzzer's build.
pub fn clippy(sh: &Shell, log: &Log) -> Result<()> {
    let host = host_triple(sh)?;
    let cmd = fuzz_cargo(sh, "clippy", &host)?.args(["--all-targets", "--", "-D", "warnings"]);
    log.run(cmd)?;
    Ok(())
}

/// Builds every target; returns the directory of the binaries.
pub fn build(sh: &Shell, log: &Log) -> Result<PathBuf> {
    let host = host_triple(sh)?;
    log.run(fuzz_cargo(sh, "build", &host)?.arg("--bins"))?;
    Ok(target_dir()?.join(host).join("release"))
}

/// What one run of a target did, from libFuzzer's own figures.
#[derive(Debug, Default, PartialEq)]
pub struct Report {
    pub target: String,
    pub seconds: u64,
    /// Inputs executed (`stat::number_of_executed_units`).
    pub runs: u64,
    /// `stat::average_exec_per_sec`.
    pub exec_per_s: u64,
    /// Edges covered (`cov:` of the last status line).
    pub cov: u64,
    /// Features covered: edges, edge counters, comparisons (`ft:`).
    pub ft: u64,
    /// Inputs in the corpus at the end (`corp:`), and their bytes.
    pub corpus: u64,
    pub corpus_bytes: String,
    /// Inputs the run added to the corpus (`stat::new_units_added`).
    pub new_units: u64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "fuzz {}: {} runs in {} s ({} exec/s), cov: {} ft: {}, corpus {} inputs ({}), {} new",
            self.target,
            self.runs,
            self.seconds,
            self.exec_per_s,
            self.cov,
            self.ft,
            self.corpus,
            self.corpus_bytes,
            self.new_units
        )
    }
}

/// Runs `target` for `seconds` on a copy of its corpus; fails on a crash,
/// naming the input that caused it.
pub fn run(
    sh: &Shell,
    log: &Log,
    bins: &Path,
    target: &str,
    seconds: u64,
    update_corpus: bool,
) -> Result<Report> {
    let root = crate::project_root();
    let corpus = root.join("fuzz/corpus").join(target);
    let work = root.join(RUN_DIR).join("corpus").join(target);
    let artifacts = root.join(RUN_DIR).join("artifacts").join(target);
    if work.exists() {
        fs::remove_dir_all(&work).with_context(|| format!("removing {}", work.display()))?;
    }
    fs::create_dir_all(&work)?;
    fs::create_dir_all(&artifacts)?;
    let mut seeds = 0;
    if corpus.exists() {
        for entry in fs::read_dir(&corpus)? {
            let entry = entry?;
            fs::copy(entry.path(), work.join(entry.file_name()))?;
            seeds += 1;
        }
    }
    if seeds == 0 {
        bail!("{} holds no inputs", corpus.display());
    }

    let bin = bins.join(target);
    let prefix = format!("-artifact_prefix={}/", artifacts.display());
    let time = format!("-max_total_time={seconds}");
    let cmd = cmd!(
        sh,
        "{bin} {work} {time} -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 {prefix}"
    );
    let shown = cmd.to_string();
    let start = Instant::now();
    let (status, lines) = log.run_status(cmd, &shown)?;
    if !status.success() {
        let input = lines
            .iter()
            .find_map(|line| line.split("Test unit written to ").nth(1))
            .unwrap_or("(no input saved)");
        bail!(
            "fuzz target {target} failed ({status}) on {input}\n\
             reproduce: {} {input}\n{}",
            bin.display(),
            tail(&lines, 30).join("\n")
        );
    }
    let mut report = parse(&lines).with_context(|| format!("no statistics from `{shown}`"))?;
    report.target = target.to_owned();
    report.seconds = start.elapsed().as_secs();

    if update_corpus {
        update(sh, log, &bin, &corpus, &work)?;
    }
    Ok(report)
}

/// Replaces the checked-in corpus (but its seeds) with the fewest inputs,
/// smallest first, of it and `work` that cover every edge either covers.
/// Edges, not libFuzzer's features (which count hits too): that keeps a
/// few hundred inputs out of thousands, and a run regains the rest in
/// seconds.
fn update(sh: &Shell, log: &Log, bin: &Path, corpus: &Path, work: &Path) -> Result<()> {
    let merged = work.with_extension("merged");
    if merged.exists() {
        fs::remove_dir_all(&merged)?;
    }
    fs::create_dir_all(&merged)?;
    log.run(cmd!(
        sh,
        "{bin} -merge=1 -use_counters=0 {merged} {corpus} {work}"
    ))?;
    for entry in fs::read_dir(corpus)? {
        let entry = entry?;
        if !is_seed(&entry.file_name()) {
            fs::remove_file(entry.path())?;
        }
    }
    for entry in fs::read_dir(&merged)? {
        let entry = entry?;
        let target = corpus.join(entry.file_name());
        if !target.exists() {
            fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// Seeds (`fuzz/src/seeds.rs`) stay in the corpus whatever they cover.
fn is_seed(name: &std::ffi::OsStr) -> bool {
    name.to_string_lossy().starts_with("seed-")
}

/// Reads libFuzzer's figures: the last status line (`#N ... cov: C ft: F
/// corp: U/Sb ...`) and the `stat::` lines of `-print_final_stats=1`.
fn parse(lines: &[String]) -> Option<Report> {
    let mut report = Report::default();
    let status = lines
        .iter()
        .rev()
        .find(|line| line.starts_with('#') && line.contains(" cov: "))?;
    let mut words = status.split_whitespace();
    while let Some(word) = words.next() {
        match word {
            "cov:" => report.cov = words.next()?.parse().ok()?,
            "ft:" => report.ft = words.next()?.parse().ok()?,
            "corp:" => {
                let (units, bytes) = words.next()?.split_once('/')?;
                report.corpus = units.parse().ok()?;
                report.corpus_bytes = bytes.to_owned();
            }
            _ => {}
        }
    }
    let stat = |name: &str| {
        lines
            .iter()
            .find_map(|line| line.strip_prefix(&format!("stat::{name}:")))
            .and_then(|value| value.trim().parse().ok())
    };
    report.runs = stat("number_of_executed_units")?;
    report.exec_per_s = stat("average_exec_per_sec")?;
    report.new_units = stat("new_units_added")?;
    Some(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libfuzzer_figures_are_read() {
        let lines: Vec<String> = "\
INFO: Running with entropic power schedule (0xFF, 100).
#2\tINITED cov: 12 ft: 13 corp: 1/1b exec/s: 0 rss: 30Mb
#65536\tpulse  cov: 250 ft: 900 corp: 40/2000b lim: 600 exec/s: 21845 rss: 40Mb
#131072\tDONE   cov: 260 ft: 950 corp: 45/2345b lim: 650 exec/s: 43690 rss: 41Mb
Done 131072 runs in 3 second(s)
stat::number_of_executed_units: 131072
stat::average_exec_per_sec:     43690
stat::new_units_added:          44
stat::slowest_unit_time_sec:    0
stat::peak_rss_mb:              41"
            .lines()
            .map(str::to_owned)
            .collect();
        let report = parse(&lines).unwrap();
        assert_eq!(
            report,
            Report {
                target: String::new(),
                seconds: 0,
                runs: 131072,
                exec_per_s: 43690,
                cov: 260,
                ft: 950,
                corpus: 45,
                corpus_bytes: "2345b".into(),
                new_units: 44,
            }
        );
        // Without the final statistics there is nothing to report.
        assert_eq!(parse(&lines[..4]), None);
    }

    #[test]
    fn targets_are_named() {
        assert_eq!(selected(&[]).unwrap(), TARGETS);
        assert_eq!(selected(&["producer".into()]).unwrap(), ["producer"]);
        assert!(selected(&["nope".into()]).is_err());
        let root = crate::project_root();
        for target in TARGETS {
            assert!(root.join(format!("fuzz/fuzz_targets/{target}.rs")).exists());
        }
    }
}
