//! `cargo xtask test`: every check, one `ok`/`FAIL` line each, then a count.
//!
//! Host checks first (fmt, clippy, the protocol crate as `no_std`, tests,
//! loom, the host benchmark's smoke run, docs, device tree), then per
//! kernel target: the kernel, the driver (whose warnings fail the run), the
//! guest user space and the VM scenarios of [`crate::suites`]. Builds log to
//! files in the cache (`logs/`); a failure shows the end of its log. The
//! last line is `N passed, M failed`, and the exit status is non-zero when
//! M > 0.

use std::fs;
use std::panic::AssertUnwindSafe;
use std::path::{
    Path,
    PathBuf, //
};
use std::process::ExitCode;
use std::sync::atomic::{
    AtomicBool,
    Ordering, //
};
use std::sync::mpsc;
use std::time::{
    Duration,
    Instant, //
};

use anyhow::{
    bail,
    Result, //
};
use xshell::{
    cmd,
    Cmd,
    Shell, //
};

use crate::arch::{
    Arch,
    Target, //
};
use crate::cache;
use crate::chroot::Chroot;
use crate::dist;
use crate::dt;
use crate::exec::Log;
use crate::flags;
use crate::fuzz;
use crate::guest::{
    self,
    Guest, //
};
use crate::host;
use crate::kernel;
use crate::module;
use crate::suites::{
    suites, //
    Suite,
};
use crate::vm::{
    self,
    Artifacts,
    Echo,
    Options, //
};

impl flags::Test {
    pub fn run(self, sh: &Shell) -> Result<ExitCode> {
        let mut runner = Runner {
            filter: self.filter,
            fail_fast: self.fail_fast,
            stopped: false,
            results: Vec::new(),
        };
        if self.host_only {
            host_checks(sh, &mut runner);
            runner.skip("kernel, module and VM suites", "--host-only");
        } else {
            kernel_suites(sh, &mut runner, self.all_kernels, |runner| {
                host_checks(sh, runner)
            });
        }
        Ok(runner.finish())
    }
}

