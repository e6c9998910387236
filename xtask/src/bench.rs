//! `cargo xtask bench`: the kernel benchmark in the reference VM, with its
//! results written to `docs/bench/`; `--host` runs the host ring benchmark
//! and writes its results there too (`host-latest.jsonl`, `.md`).
//!
//! The VM run boots the x86_64 reference VM, runs `rmemring bench --json`
//! in it, keeps the JSON lines, and on the host renders them (the same
//! `rmemring` binary, `bench --input`) into a Markdown table and an SVG
//! chart. Every file says where the numbers come from: the host CPU, the
//! guest's CPU count and kernel, the QEMU accelerator (TCG emulates every
//! instruction, so only ratios between paths of one run mean anything),
//! and the commands.

use std::fmt::Write as _;
use std::fs;
use std::io::{
    BufRead,
    BufReader,
    Read, //
};
use std::path::{
    Path,
    PathBuf, //
};
use std::process::{
    Command,
    ExitCode,
    Stdio, //
};
use std::time::Duration;

use anyhow::{
    bail,
    Context,
    Result, //
};
use serde_json::Value;
use xshell::{
    cmd,
    Shell, //
};

use crate::arch::{
    Arch,
    Profile,
    Target, //
};
use crate::exec::{
    shell_words,
    Log, //
};
use crate::flags;
use crate::project_root;
use crate::vm::{
    self,
    Options, //
};

/// Where the results go, relative to the repository.
const OUT_DIR: &str = "docs/bench";
/// The files of the latest VM run.
const JSONL: &str = "kernel-latest.jsonl";
const MARKDOWN: &str = "kernel-latest.md";
const CHART: &str = "kernel-latest.svg";
/// The real-event runs of the latest VM run.
const EVENTS_JSONL: &str = "events-latest.jsonl";
const EVENTS_MARKDOWN: &str = "events-latest.md";
/// The latest host run (`--host`).
const HOST_JSONL: &str = "host-latest.jsonl";
const HOST_MARKDOWN: &str = "host-latest.md";

