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
    End,
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
        ensure!(
            self.panics <= self.reboots,
            "--panics {} is more than the resets (--reboots {})",
            self.panics,
            self.reboots
        );
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
                reboots: self.reboots,
                panics: self.panics,
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
            reboots: 0,
            panics: 0,
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
    /// How many times the command resets the guest before its last boot
    /// (`reboot -f`, a panic): 0 for a run of one boot. With more, QEMU
    /// runs without `-no-reboot`, so a reset boots the same kernel and
    /// initramfs again in the same QEMU process, whose guest RAM (the
    /// reserved regions with it) is kept; `/init` runs the command on
    /// every boot and ends the last one with `poweroff -f`. See
    /// [`Transcript::finish`] for what each boot must do.
    pub reboots: u32,
    /// How many of the resets are deliberate panics: each forgiven from
    /// the [`PANIC_MARKER`] line that `rmemring_panic_now.ko` logs to the
    /// end of its boot (see [`Scan`]), and each required.
    pub panics: u32,
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
            reboots: 0,
            panics: 0,
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
    /// The command's exit status in the last boot, if it ran and reported
    /// one.
    pub status: Option<i32>,
    /// The command's output, of every boot.
    pub output: Vec<String>,
    /// The whole serial console, of every boot.
    pub console: Vec<String>,
    /// The kernel log the last boot dumped after the command.
    pub dmesg: Vec<String>,
    /// Each boot's console and output, in order: one boot unless the run
    /// resets the guest ([`Options::reboots`]).
    pub boots: Vec<Boot>,
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

/// Boots the guest, runs the command of `options` (on each of its boots),
/// and reports.
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
    let mut transcript = Transcript::new(options.reboots);
    let mut qemu_errors = Vec::new();
    loop {
        let line = match process.next(deadline) {
            Next::Console(line) => line,
            Next::Stderr(line) => {
                if console_echo || live {
                    eprintln!("qemu: {line}");
                }
                qemu_errors.push(line);
                continue;
            }
            Next::Exited => break,
            Next::TimedOut => {
                process.kill();
                let secs = options.timeout.as_secs();
                let boots = transcript.boots.len();
                let mut msg =
                    format!("timed out after {secs} s (in boot {boots}); last console lines:");
                for line in tail(&transcript.console(), CONSOLE_TAIL) {
                    msg += &format!("\n  | {line}");
                }
                bail!(msg);
            }
        };
        let echo = console_echo.then(|| line.clone());
        match transcript.push(line) {
            Seen::Output(output) if live => println!("{output}"),
            Seen::Boot(n) if live => eprintln!("--- boot {n} of {}", transcript.expected),
            Seen::TooManyBoots => {
                process.kill();
                break;
            }
            Seen::Console => {
                if let Some(line) = echo {
                    eprintln!("{line}");
                }
            }
            _ => {}
        }
    }
    let status = process.wait()?;

    let mut problems = kernel_problems(&transcript.boots, &transcript.dmesg, options.panics);
    // A QEMU stopped for a reset too many has its reason in `problems`.
    let stopped = transcript.overrun;
    let dmesg = std::mem::take(&mut transcript.dmesg);
    let boots = transcript.finish(&mut problems);
    if !status.success() && !stopped {
        let mut problem = format!("QEMU exited with {status}");
        for line in tail(&qemu_errors, 5) {
            problem += &format!("\n  qemu: {line}");
        }
        problems.push(problem);
    }
    let last = boots.last().expect("a transcript has a boot");
    Ok(Outcome {
        status: last.status,
        output: boots
            .iter()
            .flat_map(|b| b.output.iter().cloned())
            .collect(),
        console: boots
            .iter()
            .flat_map(|b| b.console.iter().cloned())
            .collect(),
        dmesg,
        problems,
        accel,
        boots,
    })
}