/// fmt, clippy, tests, loom, docs and the device-tree checks.
fn host_checks(sh: &Shell, runner: &mut Runner) {
    runner.check("fmt", || {
        quiet(cmd!(sh, "cargo fmt --all --check"))?;
        quiet(cmd!(
            sh,
            "cargo fmt --all --check --manifest-path fuzz/Cargo.toml"
        ))
    });
    runner.check("clippy", || {
        quiet(cmd!(
            sh,
            "cargo clippy --workspace --all-targets -- -D warnings"
        ))
    });
    runner.check("clippy cli", || {
        quiet(cmd!(
            sh,
            "cargo clippy -p rmemring-cli --all-targets -- -D warnings"
        ))
    });
    runner.check("clippy bpf", || {
        host::ensure(sh, &Log::terminal(), crate::guest::BPF_HOST_PACKAGES)?;
        quiet(cmd!(
            sh,
            "cargo clippy -p rmemring-cli --features bpf --all-targets -- -D warnings"
        ))
    });
    // The fuzz workspace, with the instrumented build's flags and target
    // directory, which the `fuzz` check below then reuses.
    runner.check("clippy fuzz", || {
        crate::fuzz::clippy(sh, &step_log("clippy-fuzz")?)
    });
    runner.check("fmt driver", || {
        // The driver, its Rust binding and the Rust client modules.
        let mut dirs = vec!["driver".into(), "driver/include".into()];
        dirs.extend(sh.read_dir("examples/kernel")?);
        let mut files = Vec::new();
        for dir in dirs {
            files.extend(
                sh.read_dir(dir)?
                    .into_iter()
                    .filter(|p| p.extension().is_some_and(|e| e == "rs")),
            );
        }
        quiet(cmd!(sh, "rustfmt --check --edition 2021 {files...}"))
    });
    // The protocol crate as the kernel compiles it: `no_std`, no `alloc`.
    runner.check("proto no_std", || {
        quiet(cmd!(sh, "cargo build -p rmemring-proto"))
    });
    // With the library's `serde` feature named (the CLI enables it too):
    // `ring/tests/serde.rs` and the feature's doctest.
    runner.check("test", || {
        quiet(cmd!(sh, "cargo test --workspace --features rmemring/serde"))
    });
    // The CLI's unit tests, `tests/cli.rs`, which runs the binary, and
    // `tests/completions.rs`: its completion scripts load in bash, zsh and
    // fish and complete, its manual pages render with groff without a
    // warning (`RMEMRING_REQUIRE_SHELLS`: a shell missing is a failure).
    runner.check("test cli bpf", || {
        host::ensure(sh, &Log::terminal(), host::CLI_TEST)?;
        quiet(cmd!(
            sh,
            "env RMEMRING_REQUIRE_SHELLS=1 cargo test -p rmemring-cli --features bpf"
        ))
    });
    // The streaming tests as release builds: 10 M records across processes
    // (as in the debug run), longer overwrite runs and more proptest cases.
    runner.check("test release", || {
        quiet(cmd!(
            sh,
            "cargo test --release -p rmemring --test fork --test overwrite --test proptest"
        ))
    });
    runner.check("loom", || {
        quiet(cmd!(
            sh,
            "env 'RUSTFLAGS=--cfg loom' cargo test --release -p rmemring-proto --test loom --target-dir target/loom"
        ))
    });
    // The multi-threaded ring tests under ThreadSanitizer, in the sid
    // chroot (x86-64 hosts; see `tsan.rs`).
    if cfg!(target_arch = "x86_64") {
        runner.check("tsan", || crate::tsan::check(sh, &step_log("tsan")?));
    }
    runner.check("bench host smoke", || host_bench_smoke(sh));
    runner.check("fuzz", || fuzz_check(sh));
    // Each publishable crate packages and builds from its package alone,
    // with its README, licences and changelog and without junk; the rest
    // are `publish = false` (about 15 s warm).
    runner.check("publish dry-run", || crate::dist::check_packages(sh));
    runner.check("doc", || {
        quiet(cmd!(
            sh,
            "env 'RUSTDOCFLAGS=-D warnings' cargo doc --no-deps --workspace"
        ))
    });
    runner.check("dt", || {
        host::ensure(sh, &Log::terminal(), host::DT)?;
        dt::check(sh)
    });
}

/// Builds the fuzz targets and runs each for [`fuzz::TEST_SECONDS`] on
/// its checked-in corpus: a replay of every input in it, then new ones.
/// A crash fails the check; the figures of each run are printed.
fn fuzz_check(sh: &Shell) -> Result<()> {
    let log = step_log("fuzz")?;
    let bins = fuzz::build(sh, &log)?;
    for target in fuzz::TARGETS {
        let report = fuzz::run(sh, &log, &bins, target, fuzz::TEST_SECONDS, false)?;
        eprintln!("{report}");
        log.line(&report.to_string());
    }
    Ok(())
}

/// The payload size of the host benchmark's smoke run.
const SMOKE_SIZE: u64 = 64;

/// Runs the host benchmark (`cargo xtask bench --host`'s command) in its
/// quickest form, one size and one repetition, and checks its JSON lines
/// against its peers (`--list`), and their Markdown rendering (`--input`,
/// as `cargo xtask bench --host` writes `host-latest.md`). Proves that the
/// command works, not how fast it is: no rate is judged.
fn host_bench_smoke(sh: &Shell) -> Result<()> {
    let list = cmd!(sh, "cargo bench --quiet -p rmemring --bench host -- --list")
        .quiet()
        .read()?;
    let peers: Vec<&str> = list.lines().collect();
    let size = SMOKE_SIZE.to_string();
    let cmd = cmd!(
        sh,
        "cargo bench -p rmemring --bench host -- --quick --json --reps 1 --size {size} --no-nice"
    );
    eprintln!("$ {cmd}");
    let output = cmd.quiet().ignore_status().output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "exited with {}\n{stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    check_host_json(&stdout, &peers, &[SMOKE_SIZE], 1)?;
    let jsonl = crate::project_root().join("target/bench-host-smoke.jsonl");
    std::fs::write(&jsonl, stdout.as_bytes())?;
    let md = cmd!(
        sh,
        "cargo bench --quiet -p rmemring --bench host -- --input {jsonl}"
    )
    .quiet()
    .read()?;
    check_host_markdown(&md, &peers)
}