impl flags::Bench {
    pub fn run(self, sh: &Shell) -> Result<ExitCode> {
        let log = Log::terminal();
        let exists = |file: &str| project_root().join(OUT_DIR).join(file).exists();
        if self.render {
            if !self.host {
                render(sh, &log)?;
                if exists(EVENTS_JSONL) {
                    render_events(sh, &log)?;
                }
            }
            if self.host || exists(HOST_JSONL) {
                render_host(sh, &log)?;
            }
            return Ok(ExitCode::SUCCESS);
        }
        // Before anything is built or run: results written must cite a
        // commit that reproduces them.
        let source = source(sh, &self)?;
        if self.host {
            return host(sh, &log, &self, source);
        }
        let target = Target {
            arch: Arch::X86_64,
            profile: Profile::Normal,
        };
        let artifacts = vm::artifacts(sh, &log, target, false)?;
        let mut bench = vec![
            "rmemring".to_owned(),
            "bench".to_owned(),
            "--json".to_owned(),
            "--duration".to_owned(),
            measured(&self).to_owned(),
            // Three interleaved rounds, each row their median with its
            // spread: one round cannot tell a ratio near a target from noise.
            "--repeat".to_owned(),
            "3".to_owned(),
        ];
        if self.quick {
            bench.extend(["--sizes", "64,4K,64K", "--warmup", "100ms"].map(String::from));
        }
        bench.extend(self.args.iter().cloned());
        let guest = shell_words(&bench);
        // Under TCG, `rmemring bench` runs itself again with the glibc
        // tunables that keep memcpy off `rep movsb` (see its `--help`).
        // The JSON lines go to a file and are printed after the table, so no
        // progress output can tear them.
        let command = format!(
            "{guest} >/tmp/bench.jsonl 2>/tmp/bench.txt; s=$?; \
             cat /tmp/bench.txt; cat /tmp/bench.jsonl; exit $s"
        );
        // Then real events (`rmemring bench-events`): the tracer against
        // every other peer of its defaults (`rmemring bench-events --list`:
        // the BPF ring buffer, ftrace, perf, relay) on the sched_switch
        // tracepoint, in a VM of its own whose time counts instructions
        // (`Accel::TcgIcount`): a context switch's cost is a few hundred
        // instructions, which TCG's run-to-run noise (30% and more on this
        // machine) would drown.
        // Twice: the load on CPU 0 (every strategy), then on both CPUs at
        // once (periodic consumers: each tracer's cost when two CPUs write
        // together, no wake-ups), each a table of its own.
        // Every run (`none`'s too) warms up first, unmeasured: 250 ms by
        // default, 100 ms quick, as the synthetic runs.
        let (events_one, events_both) = if self.quick {
            (
                "rmemring bench-events --json --duration 1s --warmup 100ms --repeat 3",
                "rmemring bench-events --json --load both --strategies periodic --duration 1s \
                 --warmup 100ms --repeat 3",
            )
        } else {
            (
                "rmemring bench-events --json --duration 2s --repeat 5",
                "rmemring bench-events --json --load both --strategies periodic,woken \
                 --duration 2s --repeat 5",
            )
        };
        let events_command = format!("{events_one}; {events_both}");
        let events_shell = format!(
            "{events_one} >/tmp/events.jsonl 2>/tmp/events.txt; e=$?; \
             {events_both} >>/tmp/events.jsonl 2>>/tmp/events.txt; f=$?; \
             cat /tmp/events.txt; cat /tmp/events.jsonl; [ $e = 0 ] || exit $e; exit $f"
        );
        // Other work on the host steals time from the guest's vCPUs; say how
        // busy it was.
        let load = host_load();
        // QEMU inherits this: ahead of builds, behind nothing interactive.
        let pid = std::process::id().to_string();
        if cmd!(sh, "renice -n -10 -p {pid}")
            .quiet()
            .ignore_stdout()
            .run()
            .is_err()
        {
            eprintln!("(could not raise QEMU's priority; numbers will show any other load)");
        }
        let boot = |command: &str, icount: bool| {
            vm::boot(
                sh,
                &log,
                &artifacts,
                &Options {
                    icount,
                    ..Options::live(command, Duration::from_secs(self.timeout))
                },
            )
        };
        // Each VM's wall time, boot included, is printed: the quick run's
        // budget is the two together.
        let timed = |command: &str, icount: bool, what: &str| {
            let start = std::time::Instant::now();
            let outcome = boot(command, icount);
            eprintln!(
                "the {what} VM ran for {:.0} s (wall time, boot included)",
                start.elapsed().as_secs_f64()
            );
            outcome
        };
        eprintln!("booting the x86_64 reference VM for `{guest}` (several minutes under TCG)");
        let outcome = timed(&command, false, "kernel benchmark's")?;
        if !outcome.passed() {
            eprintln!("{}", outcome.report());
            return Ok(outcome.exit_code());
        }
        eprintln!("booting it again, counting instructions, for `{events_command}`");
        let events_outcome = timed(&events_shell, true, "real-event benchmark's")?;
        if !events_outcome.passed() {
            eprintln!("{}", events_outcome.report());
            return Ok(events_outcome.exit_code());
        }
        let results = |outcome: &'_ vm::Outcome, kind: &str| -> Vec<String> {
            outcome
                .output
                .iter()
                .map(|l| l.trim())
                .filter(|l| {
                    l.starts_with('{')
                        && serde_json::from_str::<Value>(l)
                            .is_ok_and(|v| v["bench"].as_str().is_some_and(|b| b.starts_with(kind)))
                })
                .map(str::to_owned)
                .collect()
        };
        let lines = results(&outcome, "kernel");
        let events = results(&events_outcome, "events");
        if lines.is_empty() {
            bail!("the guest printed no benchmark results");
        }
        if self.no_write {
            return Ok(ExitCode::SUCCESS);
        }
        let run = Run {
            load: format!("{load} before, {} after", host_load()),
            accel: outcome.accel,
            source,
        };
        write_results(sh, &log, &lines, &run, &self)?;
        // The guest's side (CPU model, kernel, clocksource) is the kernel
        // benchmark's, from the same boot.
        let mut env = lines
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["bench"] == "kernel-env")
            .unwrap_or_else(|| serde_json::json!({}));
        env["command"] = Value::from(events_command);
        let events_run = Run {
            accel: events_outcome.accel,
            ..run
        };
        write_events(sh, &log, &events, &env, &events_run, &self)?;
        Ok(ExitCode::SUCCESS)
    }
}

