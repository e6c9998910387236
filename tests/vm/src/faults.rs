//! Fault injection (the debug kernel): every allocation on the driver's
//! load, open, mmap, START, read() and RESET paths fails once, in turn.
//!
//! The load (`finit_module`) reaches about 500 sites, nearly all of them
//! the module loader's before the driver's code runs, and each run costs a
//! third of a second on the debug kernel under TCG. So `faults` fails, on
//! that path, only the allocations made with the driver's code on the
//! stack (the fault-injection stack filter, `require-start` set past the
//! kernel image's text, where module text lives): its parameter parsing,
//! its init and its probe. `faults-all` fails every site of the load, the
//! loader's too (`cargo xtask soak --debug` runs it).
//!
//! `/proc/thread-self/fail-nth` makes the N-th allocation site this thread
//! reaches fail (slab and page allocations: `failslab`, `fail_page_alloc`,
//! told to include sleeping allocations). For N = 1, 2, ... the operation
//! runs with the N-th site failing, until it completes with the counter
//! unused: every site on its path has then failed once. Each injected
//! failure must end the operation with an errno (or, where the failure is
//! tolerated, in success) and leave nothing behind: the retry with the
//! next N works, the module unloads, and kmemleak finds nothing of ours.
//! Kernel warnings are the harness's business, as everywhere; the only
//! thing it forgives inside this group's window is the stack dump the
//! kernel prints for an allocation failure it was told to make.

use std::fs::{
    File,
    OpenOptions, //
};
use std::io::{
    self,
    Read,
    Write, //
};
use std::os::fd::{
    AsRawFd,
    RawFd, //
};
use std::os::unix::fs::FileExt;
use std::time::Duration;

use anyhow::{
    bail,
    Context, //
};
use rmemring::uapi::{
    ProducerConfig,
    ResetConfig,
    IOC_RESET,
    IOC_START, //
};
use rmemring::{
    Access,
    Region, //
};
use rmemring_proto::modes::Overflow;
use rmemring_proto::roles::Role;

use crate::support::fd::{
    access_mode,
    close,
    errno_of,
    io_error,
    read_into, //
};
use crate::support::kernel_log;
use crate::support::mapping::map;
use crate::support::ring::wait_stopped;
use crate::support::{
    Env,
    Report, //
};

/// Written to the kernel log around the injected failures: the harness
/// forgives allocation-failure stack dumps between the two (and nothing
/// else).
const BEGIN: &str = "rmemring-selftest: fault injection begins";
/// See [`BEGIN`].
const END: &str = "rmemring-selftest: fault injection ends";

/// More sites than any path has; a path that still fails at this many is
/// a loop, not a path.
const MAX_SITES: u32 = 4000;

const DEBUGFS: &str = "/sys/kernel/debug";

/// How long a run of the test's producer (100 records) may take.
const STOPS_WITHIN: Duration = Duration::from_secs(10);

/// The thread's `fail-nth`, kept open so that arming it allocates nothing.
struct FailNth(File);

impl FailNth {
    fn open() -> anyhow::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/proc/thread-self/fail-nth")
            .context("opening /proc/thread-self/fail-nth (CONFIG_FAULT_INJECTION)")?;
        Ok(Self(file))
    }

    /// Makes the `n`-th allocation site this thread reaches fail.
    fn arm(&self, n: u32) -> io::Result<()> {
        (&self.0).write_all(n.to_string().as_bytes())
    }

    /// Disarms it; returns whether the armed failure was never reached.
    fn disarm(&self) -> io::Result<bool> {
        let mut text = [0u8; 16];
        let n = self.0.read_at(&mut text, 0)?;
        let left: u32 = std::str::from_utf8(&text[..n])
            .unwrap_or("0")
            .trim()
            .parse()
            .unwrap_or(0);
        self.arm(0)?;
        Ok(left != 0)
    }
}

/// What running one path with each of its sites failing in turn showed.
struct Sweep {
    /// Sites that failed (one run each).
    sites: u32,
    /// Of those runs, the ones that still succeeded (a tolerated failure).
    tolerated: u32,
    /// Runs that failed with something other than an errno, or an errno
    /// no allocation failure should give.
    odd: Vec<String>,
}

