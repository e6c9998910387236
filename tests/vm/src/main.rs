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
//! rmemring-selftest misuse      # bad mmap, bad ioctls, a second consumer, read(), a user outside the group
//! rmemring-selftest lifecycle   # rmmod while open or mapped, closing in every order
//! rmemring-selftest hostile     # a consumer scribbling on its page while producing
//! rmemring-selftest hostile2    # scribbles under sleepers, mremap, fork, /proc/self/mem, kill -9, rmmod storms
//! rmemring-selftest cachemodes  # write-combine and uncached mappings match the kernel's (x86_64)
//! rmemring-selftest regress     # the hardening review's defects stay fixed
//! rmemring-selftest tools       # busybox cat, dd, head and hexdump read the device, every record verified
//! rmemring-selftest faults      # each allocation on the driver's paths fails in turn (debug kernel)
//! rmemring-selftest faults-all  # the same, and every allocation of the module loader too
//! rmemring-selftest all
//! rmemring-selftest soak --seconds S  # S seconds of changing streams, every record verified (cargo xtask soak)
//! rmemring-selftest board        # the arm64 device-tree board: overlay, unbind/rebind, reload
//! rmemring-selftest board-params # the arm64 board loaded with phys_base/phys_size too
//! rmemring-selftest broken=MSG   # a broken overlay: the probe failed saying MSG, the rest works
//! rmemring-selftest --strict GROUP...  # a check that would be skipped fails instead
//! ```
//!
//! Each group is a module of its own (`stream` holds `loss` too, and
//! `board` the other board groups); what they share is in [`support`].
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
mod kapi;
mod lifecycle;
mod misuse;
mod params;
mod recovery;
mod regress;
mod soak;
mod stream;
mod support;
mod tools;
mod wakeups;

use std::process::ExitCode;

use support::{
    Env,
    Report, //
};

type Group = fn(&Env, &mut Report) -> anyhow::Result<()>;

const GROUPS: &[(&str, Group)] = &[
    ("params", params::params),
    ("stream", stream::stream),
    ("loss", stream::loss),
    ("wakeups", wakeups::wakeups),
    ("misuse", misuse::misuse),
    ("lifecycle", lifecycle::lifecycle),
    ("hostile", hostile::hostile),
    ("hostile2", hostile2::hostile2),
    ("cachemodes", cachemodes::cachemodes),
    ("regress", regress::regress),
    ("tools", tools::tools),
    ("kapi", kapi::kapi),
];

/// Groups only the debug kernel runs (not part of `all`): they need its
/// fault injection and kmemleak.
const DEBUG_GROUPS: &[(&str, Group)] = &[
    ("faults", faults::faults),
    ("faults-all", faults::faults_all),
];

/// Groups only the device-tree board runs (not part of `all`).
const BOARD_GROUPS: &[(&str, Group)] = &[
    ("board", board::board),
    ("board-params", board::board_params),
];

/// Groups that reset the machine (one stage per boot of a multi-boot run):
/// never part of `all`.
const RESET_GROUPS: &[(&str, Group)] = &[
    ("recovery-reboot", recovery::recovery_reboot),
    ("recovery-panic", recovery::recovery_panic),
    ("recovery-corrupt", recovery::recovery_corrupt),
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
    let env = match Env::from_guest() {
        Ok(env) => env,
        Err(e) => {
            eprintln!("rmemring-selftest: {e:#}");
            return ExitCode::from(2);
        }
    };
    let mut report = Report::new(strict);
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
                .chain(RESET_GROUPS)
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
    report.finish()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    /// The module a path names, from just after `crate::` or `super::`:
    /// `support::ring` for `support::ring::open_fresh`, `support` for
    /// `support::{Env, Report}`, `hostile` for `hostile::x`.
    fn module_of(path: &str) -> String {
        let mut names = path.split("::").map(|p| {
            p.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .next()
        });
        let first = names.next().flatten().unwrap_or_default();
        match names.next().flatten() {
            Some(sub)
                if first == "support" && sub.starts_with(|c: char| c.is_ascii_lowercase()) =>
            {
                format!("support::{sub}")
            }
            _ => first.to_string(),
        }
    }

    /// Each source file's module (`hostile2`, `support::ring`) and the
    /// modules of this crate its code imports (tests left out).
    fn imports() -> BTreeMap<String, Vec<String>> {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut modules = BTreeMap::new();
        for (dir, parent) in [(src.clone(), ""), (src.join("support"), "support::")] {
            for entry in std::fs::read_dir(&dir).expect("the sources") {
                let path = entry.expect("a source").path();
                let stem = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or_default();
                if path.extension().is_none_or(|e| e != "rs") || stem == "main" || stem == "mod" {
                    continue;
                }
                let text = std::fs::read_to_string(&path).expect("a source");
                let code = text.split("#[cfg(test)]").next().unwrap_or_default();
                let mut uses: Vec<String> = code.split("crate::").skip(1).map(module_of).collect();
                // In `support`, `super` is `support`.
                uses.extend(
                    code.split("super::")
                        .skip(1)
                        .map(|path| module_of(&format!("support::{path}"))),
                );
                modules.insert(format!("{parent}{stem}"), uses);
            }
        }
        modules
    }

    #[test]
    fn groups_share_code_only_through_support() {
        let modules = imports();
        assert!(modules.contains_key("hostile2") && modules.contains_key("support::ring"));
        for (module, uses) in modules {
            let groups: Vec<&String> = uses.iter().filter(|u| !u.starts_with("support")).collect();
            assert!(groups.is_empty(), "{module} imports {groups:?}");
        }
    }

    #[test]
    fn support_has_no_import_loop() {
        fn visit<'a>(
            modules: &'a BTreeMap<String, Vec<String>>,
            module: &'a str,
            path: &mut Vec<&'a str>,
        ) {
            assert!(
                !path.contains(&module),
                "an import loop: {} -> {module}",
                path.join(" -> ")
            );
            path.push(module);
            for used in modules.get(module).into_iter().flatten() {
                visit(modules, used, path);
            }
            path.pop();
        }
        let modules = imports();
        for module in modules.keys() {
            visit(&modules, module, &mut Vec::new());
        }
    }
}