/// `cargo bench -p rmemring --bench host -- --json [--quick] [ARGS]`: its
/// text on the terminal as it runs, its JSON lines written to
/// `docs/bench/host-latest.jsonl` after a line about the run, and rendered
/// into `host-latest.md` (unless `--no-write`); with `--json`, the JSON
/// lines on stdout too.
fn host(sh: &Shell, log: &Log, flags: &flags::Bench, source: String) -> Result<ExitCode> {
    let mut args = vec!["--json"];
    if flags.quick {
        args.push("--quick");
    }
    args.extend(flags.args.iter().map(String::as_str));
    let load = host_load();
    let command = shell_words(
        &["cargo", "bench", "-p", "rmemring", "--bench", "host", "--"]
            .into_iter()
            .chain(args.iter().copied())
            .map(str::to_owned)
            .collect::<Vec<_>>(),
    );
    eprintln!("$ {command}");
    let mut child = Command::new("cargo")
        .args(["bench", "-p", "rmemring", "--bench", "host", "--"])
        .args(&args)
        .current_dir(project_root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting cargo bench")?;
    // The report goes to the terminal as it is measured, and is kept.
    let stderr = BufReader::new(child.stderr.take().context("cargo's stderr")?);
    let echo = std::thread::spawn(move || {
        stderr
            .lines()
            .map_while(Result::ok)
            .inspect(|line| eprintln!("{line}"))
            .collect::<Vec<String>>()
    });
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .context("cargo's stdout")?
        .read_to_string(&mut stdout)?;
    let text = echo.join().expect("the stderr thread");
    let status = child.wait()?;
    if !status.success() {
        bail!("{command}: {status}");
    }
    if flags.json {
        print!("{stdout}");
    }
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| v["bench"] == "host"))
        .collect();
    if flags.no_write {
        return Ok(ExitCode::SUCCESS);
    }
    if lines.is_empty() {
        bail!("the host benchmark printed no results (nothing written)");
    }
    // The benchmark's own lines about the machine, its settings and its
    // load, from its report.
    let notes: Vec<&str> = text
        .iter()
        .map(String::as_str)
        .filter(|l| HOST_NOTES.iter().any(|p| l.starts_with(p)))
        .collect();
    let mut env = machine(sh);
    env["bench"] = Value::from("host-env");
    env["load"] = Value::from(format!("{load} before, {} after", host_load()));
    env["source"] = Value::from(source);
    env["xtask_command"] = Value::from(xtask_command(flags));
    env["command"] = Value::from(command);
    env["notes"] = Value::from(notes);
    let mut out = env.to_string() + "\n";
    for line in lines {
        out += line;
        out.push('\n');
    }
    let jsonl = project_root().join(OUT_DIR).join(HOST_JSONL);
    fs::write(&jsonl, out).with_context(|| format!("writing {}", jsonl.display()))?;
    render_host(sh, log)?;
    Ok(ExitCode::SUCCESS)
}

/// How the host benchmark's report lines that [`host`] keeps begin: the
/// machine, the ring and rounds, the threads and priority, the records per
/// cell and total time, the CPU time others took.
const HOST_NOTES: [&str; 5] = [
    "machine: ",
    "ring: ",
    "threads: ",
    "records per cell: ",
    "CPU time not ours",
];

/// Renders `host-latest.jsonl` into `host-latest.md`: the run's line, then
/// the tables, targets and peers as the benchmark renders its own lines
/// (`--input`).
fn render_host(sh: &Shell, log: &Log) -> Result<()> {
    let (jsonl, [env]) = read_results(HOST_JSONL, ["host-env"])?;
    let body = log.read(cmd!(
        sh,
        "cargo bench --quiet -p rmemring --bench host -- --input {jsonl}"
    ))?;
    let s = |k: &str| env[k].as_str().unwrap_or("unknown").to_owned();
    let mut bullets = vec![
        format!("date: {}", s("date")),
        source_bullet(&s("source")),
        format!(
            "host: {}, {} CPUs, Linux {}; load average {}",
            s("cpu_model"),
            env["cpus"].as_u64().unwrap_or(0),
            s("kernel"),
            s("load")
        ),
        format!("command: `{}`", s("command")),
    ];
    bullets.extend(
        env["notes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|note| note.as_str().unwrap_or_default().to_owned()),
    );
    Page {
        title: "Host benchmark: latest results",
        jsonl: HOST_JSONL,
        command: env["xtask_command"]
            .as_str()
            .unwrap_or("cargo xtask bench --host"),
        about: "How the benchmark works, what each peer does and how to read the tables: \
                [host.md](host.md).",
        bullets,
        body: format!("\n{body}"),
    }
    .write(HOST_MARKDOWN, &[HOST_JSONL, HOST_MARKDOWN])
}

/// A results page, rendered from its JSON lines.
struct Page<'a> {
    title: &'a str,
    /// The results file it is rendered from, in [`OUT_DIR`].
    jsonl: &'a str,
    /// The command that made the results.
    command: &'a str,
    /// Where to read about them.
    about: &'a str,
    /// The run's environment, a line each.
    bullets: Vec<String>,
    /// The rest, after the environment.
    body: String,
}

