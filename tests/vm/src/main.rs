//! In-guest tests of the rmemring driver.
//!
//! `cargo xtask test` boots the reference VMs and runs groups of these
//! against the real driver and kernel:
//!
//! ```text
//! rmemring-selftest params      # bad module parameters refuse the load (x86_64)
//! rmemring-selftest stream      # >= 10 M records, >= 1 GiB, every one verified
//! rmemring-selftest loss        # a slow consumer: exact loss accounting, both modes
//! rmemring-selftest wakeups     # idle costs no CPU; >= 100 000 sleep/wake cycles
//! rmemring-selftest misuse      # bad mmap, bad ioctls, a second consumer, read()
//! rmemring-selftest lifecycle   # rmmod while open or mapped, closing in every order
//! rmemring-selftest hostile     # a consumer scribbling on its page while producing
//! rmemring-selftest hostile2    # scribbles under sleepers, mremap, fork, /proc/self/mem, kill -9, rmmod storms
//! rmemring-selftest cachemodes  # write-combine and uncached mappings match the kernel's (x86_64)
//! rmemring-selftest regress     # the hardening review's defects stay fixed
//! rmemring-selftest faults      # each allocation on the driver's paths fails in turn (debug kernel)
//! rmemring-selftest all
//! rmemring-selftest soak --seconds S  # S seconds of changing streams, every record verified (cargo xtask soak)
//! rmemring-selftest board        # the arm64 device-tree board: overlay, unbind/rebind, reload
//! rmemring-selftest board-params # the arm64 board loaded with phys_base/phys_size too
//! rmemring-selftest broken=MSG   # a broken overlay: the probe failed saying MSG, the rest works
//! rmemring-selftest --strict GROUP...  # a check that would be skipped fails instead
//! ```
//!
//! Each check prints `ok - NAME` or `not ok - NAME: WHY`; the exit status is
//! the number of failures (capped at 100). A check that cannot run here
//! (the module-parameter path on a device-tree board, say) prints
//! `ok - NAME # SKIP: WHY`, unless `--strict` is given: the reference VMs
//! have everything their suites need, so there a skip means a broken set-up
//! and must not pass. Kernel warnings are the harness's
//! business: it scans the guest's `dmesg` after the run.

mod board;
mod cachemodes;
mod faults;
mod hostile;
mod hostile2;
mod kmod;
mod lifecycle;
mod misuse;
mod regress;
mod sleepers;
mod soak;
mod stream;
mod wakeups;

use std::process::ExitCode;

/// Where a test group runs.
pub(crate) struct Env {
    /// The ring device.
    pub(crate) device: String,
    /// Loading and unloading the driver.
    pub(crate) kmod: kmod::Kmod,
}

/// Results of the checks so far.
#[derive(Default)]
pub(crate) struct Report {
    passed: u32,
    failed: u32,
    /// Whether a skipped check counts as a failure (`--strict`).
    strict: bool,
}

impl Report {
    /// Records one check.
    pub(crate) fn check(&mut self, name: &str, result: anyhow::Result<()>) {
        match result {
            Ok(()) => {
                println!("ok - {name}");
                self.passed += 1;
            }
            Err(e) => {
                println!("not ok - {name}: {e:#}");
                self.failed += 1;
            }
        }
    }

    /// Records a check that a condition holds.
    pub(crate) fn expect(&mut self, name: &str, ok: bool, why: impl FnOnce() -> String) {
        let result = if ok {
            Ok(())
        } else {
            Err(anyhow::anyhow!(why()))
        };
        self.check(name, result);
    }

    /// Records a check that cannot run here, and why: a pass, or under
    /// `--strict` a failure.
    pub(crate) fn skip(&mut self, name: &str, why: &str) {
        if self.strict {
            println!("not ok - {name}: skipped, which --strict forbids: {why}");
            self.failed += 1;
        } else {
            println!("ok - {name} # SKIP: {why}");
        }
    }
}

type Group = fn(&Env, &mut Report) -> anyhow::Result<()>;

const GROUPS: &[(&str, Group)] = &[
    ("params", kmod::params),
    ("stream", stream::stream),
    ("loss", stream::loss),
    ("wakeups", wakeups::wakeups),
    ("misuse", misuse::misuse),
    ("lifecycle", lifecycle::lifecycle),
    ("hostile", hostile::hostile),
    ("hostile2", hostile2::hostile2),
    ("cachemodes", cachemodes::cachemodes),
    ("regress", regress::regress),
];

/// Groups only the debug kernel runs (not part of `all`): they need its
/// fault injection and kmemleak.
const DEBUG_GROUPS: &[(&str, Group)] = &[("faults", faults::faults)];

/// Groups only the device-tree board runs (not part of `all`).
const BOARD_GROUPS: &[(&str, Group)] = &[
    ("board", board::board),
    ("board-params", board::board_params),
];

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let strict = args.first().is_some_and(|a| a == "--strict");
    if strict {
        args.remove(0);
    }
    if args.is_empty() || args.iter().any(|a| a == "-h" || a == "--help") {
        eprintln!(
            "usage: rmemring-selftest [--strict] GROUP... (groups: {}, all)",
            GROUPS.iter().map(|g| g.0).collect::<Vec<_>>().join(", ")
        );
        return ExitCode::from(2);
    }
    let env = match kmod::Kmod::from_guest() {
        Ok(kmod) => Env {
            device: "/dev/rmemring0".into(),
            kmod,
        },
        Err(e) => {
            eprintln!("rmemring-selftest: {e:#}");
            return ExitCode::from(2);
        }
    };
    let mut report = Report {
        strict,
        ..Report::default()
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "soak" {
            let seconds = match (
                args.next().as_deref(),
                args.next().map(|s| s.parse::<u64>()),
            ) {
                (Some("--seconds"), Some(Ok(s))) => s,
                _ => {
                    eprintln!("rmemring-selftest: soak takes --seconds S");
                    return ExitCode::from(2);
                }
            };
            println!("# soak");
            if let Err(e) = soak::soak(&env, &mut report, seconds) {
                report.check("soak: group ran to the end", Err(e));
            }
            continue;
        }
        if let Some(message) = arg.strip_prefix("broken=") {
            println!("# broken");
            if let Err(e) = board::broken(&env, message, &mut report) {
                report.check("broken: group ran to the end", Err(e));
            }
            continue;
        }
        let groups: Vec<&(&str, Group)> = if arg == "all" {
            GROUPS.iter().collect()
        } else {
            match GROUPS
                .iter()
                .chain(BOARD_GROUPS)
                .chain(DEBUG_GROUPS)
                .find(|g| g.0 == arg)
            {
                Some(g) => vec![g],
                None => {
                    eprintln!("rmemring-selftest: unknown group {arg:?}");
                    return ExitCode::from(2);
                }
            }
        };
        for (name, group) in groups {
            println!("# {name}");
            let result = group(&env, &mut report);
            if let Err(e) = result {
                report.check(&format!("{name}: group ran to the end"), Err(e));
            }
        }
    }
    println!("# {} passed, {} failed", report.passed, report.failed);
    ExitCode::from(report.failed.min(100) as u8)
}

#[cfg(test)]
mod tests {
    use super::Report;

    #[test]
    fn a_skip_passes_unless_strict() {
        let mut lenient = Report::default();
        lenient.skip("group", "not here");
        assert_eq!((lenient.passed, lenient.failed), (0, 0));
        let mut strict = Report {
            strict: true,
            ..Report::default()
        };
        strict.skip("group", "not here");
        assert_eq!((strict.passed, strict.failed), (0, 1));
    }
}
