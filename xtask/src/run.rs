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
    Options, //
};

/// What the guest runs: the consumer example
/// (`examples/src/bin/rmemring-consume.rs`) streaming mixed-size records for
/// a few seconds, the producer waiting for room so none is lost, then 64 B
/// records flat out with drops counted exactly; every record is verified.
/// Then real events: the `sched_switch` tracer of `examples/kernel/`
/// writes every context switch of the guest into the ring for about three
/// seconds through the in-kernel API; `rmemring cat` shows a few, decoded,
/// then reads the rest for three seconds, and the tracer's own counts give
/// the rate and must add up (calls = written + dropped + refused + gone,
/// none failed, or the command fails) (an idle guest switches a few hundred times a second, so the
/// read is bounded by time, not by a count). `cargo xtask test` runs the
/// same command (suite `demo`), so it cannot rot.
pub const COMMAND: &str = concat!(
    "rmemring-consume --seconds 4 --size 8..4096 --wait --no-loss",
    " && rmemring-consume --seconds 2 --size 64",
    " && echo '# every context switch of the guest, from the sched_switch tracer",
    " (examples/kernel/sched_switch) through the in-kernel API:'",
    " && t0=$(cut -d' ' -f1 /proc/uptime)",
    " && insmod /lib/modules/rmemring_sched_switch.ko",
    " && rmemring cat --format jsonl --skip --count 4",
    " && timeout -s INT 3 rmemring cat --format raw --skip >/dev/null",
    " && rmmod rmemring_sched_switch",
    " && t1=$(cut -d' ' -f1 /proc/uptime)",
    " && dmesg | grep -o 'calls=.*' | tail -n 1 | tr '=' ' ' | awk -v s=\"$t1 - $t0\"",
    " '{ split(s, t, \" - \"); d = t[1] - t[2]; n++;",
    " printf \"# %d context switches in %.1f s (%d per second): %d written, %d dropped, %d refused\\n\",",
    " $2, d, $2 / d, $4, $6, $8;",
    // The tracer's own account must close: every probe call written,
    // dropped, refused or gone, none failed, and some calls at all.
    " if ($2 == 0 || $2 != $4 + $6 + $8 + $10 || $12 != 0) { print \"# the tracer counts do not add up\"; bad = 1 } }",
    " END { exit (n != 1 || bad) }'",
);

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
        let outcome = vm::boot(sh, &log, &artifacts, &Options::live(COMMAND, TIMEOUT))?;
        if !outcome.passed() {
            eprintln!("{}", outcome.report());
        }
        Ok(outcome.exit_code())
    }
}