impl Page<'_> {
    /// Writes the page to `markdown` in [`OUT_DIR`] and prints the paths of
    /// the run's `files`.
    fn write(self, markdown: &str, files: &[&str]) -> Result<()> {
        let mut md = format!(
            "# {}\n\nGenerated by `{}` from [{jsonl}]({jsonl}); do not edit. {}\n\n",
            self.title,
            self.command,
            self.about,
            jsonl = self.jsonl
        );
        for line in &self.bullets {
            let _ = writeln!(md, "- {line}");
        }
        md += &self.body;
        let path = project_root().join(OUT_DIR).join(markdown);
        fs::write(&path, md).with_context(|| format!("writing {}", path.display()))?;
        for file in files {
            println!("{}", Path::new(OUT_DIR).join(file).display());
        }
        Ok(())
    }
}

/// What the host knows about a run that the guest cannot.
struct Run {
    /// The host's load average before and after.
    load: String,
    /// The accelerator QEMU ran the guest with.
    accel: vm::Accel,
    /// The commit that was built, as [`source`] cites it.
    source: String,
}

/// Writes the JSON lines, with a first line about the host, then renders
/// them.
fn write_results(
    sh: &Shell,
    log: &Log,
    lines: &[String],
    run: &Run,
    flags: &flags::Bench,
) -> Result<()> {
    let dir = project_root().join(OUT_DIR);
    fs::create_dir_all(&dir)?;
    let jsonl = dir.join(JSONL);
    let host = host_line(sh, run, flags).to_string();
    let mut text = host + "\n";
    for line in lines {
        text += line;
        text.push('\n');
    }
    fs::write(&jsonl, text).with_context(|| format!("writing {}", jsonl.display()))?;
    render(sh, log)
}

/// Writes the real-event runs' JSON lines, after the host's line and the
/// guest's (`env`), then renders them.
fn write_events(
    sh: &Shell,
    log: &Log,
    lines: &[String],
    env: &Value,
    run: &Run,
    flags: &flags::Bench,
) -> Result<()> {
    if lines.is_empty() {
        bail!("the guest printed no bench-events results");
    }
    let dir = project_root().join(OUT_DIR);
    let jsonl = dir.join(EVENTS_JSONL);
    let mut env = env.clone();
    env["bench"] = Value::from("events-env");
    let mut text = host_line(sh, run, flags).to_string() + "\n" + &env.to_string() + "\n";
    for line in lines {
        text += line;
        text.push('\n');
    }
    fs::write(&jsonl, text).with_context(|| format!("writing {}", jsonl.display()))?;
    render_events(sh, log)
}

/// The path of results file `file` (in [`OUT_DIR`]) and its first line of
/// each of the `kinds` (`"bench"`), or `null`.
fn read_results<const N: usize>(file: &str, kinds: [&str; N]) -> Result<(PathBuf, [Value; N])> {
    let jsonl = project_root().join(OUT_DIR).join(file);
    let text =
        fs::read_to_string(&jsonl).with_context(|| format!("reading {}", jsonl.display()))?;
    let lines: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect();
    let found = kinds.map(|kind| {
        lines
            .iter()
            .find(|v| v["bench"] == kind)
            .cloned()
            .unwrap_or(Value::Null)
    });
    Ok((jsonl, found))
}