/// Checks the Markdown rendering of the smoke run: a row for every peer
/// at [`SMOKE_SIZE`], and the targets.
fn check_host_markdown(md: &str, peers: &[&str]) -> Result<()> {
    for peer in peers {
        if !md.contains(&format!("| {SMOKE_SIZE} B | {peer} |")) {
            bail!("no row for {peer} at {SMOKE_SIZE} B in the rendering:\n{md}");
        }
    }
    if !md.contains("64 B: rmemring / rtrb-bytes >= 1.2x") {
        bail!("no target lines in the rendering:\n{md}");
    }
    Ok(())
}

/// The first keys of every host benchmark line, in the order.
const HOST_KEYS: [&str; 5] = ["bench", "impl", "size", "records_per_s", "bytes_per_s"];

/// The keys of a JSON object in the order they are written (a
/// `serde_json::Value` keeps them sorted).
struct KeyOrder(Vec<String>);

impl<'de> serde::Deserialize<'de> for KeyOrder {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = KeyOrder;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<KeyOrder, A::Error> {
                let mut keys = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    keys.push(key);
                }
                Ok(KeyOrder(keys))
            }
        }
        d.deserialize_map(Visitor)
    }
}

/// Checks the host benchmark's `--json` output: every line one object
/// whose first keys are exactly `bench`, `impl`, `size`, `records_per_s`,
/// `bytes_per_s`, in that order, with sane values, and one line per
/// peer of `peers` (the benchmark's `--list`) and size of `sizes`, from
/// `reps` runs each.
fn check_host_json(stdout: &str, peers: &[&str], sizes: &[u64], reps: u64) -> Result<()> {
    let mut seen: Vec<(String, u64)> = Vec::new();
    for line in stdout.lines() {
        let fail = |why: &str| anyhow::anyhow!("{why}: {line}");
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| fail(&format!("not JSON ({e})")))?;
        let field = |key: &str| value.get(key).ok_or_else(|| fail(&format!("no {key:?}")));
        let KeyOrder(keys) = serde_json::from_str(line).map_err(|e| fail(&e.to_string()))?;
        if keys.len() < HOST_KEYS.len() || keys[..HOST_KEYS.len()] != HOST_KEYS {
            return Err(fail(&format!("the keys do not begin with {HOST_KEYS:?}")));
        }
        if field("bench")? != "host" {
            return Err(fail("bench is not \"host\""));
        }
        let which = field("impl")?
            .as_str()
            .filter(|i| peers.contains(i))
            .ok_or_else(|| fail("unknown impl"))?;
        let size = field("size")?
            .as_u64()
            .filter(|s| sizes.contains(s))
            .ok_or_else(|| fail("unexpected size"))?;
        let rate = |key: &str| {
            field(key)?
                .as_f64()
                .filter(|r| r.is_finite() && *r > 0.0)
                .ok_or_else(|| fail(&format!("{key} is not a positive number")))
        };
        let (records, bytes) = (rate("records_per_s")?, rate("bytes_per_s")?);
        if (bytes - records * size as f64).abs() > 1e-9 * bytes {
            return Err(fail("bytes_per_s is not records_per_s times size"));
        }
        if field("runs")?.as_u64() != Some(reps) {
            return Err(fail(&format!("runs is not {reps}")));
        }
        if seen.iter().any(|(i, s)| i == which && *s == size) {
            return Err(fail("a second line for this impl and size"));
        }
        seen.push((which.to_owned(), size));
    }
    for size in sizes {
        for which in peers {
            if !seen.iter().any(|(i, s)| i == which && s == size) {
                bail!("no line for {which} at {size} B in:\n{stdout}");
            }
        }
    }
    Ok(())
}

