//! `cargo xtask vm-run` and `vm-shell`: boot the reference kernel in QEMU.
//!
//! The guest is an initramfs (see [`crate::initramfs`]) whose `/init` runs
//! one command and reports through marker lines on the serial console. The
//! host streams the command's output, keeps the kernel's lines apart (they
//! carry a `[ time]` prefix), and scans the kernel log `/init` dumps at the end
//! for splats: any of [`KERNEL_PROBLEMS`] fails the run, whatever the
//! command's status.
//!
//! Every boot has a timeout; on expiry QEMU is killed. KVM is used only where
//! a bounded probe boot showed that it works (the verdict is cached); else
//! TCG with one host thread per vCPU.

use std::collections::HashSet;
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
    Child,
    Command,
    ExitCode,
    Stdio, //
};
use std::sync::mpsc::{
    self,
    Receiver,
    RecvTimeoutError, //
};
use std::time::{
    Duration,
    Instant, //
};

use anyhow::{
    bail,
    ensure,
    Context,
    Result, //
};
use rmemring_board_expect::Expectations;
use xshell::{
    cmd,
    Shell, //
};

use crate::arch::{
    Arch,
    Profile,
    Target, //
};
use crate::cache;
use crate::dt;
use crate::exec::{
    shell_words,
    tail,
    Log, //
};
use crate::flags;
use crate::guest::{
    self,
    Guest, //
};
use crate::host;
use crate::initramfs::{
    self,
    Marker,
    Spec, //
};
use crate::kernel::{
    self,
    Kernel, //
};
use crate::module::{
    self,
    Module, //
};
use crate::reference;

/// Guest memory, MiB.
pub const MEMORY_MIB: &str = "1024";
/// Guest vCPUs.
const CPUS: &str = "2";

/// Kernel log fragments that fail a run: splats, sanitizer and lockdep
/// reports, corruption checks. Each must start a word (so `BUG` does not
/// match `DEBUG`).
pub const KERNEL_PROBLEMS: &[&str] = &[
    "Kernel panic",
    "BUG:",
    "BUG ",
    "kernel BUG",
    "WARNING:",
    "Oops",
    "KASAN",
    "UBSAN",
    "KFENCE",
    "possible circular locking",
    "possible recursive locking",
    "inconsistent lock state",
    "INFO: ",
    "Call Trace",
    "refcount_t",
    "list_add corruption",
    "list_del corruption",
    "general protection fault",
    "Unable to handle kernel",
    "stack-protector",
    "soft lockup",
    "hard LOCKUP",
    "self-detected stall",
];

/// How long the KVM probe boot may take before KVM is declared broken.
const KVM_PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// What the probe's kernel prints once it has booted as far as it can with
/// no initramfs: it looked for an init and panics (at about 1.2 s under
/// TCG).
const PROBE_BOOTED: &str = "Kernel panic - not syncing";

/// How many console lines a failure shows.
const CONSOLE_TAIL: usize = 30;

impl flags::VmRun {
    pub fn run(self, sh: &Shell) -> Result<ExitCode> {
        let log = Log::terminal();
        let artifacts = artifacts(sh, &log, self.vm.target.target(), false)?;
        let command = self.command.join(" ");
        let outcome = boot(
            sh,
            &log,
            &artifacts,
            &Options {
                add: &self.vm.add,
                cmdline: self.vm.cmdline.as_deref(),
                load: !self.vm.no_load,
                overlay: self.vm.overlay.as_deref(),
                command: Some(&command),
                timeout: Duration::from_secs(self.timeout),
                echo: Echo::Live {
                    console: self.verbose,
                },
                icount: self.icount,
            },
        )?;
        if !outcome.problems.is_empty() {
            eprintln!("{}", outcome.report());
        }
        Ok(outcome.exit_code())
    }
}