/// Renders `events-latest.jsonl` into `events-latest.md`.
fn render_events(sh: &Shell, log: &Log) -> Result<()> {
    let (jsonl, [host, env]) = read_results(EVENTS_JSONL, ["kernel-host", "events-env"])?;
    let tables = log.read(cmd!(
        sh,
        "cargo run --quiet --release -p rmemring-cli -- bench-events --input {jsonl}"
    ))?;
    Page {
        title: "Real events: latest results",
        jsonl: EVENTS_JSONL,
        command: host["xtask_command"]
            .as_str()
            .unwrap_or("cargo xtask bench"),
        about: "What each peer does and how to read the tables: [events.md](events.md).",
        bullets: environment(&host, &env),
        body: format!("\n{}\n", tables.trim_start()),
    }
    .write(EVENTS_MARKDOWN, &[EVENTS_JSONL, EVENTS_MARKDOWN])
}

/// Renders `kernel-latest.jsonl` into the Markdown report and the chart
/// (`--render` does only this, for a change in how results are shown).
fn render(sh: &Shell, log: &Log) -> Result<()> {
    let dir = project_root().join(OUT_DIR);
    let (jsonl, [host, env]) = read_results(JSONL, ["kernel-host", "kernel-env"])?;
    let chart = dir.join(CHART);
    let tables = log.read(cmd!(
        sh,
        "cargo run --quiet --release -p rmemring-cli -- bench --input {jsonl} --markdown --plot {chart}"
    ))?;
    Page {
        title: "Kernel benchmark: latest results",
        jsonl: JSONL,
        command: host["xtask_command"]
            .as_str()
            .unwrap_or("cargo xtask bench"),
        about: "How the benchmark works, what is fair about it and what the numbers mean: \
                [kernel.md](kernel.md).",
        bullets: environment(&host, &env),
        body: format!("\n![records/s by record size]({CHART})\n\n{tables}\n"),
    }
    .write(MARKDOWN, &[JSONL, MARKDOWN, CHART])
}

/// The measured time of each of `rmemring bench`'s measurements: as given,
/// or 1 s, or with `--quick` 400 ms (three rounds of every cell stay within
/// the quick run's 15 minutes).
fn measured(flags: &flags::Bench) -> &str {
    match &flags.duration {
        Some(duration) => duration,
        None if flags.quick => "400ms",
        None => "1s",
    }
}

/// The host's one-minute load average.
fn host_load() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The command line that reproduces the run.
fn xtask_command(flags: &flags::Bench) -> String {
    let mut words = vec!["cargo".to_owned(), "xtask".to_owned(), "bench".to_owned()];
    if flags.host {
        words.push("--host".to_owned());
    }
    if flags.quick {
        words.push("--quick".to_owned());
    }
    if flags.allow_dirty {
        words.push("--allow-dirty".to_owned());
    }
    if flags.duration.is_some() {
        words.extend(["--duration".to_owned(), measured(flags).to_owned()]);
    }
    if !flags.args.is_empty() {
        words.push("--".to_owned());
        words.extend(flags.args.iter().cloned());
    }
    shell_words(&words)
}

/// The machine the run is on, and when: the first JSON line's common
/// keys.
fn machine(sh: &Shell) -> Value {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let host_model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|r| r.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let host_cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let host_kernel = cmd!(sh, "uname -r").quiet().read().unwrap_or_default();
    let date = cmd!(sh, "date -u +%Y-%m-%dT%H:%MZ")
        .quiet()
        .read()
        .unwrap_or_default();
    serde_json::json!({
        "date": date,
        "cpu_model": host_model,
        "cpus": host_cpus,
        "kernel": host_kernel,
    })
}

/// The host's side of the run, for the first JSON line.
fn host_line(sh: &Shell, run: &Run, flags: &flags::Bench) -> Value {
    let qemu = cmd!(sh, "qemu-system-x86_64 --version")
        .quiet()
        .read()
        .ok()
        .and_then(|v| v.lines().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned());
    let mut line = machine(sh);
    for (key, value) in [
        ("bench", Value::from("kernel-host")),
        ("load", Value::from(run.load.clone())),
        ("qemu", Value::from(qemu)),
        ("accel", Value::from(run.accel.name())),
        ("source", Value::from(run.source.clone())),
        ("xtask_command", Value::from(xtask_command(flags))),
    ] {
        line[key] = value;
    }
    line
}