/// Per target: kernel, driver, guest user space, then its VM suites.
///
/// The builds run on a thread of their own ([`build_targets`]), started
/// before the host checks and in the idle scheduling class: they take only
/// the CPU the host checks and the VMs leave, so the cold run's kernels
/// are built while the host checks and the first kernel's suites run,
/// and nothing that is timed competes with a compiler.
fn kernel_suites(
    sh: &Shell,
    runner: &mut Runner,
    all_kernels: bool,
    host_checks: impl FnOnce(&mut Runner),
) {
    let all: Vec<Suite> = suites()
        .into_iter()
        .filter(|suite| all_kernels || !suite.extra)
        .collect();
    let suites: Vec<&Suite> = all
        .iter()
        .filter(|suite| runner.selected(&suite_name(suite)))
        .collect();
    // The DKMS build of the driver's source tarball, against its kernel,
    // and the boot of that kernel with what it built.
    let dkms_vm = runner.selected(&suite_name(&crate::suites::dkms()));
    let dkms = runner.selected(&dkms_name()) || dkms_vm;
    // The targets of the selected suites, and those whose builds the filter names.
    let mut targets: Vec<Target> = Vec::new();
    for suite in &all {
        let target = suite.target();
        let wanted = suites.iter().any(|s| s.target() == target)
            || runner.selected(&format!("kernel {target}"))
            || runner.selected(&format!("module {target}"))
            || (dkms && target == dist::DKMS_TARGET);
        if wanted && !targets.contains(&target) {
            targets.push(target);
        }
    }
    let cancelled = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let (sender, receiver) = mpsc::channel();
        let builder_targets = targets.clone();
        let cancelled = &cancelled;
        scope.spawn(move || {
            let built = std::panic::catch_unwind(AssertUnwindSafe(|| {
                build_targets(&builder_targets, dkms, &sender, cancelled)
            }));
            if built.is_err() {
                eprintln!("the build thread panicked");
            }
        });
        host_checks(runner);
        for target in targets {
            if runner.stopped {
                cancelled.store(true, Ordering::Relaxed);
                return;
            }
            let Ok(built) = receiver.recv() else {
                runner.fail(&format!("kernel {target}"), "the build thread died");
                return;
            };
            debug_assert_eq!(built.target, target);
            for step in built.steps {
                runner.record(&step.name, step.elapsed, step.result);
            }
            if let Some(artifacts) = &built.artifacts {
                runner.check(&format!("module {target} warnings"), || {
                    let warnings = &artifacts.module.warnings;
                    if warnings.is_empty() {
                        return Ok(());
                    }
                    bail!("the driver build warns:\n{}", warnings.join("\n"))
                });
            }
            for suite in suites.iter().filter(|suite| suite.target() == target) {
                let name = suite_name(suite);
                match &built.artifacts {
                    Some(artifacts) => {
                        runner.check(&name, || run_suite(sh, artifacts, suite));
                    }
                    None => runner.fail(&name, "not run: its kernel, driver or guest build failed"),
                }
            }
            if dkms_vm && target == dist::DKMS_TARGET {
                let suite = crate::suites::dkms();
                let name = suite_name(&suite);
                match (&built.artifacts, &built.dkms_ko) {
                    (Some(artifacts), Some(ko)) => {
                        runner.check(&name, || run_dkms_suite(sh, artifacts, ko, &suite));
                    }
                    _ => runner.fail(&name, "not run: the DKMS or another build failed"),
                }
            }
        }
    });
}

