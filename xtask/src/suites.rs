//! The VM test scenarios of `cargo xtask test`: one row per guest command.
//!
//! To add a scenario, add a row to [`suites`]. Each boots a fresh VM of its
//! target, loads the driver with the reference parameters (unless `load` is
//! false), runs `command` with `sh -c` and passes when the command exits 0,
//! `rmmod` succeeds and the kernel log is clean (no splat, sanitizer or
//! lockdep report: see `vm::KERNEL_PROBLEMS`). Every binary of
//! `rmemring-examples` and `rmemring-vmtest` (that is, `rmemring-selftest`),
//! the `rmemring` CLI and the C examples (`examples/c`) are in the guest's
//! `/bin`; busybox provides the rest.
//!
//! Run some with `cargo xtask test --filter NAME`, or one by hand with
//! `cargo xtask vm-run [--arch aarch64] [--debug] -- COMMAND`.

use crate::arch::{
    Arch,
    Profile,
    Target, //
};
use crate::vm::Outcome;

/// A host-side check of a run that passed (see [`Suite::check`]): why it
/// fails, if it does.
pub type Check = fn(&Outcome) -> Result<(), String>;

/// One VM scenario.
#[derive(Clone)]
pub struct Suite {
    /// Shown as `ok - vm NAME`; what `--filter` matches.
    pub name: &'static str,
    pub arch: Arch,
    pub profile: Profile,
    /// Load the driver at boot with the reference parameters.
    pub load: bool,
    /// arm64 only: the device-tree overlay, relative to `dts/`; `None` is
    /// the board's own (`dt::board_overlay`).
    pub overlay: Option<&'static str>,
    /// The guest command, for `sh -c`.
    pub command: &'static str,
    /// Seconds before the VM is killed and the suite fails.
    pub timeout: u64,
    /// Runs only under `cargo xtask test --all-kernels`: the scenario's
    /// twin on the other profile of its architecture (see [`suites`]).
    pub extra: bool,
    /// How many times the command resets the guest before its last boot,
    /// all in one QEMU process (`vm::Options::reboots`); 0: one boot.
    pub reboots: u32,
    /// How many of those resets are deliberate panics
    /// (`vm::Options::panics`, `rmemring_panic_now.ko`).
    pub panics: u32,
    /// Checked on the host after a run that passed: it may compare the
    /// output and kernel lines of different boots (`Outcome::boots`).
    pub check: Option<Check>,
}

impl Suite {
    pub fn target(&self) -> Target {
        Target {
            arch: self.arch,
            profile: self.profile,
        }
    }
}

/// The boot check, the same on every kernel: the driver loaded, and shows up
/// as its device and its claimed range.
const BOOT: &str = "lsmod | grep rmemring && cat /proc/iomem \
     && grep -i rmemring /proc/iomem && test -c /dev/rmemring0";

/// The command that runs the in-guest selftest's `$args`. Always
/// `--strict`: the reference VMs have everything every group needs, so a
/// check the selftest would skip there means a broken set-up.
macro_rules! selftest {
    ($args:literal) => {
        concat!("rmemring-selftest --strict ", $args)
    };
}

/// The C consumer of `examples/c`, written from the UAPI header and
/// docs/protocol.md alone, on `/dev/rmemring0` after `$command`: drop-new,
/// then overwrite-oldest (where the producer laps it), 100 000 records of
/// 8..4096 bytes each, every record verified and the losses reconciled with
/// the driver's counters. 1.5 s in the guest on the x86_64 debug kernel,
/// 2.0 s on the arm64 normal one (TCG, 2026-12-04: `cargo xtask vm-run
/// [--debug | --arch aarch64] -- 'time sh -c "..."'`). Then the async
/// example (`rmemring-async`, tokio): 100 000 records awaited through the
/// reactor and verified.
macro_rules! then_c_consumer {
    ($command:expr) => {
        concat!(
            $command,
            " && rmemring-consume-c -n 100000 && rmemring-consume-c -o -n 100000",
            " && rmemring-async --count 100000"
        )
    };
}

/// An x86_64 scenario on the debug kernel (KASAN, lockdep, DEBUG_VM, Rust
/// debug assertions), which runs slower, and its twin on the normal kernel
/// for `--all-kernels`.
macro_rules! both_kernels {
    ($name:literal, $load:expr, $command:expr, $timeout:literal) => {
        both_kernels!($name, $load, $command, $timeout; 0, 0, None)
    };
    // With resets: `reboots`, `panics` and `check` (see `Suite`).
    ($name:literal, $load:expr, $command:expr, $timeout:literal;
     $reboots:expr, $panics:expr, $check:expr) => {
        [
            Suite {
                name: $name,
                arch: Arch::X86_64,
                profile: Profile::Normal,
                load: $load,
                overlay: None,
                command: $command,
                timeout: $timeout,
                extra: true,
                reboots: $reboots,
                panics: $panics,
                check: $check,
            },
            Suite {
                name: concat!($name, "-debug"),
                arch: Arch::X86_64,
                profile: Profile::Debug,
                load: $load,
                overlay: None,
                command: $command,
                timeout: 3 * $timeout,
                extra: false,
                reboots: $reboots,
                panics: $panics,
                check: $check,
            },
        ]
    };
}

