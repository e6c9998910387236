//! `cargo xtask soak --minutes M`: the long proof, not part of `cargo xtask
//! test`. Boots the reference VM and runs the in-guest soak
//! (`rmemring-selftest soak --seconds S`, `tests/vm/src/soak.rs`)
//! for M minutes (on the debug kernel, `--debug`, then the exhaustive fault
//! injection, `rmemring-selftest faults-all`), then the fuzzers for a
//! while. Fails on any mismatch the
//! soak reports, on any kernel warning the harness finds in the guest's log
//! ([`vm::KERNEL_PROBLEMS`]), and on a failed fuzz run.

use std::process::ExitCode;
use std::time::{
    Duration,
    Instant, //
};

use anyhow::Result;
use xshell::Shell;

use crate::exec::Log;
use crate::flags;
use crate::vm::{
    self,
    Options, //
};

/// What the guest needs beyond the soak's own time: boot, the last
/// phase's drain and the kernel log dump, several times over for the debug
/// kernel (which runs everything but the soak's clock about three times
/// slower).
fn slack(debug: bool) -> Duration {
    Duration::from_secs(if debug { 900 } else { 300 })
}

impl flags::Soak {
    pub fn run(self, sh: &Shell) -> Result<ExitCode> {
        anyhow::ensure!(self.minutes > 0, "--minutes must be at least 1");
        let log = Log::terminal();
        let target = self.target.target();
        let artifacts = vm::artifacts(sh, &log, target, false)?;
        let seconds = self.minutes * 60;
        let mut command = format!("rmemring-selftest --strict soak --seconds {seconds}");
        if let Some(seed) = self.seed {
            command = format!("RMEMRING_SOAK_SEED={seed} {command}");
        }
        let started = Instant::now();
        let outcome = vm::boot(
            sh,
            &log,
            &artifacts,
            &Options::live(
                &command,
                Duration::from_secs(seconds) + slack(self.target.debug),
            ),
        )?;
        let took = started.elapsed();
        // The harness words each kernel-log finding "kernel: LINE"; the
        // other problems are the harness's own (insmod, rmmod, a missing
        // status).
        let warnings: Vec<&String> = outcome
            .problems
            .iter()
            .filter(|p| p.starts_with("kernel: "))
            .collect();
        println!(
            "soak: the VM ran {:.0} s ({}, {} kernel)",
            took.as_secs_f64(),
            outcome.accel.name(),
            if self.target.debug { "debug" } else { "normal" }
        );
        println!(
            "soak: kernel warnings: {} (lines of the guest's kernel log matching vm::KERNEL_PROBLEMS)",
            warnings.len()
        );
        let mut passed = outcome.passed();
        if !passed {
            eprintln!("{}", outcome.report());
        }
        if self.target.debug {
            passed &= faults_all(sh, &log, &artifacts)?;
        }

        let fuzz_seconds = self.fuzz_seconds.unwrap_or(seconds);
        let fuzzed = if fuzz_seconds == 0 {
            println!("soak: fuzz: not run (--fuzz-seconds 0)");
            true
        } else {
            fuzz(sh, fuzz_seconds)?
        };
        let ok = passed && fuzzed;
        println!("soak: {}", if ok { "passed" } else { "FAILED" });
        Ok(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }
}

/// The debug kernel's exhaustive fault injection: every allocation of the
/// load path fails in turn, the module loader's too (`cargo xtask test`'s
/// `faults-debug` fails only those made with the driver's code on the
/// stack). About 4 minutes under TCG. Whether it passed.
fn faults_all(sh: &Shell, log: &Log, artifacts: &vm::Artifacts) -> Result<bool> {
    let command = "rmemring-selftest --strict faults-all";
    println!("soak: {command}");
    let outcome = vm::boot(
        sh,
        log,
        artifacts,
        &Options::live(command, Duration::from_secs(900)),
    )?;
    let passed = outcome.passed();
    if !passed {
        eprintln!("{}", outcome.report());
    }
    println!(
        "soak: faults-all: {}",
        if passed { "passed" } else { "FAILED" }
    );
    Ok(passed)
}

/// Runs the fuzz task for `seconds` per target; whether it passed.
fn fuzz(sh: &Shell, seconds: u64) -> Result<bool> {
    println!("soak: fuzz: cargo xtask fuzz --seconds {seconds}");
    let task = flags::Fuzz {
        seconds,
        target: Vec::new(),
        update_corpus: false,
    };
    let status = task.run(sh)?;
    let ok = status == ExitCode::SUCCESS;
    println!("soak: fuzz: {}", if ok { "passed" } else { "FAILED" });
    Ok(ok)
}