/// Where a boot's console is, as `/init`'s markers tell.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Phase {
    /// The kernel boots; `/init` loads the driver.
    #[default]
    Boot,
    /// The command runs.
    Command,
    /// The command exited; `/init` unloads the driver.
    After,
    /// `/init` dumps the kernel log.
    Dmesg,
    /// The log is dumped; `/init` ends the machine.
    Done,
}

/// One boot of a run: from the kernel's banner to the reset that starts
/// the next boot, or to the end of the run.
#[derive(Debug, Default)]
pub struct Boot {
    /// This boot's serial console: the kernel's log as it printed it (also
    /// what it printed just before the reset: a panic, a reboot notifier),
    /// the command's output and `/init`'s markers.
    pub console: Vec<String>,
    /// The command's output: its console lines that are not the kernel's.
    pub output: Vec<String>,
    /// The command's exit status, if it exited in this boot.
    pub status: Option<i32>,
    phase: Phase,
}

/// What the kernel prints first in every boot (at time 0): where
/// [`Transcript`] starts a new boot, unless [`FIRMWARE_RESET`] did.
const BANNER: &str = "Linux version ";

/// What x86's firmware (SeaBIOS) writes first after a reset, before its
/// own lines and the kernel's banner: a terminal reset (`ESC c`). Where it
/// comes, [`Transcript`] starts a new boot, so that the firmware's lines
/// are not taken for the command's output. (arm64's `virt` boots the
/// kernel with no firmware output.)
const FIRMWARE_RESET: &str = "\x1bc";

/// Whether `line` is the kernel's banner. After a reset, the firmware's
/// terminal resets (x86's SeaBIOS: `ESC c ESC [?7l ESC [2J`, see
/// [`FIRMWARE_RESET`]) may precede it on its line.
fn is_banner(line: &str) -> bool {
    line.find(&format!("] {BANNER}")).is_some_and(|at| {
        line[..at]
            .rfind('[')
            .is_some_and(|open| is_kernel_line(&line[open..]))
    })
}

/// A run's serial console, read line by line: split into boots at the
/// kernel's banner (or at the firmware's output before it), and each boot
/// into `/init`'s [`Phase`]s.
///
/// A banner in the kernel log that `/init` dumps is not a boot (the dump
/// has its own banner line); neither may a command print the banner as
/// the kernel writes it (say, with a whole `dmesg`): that would count as
/// a boot.
struct Transcript {
    /// How many boots the run must have.
    expected: usize,
    boots: Vec<Boot>,
    /// Whether the current boot's kernel banner came: the next banner, or
    /// firmware output, starts a new boot. (The lines before the first
    /// banner are the first boot's.)
    banner: bool,
    /// More boots than expected began; the last one is not kept.
    overrun: bool,
    /// The kernel log the last boot dumped.
    dmesg: Vec<String>,
    /// What `/init` reported going wrong: insmod, rmmod.
    problems: Vec<String>,
}

/// What one console line was, for [`Transcript::push`]'s caller to echo.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// The command's output.
    Output(String),
    /// The first line of boot N (from 1), after the first.
    Boot(usize),
    /// The start of a boot beyond the expected ones: the guest resets more
    /// often than the run says (a panic and reboot loop, say). Stop QEMU.
    TooManyBoots,
    /// A marker of `/init`'s, or a line of the kernel log it dumps.
    Quiet,
    /// Any other line: the kernel's, the firmware's.
    Console,
}

impl Transcript {
    /// A transcript of a run whose command resets the guest `reboots`
    /// times.
    fn new(reboots: u32) -> Self {
        Transcript {
            expected: reboots as usize + 1,
            boots: vec![Boot::default()],
            banner: false,
            overrun: false,
            dmesg: Vec::new(),
            problems: Vec::new(),
        }
    }

    /// The whole console so far.
    fn console(&self) -> Vec<String> {
        self.boots
            .iter()
            .flat_map(|b| b.console.iter().cloned())
            .collect()
    }