/// Runs `op` with site 1, 2, ... failing until it completes without
/// reaching the armed site. `op` returns the errno it failed with, if any;
/// `undo` cleans up after a run that succeeded despite the failure.
fn sweep(
    fail: &FailNth,
    mut op: impl FnMut(&FailNth, u32) -> io::Result<()>,
    mut undo: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Sweep> {
    let mut sweep = Sweep {
        sites: 0,
        tolerated: 0,
        odd: Vec::new(),
    };
    for n in 1..=MAX_SITES {
        let result = op(fail, n);
        let unreached = fail.disarm()?;
        if unreached {
            // Every site has failed once; this run had no failure.
            if let Err(e) = result {
                bail!("with no failure injected it failed: {e}");
            }
            undo()?;
            return Ok(sweep);
        }
        sweep.sites += 1;
        match result {
            Ok(()) => {
                sweep.tolerated += 1;
                undo()?;
            }
            Err(e) => match e.raw_os_error() {
                Some(libc::ENOMEM | libc::EAGAIN | libc::EINTR | libc::ENOSPC | libc::EFAULT) => {}
                // Failures deeper in the kernel may surface as other
                // errnos; note them, they are not wrong per se.
                Some(_) => sweep.odd.push(format!("site {n}: {e}")),
                None => bail!("site {n}: {e}"),
            },
        }
    }
    bail!("still failing after {MAX_SITES} sites")
}

fn debugfs_write(path: &str, value: &str) -> anyhow::Result<()> {
    std::fs::write(format!("{DEBUGFS}/{path}"), value)
        .with_context(|| format!("writing {value:?} to {DEBUGFS}/{path}"))
}

/// Lets `fail-nth` reach sleeping allocations and order-0 pages, quietly.
fn configure() -> anyhow::Result<()> {
    debugfs_write("failslab/ignore-gfp-wait", "N")?;
    debugfs_write("failslab/verbose", "0")?;
    debugfs_write("fail_page_alloc/ignore-gfp-wait", "N")?;
    debugfs_write("fail_page_alloc/ignore-gfp-highmem", "N")?;
    debugfs_write("fail_page_alloc/min-order", "0")?;
    debugfs_write("fail_page_alloc/verbose", "0")?;
    Ok(())
}

/// Which of the load path's allocations fail in turn.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Load {
    /// Those with the driver's code on the stack.
    Driver,
    /// All of them, the module loader's too.
    Every,
}

/// `rmemring-selftest faults`.
pub(crate) fn faults(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    run(env, report, Load::Driver)
}

/// `rmemring-selftest faults-all`.
pub(crate) fn faults_all(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    run(env, report, Load::Every)
}

fn run(env: &Env, report: &mut Report, load: Load) -> anyhow::Result<()> {
    if !std::path::Path::new("/proc/thread-self/fail-nth").exists() {
        report.skip(
            "faults",
            "the kernel has no fault injection (CONFIG_FAULT_INJECTION)",
        );
        return Ok(());
    }
    configure()?;
    let kmemleak = std::path::Path::new(&format!("{DEBUGFS}/kmemleak")).exists();
    if kmemleak {
        // Forget what boot left behind.
        debugfs_write("kmemleak", "clear")?;
    }
    kernel_log::write(BEGIN);
    let result = paths(env, report, load);
    kernel_log::write(END);
    result?;
    if kmemleak {
        leaks(report)?;
    } else {
        report.skip(
            "faults: kmemleak",
            "the kernel has no kmemleak (CONFIG_DEBUG_KMEMLEAK)",
        );
    }
    Ok(())
}

/// Whether a path allocates, as the driver is written: a path that does
/// must have reached at least one site (or the sweep tested nothing); one
/// that does not must reach none, which the sweep then shows by succeeding
/// with its first allocation armed to fail.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Allocates {
    Yes,
    /// Says what the path does instead.
    No(&'static str),
}

/// Reports a path's sweep.
fn record(report: &mut Report, what: &str, allocates: Allocates, sweep: anyhow::Result<Sweep>) {
    let name = match allocates {
        Allocates::Yes => {
            format!("faults: {what}: each allocation failure unwinds, and the retry works")
        }
        Allocates::No(instead) => format!("faults: {what}: allocates nothing ({instead})"),
    };
    match sweep {
        Ok(s) => {
            println!(
                "# faults: {what}: {} sites failed in turn, {} tolerated{}",
                s.sites,
                s.tolerated,
                if s.odd.is_empty() {
                    String::new()
                } else {
                    format!("; other errnos: {}", s.odd.join(", "))
                }
            );
            match allocates {
                Allocates::Yes => report.expect(&name, s.sites > 0, || {
                    "no allocation site was reached, so nothing was tested".into()
                }),
                Allocates::No(_) => report.expect(&name, s.sites == 0, || {
                    format!("{} allocation sites were reached", s.sites)
                }),
            }
        }
        Err(e) => report.check(&name, Err(e)),
    }
}