impl flags::VmShell {
    pub fn run(self, sh: &Shell) -> Result<ExitCode> {
        let log = Log::terminal();
        let artifacts = artifacts(sh, &log, self.vm.target.target(), false)?;
        let options = Options {
            add: &self.vm.add,
            cmdline: self.vm.cmdline.as_deref(),
            load: !self.vm.no_load,
            overlay: self.vm.overlay.as_deref(),
            command: None,
            timeout: Duration::MAX,
            echo: Echo::Live { console: true },
            icount: false,
        };
        let run = RunDir::new()?;
        let (qemu, _) = prepare(sh, &log, &artifacts, &options, &run.0)?;
        log.echo(&shell_words(&qemu));
        eprintln!("Leave the VM with `reboot -f` (or exit), or kill QEMU with Ctrl-A X.");
        let mut command = Command::new(&qemu[0]);
        command.args(&qemu[1..]);
        let status = command.status().context("running QEMU")?;
        Ok(if status.success() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }
}

/// Everything a boot needs, built.
pub struct Artifacts {
    pub kernel: Kernel,
    pub module: Module,
    pub guest: Guest,
}

/// Builds (or finds) the kernel, driver and guest user space for `target`.
/// With `force_module`, the driver is rebuilt from clean, so that its
/// warnings are all reported.
pub fn artifacts(sh: &Shell, log: &Log, target: Target, force_module: bool) -> Result<Artifacts> {
    host::ensure(sh, log, vm_packages(target.arch))?;
    let kernel = kernel::build(sh, log, target)?;
    let module = module::build(sh, log, &kernel, force_module)?;
    let guest = guest::build(sh, log, target.arch)?;
    Ok(Artifacts {
        kernel,
        module,
        guest,
    })
}

/// The host packages a VM of `arch` needs.
pub fn vm_packages(arch: Arch) -> &'static [&'static str] {
    match arch {
        Arch::X86_64 => host::VM_X86_64,
        Arch::Aarch64 => host::VM_AARCH64,
    }
}

/// What one boot does.
pub struct Options<'a> {
    /// Files for the guest's `/add`.
    pub add: &'a [PathBuf],
    /// Extra kernel command-line words.
    pub cmdline: Option<&'a str>,
    /// Load the driver with the reference parameters.
    pub load: bool,
    /// arm64: the device-tree overlay; `None` for the board's
    /// ([`dt::board_overlay`]).
    pub overlay: Option<&'a Path>,
    /// The guest command; `None` for an interactive shell.
    pub command: Option<&'a str>,
    pub timeout: Duration,
    pub echo: Echo,
    /// Under TCG, count instructions for guest time (`-icount`, see
    /// [`Accel::TcgIcount`]): for measurements that must not depend on what
    /// else the host runs. Ignored where KVM works.
    pub icount: bool,
}

impl<'a> Options<'a> {
    /// The usual boot of a task: the driver loaded with the reference
    /// parameters, the board's own overlay, `command` run with its output
    /// shown live (the console not), killed after `timeout`.
    pub fn live(command: &'a str, timeout: Duration) -> Self {
        Options {
            add: &[],
            cmdline: None,
            load: true,
            overlay: None,
            command: Some(command),
            timeout,
            echo: Echo::Live { console: false },
            icount: false,
        }
    }
}

/// What is shown while the guest runs.
pub enum Echo {
    /// The command's output to stdout, live; with `console`, the rest of
    /// the console to stderr.
    Live { console: bool },
    /// Nothing: the caller reports from the [`Outcome`].
    Quiet,
}

/// What happened in the guest.
pub struct Outcome {
    /// The command's exit status, if it ran and reported one.
    pub status: Option<i32>,
    /// The command's output.
    pub output: Vec<String>,
    /// The whole serial console.
    pub console: Vec<String>,
    /// The kernel log dumped after the command.
    pub dmesg: Vec<String>,
    /// Why the run fails even if the command succeeded: kernel splats,
    /// insmod/rmmod failures, a missing status.
    pub problems: Vec<String>,
    /// How QEMU executed the guest.
    pub accel: Accel,
}