/// What a run cites as the source of its results: `git describe --always`
/// of the commit built, which is all that was built unless it says
/// `-dirty`. A run that writes results refuses a tree whose tracked source
/// files have uncommitted changes, unless `--allow-dirty`: results citing
/// `abc1234-dirty` cannot be reproduced. (`--no-write` runs need no clean
/// tree; `--render` runs nothing.)
fn source(sh: &Shell, flags: &flags::Bench) -> Result<String> {
    let refuse = !flags.no_write && !flags.allow_dirty;
    let commit = cmd!(sh, "git describe --always").quiet().read();
    // Staged or not, against the commit; untracked files are not built
    // unless a tracked file names them.
    let changed = cmd!(sh, "git diff --name-only --no-renames -z HEAD --")
        .quiet()
        .read();
    match (commit, changed) {
        (Ok(commit), Ok(changed)) => cited_source(&commit, &changed, refuse),
        (Err(e), _) | (_, Err(e)) if refuse => bail!(
            "cannot tell which commit the results would come from ({e}); \
             --allow-dirty writes them all the same, citing `unknown`"
        ),
        _ => Ok("unknown".to_owned()),
    }
}

/// [`source`]'s decision, from `git describe --always` (`commit`) and the
/// NUL-separated tracked files that differ from it (`changed`): the
/// commit, with `-dirty` if any of them is a source file, or an error
/// naming them if `refuse`.
fn cited_source(commit: &str, changed: &str, refuse: bool) -> Result<String> {
    let sources: Vec<&str> = changed
        .split('\0')
        .filter(|path| !path.is_empty() && is_source(path))
        .collect();
    if sources.is_empty() {
        return Ok(commit.to_owned());
    }
    if refuse {
        const SHOWN: usize = 5;
        let more = match sources.len().saturating_sub(SHOWN) {
            0 => String::new(),
            n => format!(" and {n} more"),
        };
        bail!(
            "uncommitted changes to tracked source files ({}{more}): results written now would \
             cite `{commit}-dirty`, which no one can check out again. Commit them first, or \
             pass --allow-dirty to write the results all the same (citing `-dirty`), or \
             --no-write to leave docs/bench/ alone",
            sources[..sources.len().min(SHOWN)].join(", ")
        );
    }
    Ok(format!("{commit}-dirty"))
}

/// Whether a change to the tracked file `path` can change what a run
/// builds or measures: every file but the documentation (under `docs/`,
/// where the results go too, and Markdown files).
fn is_source(path: &str) -> bool {
    !(path.starts_with("docs/") || path.ends_with(".md"))
}

/// The environment's line about [`source`].
fn source_bullet(source: &str) -> String {
    format!(
        "source: `{source}` (`git describe --always` of the commit built for the run; \
         `-dirty`: with uncommitted changes)"
    )
}