/// The fault attributes whose stack filter [`Load::Driver`] sets.
const FILTERED: [&str; 2] = ["failslab", "fail_page_alloc"];

/// Lets `fail-nth` count only allocations with module code on the stack:
/// a return address past the end of the kernel image's text (its init
/// text included), which is where module text lives on x86_64.
fn filter_to_modules() -> anyhow::Result<()> {
    let kallsyms = std::fs::read_to_string("/proc/kallsyms").context("reading /proc/kallsyms")?;
    let address = |name: &str| {
        kallsyms
            .lines()
            .find_map(|line| {
                let mut words = line.split_whitespace();
                let address = words.next()?;
                (words.nth(1)? == name).then(|| u64::from_str_radix(address, 16).ok())?
            })
            .with_context(|| format!("no {name} in /proc/kallsyms"))
    };
    let text_end = address("_etext")?.max(address("_einittext")?);
    anyhow::ensure!(
        text_end != 0,
        "/proc/kallsyms hides addresses (kptr_restrict)"
    );
    for attr in FILTERED {
        debugfs_write(
            &format!("{attr}/require-start"),
            &format!("{:#x}", text_end + 1),
        )?;
        debugfs_write(&format!("{attr}/require-end"), &format!("{:#x}", u64::MAX))?;
        debugfs_write(&format!("{attr}/stacktrace-depth"), "32")?;
    }
    Ok(())
}

/// Undoes [`filter_to_modules`]: every site counts again.
fn unfilter() -> anyhow::Result<()> {
    for attr in FILTERED {
        debugfs_write(&format!("{attr}/require-start"), "0")?;
    }
    Ok(())
}

