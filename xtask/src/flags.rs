//! The command line. Each task's `run` lives in the task's own module.

use std::path::PathBuf;

use clap::{
    Args,
    Parser,
    Subcommand, //
};

use crate::arch::{
    Arch,
    Profile,
    Target, //
};

/// rmemring's build, VM and test tasks.
///
/// Kernel, module and VM tasks need root and apt (Debian or Ubuntu): they
/// install missing host packages and build in a Debian sid chroot cached in
/// $RMEMRING_CACHE (default ~/.cache/rmemring).
#[derive(Parser, Debug)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    arg_required_else_help = true
)]
pub struct Xtask {
    #[command(subcommand)]
    pub task: Task,
}

#[derive(Subcommand, Debug)]
pub enum Task {
    /// Build the reference kernel (cached; a no-op when nothing changed).
    Kernel(Kernel),
    /// Build driver/ out of tree against the reference kernel.
    Module(Module),
    /// Build the static user-space binaries that go into the guest.
    Guest(Guest),
    /// Boot the reference VM, run COMMAND in it, exit with its status.
    VmRun(VmRun),
    /// Boot the reference VM with an interactive shell.
    VmShell(VmShell),
    /// Stream from the driver to the consumer example in the reference VM.
    Run(Run),
    /// Run every check: fmt, clippy, tests, loom, docs, kernel and VM suites.
    Test(Test),
    /// Benchmark the kernel paths in the reference VM into docs/bench/ (--host: the host rings).
    Bench(Bench),
    /// Fuzz the shared producer and consumer logic with libFuzzer (fuzz/).
    Fuzz(Fuzz),
    /// Soak the driver in the reference VM for M minutes (every record verified), then fuzz.
    Soak(Soak),
    /// Write what a distribution packages into target/dist/: the DKMS source
    /// tarball, shell completions and manual pages.
    Dist(Dist),
}

/// Which kernel: architecture and profile.
#[derive(Args, Debug, Clone, Copy)]
pub struct TargetArgs {
    /// The guest architecture.
    #[arg(long, value_enum, default_value_t = Arch::X86_64)]
    pub arch: Arch,
    /// The debug kernel: KASAN, lockdep, DEBUG_VM, Rust debug assertions.
    #[arg(long)]
    pub debug: bool,
}

impl TargetArgs {
    pub fn target(self) -> Target {
        let profile = if self.debug {
            Profile::Debug
        } else {
            Profile::Normal
        };
        Target {
            arch: self.arch,
            profile,
        }
    }
}

#[derive(Args, Debug)]
pub struct Kernel {
    #[command(flatten)]
    pub target: TargetArgs,
}

#[derive(Args, Debug)]
pub struct Module {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Rebuild from clean, so that every warning is shown again.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct Guest {
    /// The guest architecture.
    #[arg(long, value_enum, default_value_t = Arch::X86_64)]
    pub arch: Arch,
}

/// Options shared by `vm-run` and `vm-shell`.
#[derive(Args, Debug)]
pub struct VmArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Copy FILE into the guest's /add/ (repeatable).
    #[arg(long, value_name = "FILE")]
    pub add: Vec<PathBuf>,
    /// Append EXTRA to the kernel command line.
    #[arg(long, value_name = "EXTRA")]
    pub cmdline: Option<String>,
    /// arm64: boot with this device-tree overlay (.dtso) instead of the board's.
    #[arg(long, value_name = "FILE")]
    pub overlay: Option<PathBuf>,
    /// Do not load the driver at boot (it is still at /lib/modules/rmemring.ko).
    #[arg(long)]
    pub no_load: bool,
}