    /// "boot N: " in a run of several boots, else nothing: what this
    /// boot's problems begin with.
    fn label(&self, boot: usize) -> String {
        if self.expected > 1 {
            format!("boot {} of {}: ", boot + 1, self.expected)
        } else {
            String::new()
        }
    }

    fn push(&mut self, line: String) -> Seen {
        let mut seen = Seen::Console;
        let phase = self.boots.last().map_or(Phase::Boot, |b| b.phase);
        let banner = phase != Phase::Dmesg && is_banner(&line);
        if self.banner && (banner || line.contains(FIRMWARE_RESET)) {
            if self.boots.len() == self.expected {
                self.overrun = true;
                return Seen::TooManyBoots;
            }
            self.boots.push(Boot::default());
            self.banner = false;
            // (An earlier boot's dump, if it made one, is in its console.)
            self.dmesg.clear();
            seen = Seen::Boot(self.boots.len());
        }
        self.banner |= banner;
        let index = self.boots.len() - 1;
        let label = self.label(index);
        let boot = &mut self.boots[index];
        boot.console.push(line.clone());
        if let Some((before, marker)) = Marker::find(&line) {
            if boot.phase == Phase::Command && !before.is_empty() {
                boot.output.push(before.to_owned());
                seen = Seen::Output(before.to_owned());
            }
            match marker {
                Marker::Begin => boot.phase = Phase::Command,
                Marker::Status(status) => {
                    boot.status = Some(status);
                    boot.phase = Phase::After;
                }
                Marker::InsmodFailed(status) => self.problems.push(format!(
                    "{label}insmod rmemring.ko failed in the guest (status {status})"
                )),
                Marker::RmmodFailed(status) => self.problems.push(format!(
                    "{label}rmmod rmemring failed after the command (status {status})"
                )),
                Marker::Dmesg => boot.phase = Phase::Dmesg,
                Marker::End => boot.phase = Phase::Done,
            }
            return match seen {
                Seen::Console => Seen::Quiet,
                seen => seen,
            };
        }
        match boot.phase {
            Phase::Command if !is_kernel_line(&line) => {
                boot.output.push(line.clone());
                seen = Seen::Output(line);
            }
            Phase::Dmesg => {
                self.dmesg.push(line);
                seen = Seen::Quiet;
            }
            _ => {}
        }
        seen
    }