impl Outcome {
    /// The command succeeded and the kernel stayed clean.
    pub fn passed(&self) -> bool {
        self.status == Some(0) && self.problems.is_empty()
    }

    /// The status `vm-run` exits with: the command's, or 1 for a kernel problem.
    pub fn exit_code(&self) -> ExitCode {
        match self.status {
            Some(status) if status != 0 => ExitCode::from(u8::try_from(status).unwrap_or(1)),
            Some(0) if self.problems.is_empty() => ExitCode::SUCCESS,
            _ => ExitCode::FAILURE,
        }
    }

    /// A failure report: the problems, then the end of the console.
    pub fn report(&self) -> String {
        let mut report = String::new();
        match self.status {
            Some(status) => report += &format!("guest command exited with status {status}\n"),
            None => report += "guest command reported no exit status\n",
        }
        for problem in &self.problems {
            report += &format!("problem: {problem}\n");
        }
        if !self.problems.is_empty() || self.status.is_none() {
            report += "last console lines:\n";
            for line in tail(&self.console, CONSOLE_TAIL) {
                report += &format!("  | {line}\n");
            }
        } else if self.status != Some(0) {
            // The command failed on a clean kernel: its output says why, and
            // the driver's own messages may say more.
            report += "driver messages:\n";
            for line in self.dmesg.iter().filter(|line| line.contains("rmemring")) {
                report += &format!("  | {line}\n");
            }
        }
        report
    }
}

/// Boots the guest once, runs the command of `options`, and reports.
///
/// Fails (rather than returning an [`Outcome`]) when QEMU cannot start or
/// the timeout expires.
pub fn boot(
    sh: &Shell,
    log: &Log,
    artifacts: &Artifacts,
    options: &Options<'_>,
) -> Result<Outcome> {
    let run = RunDir::new()?;
    let (qemu, accel) = prepare(sh, log, artifacts, options, &run.0)?;
    let mut process = Qemu::spawn(log, &qemu)?;
    let deadline = Instant::now().checked_add(options.timeout);

    let (live, console_echo) = match options.echo {
        Echo::Live { console } => (true, console),
        Echo::Quiet => (false, false),
    };
    let mut outcome = Outcome {
        status: None,
        output: Vec::new(),
        console: Vec::new(),
        dmesg: Vec::new(),
        problems: Vec::new(),
        accel,
    };
    let mut phase = Phase::Boot;
    let mut qemu_errors = Vec::new();
    loop {
        let (from_console, line) = match process.next(deadline) {
            Next::Console(line) => (true, line),
            Next::Stderr(line) => (false, line),
            Next::Exited => break,
            Next::TimedOut => {
                process.kill();
                let secs = options.timeout.as_secs();
                let mut msg = format!("timed out after {secs} s; last console lines:");
                for line in tail(&outcome.console, CONSOLE_TAIL) {
                    msg += &format!("\n  | {line}");
                }
                bail!(msg);
            }
        };
        if !from_console {
            if console_echo || live {
                eprintln!("qemu: {line}");
            }
            qemu_errors.push(line);
            continue;
        }
        outcome.console.push(line.clone());
        if let Some((before, marker)) = Marker::find(&line) {
            if phase == Phase::Command && !before.is_empty() {
                if live {
                    println!("{before}");
                }
                outcome.output.push(before.to_owned());
            }
            match marker {
                Marker::Begin => phase = Phase::Command,
                Marker::Status(status) => {
                    outcome.status = Some(status);
                    phase = Phase::After;
                }
                Marker::InsmodFailed(status) => outcome.problems.push(format!(
                    "insmod rmemring.ko failed in the guest (status {status})"
                )),
                Marker::RmmodFailed(status) => outcome.problems.push(format!(
                    "rmmod rmemring failed after the command (status {status})"
                )),
                Marker::Dmesg => phase = Phase::Dmesg,
                Marker::End => phase = Phase::Done,
            }
            continue;
        }
        match phase {
            Phase::Command if !is_kernel_line(&line) => {
                if live {
                    println!("{line}");
                }
                outcome.output.push(line);
            }
            Phase::Dmesg => outcome.dmesg.push(line),
            _ if console_echo => eprintln!("{line}"),
            _ => {}
        }
    }
    let status = process.wait()?;

    outcome.problems.extend(kernel_problems(&outcome));
    if outcome.status.is_none() && phase == Phase::Boot && outcome.problems.is_empty() {
        outcome
            .problems
            .push("the guest never ran the command (boot failure?)".to_owned());
    } else if outcome.status.is_none() && !outcome.problems.iter().any(|p| p.contains("insmod")) {
        outcome
            .problems
            .push("the guest did not report the command's exit status (crash?)".to_owned());
    } else if phase != Phase::Done {
        outcome
            .problems
            .push("the guest did not finish dumping its kernel log".to_owned());
    }
    if !status.success() {
        let mut problem = format!("QEMU exited with {status}");
        for line in tail(&qemu_errors, 5) {
            problem += &format!("\n  qemu: {line}");
        }
        outcome.problems.push(problem);
    }
    Ok(outcome)
}