/// Where the numbers come from, host and guest.
fn environment(host: &Value, env: &Value) -> Vec<String> {
    let s = |v: &Value, k: &str| v[k].as_str().unwrap_or("unknown").to_owned();
    // The xtask records the accelerator it chose; results from before it
    // did have only the guest's CPU model to go by.
    let (accel, how) = match host["accel"].as_str() {
        Some(accel) => (accel.to_owned(), ""),
        None if s(env, "cpu_model").contains("QEMU TCG") => {
            ("tcg".to_owned(), ", inferred from the guest's CPU model")
        }
        None => ("unknown".to_owned(), ", not recorded"),
    };
    let accel = match accel.as_str() {
        "tcg" => format!(
            "TCG{how}, CPU `max,erms=off,fsrm=off` (every guest instruction emulated: absolute \
             rates are not hardware rates; compare the ratios between paths, which come from the \
             same run; no ERMS or FSRM, so that the kernel's copies and glibc's memcpy are not \
             `rep movsb`, which TCG emulates a byte at a time)"
        ),
        "kvm" => format!("KVM{how} (guest code runs natively)"),
        "tcg-icount" => format!(
            "TCG with `-icount shift=0,align=off,sleep=off`{how}, CPU `max,erms=off,fsrm=off` \
             (every guest instruction emulated, one vCPU at a time; guest time counts \
             instructions executed on either vCPU, 1 ns each, and idle time costs nothing: \
             rates are instructions, not hardware rates, and do not depend on the host's \
             load; an atomic, a fence or a cache miss costs one instruction; no ERMS or FSRM, \
             so that the kernel's copies are not `rep movsb`, one instruction a byte)"
        ),
        other => format!("{other}{how}"),
    };
    vec![
        format!("date: {}", s(host, "date")),
        source_bullet(&s(host, "source")),
        format!(
            "host: {}, {} CPUs, Linux {}; load average {}",
            s(host, "cpu_model"),
            host["cpus"].as_u64().unwrap_or(0),
            s(host, "kernel"),
            s(host, "load")
        ),
        format!("QEMU: {}, accelerator {accel}", s(host, "qemu")),
        format!(
            "guest: {} CPUs ({}; of ERMS and FSRM: {}), Linux {} (clocksource {}), {} MiB data area ({} mapping), BPF peer {}",
            env["cpus"].as_u64().unwrap_or(0),
            s(env, "cpu_model"),
            env["copy_flags"].as_str().unwrap_or("not recorded"),
            s(env, "kernel"),
            s(env, "clocksource"),
            env["data_size"].as_u64().unwrap_or(0) >> 20,
            s(env, "cache_mode"),
            if env["bpf"].as_bool().unwrap_or(false) {
                "built in"
            } else {
                "not built in"
            }
        ),
        format!("guest command: `{}`", s(env, "command")),
    ]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_environment_names_the_recorded_accelerator_and_source() {
        let env = json!({"cpu_model": "QEMU TCG CPU version 2.5+", "cpus": 2, "bpf": true, "copy_flags": "neither"});
        let host = json!({"accel": "kvm", "source": "50d7169-dirty", "qemu": "QEMU 7.2"});
        let lines = environment(&host, &env);
        // The recorded accelerator wins over the guest's CPU model.
        assert!(lines
            .iter()
            .any(|l| l.starts_with("QEMU: QEMU 7.2, accelerator KVM (")));
        assert!(lines
            .iter()
            .any(|l| l.starts_with("source: `50d7169-dirty`")));

        // The guest's ERMS/FSRM flags, as it found them.
        assert!(lines
            .iter()
            .any(|l| l.contains("(QEMU TCG CPU version 2.5+; of ERMS and FSRM: neither)")));
        let tcg = environment(&json!({"accel": "tcg"}), &env);
        assert!(tcg
            .iter()
            .any(|l| l.contains("accelerator TCG, CPU `max,erms=off,fsrm=off` (every guest")));
        // Older results: inferred, and said so.
        let old = environment(&json!({}), &env);
        assert!(old
            .iter()
            .any(|l| l.contains("TCG, inferred from the guest's CPU model")));
        let unknown = environment(&json!({}), &json!({"cpu_model": "AMD EPYC"}));
        assert!(unknown
            .iter()
            .any(|l| l.contains("accelerator unknown, not recorded")));
    }

    #[test]
    fn results_cite_a_clean_commit_unless_allowed_otherwise() {
        // A clean tree, or changes to documentation and results only:
        // the commit is what was built.
        for changed in [
            "",
            "docs/bench/kernel-latest.md\0README.md\0ring/README.md\0",
        ] {
            assert_eq!(cited_source("abc1234", changed, true).unwrap(), "abc1234");
        }
        // A source file changed: refused when writing results, naming it
        // and the way out.
        let changed = "docs/bench/host.md\0driver/ring.rs\0xtask/src/bench.rs\0";
        let refused = cited_source("abc1234", changed, true)
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("(driver/ring.rs, xtask/src/bench.rs)")
                && refused.contains("abc1234-dirty")
                && refused.contains("--allow-dirty")
                && !refused.contains("host.md"),
            "{refused}"
        );
        // Allowed (`--allow-dirty`), or nothing written (`--no-write`):
        // cited as dirty.
        assert_eq!(
            cited_source("abc1234", changed, false).unwrap(),
            "abc1234-dirty"
        );
        // Many files: the first few, and how many more.
        let many: String = (0..8).map(|i| format!("src/{i}.rs\0")).collect();
        let refused = cited_source("abc1234", &many, true)
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("src/4.rs and 3 more") && !refused.contains("src/5.rs"),
            "{refused}"
        );
    }
}