/// An arm64 board scenario on the normal kernel, and its twin on the debug
/// one for `--all-kernels`.
macro_rules! both_boards {
    ($name:expr, $load:expr, $overlay:expr, $command:expr, $timeout:literal) => {
        both_boards!($name, $load, $overlay, $command, $timeout; 0, 0, None)
    };
    // With resets: `reboots`, `panics` and `check` (see `Suite`).
    ($name:expr, $load:expr, $overlay:expr, $command:expr, $timeout:literal;
     $reboots:expr, $panics:expr, $check:expr) => {
        [
            Suite {
                name: $name,
                arch: Arch::Aarch64,
                profile: Profile::Normal,
                load: $load,
                overlay: $overlay,
                command: $command,
                timeout: $timeout,
                extra: false,
                reboots: $reboots,
                panics: $panics,
                check: $check,
            },
            Suite {
                name: concat!($name, "-debug"),
                arch: Arch::Aarch64,
                profile: Profile::Debug,
                load: $load,
                overlay: $overlay,
                command: $command,
                timeout: 3 * $timeout,
                extra: true,
                reboots: $reboots,
                panics: $panics,
                check: $check,
            },
        ]
    };
}

/// An arm64 board scenario with one of the broken overlays of `dts/tests/`:
/// the probe of its broken ring must fail saying `message`, and nothing
/// else may break (the sound ring next to it probes and streams).
macro_rules! broken_board {
    ($name:literal, $overlay:literal, $message:literal) => {
        both_boards!(
            concat!("board-broken-", $name),
            true,
            Some($overlay),
            concat!(selftest!("'broken="), $message, "'"),
            100
        )
    };
}

/// The multi-boot harness's own proof: three boots in one QEMU process,
/// with no driver loaded. Boot 1 writes a mark into the page of reserved
/// memory at `$addr`, which nothing else uses
/// (`tests/kernel/phys_mark`), and reboots (`reboot -f`); boot 2 finds it,
/// which shows that QEMU kept the guest's RAM over the reset, writes a
/// second mark and panics (`tests/kernel/panic_now`); boot 3 finds the
/// second mark and exits 0. Each boot tells which it is from the marks
/// alone: if the RAM were lost, every boot would be boot 1, and the run
/// would fail at its fourth boot. [`reboot_harness_check`] then checks
/// each boot's output and kernel lines on the host.
macro_rules! reboot_harness {
    ($addr:literal) => {
        concat!(
            "m=/lib/modules; ",
            "mark() { insmod $m/rmemring_phys_mark.ko addr=",
            $addr,
            " \"$@\" && rmmod rmemring_phys_mark; }; ",
            "if mark expect=second 2>/dev/null; then ",
            "echo 'reboot-harness: boot 3 found the second mark'; ",
            "elif mark expect=first 2>/dev/null; then ",
            "echo 'reboot-harness: boot 2 found the first mark; it panics'; ",
            "mark write=second && insmod $m/rmemring_panic_now.ko; exit 1; ",
            "else echo 'reboot-harness: boot 1 writes the first mark; it reboots'; ",
            "mark write=first && reboot -f; exit 1; fi"
        )
    };
}

/// [`reboot_harness!`]'s host-side check: each boot printed its own line
/// and logged its own kernel lines, in that boot and in no other (so the
/// console was split where the guest reset), the mark's address included.
fn reboot_harness_check(outcome: &Outcome) -> Result<(), String> {
    // Per boot: its output line, and its kernel lines.
    let expected: [(&str, &[&str]); 3] = [
        ("boot 1 writes the first mark", &["wrote 'first' at 0x"]),
        (
            "boot 2 found the first mark",
            &[
                "found 'first' at 0x",
                "wrote 'second' at 0x",
                crate::vm::PANIC_MARKER,
                "Kernel panic - not syncing: ",
            ],
        ),
        ("boot 3 found the second mark", &["found 'second' at 0x"]),
    ];
    if outcome.boots.len() != expected.len() {
        return Err(format!("{} boots, not 3", outcome.boots.len()));
    }
    for (i, (boot, (output, kernel))) in outcome.boots.iter().zip(expected).enumerate() {
        let n = i + 1;
        if !boot.output.iter().any(|line| line.contains(output)) {
            return Err(format!(
                "boot {n} did not print {output:?}: {:?}",
                boot.output
            ));
        }
        for needle in kernel {
            let logged_in: Vec<usize> = outcome
                .boots
                .iter()
                .enumerate()
                .filter(|(_, b)| {
                    b.console
                        .iter()
                        .any(|l| crate::vm::is_kernel_line(l) && l.contains(needle))
                })
                .map(|(j, _)| j + 1)
                .collect();
            if logged_in != [n] {
                return Err(format!(
                    "the kernel line {needle:?} is in the console of boot(s) {logged_in:?}, not of boot {n} alone"
                ));
            }
        }
    }
    Ok(())
}