/// Where the guest's console is in the run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Boot,
    Command,
    After,
    Dmesg,
    Done,
}

/// Writes the initramfs (and the arm64 device tree) into `dir`; returns the
/// QEMU command line, program first, and the accelerator it uses.
fn prepare(
    sh: &Shell,
    log: &Log,
    artifacts: &Artifacts,
    options: &Options<'_>,
    dir: &Path,
) -> Result<(Vec<String>, Accel)> {
    let arch = artifacts.kernel.target.arch;
    let params = reference::module_params(arch);
    let accel = match accel(log, &artifacts.kernel)? {
        Accel::Tcg if options.icount => Accel::TcgIcount,
        accel => accel,
    };

    let console = match arch {
        Arch::X86_64 => "console=ttyS0",
        Arch::Aarch64 => "console=ttyAMA0",
    };
    let mut cmdline = vec![console.to_owned(), "panic=-1".to_owned()];
    if arch == Arch::X86_64 {
        // Four-level paging. `-cpu max` offers LA57, and Linux 7.2 with
        // KASAN then now and then reports a bogus "wild-memory-access" at
        // boot (about one debug boot in 25 here): `identify_cpu` clears the
        // boot CPU's feature words, LA57 with them, for a moment; an
        // interrupt taken then has KASAN compute its shadow bounds for
        // 47-bit addresses, so the 5-level direct map (0xff11...) looks
        // unshadowed. No rmemring code depends on the paging depth.
        cmdline.push("no5lvl".to_owned());
    }
    cmdline.extend(reference::kernel_cmdline(arch));
    cmdline.extend(options.cmdline.map(str::to_owned));

    let kernel = [
        "-kernel".to_owned(),
        path_arg(&artifacts.kernel.image())?,
        "-append".to_owned(),
        cmdline.join(" "),
    ];
    let mut add = options.add.to_vec();
    let overlay = options
        .overlay
        .map_or_else(dt::board_overlay, Path::to_path_buf);
    let mut expected = None;
    if arch == Arch::Aarch64 {
        // What the guest must find, from the overlay, for its /add.
        // The tree QEMU boots with depends on the initramfs (its place is in
        // /chosen), so this first tree is dumped without one; the real one
        // must give the same expectations.
        let config = fs::read_to_string(artifacts.kernel.dir.join(".config"))
            .context("reading the kernel's .config")?;
        let page = dt::arm64_page_size(&config);
        let dump = |base: &Path| [qemu_base(arch, accel, Some(base)), kernel.to_vec()].concat();
        let rings = board_tree(sh, log, &dump, &overlay, page, &dir.join("plain.dtb"))?;
        let file = dir.join(rmemring_board_expect::FILE_NAME);
        fs::write(&file, rings.to_json()?)?;
        add.push(file);
        expected = Some((rings, page));
    }
    let initrd = initramfs::write(
        sh,
        log,
        &Spec {
            busybox: &artifacts.guest.busybox,
            module: &artifacts.module.ko,
            clients: &artifacts.module.clients,
            bins: &artifacts.guest.bins,
            add: &add,
            load: options.load.then_some(params.as_str()),
            command: options.command,
            debug_kernel: artifacts.kernel.target.profile == Profile::Debug,
        },
        dir,
    )?;
    let boot = [
        kernel.to_vec(),
        vec!["-initrd".to_owned(), path_arg(&initrd)?],
    ]
    .concat();
    let mut qemu = [qemu_base(arch, accel, None), boot.clone()].concat();
    if let Some((expected, page)) = expected {
        let board = dir.join("board.dtb");
        let dump = |base: &Path| [qemu_base(arch, accel, Some(base)), boot.clone()].concat();
        let rings = board_tree(sh, log, &dump, &overlay, page, &board)?;
        ensure!(
            rings == expected,
            "the board's tree with the initramfs expects other rings than without:\n{rings}\n{expected}"
        );
        qemu.extend(["-dtb".to_owned(), path_arg(&board)?]);
    }
    Ok((qemu, accel))
}