/// Boots [`crate::suites::dkms`] with `ko`, the module DKMS built, in
/// place of the in-tree one, and requires the build-id note the guest read
/// from `/sys/module/rmemring/notes` to be `ko`'s and not the in-tree
/// module's: the two are builds of one source in two trees, whose notes
/// differ (if they ever did not, the check could not tell them apart, and
/// says so rather than pass).
fn run_dkms_suite(sh: &Shell, artifacts: &Artifacts, ko: &Path, suite: &Suite) -> Result<()> {
    let in_tree = fs::read(&artifacts.module.ko)?;
    let dkms = fs::read(ko)?;
    let with_dkms = Artifacts {
        kernel: artifacts.kernel.clone(),
        module: module::Module {
            ko: ko.to_owned(),
            clients: artifacts.module.clients.clone(),
            warnings: Vec::new(),
        },
        guest: artifacts.guest.clone(),
    };
    run_suite_checked(sh, &with_dkms, suite, |outcome| {
        let hex = outcome
            .output
            .iter()
            .find_map(|line| line.strip_prefix(crate::suites::DKMS_NOTE))
            .ok_or("the guest printed no build-id note")?;
        let note = decode_hex(hex.trim()).ok_or_else(|| format!("not hex: {hex:?}"))?;
        let within =
            |module: &[u8]| !note.is_empty() && module.windows(note.len()).any(|w| w == note);
        if within(&in_tree) {
            return Err(format!(
                "the loaded module's build-id note {hex} is the in-tree module's{}",
                if within(&dkms) {
                    " and the DKMS one's too: the check cannot tell them apart"
                } else {
                    ": the DKMS module was not what loaded"
                }
            ));
        }
        if !within(&dkms) {
            return Err(format!(
                "the loaded module's build-id note {hex} is not in {}",
                ko.display()
            ));
        }
        Ok(())
    })
}

/// `hex` (pairs of hex digits) as bytes.
fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) || !hex.is_ascii() {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect()
}

/// One target's builds, as the build thread hands them over.
struct Built {
    target: Target,
    /// Each build step's name, time and outcome, for the runner to report.
    steps: Vec<Step>,
    /// `None` when a step failed.
    artifacts: Option<Artifacts>,
    /// The module DKMS built, when the DKMS check ran and passed.
    dkms_ko: Option<PathBuf>,
}

struct Step {
    name: String,
    elapsed: Duration,
    result: Result<()>,
}

/// The name of the DKMS check.
fn dkms_name() -> String {
    format!("dkms {}", dist::DKMS_TARGET)
}

/// Builds each target's kernel, driver and guest user space (once per
/// architecture), in order, and sends each target's as soon as it is done;
/// with `dkms`, also the driver's DKMS tarball against
/// [`dist::DKMS_TARGET`]'s kernel, before that target is sent (in a warm
/// run that overlaps the host checks; in a cold one it delays that
/// target's suites by its build). Runs in the idle scheduling class, and
/// so do the compilers it starts.
fn build_targets(
    targets: &[Target],
    dkms: bool,
    sender: &mpsc::Sender<Built>,
    cancelled: &AtomicBool,
) {
    if let Err(err) = idle_priority() {
        eprintln!("(the build thread keeps its priority: {err:#})");
    }
    let sh = match Shell::new() {
        Ok(sh) => sh,
        Err(err) => {
            eprintln!("the build thread has no shell: {err}");
            return;
        }
    };
    sh.change_dir(crate::project_root());
    // Everything apt installs in the chroot, before anything compiles in
    // it (the host checks' tsan step compiles there too).
    let mut steps = Vec::new();
    timed(&mut steps, "chroot".to_owned(), || {
        provision(&sh, targets, dkms)
    });
    let mut guests: Vec<(Arch, Option<Guest>)> = Vec::new();
    for &target in targets {
        if cancelled.load(Ordering::Relaxed) {
            return;
        }
        let kernel = timed(&mut steps, format!("kernel {target}"), || {
            kernel::build(&sh, &step_log(&format!("kernel-{target}"))?, target)
        });
        let module = kernel.as_ref().and_then(|kernel| {
            timed(&mut steps, format!("module {target}"), || {
                let log = step_log(&format!("module-{target}"))?;
                module::build(&sh, &log, kernel, true)
            })
        });
        let mut dkms_ko = None;
        if dkms && target == dist::DKMS_TARGET {
            if let Some(kernel) = &kernel {
                dkms_ko = timed(&mut steps, dkms_name(), || {
                    let log = step_log(&format!("dkms-{target}"))?;
                    dist::check_dkms(&sh, &log, kernel)
                });
            }
        }
        let arch = target.arch;
        if !guests.iter().any(|(a, _)| *a == arch) {
            let guest = timed(&mut steps, format!("guest {}", arch.name()), || {
                let log = step_log(&format!("guest-{}", arch.name()))?;
                host::ensure(&sh, &log, vm::vm_packages(arch))?;
                guest::build(&sh, &log, arch)
            });
            guests.push((arch, guest));
        }
        let guest = guests
            .iter()
            .find(|(a, _)| *a == arch)
            .and_then(|(_, guest)| guest.clone());
        let artifacts = match (kernel, module, guest) {
            (Some(kernel), Some(module), Some(guest)) => Some(Artifacts {
                kernel,
                module,
                guest,
            }),
            _ => None,
        };
        let built = Built {
            target,
            steps: std::mem::take(&mut steps),
            artifacts,
            dkms_ko,
        };
        if sender.send(built).is_err() {
            return;
        }
    }
}