/// The harness's boots in one QEMU on x86_64, with the page after the
/// reference region (`xtask/src/reference.rs`) as the mark: both twins run
/// only under `--all-kernels`. The default run has no normal x86_64
/// kernel, and three boots of the debug one cost 166 to 181 s on a loaded
/// host (23 to 39 s on the normal one; docs/vm.md has the measurements);
/// `board-reboot-harness` proves the same in the default run, and every
/// x86_64 suite with resets goes through the same harness on the debug
/// kernel.
const REBOOT_HARNESS: [Suite; 2] = {
    let [normal, mut debug] = both_kernels!(
        "reboot-harness",
        false,
        reboot_harness!("0x11002000"),
        60;
        2,
        1,
        Some(reboot_harness_check)
    );
    debug.extra = true;
    [normal, debug]
};

/// The flight recorder across a reset (issue 16, docs/flight-recorder.md):
/// boot 1's kernel logs the next sequence number as it writes the ring
/// back for the reset (`kept for the next boot (...): next sequence number
/// N`); the last boot must have recovered up to `N - 1` exactly, since the
/// reboot notifier stops the producers before it logs and a panic stops
/// the other CPUs.
fn recovery_check(outcome: &Outcome) -> Result<(), String> {
    let number = |line: &str, after: &str| -> Option<u64> {
        let rest = &line[line.find(after)? + after.len()..];
        rest.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    let hex = |line: &str, after: &str| -> Option<u64> {
        let rest = &line[line.find(after)? + after.len()..];
        let digits = rest.split(|c: char| !c.is_ascii_hexdigit()).next()?;
        u64::from_str_radix(digits, 16).ok()
    };
    let [first, .., last] = outcome.boots.as_slice() else {
        return Err(format!("{} boot(s), not 2", outcome.boots.len()));
    };
    let kept = first
        .console
        .iter()
        .find(|l| crate::vm::is_kernel_line(l) && l.contains("kept for the next boot ("))
        .ok_or("boot 1's kernel did not log the ring it kept")?;
    let logged = number(kept, "next sequence number ").ok_or("no sequence number in the log")?;
    let logged_pos = hex(kept, "published up to 0x").ok_or("no position in the log")?;
    let line = last
        .output
        .iter()
        .find(|l| l.contains("recovered last_seq="))
        .ok_or("the last boot did not print what it recovered")?;
    let recovered = number(line, "recovered last_seq=").ok_or("no last_seq")?;
    let recovered_pos = hex(line, "published_pos=0x").ok_or("no published_pos")?;
    if recovered_pos != logged_pos {
        return Err(format!(
            "boot 1 published up to {logged_pos:#x}, the last boot found {recovered_pos:#x}"
        ));
    }
    eprintln!(
        "    boot 1 kept the ring at next sequence number {logged}; boot {} recovered up to {recovered}",
        outcome.boots.len()
    );
    if recovered + 1 != logged {
        return Err(format!(
            "boot 1 published up to sequence number {}, the last boot recovered up to {recovered}",
            logged.wrapping_sub(1)
        ));
    }
    Ok(())
}

const X86_64: [[Suite; 2]; 18] = [
    both_kernels!("boot", true, BOOT, 120),
    // Bad parameters: the selftest loads the driver itself.
    both_kernels!("params", false, selftest!("params"), 200),
    both_kernels!("stream", true, then_c_consumer!(selftest!("stream")), 400),
    both_kernels!("loss", true, selftest!("loss"), 400),
    both_kernels!("wakeups", true, selftest!("wakeups"), 400),
    both_kernels!("misuse", true, selftest!("misuse"), 200),
    both_kernels!("lifecycle", false, selftest!("lifecycle"), 200),
    // The flight recorder (docs/flight-recorder.md): a ring kept across a
    // reboot, and across a panic (`rmemring_panic_now.ko`), recovered and
    // verified in the next boot; then garbage in the control page, a torn
    // header and a geometry change, one boot each, none served.
    both_kernels!(
        "recovery-reboot",
        false,
        selftest!("recovery-reboot"),
        120;
        1,
        0,
        Some(recovery_check)
    ),
    both_kernels!(
        "recovery-panic",
        false,
        selftest!("recovery-panic"),
        120;
        1,
        1,
        Some(recovery_check)
    ),
    both_kernels!("recovery-corrupt", false, selftest!("recovery-corrupt"), 150; 2, 0, None),
    both_kernels!("hostile", true, selftest!("hostile"), 200),
    // Scribbles under sleepers, mremap, a forked scribbler, /proc/self/mem,
    // kill -9 mid-stream, rmmod storms: fixed-time scenarios, 38-41 s in
    // the guest on the normal kernel and 49-57 s on the debug one (TCG,
    // 2026-12-03), about 100 s per boot with the build up to date.
    both_kernels!("hostile2", true, selftest!("hostile2"), 300),
    both_kernels!("cachemodes", true, selftest!("cachemodes"), 200),
    // The hardening review's defects, each with the test that found it.
    both_kernels!("regress", true, selftest!("regress"), 300),
    // Kernel code that is not rmemring's producing through the in-kernel
    // API: the sched_switch tracer of examples/kernel, alone in each mode,
    // with the built-in producer, and across RESETs. About 35 s in the
    // guest on the normal kernel, 70 s on the debug one (lockdep checks
    // the producer lock under the runqueue lock there).
    both_kernels!("kapi", true, selftest!("kapi"), 300),
    // The README's main job, `cargo xtask run`: the consumer example
    // streaming (every record verified), then the sched_switch tracer's
    // records decoded, with their rate (about 15 s in the guest).
    both_kernels!("demo", true, crate::run::COMMAND, 150),
    // Standard tools read the device as they read any stream (about 20 s).
    both_kernels!("tools", true, selftest!("tools"), 200),
    // The benchmarks run end to end, every cell of one size briefly (a
    // smoke test: no rate asserted, and none could be on the debug
    // kernel; it fails on any record that fails its check, on a BPF
    // program that does not load or attach, on a peer that loses records
    // it did not count), the real-event one with every peer and strategy,
    // then every peer with the load on both CPUs. [`bench_check`]: every
    // peer each benchmark lists (`--list`, from the one table of peers) was
    // measured: the synthetic one's none left out (its BPF peers' failures
    // are reported, not fatal), the real-event one's in every one of its
    // tables, but one that needs BTF where the kernel has none (the debug
    // kernel), which each run reported skipped.
    both_kernels!(
        "bench",
        true,
        "if test -e /sys/kernel/btf/vmlinux; then echo 'kernel BTF: yes'; \
         else echo 'kernel BTF: no'; fi \
         && echo 'bench peers:' && rmemring bench --list && echo 'end of bench peers' \
         && echo 'bench-events peers:' && rmemring bench-events --list \
         && echo 'end of bench-events peers' \
         && rmemring bench --json --duration 200ms --warmup 50ms --sizes 64 --no-idle \
            >/tmp/bench.jsonl && cat /tmp/bench.jsonl \
         && rmemring bench-events --duration 300ms --warmup 50ms --repeat 1 \
         && rmemring bench-events --load both --strategies periodic --duration 300ms \
            --warmup 50ms --repeat 1",
        400;
        0,
        0,
        Some(bench_check)
    ),
];

/// The lines around `rmemring bench --list` and `rmemring bench-events
/// --list` in the `bench` suite's output.
const BENCH_PEERS: (&str, &str) = ("bench peers:", "end of bench peers");
const EVENTS_PEERS: (&str, &str) = ("bench-events peers:", "end of bench-events peers");
/// The `bench` suite's `rmemring bench-events` runs: each says, under its
/// tables, which peer it left out and why.
const EVENTS_RUNS: usize = 2;

/// The `bench` suite's check of both benchmarks' peers, as the guest's
/// `--list`s name them (their defaults, from the one table of peers).
/// `rmemring bench` (`--json`): a `kernel` line for each peer, and no
/// `kernel-skip` (a measurement left out). `rmemring bench-events`: a row
/// for each peer in every table, but a peer that needs kernel BTF where
/// the kernel (as the guest said) has none: no row there, and each run's
/// report says it was not measured, and why.
fn bench_check(outcome: &Outcome) -> Result<(), String> {
    let lines: Vec<&str> = outcome.output.iter().map(|l| l.trim()).collect();
    let json: Vec<serde_json::Value> = lines
        .iter()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    if let Some(skip) = json.iter().find(|v| v["bench"] == "kernel-skip") {
        return Err(format!("rmemring bench left a measurement out: {skip}"));
    }
    for (peer, _) in listed_peers(outcome, BENCH_PEERS)? {
        if !json
            .iter()
            .any(|v| v["bench"] == "kernel" && v["impl"] == peer)
        {
            return Err(format!("rmemring bench measured nothing of {peer}"));
        }
    }
    let said = |line: &str| lines.contains(&line);
    let btf = if said("kernel BTF: yes") {
        true
    } else if said("kernel BTF: no") {
        false
    } else {
        return Err("the guest did not say whether its kernel has BTF".to_owned());
    };
    let count = |prefix: &str| lines.iter().filter(|l| l.starts_with(prefix)).count();
    let tables = count("| peer | round trips/s |");
    if tables == 0 {
        return Err("bench-events printed no tables".to_owned());
    }
    for (peer, about) in listed_peers(outcome, EVENTS_PEERS)? {
        let needs_btf = about
            .rsplit_once("(needs: ")
            .is_some_and(|(_, needs)| needs.contains("kernel BTF"));
        let rows = count(&format!("| {peer} |"));
        if needs_btf && !btf {
            let skipped = count(&format!("Not measured: {peer}: this kernel has no BTF"));
            if rows != 0 || skipped != EVENTS_RUNS {
                return Err(format!(
                    "the kernel has no BTF, but {peer} (which needs it) has {rows} rows, and \
                     {skipped} of the {EVENTS_RUNS} bench-events reports said it was not measured"
                ));
            }
        } else if rows != tables {
            return Err(format!(
                "{peer} has {rows} rows in the {tables} bench-events tables{}",
                if needs_btf {
                    " (the kernel has BTF)"
                } else {
                    ""
                }
            ));
        }
    }
    Ok(())
}

/// The peers a guest's `--list` printed between the lines `markers`
/// (lines `NAME: TITLE (needs: A, B)`, each followed by indented ones):
/// each name and the rest of its line.
fn listed_peers<'a>(
    outcome: &'a Outcome,
    markers: (&str, &str),
) -> Result<Vec<(&'a str, &'a str)>, String> {
    let (begin, end) = markers;
    let list: Vec<&str> = outcome
        .output
        .iter()
        .map(|l| l.trim_end())
        .skip_while(|l| *l != begin)
        .skip(1)
        .take_while(|l| *l != end)
        .filter(|l| !l.starts_with(char::is_whitespace))
        .collect();
    let peers: Vec<(&str, &str)> = list.iter().filter_map(|l| l.split_once(": ")).collect();
    if peers.is_empty() || peers.len() != list.len() {
        return Err(format!(
            "the guest listed no peers after {begin:?}: {list:?}"
        ));
    }
    Ok(peers)
}