    /// The boots, once the run is over, after adding to `problems` (the
    /// kernel's so far) what went wrong with them: every boot before the
    /// last must have run the command and been reset by it without a
    /// status; the last must have reported the command's status and
    /// dumped the kernel log.
    fn finish(mut self, problems: &mut Vec<String>) -> Vec<Boot> {
        problems.splice(0..0, self.problems.drain(..));
        let last = self.boots.len() - 1;
        for (i, boot) in self.boots.iter().enumerate() {
            let label = self.label(i);
            let reset = i < last;
            if i + 1 < self.expected {
                // A stage that must end in a reset.
                match (boot.status, boot.phase) {
                    (Some(status), _) => problems.push(format!(
                        "{label}the command exited (status {status}) instead of resetting the guest"
                    )),
                    (None, Phase::Boot) if reset => {
                        problems.push(format!("{label}the guest reset before it ran the command"))
                    }
                    (None, Phase::Boot) => {
                        if !problems.iter().any(|p| p.contains("insmod")) {
                            problems.push(format!("{label}the guest never ran the command"));
                        }
                    }
                    (None, _) if !reset => problems.push(format!(
                        "{label}QEMU ended while the command ran (neither a status nor a reset)"
                    )),
                    (None, _) => {}
                }
            } else if boot.status.is_none() && boot.phase == Phase::Boot && problems.is_empty() {
                problems.push(format!(
                    "{label}the guest never ran the command (boot failure?)"
                ));
            } else if boot.status.is_none() && !problems.iter().any(|p| p.contains("insmod")) {
                problems.push(format!(
                    "{label}the guest did not report the command's exit status (crash?)"
                ));
            } else if boot.phase != Phase::Done {
                problems.push(format!(
                    "{label}the guest did not finish dumping its kernel log"
                ));
            }
        }
        if self.overrun {
            problems.push(format!(
                "the guest began boot {} of a run of {}: it reset more often than the command \
                 should have (a panic and reboot loop?); QEMU was stopped",
                self.expected + 1,
                self.expected
            ));
        } else if self.boots.len() < self.expected {
            problems.push(format!(
                "the guest booted {} time(s) in a run of {}",
                self.boots.len(),
                self.expected
            ));
        }
        self.boots
    }
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
        // No boot-time check that the IO-APIC routes the timer: it counts
        // timer ticks against a busy-wait, and when the host starves the
        // emulated CPU it sees too few and panics ("IO-APIC + timer
        // doesn't work!"), as it did here under a load of 6 on 2 cores.
        // The option exists for virtual machines, whose timers are fine.
        cmdline.push("no_timer_check".to_owned());
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
            end: if options.reboots == 0 {
                End::Reboot
            } else {
                End::Poweroff
            },
        },
        dir,
    )?;
    let boot = [
        kernel.to_vec(),
        vec!["-initrd".to_owned(), path_arg(&initrd)?],
    ]
    .concat();
    let mut qemu = [qemu_base(arch, accel, None), boot.clone()].concat();
    if options.reboots == 0 {
        // A reset (`/init`'s `reboot -f`, a panic) ends QEMU.
        qemu.push("-no-reboot".to_owned());
    }
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
        // Without ERMS and FSRM, under TCG with or without -icount: the
        // kernel's copies (`copy_to_user`, BPF's `bpf_probe_read_kernel`)
        // and glibc's memcpy would otherwise be one `rep movsb`, which TCG
        // emulates a byte at a time (and -icount counts as one instruction
        // a byte): a fact about QEMU, not about the paths the benchmarks
        // compare.
        (Arch::X86_64, Accel::Tcg) => args.extend(
            [
                "-accel",
                "tcg,thread=multi",
                "-cpu",
                "max,erms=off,fsrm=off",
            ]
            .map(String::from),
        ),
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
    args.extend(["-smp", CPUS, "-m", MEMORY_MIB, "-nographic", "-nic", "none"].map(String::from));
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
pub fn is_kernel_line(line: &str) -> bool {
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

/// The line `rmemring_panic_now.ko` (`tests/kernel/panic_now`) logs at
/// `KERN_EMERG` just before it panics, and its panic message: in a run
/// that declares deliberate panics ([`Options::panics`]), the panic that
/// follows it in its boot is not a problem.
pub const PANIC_MARKER: &str = "rmemring-test: deliberate panic";

/// The kernel lines of a run that match [`KERNEL_PROBLEMS`]: the last
/// boot's dumped kernel log, plus the kernel lines on the console of every
/// boot (a panic leaves no dump), but `panics` deliberate ones (see
/// [`Scan`]); and, if fewer deliberate panics came, that.
fn kernel_problems(boots: &[Boot], dmesg: &[String], panics: u32) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut problems = Vec::new();
    let multi = boots.len() > 1;
    let mut report = |boot: usize, line: &str| {
        if seen.insert(line.trim().to_owned()) {
            let label = if multi {
                format!("boot {}: ", boot + 1)
            } else {
                String::new()
            };
            problems.push(format!("kernel: {label}{}", line.trim()));
        }
    };
    for line in problem_lines(dmesg.iter()) {
        report(boots.len() - 1, line);
    }
    let mut scan = Scan::new(panics);
    for (i, boot) in boots.iter().enumerate() {
        for line in boot.console.iter().filter(|line| is_kernel_line(line)) {
            if scan.is_problem(line) {
                report(i, line);
            }
        }
        if let Some(problem) = scan.end_boot() {
            report(i, &problem);
        }
    }
    if scan.panics_left > 0 {
        problems.push(format!(
            "kernel: {} of the {panics} deliberate panic(s) did not come (no {PANIC_MARKER:?} line)",
            scan.panics_left
        ));
    }
    problems
}