/// Creates the chroot and installs in it what every later step needs: the
/// arm64 cross packages if a target is arm64, the tsan check's, and DKMS
/// with `dkms`.
fn provision(sh: &Shell, targets: &[Target], dkms: bool) -> Result<()> {
    let log = step_log("chroot")?;
    let chroot = Chroot::ensure(sh, &log)?;
    if targets.iter().any(|target| target.arch == Arch::Aarch64) {
        chroot.ensure_arm64(sh, &log)?;
    }
    if cfg!(target_arch = "x86_64") {
        chroot.ensure_packages(sh, &log, "tsan", crate::tsan::TSAN_PACKAGES)?;
    }
    if dkms {
        chroot.ensure_packages(sh, &log, "dkms", dist::DKMS_PACKAGES)?;
    }
    Ok(())
}

/// Runs `step`, and keeps its name, time and outcome in `steps`.
fn timed<T>(steps: &mut Vec<Step>, name: String, step: impl FnOnce() -> Result<T>) -> Option<T> {
    let start = Instant::now();
    let result = step();
    let elapsed = start.elapsed();
    let (value, result) = match result {
        Ok(value) => (Some(value), Ok(())),
        Err(err) => (None, Err(err)),
    };
    steps.push(Step {
        name,
        elapsed,
        result,
    });
    value
}