/// arm64: writes the board's device tree to `out`: QEMU's own, dumped by
/// the command `dump(path)` (the options of the real boot), plus `overlay`.
/// Returns what a guest booted with it must find ([`dt::expectations`]).
fn board_tree(
    sh: &Shell,
    log: &Log,
    dump: &dyn Fn(&Path) -> Vec<String>,
    overlay: &Path,
    page: u32,
    out: &Path,
) -> Result<Expectations> {
    let mut base = out.as_os_str().to_owned();
    base.push(".base");
    let base = PathBuf::from(base);
    // QEMU writes the tree and exits at once; the timeout is a backstop.
    log.run(cmd!(sh, "timeout 60").args(dump(&base)))
        .context("dumping QEMU's virt device tree")?;
    dt::board_dtb(sh, &base, overlay, out)?;
    dt::expectations(out, page)
}

/// How QEMU executes the guest.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Accel {
    Kvm,
    Tcg,
    /// TCG with `-icount shift=0,align=off,sleep=off` (and on x86-64 a CPU
    /// without ERMS or FSRM): one vCPU at a time, and guest
    /// time is the count of instructions executed (1 ns each), on any vCPU;
    /// idle time costs nothing. Rates are then deterministic, independent
    /// of the host's load, and count instructions rather than cycles: an
    /// atomic, a fence or a cache miss costs what any instruction does.
    TcgIcount,
}

impl Accel {
    /// QEMU's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
            Accel::TcgIcount => "tcg-icount",
        }
    }
}

/// `-icount` for [`Accel::TcgIcount`].
const ICOUNT: &str = "shift=0,align=off,sleep=off";

/// The QEMU program and machine options for `arch`; with `dump_dtb`, QEMU
/// writes the machine's device tree there and exits.
fn qemu_base(arch: Arch, accel: Accel, dump_dtb: Option<&Path>) -> Vec<String> {
    let mut args: Vec<String> = match arch {
        Arch::X86_64 => vec!["qemu-system-x86_64".into(), "-M".into(), "pc".into()],
        Arch::Aarch64 => {
            let mut machine = "virt".to_owned();
            if let Some(path) = dump_dtb {
                machine += &format!(",dumpdtb={}", path.display());
            }
            vec!["qemu-system-aarch64".into(), "-M".into(), machine]
        }
    };
    match (arch, accel) {
        (Arch::X86_64, Accel::Kvm) => {
            args.extend(["-accel", "kvm", "-cpu", "host"].map(String::from))
        }
        (Arch::X86_64, Accel::Tcg) => {
            args.extend(["-accel", "tcg,thread=multi", "-cpu", "max"].map(String::from))
        }
        // Without ERMS and FSRM: the kernel's copies would be one
        // `rep movsb`, which counts as one instruction a byte.
        (Arch::X86_64, Accel::TcgIcount) => args.extend(
            [
                "-accel",
                "tcg,thread=single",
                "-cpu",
                "max,erms=off,fsrm=off",
                "-icount",
                ICOUNT,
            ]
            .map(String::from),
        ),
        (Arch::Aarch64, Accel::TcgIcount) => args.extend(
            [
                "-accel",
                "tcg,thread=single",
                "-cpu",
                "cortex-a57",
                "-icount",
                ICOUNT,
            ]
            .map(String::from),
        ),
        (Arch::Aarch64, _) => {
            args.extend(["-accel", "tcg,thread=multi", "-cpu", "cortex-a57"].map(String::from))
        }
    }
    args.extend(
        [
            "-smp",
            CPUS,
            "-m",
            MEMORY_MIB,
            "-nographic",
            "-no-reboot",
            "-nic",
            "none",
        ]
        .map(String::from),
    );
    args
}