/// The arm64 board (dts/qemu-virt-board.dtso) and its broken variants. The
/// guest gets what it must find from the overlay (`dt::expectations`, in
/// /add/board-rings.json).
const BOARD: [[Suite; 2]; 14] = [
    // Rings revoked under their users (unbind while the tracer, the
    // producer thread and a process use them), reprobed, streamed.
    both_boards!("board", true, None, selftest!("board"), 300),
    // The module-parameter path next to the device tree: the selftest
    // loads the driver with the overlay's spare region as parameters.
    both_boards!("board-params", false, None, selftest!("board-params"), 200),
    // The hardening review's regressions on the board's ring (from the
    // device tree) and kernel: the default run's normal kernel has them
    // too, not only the x86_64 debug one.
    both_boards!("board-regress", true, None, selftest!("regress"), 300),
    // The in-kernel API's clients on the board's ring and normal kernel
    // (the default run's x86_64 kernel is the debug one): the tracer's
    // stream in both modes, the Rust hard-IRQ sampler, the contract.
    // And the C consumer, cross-compiled.
    both_boards!(
        "board-kapi",
        true,
        None,
        then_c_consumer!(selftest!("kapi")),
        300
    ),
    // The harness's boots in one QEMU on the board: PSCI's reset and
    // power-off, the overlay's spare region (no driver node) as the mark.
    // 11 to 18 s on a loaded host (docs/vm.md).
    both_boards!(
        "board-reboot-harness",
        false,
        None,
        reboot_harness!("0x76000000"),
        60;
        2,
        1,
        Some(reboot_harness_check)
    ),
    // The flight recorder on the board: a device-tree ring with
    // rmemring,retain (dts/tests/retain.dtso), kept across a reboot.
    both_boards!(
        "board-recovery",
        false,
        Some("tests/retain.dtso"),
        selftest!("recovery-reboot"),
        120;
        1,
        0,
        Some(recovery_check)
    ),
    broken_board!(
        "no-memory-region",
        "tests/no-memory-region.dtso",
        "no memory-region"
    ),
    broken_board!("no-nomap", "tests/no-nomap.dtso", "lacks no-map"),
    broken_board!("too-small", "tests/too-small.dtso", "too small"),
    broken_board!(
        "not-page-aligned",
        "tests/not-page-aligned.dtso",
        "not page-aligned"
    ),
    broken_board!(
        "bad-cache-mode",
        "tests/bad-cache-mode.dtso",
        "rmemring,cache-mode: unknown value"
    ),
    broken_board!("bad-label", "tests/bad-label.dtso", "not a device name"),
    broken_board!(
        "label-clash",
        "tests/label-clash.dtso",
        "already taken by another ring"
    ),
    broken_board!(
        "dynamic-region",
        "tests/dynamic-region.dtso",
        "no static reg"
    ),
];