#[derive(Args, Debug)]
pub struct VmRun {
    #[command(flatten)]
    pub vm: VmArgs,
    /// Kill the VM and fail after SECS seconds.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub timeout: u64,
    /// Also show the kernel console on stderr.
    #[arg(long, short)]
    pub verbose: bool,
    /// Under TCG, make guest time count instructions (QEMU `-icount`, one
    /// vCPU at a time): rates that do not depend on the host's load, as
    /// `cargo xtask bench` measures real events.
    #[arg(long)]
    pub icount: bool,
    /// Boot N+1 times in one QEMU: the command runs on every boot, and must
    /// reset the guest itself (`reboot -f`, a panic) on all but the last,
    /// whose status counts. Guest RAM survives the resets.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub reboots: u32,
    /// Of those resets, N are deliberate panics (`insmod
    /// /lib/modules/rmemring_panic_now.ko`): the panic after its marker
    /// line is not a kernel problem.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub panics: u32,
    /// The guest command, run with `sh -c` (the words are joined by spaces).
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct VmShell {
    #[command(flatten)]
    pub vm: VmArgs,
}

#[derive(Args, Debug)]
pub struct Run {
    /// The guest architecture: x86_64 is the reference VM, aarch64 the board.
    #[arg(long, value_enum, default_value_t = Arch::X86_64)]
    pub arch: Arch,
}

#[derive(Args, Debug)]
pub struct Test {
    /// Only the host checks: no kernel, module or VM.
    #[arg(long)]
    pub host_only: bool,
    /// Also every VM suite's twin on the two other kernels (the normal
    /// x86_64 kernel, the debug arm64 one): four kernels instead of two.
    #[arg(long)]
    pub all_kernels: bool,
    /// Only the checks and suites whose name contains SUBSTR (and what they need).
    #[arg(long, value_name = "SUBSTR")]
    pub filter: Option<String>,
    /// Go on after a failure (the default).
    #[arg(long, conflicts_with = "fail_fast")]
    pub keep_going: bool,
    /// Stop at the first failure.
    #[arg(long)]
    pub fail_fast: bool,
}

/// `Bench::duration`'s default.
#[derive(Args, Debug)]
pub struct Bench {
    /// Run the host ring benchmark instead (`cargo bench -p rmemring --bench host`).
    #[arg(long)]
    pub host: bool,
    /// Fewer sizes, shorter measurements and warm-ups, three rounds still
    /// (host: its own --quick).
    #[arg(long)]
    pub quick: bool,
    /// --host only: JSON lines on stdout.
    #[arg(long, requires = "host")]
    pub json: bool,
    /// Measured time per path, size, workload and round in the VM [default:
    /// 1s; 400ms with --quick].
    #[arg(long, value_name = "D", conflicts_with = "host")]
    pub duration: Option<String>,
    /// Kill the VM and fail after SECS seconds.
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    pub timeout: u64,
    /// Print the results but leave docs/bench/ alone.
    #[arg(long)]
    pub no_write: bool,
    /// Write the results even if source files have uncommitted changes (a
    /// run that writes them refuses otherwise): the results then cite the
    /// commit with `-dirty`, which no one can check out again.
    #[arg(long, conflicts_with_all = ["no_write", "render"])]
    pub allow_dirty: bool,
    /// Run nothing: render docs/bench/kernel-latest.jsonl (and events-, host-latest.jsonl)
    /// into their reports again; with --host, only host-latest.jsonl.
    #[arg(long, conflicts_with = "no_write")]
    pub render: bool,
    /// More arguments for `rmemring bench` in the guest (or the host benchmark).
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct Fuzz {
    /// Seconds to run each target.
    #[arg(long, value_name = "N", default_value_t = 60)]
    pub seconds: u64,
    /// Only this target (repeatable): consumer, producer.
    #[arg(long, value_name = "T")]
    pub target: Vec<String>,
    /// Keep in fuzz/corpus/ the fewest inputs covering every edge covered.
    #[arg(long)]
    pub update_corpus: bool,
}

#[derive(Args, Debug)]
pub struct Soak {
    /// How long the in-guest soak runs, in minutes.
    #[arg(long, value_name = "M", default_value_t = 10)]
    pub minutes: u64,
    #[command(flatten)]
    pub target: TargetArgs,
    /// The guest's RMEMRING_SOAK_SEED, to repeat a run's choices (default: a fresh seed, printed).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Seconds of `cargo xtask fuzz` afterwards (default: as long as the soak; 0: none).
    #[arg(long, value_name = "N")]
    pub fuzz_seconds: Option<u64>,
}

#[derive(Args, Debug)]
pub struct Dist {
    /// Where to write (default: target/dist in the repository).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}