fn path_arg(path: &Path) -> Result<String> {
    path.to_str()
        .map(str::to_owned)
        .with_context(|| format!("{} is not UTF-8", path.display()))
}

/// Chooses KVM or TCG. KVM only for an x86_64 guest on an x86_64 host whose
/// `/dev/kvm` passed the probe boot; `RMEMRING_ACCEL=kvm|tcg` overrides.
fn accel(log: &Log, kernel: &Kernel) -> Result<Accel> {
    match std::env::var("RMEMRING_ACCEL").as_deref() {
        Ok("kvm") => return Ok(Accel::Kvm),
        Ok("tcg") => return Ok(Accel::Tcg),
        _ => {}
    }
    if kernel.target.arch != Arch::X86_64
        || !cfg!(target_arch = "x86_64")
        || !Path::new("/dev/kvm").exists()
    {
        return Ok(Accel::Tcg);
    }
    // The verdict holds for this host kernel and this QEMU.
    let qemu = which("qemu-system-x86_64")?;
    let meta = fs::metadata(&qemu)?;
    let key = format!(
        "{} {} {:?}",
        fs::read_to_string("/proc/sys/kernel/osrelease")?.trim(),
        meta.len(),
        meta.modified()?
    );
    let verdict_file = cache::root()?.join("kvm-verdict");
    if let Ok(verdict) = fs::read_to_string(&verdict_file) {
        match verdict.strip_prefix(&key).map(str::trim) {
            Some("kvm") => return Ok(Accel::Kvm),
            Some("tcg") => return Ok(Accel::Tcg),
            _ => {}
        }
    }

    log.line("probing KVM with a short boot (the verdict is cached)");
    let image = path_arg(&kernel.image())?;
    let probe = [
        "qemu-system-x86_64",
        "-M",
        "pc",
        "-accel",
        "kvm",
        "-cpu",
        "host",
        "-smp",
        "1",
        "-m",
        "256",
        "-nographic",
        "-no-reboot",
        "-nic",
        "none",
        "-kernel",
        &image,
        // No initramfs: the kernel panics at once and QEMU exits.
        "-append",
        "console=ttyS0 panic=-1",
    ]
    .map(String::from);
    let works = {
        let mut process = Qemu::spawn(log, &probe)?;
        let deadline = Instant::now() + KVM_PROBE_TIMEOUT;
        let mut works = false;
        loop {
            match process.next(Some(deadline)) {
                // The end of a whole boot, not its banner: a nested KVM that
                // is broken can print the banner and then hang (timer
                // calibration, APs), and would then hang every suite.
                Next::Console(line) if line.contains(PROBE_BOOTED) => {
                    works = true;
                    break;
                }
                Next::Console(_) | Next::Stderr(_) => {}
                Next::Exited | Next::TimedOut => break,
            }
        }
        works
    };
    let accel = if works { Accel::Kvm } else { Accel::Tcg };
    log.line(&format!("KVM works: {works}; using {accel:?}"));
    fs::write(
        &verdict_file,
        format!("{key} {}\n", if works { "kvm" } else { "tcg" }),
    )?;
    Ok(accel)
}

