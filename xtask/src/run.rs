//! `cargo xtask run`: the demo. Boots the reference VM (or the arm64 board),
//! loads the driver, and streams from the kernel producer to the consumer
//! example for a few seconds; the consumer verifies every record and prints
//! the rates.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use xshell::Shell;

use crate::arch::{
    Profile,
    Target, //
};
use crate::exec::Log;
use crate::flags;
use crate::vm::{
    self,
    Echo,
    Options, //
};

/// What the guest runs: the consumer example
/// (`examples/src/bin/rmemring-consume.rs`) streaming mixed-size records for
/// a few seconds, the producer waiting for room so none is lost, then 64 B
/// records flat out with drops counted exactly; every record is verified.
const COMMAND: &str = "rmemring-consume --seconds 4 --size 8..4096 --wait --no-loss \
     && rmemring-consume --seconds 2 --size 64";

/// Boot, streaming and shutdown under TCG take well under this.
const TIMEOUT: Duration = Duration::from_secs(300);

impl flags::Run {
    pub fn run(self, sh: &Shell) -> Result<ExitCode> {
        let log = Log::terminal();
        let target = Target {
            arch: self.arch,
            profile: Profile::Normal,
        };
        let artifacts = vm::artifacts(sh, &log, target, false)?;
        eprintln!("booting the {target} VM and running: {COMMAND}");
        let outcome = vm::boot(
            sh,
            &log,
            &artifacts,
            &Options {
                add: &[],
                cmdline: None,
                load: true,
                overlay: None,
                command: Some(COMMAND),
                timeout: TIMEOUT,
                echo: Echo::Live { console: false },
            },
        )?;
        if !outcome.passed() {
            eprintln!("{}", outcome.report());
        }
        Ok(outcome.exit_code())
    }
}