/// The lines of one log that show a problem, forgiving
/// [`INJECTION_NOISE`] inside fault-injection windows.
fn problem_lines<'a>(lines: impl Iterator<Item = &'a String>) -> impl Iterator<Item = &'a String> {
    let mut scan = Scan::new(0);
    lines.filter(move |line| scan.is_problem(line))
}

/// Judges the kernel lines of a run in order: which show a problem.
///
/// Forgiven: [`INJECTION_NOISE`] between [`INJECTION_BEGINS`] and
/// [`INJECTION_ENDS`]; and, after each of the run's first `panics`
/// [`PANIC_MARKER`] lines (at most one a boot), to the end of its boot,
/// the deliberate panic's own lines: its `Kernel panic - not syncing:
/// MARKER` line, then one `Call Trace` and its `---[ end Kernel panic -
/// not syncing: MARKER` line. Everything else counts: a warning before
/// the marker or between it and the panic, a second panic, a splat after
/// the end line, a marker beyond the declared ones.
struct Scan {
    injecting: bool,
    panic: PanicWindow,
    /// Deliberate panics still allowed.
    panics_left: u32,
}

/// Where a [`Scan`] is in a deliberate panic.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PanicWindow {
    /// No marker in this boot yet.
    Closed,
    /// The marker came; the panic line is next.
    Marked,
    /// The panic began; whether its stack dump came.
    Panicking { traced: bool },
    /// The panic's end line came.
    Ended,
}

impl Scan {
    fn new(panics: u32) -> Self {
        Scan {
            injecting: false,
            panic: PanicWindow::Closed,
            panics_left: panics,
        }
    }

    /// Whether `line`, the next kernel line, shows a problem.
    fn is_problem(&mut self, line: &str) -> bool {
        if line.contains(INJECTION_BEGINS) {
            self.injecting = true;
        } else if line.contains(INJECTION_ENDS) {
            self.injecting = false;
        }
        let panic_line = format!("Kernel panic - not syncing: {PANIC_MARKER}");
        let end_line = format!("---[ end {panic_line}");
        match self.panic {
            PanicWindow::Closed if self.panics_left > 0 && is_panic_marker(line) => {
                self.panics_left -= 1;
                self.panic = PanicWindow::Marked;
                return false;
            }
            PanicWindow::Marked if line.contains(&panic_line) && !line.contains(&end_line) => {
                self.panic = PanicWindow::Panicking { traced: false };
                return false;
            }
            PanicWindow::Panicking { .. } if line.contains(&end_line) => {
                self.panic = PanicWindow::Ended;
                return false;
            }
            // The panic's stack dump: once.
            PanicWindow::Panicking { traced: false }
                if has_problem_but(line, &[]) && !has_problem_but(line, &["Call Trace"]) =>
            {
                self.panic = PanicWindow::Panicking { traced: true };
                return false;
            }
            _ => {}
        }
        let forgiven: &[&str] = if self.injecting { INJECTION_NOISE } else { &[] };
        has_problem_but(line, forgiven)
    }

    /// Ends a boot; says what is wrong with a deliberate panic in it.
    fn end_boot(&mut self) -> Option<String> {
        let marked = self.panic == PanicWindow::Marked;
        self.panic = PanicWindow::Closed;
        self.injecting = false;
        marked.then(|| format!("no panic followed {PANIC_MARKER:?} in this boot"))
    }
}