/// The full path of `program` on `PATH`.
fn which(program: &str) -> Result<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
        .with_context(|| format!("{program} is not on PATH"))
}

/// Whether a console line is a kernel message (`[    1.234567] ...`).
fn is_kernel_line(line: &str) -> bool {
    line.strip_prefix('[')
        .and_then(|rest| rest.split_once(']'))
        .is_some_and(|(time, _)| {
            let time = time.trim_start();
            !time.is_empty() && time.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        })
}

/// The kernel log lines the selftest's fault-injection group writes
/// around the allocation failures it makes (`tests/vm/src/faults.rs`).
pub const INJECTION_BEGINS: &str = "rmemring-selftest: fault injection begins";
/// See [`INJECTION_BEGINS`].
pub const INJECTION_ENDS: &str = "rmemring-selftest: fault injection ends";

/// What the kernel prints for an allocation failure it was told to make
/// (`warn_alloc`'s stack dump): expected between [`INJECTION_BEGINS`] and
/// [`INJECTION_ENDS`], and only there. Every other problem still counts
/// there: a warning, a sanitizer report or a lockdep splat is a bug in how
/// the failure was handled.
const INJECTION_NOISE: &[&str] = &["Call Trace"];

/// The kernel lines of a run that match [`KERNEL_PROBLEMS`]: the dumped
/// kernel log, plus kernel lines on the console (a panic leaves no dump).
fn kernel_problems(outcome: &Outcome) -> Vec<String> {
    let console = outcome.console.iter().filter(|line| is_kernel_line(line));
    let mut seen = HashSet::new();
    problem_lines(outcome.dmesg.iter())
        .chain(problem_lines(console))
        .filter(|line| seen.insert(line.trim().to_owned()))
        .map(|line| format!("kernel: {}", line.trim()))
        .collect()
}

/// The lines of one log that show a problem, forgiving
/// [`INJECTION_NOISE`] inside fault-injection windows.
fn problem_lines<'a>(lines: impl Iterator<Item = &'a String>) -> impl Iterator<Item = &'a String> {
    let mut injecting = false;
    lines.filter(move |line| {
        if line.contains(INJECTION_BEGINS) {
            injecting = true;
        } else if line.contains(INJECTION_ENDS) {
            injecting = false;
        }
        let forgiven: &[&str] = if injecting { INJECTION_NOISE } else { &[] };
        has_problem_but(line, forgiven)
    })
}

/// Whether `line` contains a [`KERNEL_PROBLEMS`] pattern at a word start,
/// not counting the patterns in `forgiven`.
fn has_problem_but(line: &str, forgiven: &[&str]) -> bool {
    KERNEL_PROBLEMS
        .iter()
        .filter(|p| !forgiven.contains(p))
        .any(|pattern| {
            line.match_indices(pattern).any(|(at, _)| {
                !line[..at]
                    .chars()
                    .next_back()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_')
            })
        })
}

/// A running QEMU whose stdout and stderr lines arrive on a channel. Dropping
/// it kills QEMU, so that no path leaves one behind.
struct Qemu {
    child: Child,
    lines: Receiver<Next>,
}

/// What [`Qemu::next`] saw.
enum Next {
    Console(String),
    Stderr(String),
    Exited,
    TimedOut,
}

impl Qemu {
    fn spawn(log: &Log, argv: &[String]) -> Result<Qemu> {
        log.echo(&shell_words(argv));
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", argv[0]))?;
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().context("QEMU stdout")?;
        let stderr = child.stderr.take().context("QEMU stderr")?;
        let tx2 = tx.clone();
        std::thread::spawn(move || forward(stdout, |line| tx.send(Next::Console(line)).is_ok()));
        std::thread::spawn(move || forward(stderr, |line| tx2.send(Next::Stderr(line)).is_ok()));
        Ok(Qemu { child, lines })
    }