/// Puts the calling thread in the `SCHED_IDLE` class, which the processes
/// it starts inherit: it runs only on a CPU nothing else wants.
fn idle_priority() -> Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid `sched_param` for the call's duration, and
    // pid 0 names the calling thread, whose policy is all that changes.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if rc != 0 {
        bail!("sched_setscheduler: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

fn suite_name(suite: &Suite) -> String {
    format!("vm {}", suite.name)
}

/// Boots one scenario; fails with the guest's report, or with what its
/// host-side check found.
fn run_suite(sh: &Shell, artifacts: &Artifacts, suite: &Suite) -> Result<()> {
    run_suite_checked(sh, artifacts, suite, |outcome| match suite.check {
        Some(check) => check(outcome),
        None => Ok(()),
    })
}

/// [`run_suite`] with the host-side check `check` (run only if the guest
/// passed).
fn run_suite_checked(
    sh: &Shell,
    artifacts: &Artifacts,
    suite: &Suite,
    check: impl FnOnce(&vm::Outcome) -> Result<(), String>,
) -> Result<()> {
    let log = step_log(&format!("vm-{}", suite.name))?;
    let overlay = suite
        .overlay
        .map(|rel| crate::project_root().join("dts").join(rel));
    let outcome = vm::boot(
        sh,
        &log,
        artifacts,
        &Options {
            add: &[],
            cmdline: None,
            load: suite.load,
            overlay: overlay.as_deref(),
            command: Some(suite.command),
            timeout: Duration::from_secs(suite.timeout),
            echo: Echo::Quiet,
            icount: false,
            reboots: suite.reboots,
            panics: suite.panics,
        },
    )?;
    for (i, boot) in outcome.boots.iter().enumerate() {
        log.line(&format!("--- console, boot {}", i + 1));
        for line in &boot.console {
            log.line(line);
        }
    }
    let checked = if outcome.passed() {
        check(&outcome)
    } else {
        Ok(())
    };
    if outcome.passed() && checked.is_ok() {
        return Ok(());
    }
    let mut report = format!("$ {}\n", suite.command);
    for (i, boot) in outcome.boots.iter().enumerate() {
        if outcome.boots.len() > 1 {
            report += &format!("  boot {}:\n", i + 1);
        }
        for line in &boot.output {
            report += &format!("  > {line}\n");
        }
    }
    if let Err(why) = checked {
        report += &format!("the host-side check failed: {why}\n");
    }
    report += &outcome.report();
    bail!(report)
}

/// A log file in the cache for the step `name`.
fn step_log(name: &str) -> Result<Log> {
    let path = cache::root()?.join("logs").join(format!("{name}.log"));
    eprintln!("    (log: {})", path.display());
    Log::to_file(&path)
}

/// Runs `cmd` with its output captured; fails with the output.
fn quiet(cmd: Cmd<'_>) -> Result<()> {
    eprintln!("$ {cmd}");
    let output = cmd.quiet().ignore_status().output()?;
    if output.status.success() {
        return Ok(());
    }
    let mut msg = format!("exited with {}\n", output.status);
    msg += &String::from_utf8_lossy(&output.stdout);
    msg += &String::from_utf8_lossy(&output.stderr);
    bail!(msg)
}

/// Runs checks, prints a line for each, and counts.
struct Runner {
    filter: Option<String>,
    fail_fast: bool,
    /// A check failed under `--fail-fast`: the rest do not run.
    stopped: bool,
    results: Vec<(String, bool, Duration)>,
}

impl Runner {
    /// Whether `--filter` selects the check `name`.
    fn selected(&self, name: &str) -> bool {
        self.filter
            .as_ref()
            .is_none_or(|f| name.contains(f.as_str()))
    }

    /// Runs `check` unless filtered out or stopped; prints `ok`/`FAIL`.
    /// The driver's warnings count whenever its build does.
    fn check<T>(&mut self, name: &str, check: impl FnOnce() -> Result<T>) -> Option<T> {
        let needed = name.starts_with("module ");
        if self.stopped || !(needed || self.selected(name)) {
            return None;
        }
        eprintln!("--- {name}");
        let start = Instant::now();
        let result = check();
        let elapsed = start.elapsed();
        match result {
            Ok(value) => {
                self.record(name, elapsed, Ok(()));
                Some(value)
            }
            Err(err) => {
                self.record(name, elapsed, Err(err));
                None
            }
        }
    }

    /// Prints and counts the outcome of a check that has run. Build steps
    /// (which the build thread runs whatever the filter) count when a
    /// selected suite needed them.
    fn record(&mut self, name: &str, elapsed: Duration, result: Result<()>) {
        if self.stopped {
            return;
        }
        match result {
            Ok(()) => {
                println!("ok - {name} ({}s)", elapsed.as_secs());
                self.results.push((name.to_owned(), true, elapsed));
            }
            Err(err) => {
                println!("FAIL - {name} ({}s)", elapsed.as_secs());
                for line in crate::describe(&err).lines() {
                    println!("    {line}");
                }
                self.failed(name, elapsed);
            }
        }
    }

    /// Records `name` as failed without running it.
    fn fail(&mut self, name: &str, why: &str) {
        if self.stopped {
            return;
        }
        println!("FAIL - {name} (0s)\n    {why}");
        self.failed(name, Duration::ZERO);
    }

    fn failed(&mut self, name: &str, elapsed: Duration) {
        self.results.push((name.to_owned(), false, elapsed));
        self.stopped = self.fail_fast;
    }

    /// Says that `name` does not run, without counting it.
    fn skip(&mut self, name: &str, why: &str) {
        if self.selected(name) {
            println!("skip - {name} ({why})");
        }
    }

    /// Prints the summary; the last line is `N passed, M failed`.
    fn finish(self) -> ExitCode {
        let passed = self.results.iter().filter(|(_, ok, _)| *ok).count();
        let failed = self.results.len() - passed;
        println!("\nsummary:");
        for (name, ok, elapsed) in &self.results {
            let verdict = if *ok { "ok" } else { "FAIL" };
            println!("{verdict} - {name} ({}s)", elapsed.as_secs());
        }
        if self.stopped {
            println!("(stopped at the first failure: --fail-fast)");
        }
        println!("{passed} passed, {failed} failed");
        if failed == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line as the host benchmark writes it, for `impl` at 64 B.
    fn line(which: &str) -> String {
        format!(
            "{{\"bench\":\"host\",\"impl\":\"{which}\",\"size\":64,\"records_per_s\":2.5e7,\
             \"bytes_per_s\":1.6e9,\"batch_bytes\":null,\"runs\":1,\"spread\":0.0}}"
        )
    }

    #[test]
    fn host_json_lines_are_checked() {
        let peers = ["rmemring", "rtrb-bytes", "rtrb-typed", "memcpy"];
        let good: Vec<String> = peers.iter().map(|i| line(i)).collect();
        let good = good.join("\n");
        check_host_json(&good, &peers, &[64], 1).unwrap();
        // Every defect the check exists for.
        let bad = [
            // Keys sorted, as serde_json's maps write them.
            good.replacen(
                "{\"bench\":\"host\",\"impl\":\"rmemring\"",
                "{\"impl\":\"rmemring\",\"bench\":\"host\"",
                1,
            ),
            good.replacen("\"records_per_s\":2.5e7", "\"records_per_s\":0.0", 1),
            good.replacen("\"bytes_per_s\":1.6e9", "\"bytes_per_s\":1.7e9", 1),
            good.replacen("\"impl\":\"rtrb-typed\"", "\"impl\":\"rmemring\"", 1),
            good.replacen("\"size\":64", "\"size\":65", 1),
            good.replacen("\"runs\":1", "\"runs\":7", 1),
            good.lines().skip(1).collect::<Vec<_>>().join("\n"),
            good.clone() + "\nnot json",
        ];
        for (i, bad) in bad.iter().enumerate() {
            assert!(
                check_host_json(bad, &peers, &[64], 1).is_err(),
                "case {i}:\n{bad}"
            );
        }
        // A peer the benchmark lists but did not measure.
        assert!(check_host_json(&good, &[&peers[..], &["crossbeam"]].concat(), &[64], 1).is_err());
    }

    #[test]
    fn host_markdown_needs_every_peer_and_the_targets() {
        let targets = "  64 B: rmemring / rtrb-bytes >= 1.2x (like-for-like) 0.66x";
        let md = format!("| 64 B | rmemring | 16 KiB |\n| 64 B | memcpy | - |\n{targets}");
        check_host_markdown(&md, &["rmemring", "memcpy"]).unwrap();
        assert!(check_host_markdown(&md, &["rmemring", "memcpy", "crossbeam"]).is_err());
        assert!(check_host_markdown(&md.replace(targets, ""), &["rmemring"]).is_err());
    }

    #[test]
    fn suite_names_are_unique_and_filterable() {
        let names: Vec<String> = suites().iter().map(suite_name).collect();
        for (i, name) in names.iter().enumerate() {
            assert!(!names[..i].contains(name), "duplicate suite {name}");
            assert!(!name.contains(char::is_uppercase), "{name}: use lower case");
        }
        assert!(std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/init.sh")
            .exists());
    }
}