/// The scenarios, in the order they run.
///
/// `cargo xtask test` boots two kernels, which is what fits its cold
/// budget (45 minutes on a 2-core machine; every kernel costs about 10 of
/// them): the x86_64 reference VM's **debug** kernel, where the hardening
/// suites look for use after free, lock inversions and unwinding bugs,
/// and the arm64 board's **normal** kernel, the one `cargo xtask run
/// --arch aarch64` and an embedded user boot. `--all-kernels` adds every
/// scenario's twin on the two other kernels ([`Suite::extra`]).
pub fn suites() -> Vec<Suite> {
    let mut suites: Vec<Suite> = Vec::new();
    suites.extend(X86_64.iter().map(|pair| pair[1].clone()));
    // Allocation failures on every path, and kmemleak: debug kernel only.
    suites.push(Suite {
        name: "faults-debug",
        arch: Arch::X86_64,
        profile: Profile::Debug,
        load: true,
        overlay: None,
        command: selftest!("faults"),
        timeout: 900,
        extra: false,
        reboots: 0,
        panics: 0,
        check: None,
    });
    suites.extend(BOARD.iter().map(|pair| pair[0].clone()));
    suites.extend(X86_64.iter().map(|pair| pair[0].clone()));
    suites.extend(REBOOT_HARNESS.iter().cloned());
    suites.extend(BOARD.iter().map(|pair| pair[1].clone()));
    suites
}