    /// The next line, or `Exited` once QEMU closed both streams, or
    /// `TimedOut` at `deadline` (`None`: never).
    fn next(&mut self, deadline: Option<Instant>) -> Next {
        let received = match deadline {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                self.lines.recv_timeout(left)
            }
            None => self
                .lines
                .recv()
                .map_err(|_| RecvTimeoutError::Disconnected),
        };
        match received {
            Ok(next) => next,
            Err(RecvTimeoutError::Timeout) => Next::TimedOut,
            Err(RecvTimeoutError::Disconnected) => Next::Exited,
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn wait(&mut self) -> Result<std::process::ExitStatus> {
        Ok(self.child.wait()?)
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

/// Sends each line of `stream` (lossy UTF-8, without `\r\n`) until `send` fails.
fn forward(stream: impl Read, mut send: impl FnMut(String) -> bool) {
    for line in BufReader::new(stream).split(b'\n') {
        let Ok(line) = line else { return };
        let line = String::from_utf8_lossy(&line);
        if !send(line.trim_end_matches('\r').to_owned()) {
            return;
        }
    }
}

/// A per-run directory under `cache/vm`, removed when dropped. Directories
/// of runs whose process is gone are removed on the way in.
struct RunDir(PathBuf);

impl RunDir {
    fn new() -> Result<RunDir> {
        let root = cache::root()?.join("vm");
        fs::create_dir_all(&root)?;
        for entry in fs::read_dir(&root)? {
            let path = entry?.path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            let pid = name
                .strip_prefix("run-")
                .and_then(|rest| rest.split('-').next());
            if let Some(pid) = pid {
                if !Path::new("/proc").join(pid).exists() {
                    let _ = fs::remove_dir_all(&path);
                }
            }
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .subsec_nanos();
        let dir = root.join(format!("run-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&dir)?;
        Ok(RunDir(dir))
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has_problem(line: &str) -> bool {
        has_problem_but(line, &[])
    }

    #[test]
    fn problems_match_at_word_starts_only() {
        assert!(has_problem(
            "[    1.0] BUG: KASAN: slab-out-of-bounds in foo"
        ));
        assert!(has_problem("[    1.0] WARNING: CPU: 0 PID: 1 at mm/x.c:1"));
        assert!(has_problem(
            "[    1.0] INFO: task sh:1 blocked for more than 1 seconds."
        ));
        assert!(!has_problem("[    1.0] DEBUG kernel"));
        assert!(!has_problem(
            "[    1.0] kasan: KernelAddressSanitizer initialized"
        ));
        assert!(!has_problem(
            "[    1.0] rmemring: loading out-of-tree module taints kernel."
        ));
    }

    #[test]
    fn injected_failures_may_dump_their_stack_and_nothing_else() {
        let log: Vec<String> = [
            "[ 1.0] Call Trace:",
            &format!("[ 2.0] {INJECTION_BEGINS}"),
            "[ 2.1] insmod: vmalloc error: size 4096, failed to allocate pages",
            "[ 2.2] Call Trace:",
            "[ 2.3] WARNING: CPU: 0 PID: 1 at mm/x.c:1",
            &format!("[ 3.0] {INJECTION_ENDS}"),
            "[ 3.1] Call Trace: <TASK>",
        ]
        .map(String::from)
        .to_vec();
        // The selftest writes exactly these markers.
        let faults = include_str!("../../tests/vm/src/faults.rs");
        assert!(faults.contains(&format!("\"{INJECTION_BEGINS}\"")));
        assert!(faults.contains(&format!("\"{INJECTION_ENDS}\"")));
        let problems: Vec<&String> = problem_lines(log.iter()).collect();
        assert_eq!(
            problems,
            [&log[0], &log[4], &log[6]],
            "only the stack dump inside the window is forgiven"
        );
    }

    #[test]
    fn kernel_lines_have_a_timestamp() {
        assert!(is_kernel_line("[    0.000000] Linux version 7.2.13"));
        assert!(is_kernel_line("[12345.678901] x"));
        assert!(!is_kernel_line("[ok] test passed"));
        assert!(!is_kernel_line("plain output"));
    }
}