fn paths(env: &Env, report: &mut Report, scope: Load) -> anyhow::Result<()> {
    let fail = FailNth::open()?;

    // Load (and probe): finit_module with the reference parameters.
    if env.kmod.loaded() {
        env.kmod.rmmod()?;
    }
    let module = File::open(&env.kmod.module).context("opening the module")?;
    let params = std::ffi::CString::new(env.kmod.params.clone())?;
    if scope == Load::Driver {
        filter_to_modules()?;
    }
    let load = sweep(
        &fail,
        |fail, n| {
            fail.arm(n)?;
            // SAFETY: A valid descriptor and C string; flags 0.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_finit_module,
                    module.as_raw_fd(),
                    params.as_ptr(),
                    0,
                )
            };
            errno_of(r as isize).map(drop)
        },
        || env.kmod.rmmod(),
    );
    if scope == Load::Driver {
        unfilter()?;
    }
    let what = match scope {
        Load::Driver => "insmod (the allocations with the driver's code on the stack)",
        Load::Every => "insmod (every allocation)",
    };
    record(report, what, Allocates::Yes, load);
    env.kmod.ensure_loaded()?;
    let dev = std::ffi::CString::new(env.device.clone())?;
    let consumer = access_mode(Role::Consumer).context("the consumer's access mode")?;

    // Open, as the consumer (which also attaches it to the ring).
    let opened = sweep(
        &fail,
        |fail, n| {
            fail.arm(n)?;
            // Not `fd::open`: its allocation could reach the armed site.
            // SAFETY: A valid C string and plain flags.
            let fd = unsafe { libc::open(dev.as_ptr(), consumer | libc::O_CLOEXEC) };
            errno_of(fd as isize).map(|_| close(fd))
        },
        || Ok(()),
    );
    record(report, "open", Allocates::Yes, opened);

    // mmap of each part, and START, RESET and read() on one consumer.
    let region = Region::open(&env.device, Access::Consume)?;
    let l = *region.layout();
    let fd = region.fd().as_raw_fd();
    for (what, offset, len, prot) in [
        (
            "mmap control page",
            0,
            l.page_size as usize,
            libc::PROT_READ,
        ),
        (
            "mmap consumer page",
            l.consumer_offset,
            l.page_size as usize,
            libc::PROT_READ | libc::PROT_WRITE,
        ),
        (
            "mmap data area",
            l.data_offset,
            l.data_size as usize,
            libc::PROT_READ,
        ),
    ] {
        let mapped = sweep(
            &fail,
            |fail, n| {
                fail.arm(n)?;
                map(fd, offset, len, prot, libc::MAP_SHARED).map(drop)
            },
            || Ok(()),
        );
        record(report, what, Allocates::Yes, mapped);
    }

    for overflow in Overflow::ALL {
        let mode = overflow.name();
        let reset = ResetConfig {
            flags: overflow.flag(),
            ..Default::default()
        };
        let resets = sweep(
            &fail,
            |fail, n| {
                fail.arm(n)?;
                ioctl(fd, IOC_RESET, &reset)
            },
            || Ok(()),
        );
        record(
            report,
            &format!("RESET ({mode})"),
            Allocates::No("it rewrites the pages and zeroes the data area in place"),
            resets,
        );
        let config = ProducerConfig {
            min_len: 0,
            max_len: 200,
            count: 100,
            ..Default::default()
        };
        let starts = sweep(
            &fail,
            |fail, n| {
                wait_stopped(&region, STOPS_WITHIN)?;
                fail.arm(n)?;
                ioctl(fd, IOC_START, &config)
            },
            || Ok(()),
        );
        record(report, &format!("START ({mode})"), Allocates::Yes, starts);
        wait_stopped(&region, STOPS_WITHIN)?;
        // A buffer the kernel need not fault in: its pages are there.
        let mut buf = vec![1u8; 1 << 16];
        let reads = sweep(
            &fail,
            |fail, n| {
                // Records to read on every run: a fresh ring with some.
                region
                    .device()
                    .and_then(|device| device.reset(&reset))
                    .map_err(io_error)?;
                region.start(&config).map_err(io_error)?;
                wait_stopped(&region, STOPS_WITHIN)?;
                fail.arm(n)?;
                read_into(fd, &mut buf).map(drop)
            },
            || Ok(()),
        );
        // Drop-new reads copy from the ring itself; overwrite mode copies
        // each record into a bounce buffer first (the producer may lap it).
        let allocates = match overflow {
            Overflow::DropNew => Allocates::No("it copies from the ring to the caller directly"),
            Overflow::OverwriteOldest => Allocates::Yes,
        };
        record(report, &format!("read ({mode})"), allocates, reads);
    }
    drop(region);
    // Everything unwound: the module goes.
    report.check(
        "faults: the driver unloads after every failure",
        env.kmod.rmmod(),
    );
    env.kmod.ensure_loaded()?;
    Ok(())
}

/// `ioctl(fd, request, arg)` with a struct argument.
fn ioctl<T>(fd: RawFd, request: u32, arg: &T) -> io::Result<()> {
    // SAFETY: `arg` is a valid struct of the size the request encodes.
    let r = unsafe { libc::ioctl(fd, request as _, std::ptr::from_ref(arg)) };
    errno_of(r as isize).map(drop)
}

/// Scans for leaks (twice, after kmemleak's minimum age) and fails on any
/// whose allocation backtrace passes through the driver.
fn leaks(report: &mut Report) -> anyhow::Result<()> {
    // kmemleak reports only objects older than five seconds.
    std::thread::sleep(Duration::from_secs(6));
    debugfs_write("kmemleak", "scan")?;
    debugfs_write("kmemleak", "scan")?;
    let mut text = String::new();
    File::open(format!("{DEBUGFS}/kmemleak"))?.read_to_string(&mut text)?;
    let objects: Vec<&str> = text.split("unreferenced object").skip(1).collect();
    let ours: Vec<&&str> = objects.iter().filter(|o| o.contains("rmemring")).collect();
    println!(
        "# faults: kmemleak: {} unreferenced objects, {} allocated through rmemring",
        objects.len(),
        ours.len()
    );
    report.expect(
        "faults: kmemleak finds nothing the driver allocated",
        ours.is_empty(),
        || {
            format!(
                "{} leaks:\n{}",
                ours.len(),
                ours.iter().map(|o| o.to_string()).collect::<String>()
            )
        },
    );
    Ok(())
}