/// What the DKMS suite's command prints before the loaded module's
/// build-id note, in hex.
pub const DKMS_NOTE: &str = "dkms-build-id-note ";

/// The module the `dkms x86_64-debug` check built from the `cargo xtask
/// dist` tarball, loaded in its kernel: the boot loads it in place of the
/// in-tree build (`test.rs` swaps the module), the command shows that the
/// kernel took it without a signature complaint (DKMS signed it with the
/// kernel's key), prints the loaded module's GNU build-id note from sysfs
/// (`srcversion` would not do: the kernel has no
/// `CONFIG_MODULE_SRCVERSION_ALL`, and the two builds compile the same
/// source) and streams 20 000 records through the async example, every
/// one verified. The host then requires that note to be the DKMS module's
/// and not the in-tree one's (see `test.rs`). Not a row of [`suites`]: it
/// runs after its target's suites, and only when the DKMS check built a
/// module.
pub fn dkms() -> Suite {
    Suite {
        name: "dkms-debug",
        arch: crate::dist::DKMS_TARGET.arch,
        profile: crate::dist::DKMS_TARGET.profile,
        load: true,
        overlay: None,
        command: concat!(
            "lsmod | grep rmemring",
            " && ! dmesg | grep -i 'module verification failed'",
            " && echo \"dkms-build-id-note $(od -An -v -tx1 /sys/module/rmemring/notes/.note.gnu.build-id | tr -d ' \\n')\"",
            " && rmemring-async --count 20000"
        ),
        timeout: 300,
        extra: false,
        reboots: 0,
        panics: 0,
        check: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dkms_suite_prints_the_note_it_is_checked_by() {
        let suite = dkms();
        assert!(suite.command.contains(DKMS_NOTE.trim_end()));
        assert!(suites().iter().all(|s| s.name != suite.name));
    }

    #[test]
    fn broken_board_suites_match_the_broken_overlays() {
        let suites = suites();
        for (name, path, message) in crate::dt::broken_overlays() {
            let suite = suites
                .iter()
                .find(|s| s.name == format!("board-broken-{name}"))
                .unwrap_or_else(|| panic!("no suite for the broken overlay {name}"));
            let overlay = crate::project_root()
                .join("dts")
                .join(suite.overlay.unwrap());
            assert_eq!(overlay, path, "{name}");
            assert!(
                suite.command.contains(&format!("broken={message}")),
                "{name}"
            );
        }
    }

    #[test]
    fn every_selftest_runs_strict() {
        for suite in suites() {
            if suite.command.contains("rmemring-selftest") {
                assert!(
                    suite.command.starts_with("rmemring-selftest --strict "),
                    "{}: {}",
                    suite.name,
                    suite.command
                );
            }
        }
        let broken = suites()
            .into_iter()
            .find(|s| s.name == "board-broken-too-small")
            .unwrap();
        assert_eq!(
            broken.command,
            "rmemring-selftest --strict 'broken=too small'"
        );
        let params = suites().into_iter().find(|s| s.name == "params").unwrap();
        assert_eq!(params.command, "rmemring-selftest --strict params");
        assert!(
            params.extra,
            "the normal x86_64 kernel is --all-kernels' only"
        );
    }

    /// The cold budget allows two kernels; a third must be a deliberate
    /// change (and a re-measured cold run).
    #[test]
    fn the_default_run_boots_two_kernels() {
        let mut targets: Vec<Target> = Vec::new();
        for suite in suites().iter().filter(|s| !s.extra) {
            if !targets.contains(&suite.target()) {
                targets.push(suite.target());
            }
        }
        let names: Vec<String> = targets.iter().map(Target::to_string).collect();
        assert_eq!(names, ["x86_64-debug", "aarch64"]);
        // Every scenario has its twin under --all-kernels but faults-debug
        // (fault injection needs the debug kernel), and the x86_64
        // reboot-harness is --all-kernels' on both kernels.
        let extra = suites().iter().filter(|s| s.extra).count();
        let default = suites().len() - extra;
        assert_eq!(default, extra + 1 - REBOOT_HARNESS.len());
    }

    #[test]
    fn the_reboot_harness_marks_pages_no_driver_uses() {
        use crate::reference::{
            X86_64_GUARD_SIZE,
            X86_64_PHYS_BASE,
            X86_64_PHYS_SIZE, //
        };
        // x86_64: the guard page after the region, in the reservation.
        const { assert!(X86_64_GUARD_SIZE >= 0x1000) };
        let guard = format!("addr={:#x} ", X86_64_PHYS_BASE + X86_64_PHYS_SIZE);
        let board = suites()
            .into_iter()
            .find(|s| s.name == "board-reboot-harness")
            .unwrap();
        for suite in REBOOT_HARNESS.iter().chain([&board]) {
            assert_eq!((suite.reboots, suite.panics), (2, 1), "{}", suite.name);
            assert!(!suite.load, "{}", suite.name);
        }
        for suite in &REBOOT_HARNESS {
            assert!(suite.command.contains(&guard), "{}", suite.command);
        }
        // arm64: the board overlay's spare region, which no ring node names.
        let overlay = include_str!("../../dts/qemu-virt-board.dtso");
        assert!(overlay.contains("params_mem: ring@76000000 {"));
        assert!(!overlay.contains("<&params_mem>"));
        assert!(board.command.contains("addr=0x76000000 "));
        assert!(!board.extra, "the default run has the board's");
    }

    #[test]
    fn the_reboot_harness_check_reads_what_the_test_modules_log() {
        let panic_now = include_str!("../../tests/kernel/panic_now/rmemring_panic_now.c");
        assert!(panic_now.contains(&format!("#define MARKER \"{}\"", crate::vm::PANIC_MARKER)));
        let phys_mark = include_str!("../../tests/kernel/phys_mark/rmemring_phys_mark.c");
        assert!(phys_mark.contains(r#""wrote '%s' at %#lx\n""#));
        assert!(phys_mark.contains(r#""found '%s' at %#lx\n""#));
    }

    #[test]
    fn the_reboot_harness_check_wants_each_line_in_its_own_boot() {
        use crate::vm::{
            Accel,
            Boot,
            PANIC_MARKER, //
        };
        let boot = |output: &str, kernel: &[&str]| {
            let mut boot = Boot::default();
            boot.console = kernel
                .iter()
                .map(|k| format!("[    2.000000] {k}"))
                .collect();
            boot.output = vec![format!("reboot-harness: {output}")];
            boot
        };
        let panic_line = format!("Kernel panic - not syncing: {PANIC_MARKER}");
        let good = || {
            vec![
                boot(
                    "boot 1 writes the first mark; it reboots",
                    &["rmemring_phys_mark: wrote 'first' at 0x76000000"],
                ),
                boot(
                    "boot 2 found the first mark; it panics",
                    &[
                        "rmemring_phys_mark: found 'first' at 0x76000000",
                        "rmemring_phys_mark: wrote 'second' at 0x76000000",
                        PANIC_MARKER,
                        &panic_line,
                    ],
                ),
                boot(
                    "boot 3 found the second mark",
                    &["rmemring_phys_mark: found 'second' at 0x76000000"],
                ),
            ]
        };
        let outcome = |boots: Vec<Boot>| Outcome {
            status: Some(0),
            output: Vec::new(),
            console: Vec::new(),
            dmesg: Vec::new(),
            boots,
            problems: Vec::new(),
            accel: Accel::Tcg,
        };
        reboot_harness_check(&outcome(good())).unwrap();
        let mut swapped = good();
        swapped.swap(0, 1);
        let mut two = good();
        two.pop();
        // A kernel line of boot 1 also in boot 3's console: the console
        // was not split where the guest reset.
        let mut unsplit = good();
        let first = unsplit[0].console[0].clone();
        unsplit[2].console.push(first);
        for (case, boots) in [("swapped", swapped), ("two", two), ("unsplit", unsplit)] {
            assert!(reboot_harness_check(&outcome(boots)).is_err(), "{case}");
        }
    }

    #[test]
    fn suite_names_are_unique() {
        let suites = suites();
        for (i, a) in suites.iter().enumerate() {
            assert!(
                suites[i + 1..].iter().all(|b| b.name != a.name),
                "{}",
                a.name
            );
        }
    }

    #[test]
    fn the_bench_check_wants_every_listed_peer_in_every_table() {
        use crate::vm::Accel;
        let outcome = |output: &[&str]| Outcome {
            status: Some(0),
            output: output.iter().map(|l| (*l).to_owned()).collect(),
            console: Vec::new(),
            dmesg: Vec::new(),
            boots: Vec::new(),
            problems: Vec::new(),
            accel: Accel::Tcg,
        };
        let (synthetic, synthetic_end) = BENCH_PEERS;
        let (begin, end) = EVENTS_PEERS;
        let list = [
            synthetic,
            "rmemring: zero-copy",
            "  producer: the driver's kernel thread",
            "bpf: BPF (needs: the bpf feature)",
            synthetic_end,
            r#"{"bench":"kernel","impl":"rmemring","mode":"busy-poll"}"#,
            r#"{"bench":"kernel","impl":"bpf","mode":"busy-poll"}"#,
            begin,
            "bpf-raw: a raw_tp/ BPF program (needs: the bpf feature, task_struct offsets)",
            "  producer: a raw_tp/sched_switch program",
            "  consumer: as bpf's",
            "bpf-btf: a tp_btf/ BPF program (needs: the bpf feature, kernel BTF)",
            "  consumer: as bpf's",
            end,
        ];
        let header = "| peer | round trips/s | vs none (range) | added per switch (range) |";
        let raw = "| bpf-raw | 9000 | 0.90 (0.90..0.90) | 500 ns (500..500) |";
        let btf = "| bpf-btf | 9100 | 0.91 (0.91..0.91) | 450 ns (450..450) |";
        let skipped = "Not measured: bpf-btf: this kernel has no BTF (/sys/kernel/btf/vmlinux)";
        let run = |said: &str, tables: &[&[&str]]| -> Vec<String> {
            let mut lines = vec![said.to_owned()];
            lines.extend(list.iter().map(|l| (*l).to_owned()));
            for table in tables {
                lines.push(header.to_owned());
                lines.extend(table.iter().map(|l| (*l).to_owned()));
            }
            lines
        };
        let check = |lines: Vec<String>| {
            let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
            bench_check(&outcome(&lines))
        };
        check(run("kernel BTF: yes", &[&[raw, btf], &[raw, btf]])).unwrap();
        check(run("kernel BTF: no", &[&[raw, skipped], &[raw, skipped]])).unwrap();
        // The synthetic benchmark's: a listed peer unmeasured, a
        // measurement left out, no list.
        let good = || run("kernel BTF: yes", &[&[raw, btf], &[raw, btf]]);
        let without = |gone: &str| -> Vec<String> {
            good().into_iter().filter(|l| !l.contains(gone)).collect()
        };
        let mut left_out = good();
        left_out.push(r#"{"bench":"kernel-skip","impl":"bpf","reason":"no"}"#.to_owned());
        for (case, lines) in [
            ("bpf unmeasured", without(r#""impl":"bpf""#)),
            ("a measurement left out", left_out),
            ("no bench list", without(synthetic)),
            (
                "skipped with BTF",
                run("kernel BTF: yes", &[&[raw, skipped], &[raw, btf]]),
            ),
            (
                "a table without it",
                run("kernel BTF: yes", &[&[raw, btf], &[raw]]),
            ),
            (
                "a table without bpf-raw",
                run("kernel BTF: no", &[&[raw, skipped], &[skipped]]),
            ),
            (
                "a run without BTF",
                run("kernel BTF: no", &[&[raw, btf, skipped], &[raw, skipped]]),
            ),
            ("not said skipped", run("kernel BTF: no", &[&[raw], &[raw]])),
            ("no tables", run("kernel BTF: yes", &[])),
            ("the guest said nothing", run("", &[&[raw, btf]])),
            (
                "no list",
                vec![
                    "kernel BTF: yes".to_owned(),
                    header.to_owned(),
                    raw.to_owned(),
                ],
            ),
        ] {
            assert!(check(lines).is_err(), "{case}");
        }
    }
}