/// Whether `line` is the [`PANIC_MARKER`] line itself, not a panic line
/// quoting it.
fn is_panic_marker(line: &str) -> bool {
    line.split_once("] ")
        .is_some_and(|(_, message)| message.trim_end() == PANIC_MARKER)
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
    use crate::initramfs::MARK;

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

    /// A console as QEMU prints it, from short names: `banner`, `bios`
    /// (SeaBIOS after a reset, which precedes the banner on its line),
    /// `begin`, `status=N`, `dmesg` (the dump's start marker and banner),
    /// `end`, `k:TEXT` (a kernel line), `marker` (the deliberate panic's
    /// marker line), `panic` (its panic line) and anything else as the
    /// command's output.
    fn console(script: &[&str]) -> Vec<String> {
        let banner = "[    0.000000] Linux version 7.2.13 (root@vm) #1 SMP PREEMPT";
        let mut lines = Vec::new();
        for item in script {
            match *item {
                "banner" => lines.push(banner.to_owned()),
                "bios" => {
                    lines.push("\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (version 1.16.2)".to_owned());
                    lines.push("Booting from ROM..".to_owned());
                    lines.push(format!("\x1bc\x1b[?7l\x1b[2J{banner}"));
                }
                "begin" => lines.push(format!("{MARK}:begin")),
                "dmesg" => {
                    lines.push(format!("{MARK}:dmesg"));
                    lines.push(banner.to_owned());
                }
                "end" => lines.push(format!("{MARK}:end")),
                "marker" => lines.push(format!("[    3.000000] {PANIC_MARKER}")),
                "panic" => lines.push(format!(
                    "[    3.000100] Kernel panic - not syncing: {PANIC_MARKER}"
                )),
                item => match (item.strip_prefix("status="), item.strip_prefix("k:")) {
                    (Some(status), _) => lines.push(format!("{MARK}:status={status}")),
                    (_, Some(text)) => lines.push(format!("[    2.000000] {text}")),
                    _ => lines.push(item.to_owned()),
                },
            }
        }
        lines
    }

    /// Reads `script` ([`console`]) as a run with `reboots` resets, of
    /// which `panics` are deliberate: its boots, its problems, and whether
    /// the harness stopped QEMU for a boot too many.
    fn read(reboots: u32, panics: u32, script: &[&str]) -> (Vec<Boot>, Vec<String>, bool) {
        let mut transcript = Transcript::new(reboots);
        let mut stopped = false;
        for line in console(script) {
            if transcript.push(line) == Seen::TooManyBoots {
                stopped = true;
                break;
            }
        }
        let mut problems = kernel_problems(&transcript.boots, &transcript.dmesg, panics);
        let boots = transcript.finish(&mut problems);
        (boots, problems, stopped)
    }

    /// The reference run: a reboot, a deliberate panic, a last boot.
    const THREE_BOOTS: &[&str] = &[
        "bios",
        "k:Run /init as init process",
        "begin",
        "stage 1",
        "k:reboot: Restarting system",
        "bios",
        "begin",
        "stage 2",
        "marker",
        "panic",
        "k:Kernel Offset: disabled",
        "banner",
        "begin",
        "k:rmemring: recovered",
        "stage 3",
        "status=0",
        "dmesg",
        "k:Run /init as init process",
        "end",
    ];

    #[test]
    fn a_run_of_three_boots_splits_at_each_reset() {
        let (boots, problems, stopped) = read(2, 1, THREE_BOOTS);
        assert_eq!(problems, Vec::<String>::new());
        assert!(!stopped);
        let outputs: Vec<&[String]> = boots.iter().map(|b| &b.output[..]).collect();
        assert_eq!(outputs, [["stage 1"], ["stage 2"], ["stage 3"]]);
        let statuses: Vec<Option<i32>> = boots.iter().map(|b| b.status).collect();
        assert_eq!(statuses, [None, None, Some(0)]);
        // Each boot's console has its own kernel lines, the reset's too;
        // SeaBIOS's lines after a reset are the next boot's, not output.
        assert!(boots[0]
            .console
            .last()
            .unwrap()
            .contains("Restarting system"));
        assert!(boots[1].console[0].contains("SeaBIOS"));
        assert!(boots[1].console.iter().any(|l| l.contains("Kernel panic")));
        assert!(boots[2].console[0].contains("Linux version"));
        // The dump's banner is no boot.
        assert_eq!(boots[2].console.iter().filter(|l| is_banner(l)).count(), 2);
    }

    #[test]
    fn a_reset_too_many_stops_the_run() {
        // A panic and reboot loop: boot 3 of a run of 2 stops QEMU.
        let loop_ = ["banner", "begin", "k:reboot: Restarting system"];
        let (boots, problems, stopped) = read(1, 0, &[&loop_[..], &loop_, &loop_].concat());
        assert!(stopped);
        assert_eq!(boots.len(), 2);
        assert!(
            problems
                .iter()
                .any(|p| p.contains("began boot 3 of a run of 2")),
            "{problems:?}"
        );
        // Also when the extra boot comes straight after the firmware.
        let (_, _, stopped) = read(1, 0, &["bios", "begin", "bios", "begin", "bios"]);
        assert!(stopped);
    }

    #[test]
    fn every_boot_but_the_last_must_run_the_command_and_reset() {
        // Stage 1 exits instead of resetting: /init dumps and powers off.
        let (_, problems, _) = read(1, 0, &["banner", "begin", "status=0", "dmesg", "end"]);
        assert_eq!(
            problems,
            [
                "boot 1 of 2: the command exited (status 0) instead of resetting the guest",
                "the guest booted 1 time(s) in a run of 2",
            ]
        );
        // Boot 1 resets before its command.
        let (_, problems, _) = read(
            1,
            0,
            &[
                "banner", "k:x", "banner", "begin", "status=0", "dmesg", "end",
            ],
        );
        assert_eq!(
            problems,
            ["boot 1 of 2: the guest reset before it ran the command"]
        );
        // QEMU ends in the middle of a stage.
        let (_, problems, _) = read(1, 0, &["banner", "begin", "stage 1"]);
        assert_eq!(
            problems[0],
            "boot 1 of 2: QEMU ended while the command ran (neither a status nor a reset)"
        );
        // The last boot reports its status and dumps its log.
        let (_, problems, _) = read(1, 0, &["banner", "begin", "banner", "begin", "status=0"]);
        assert_eq!(
            problems,
            ["boot 2 of 2: the guest did not finish dumping its kernel log"]
        );
        let (_, problems, _) = read(1, 0, &["banner", "begin", "banner", "begin"]);
        assert_eq!(
            problems,
            ["boot 2 of 2: the guest did not report the command's exit status (crash?)"]
        );
    }

    #[test]
    fn a_single_boot_is_judged_as_before() {
        let (boots, problems, _) = read(
            0,
            0,
            &["banner", "begin", "out", "status=3", "dmesg", "end"],
        );
        assert_eq!(problems, Vec::<String>::new());
        assert_eq!(boots[0].status, Some(3));
        assert_eq!(boots[0].output, ["out"]);
        let (_, problems, _) = read(0, 0, &["banner", "begin", "out"]);
        assert_eq!(
            problems,
            ["the guest did not report the command's exit status (crash?)"]
        );
        let (_, problems, _) = read(0, 0, &["banner"]);
        assert_eq!(
            problems,
            ["the guest never ran the command (boot failure?)"]
        );
    }

    /// [`THREE_BOOTS`] with `lines` inserted before its item `at`.
    fn three_boots_with(at: usize, lines: &[&'static str]) -> Vec<&'static str> {
        let mut script = THREE_BOOTS.to_vec();
        script.splice(at..at, lines.iter().copied());
        script
    }

    #[test]
    fn only_the_declared_panic_after_its_marker_is_forgiven() {
        let marker = THREE_BOOTS.iter().position(|l| *l == "marker").unwrap();
        let panic = marker + 1;
        let dump = THREE_BOOTS.iter().position(|l| *l == "dmesg").unwrap();
        let end = THREE_BOOTS.len() - 1;
        let warning = "k:WARNING: CPU: 0 PID: 1 at mm/x.c:1";
        let second = "k:Kernel panic - not syncing: Fatal exception";
        let trace = "k:Call Trace:";
        let end_line =
            "k:---[ end Kernel panic - not syncing: rmemring-test: deliberate panic ]---";
        // The panic's own stack dump and end line are forgiven.
        let (_, problems, _) = read(
            2,
            1,
            &three_boots_with(panic + 1, &[trace, "k: <TASK>", end_line]),
        );
        assert_eq!(problems, Vec::<String>::new());
        let no_panic: Vec<&str> = THREE_BOOTS
            .iter()
            .copied()
            .filter(|l| *l != "panic")
            .collect();
        // Each case, the deliberate panics it declares, and its one problem.
        let cases: Vec<(&str, Vec<&str>, u32, &str)> = vec![
            (
                "a warning before the marker",
                three_boots_with(marker, &[warning]),
                1,
                "kernel: boot 2: [    2.000000] WARNING",
            ),
            (
                "a warning between marker and panic",
                three_boots_with(panic, &[warning]),
                1,
                "kernel: boot 2: [    2.000000] WARNING",
            ),
            (
                "a warning after the panic",
                three_boots_with(panic + 1, &[warning]),
                1,
                "kernel: boot 2: [    2.000000] WARNING",
            ),
            (
                "a second panic after it",
                three_boots_with(panic + 1, &[second]),
                1,
                "kernel: boot 2: [    2.000000] Kernel panic - not syncing: Fatal",
            ),
            (
                "a panic after its end line",
                three_boots_with(panic + 1, &[end_line, second]),
                1,
                "kernel: boot 2: [    2.000000] Kernel panic - not syncing: Fatal",
            ),
            (
                "a second stack dump",
                three_boots_with(panic + 1, &[trace, trace]),
                1,
                "kernel: boot 2: [    2.000000] Call Trace:",
            ),
            (
                "a splat in another boot",
                three_boots_with(1, &[warning]),
                1,
                "kernel: boot 1: [    2.000000] WARNING",
            ),
            (
                "a splat in the last dump",
                three_boots_with(end, &[warning]),
                1,
                "kernel: boot 3: [    2.000000] WARNING",
            ),
            (
                "a panic in the last boot",
                three_boots_with(dump, &[second]),
                1,
                "kernel: boot 3: [    2.000000] Kernel panic - not syncing: Fatal",
            ),
            (
                "a second marker and panic",
                three_boots_with(dump, &["marker", "panic"]),
                1,
                "kernel: boot 3: [    3.000100] Kernel panic - not syncing: rmemring-test",
            ),
            (
                "a panic the run did not declare",
                THREE_BOOTS.to_vec(),
                0,
                "kernel: boot 2: [    3.000100] Kernel panic - not syncing: rmemring-test",
            ),
            (
                "a marker with no panic",
                no_panic,
                1,
                "kernel: boot 2: no panic followed",
            ),
            (
                "a declared panic that did not come",
                THREE_BOOTS.to_vec(),
                2,
                "kernel: 1 of the 2 deliberate panic(s) did not come",
            ),
        ];
        for (case, script, panics, problem) in cases {
            let (_, problems, _) = read(2, panics, &script);
            assert!(
                problems.len() == 1 && problems[0].starts_with(problem),
                "{case}: {problems:?}"
            );
        }
    }

    #[test]
    fn kernel_lines_have_a_timestamp() {
        assert!(is_kernel_line("[    0.000000] Linux version 7.2.13"));
        assert!(is_kernel_line("[12345.678901] x"));
        assert!(!is_kernel_line("[ok] test passed"));
        assert!(!is_kernel_line("plain output"));
    }
}
