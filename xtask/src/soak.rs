//! `cargo xtask soak --minutes M`: the long proof, not part of `cargo xtask
//! test`. Boots the reference VM and runs the in-guest soak
//! (`rmemring-selftest soak --seconds S`, `driver/selftest/src/soak.rs`)
//! for M minutes, then the fuzzers for a while. Fails on any mismatch the
//! soak reports, on any kernel warning the harness finds in the guest's log
//! ([`vm::KERNEL_PROBLEMS`]), and on a failed fuzz run.

use std::process::{
    Command,
    ExitCode,
    Stdio, //
};
use std::time::{
    Duration,
    Instant, //
};

use anyhow::{
    Context,
    Result, //
};
use xshell::Shell;

use crate::exec::Log;
use crate::flags;
use crate::vm::{
    self,
    Echo,
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
            &Options {
                add: &[],
                cmdline: None,
                load: true,
                overlay: None,
                command: Some(&command),
                timeout: Duration::from_secs(seconds) + slack(self.target.debug),
                echo: Echo::Live { console: false },
            },
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
        let passed = outcome.passed();
        if !passed {
            eprintln!("{}", outcome.report());
        }

        let fuzz_seconds = self.fuzz_seconds.unwrap_or(seconds);
        let fuzzed = if fuzz_seconds == 0 {
            println!("soak: fuzz: not run (--fuzz-seconds 0)");
            true
        } else {
            fuzz(fuzz_seconds)?
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

/// Runs `cargo xtask fuzz --seconds SECONDS` if this xtask has that task;
/// whether it passed (or was not there to run).
///
/// The fuzz task comes from another branch (`wip-fuzz`). Until it is
/// merged this is a hook: it asks this very binary whether it knows the
/// task, so the soak starts fuzzing the moment the task exists, with no
/// change here. Once it is merged, call its `run` directly instead.
fn fuzz(seconds: u64) -> Result<bool> {
    let xtask = std::env::current_exe().context("finding the xtask binary")?;
    let known = Command::new(&xtask)
        .args(["fuzz", "--help"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("running the xtask binary")?
        .success();
    if !known {
        println!(
            "soak: fuzz: not run: this xtask has no `fuzz` task yet (it is on branch wip-fuzz, not merged)"
        );
        return Ok(true);
    }
    let seconds = seconds.to_string();
    println!("soak: fuzz: cargo xtask fuzz --seconds {seconds}");
    let status = Command::new(&xtask)
        .args(["fuzz", "--seconds", &seconds])
        .status()
        .context("running cargo xtask fuzz")?;
    println!("soak: fuzz: {status}");
    Ok(status.success())
}
