//! The client modules of `examples/kernel/` (kernel code producing
//! through rmemring's in-kernel API), loaded and unloaded with their own
//! counts, and a load that makes the guest switch tasks.

use std::ffi::CString;
use std::io::{Read as _, Write as _};
use std::process::Command;
use std::sync::atomic::{
    AtomicBool,
    Ordering, //
};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{
    Duration,
    Instant, //
};

use anyhow::{
    bail,
    ensure,
    Context, //
};

use nix::errno::Errno;
use nix::kmod::{
    finit_module,
    ModuleInitFlags, //
};

use super::env::Env;
use super::kernel_log;

/// The `sched_switch` tracer (`examples/kernel/sched_switch`), in
/// `/lib/modules`.
pub(crate) const TRACER_MODULE: &str = "rmemring_sched_switch";
/// How long a freshly loaded tracer may take to be called at all: the
/// idle arm64 debug guest switches about 60 times a second.
const FIRST_CALL_WAIT: Duration = Duration::from_secs(10);
/// The hard-IRQ timer sampler (`examples/kernel/timer_sampler`).
const SAMPLER_MODULE: &str = "rmemring_timer_sampler";
/// The API's edges, checked at load (`tests/kernel/api_contract`).
pub(crate) const CONTRACT_MODULE: &str = "rmemring_api_contract";
/// Writes from probes on the producer lock's own tracepoints, checked at
/// load (`tests/kernel/nested_lock`).
pub(crate) const NESTED_MODULE: &str = "rmemring_nested_lock";

/// The loaded tracer's count `name` (`calls`, `dropped`: one of its
/// parameters) now.
pub(crate) fn tracer_count(name: &str) -> anyhow::Result<u64> {
    let path = format!("/sys/module/{TRACER_MODULE}/parameters/{name}");
    std::fs::read_to_string(&path)
        .with_context(|| format!("reading {path}"))?
        .trim()
        .parse()
        .with_context(|| format!("parsing {path}"))
}

/// The loaded tracer's outcomes: its calls that have ended, written or
/// not. (Each count is read at its own moment: the sum is at least what
/// had ended when the first was read.)
pub(crate) fn tracer_ended() -> anyhow::Result<u64> {
    ["written", "dropped", "refused", "gone", "failed"]
        .into_iter()
        .try_fold(0, |sum, name| Ok(sum + tracer_count(name)?))
}

/// All the loaded tracer says of itself: its counts and whether
/// `sched_switch`'s static key is on, for a failure's message.
pub(crate) fn tracer_state() -> String {
    let mut state = ["calls", "written", "dropped", "refused", "gone", "failed"]
        .map(|name| match tracer_count(name) {
            Ok(n) => format!("{name} {n}"),
            Err(e) => format!("{name} unknown ({e:#})"),
        })
        .join(", ");
    let key =
        tracer_count("tracepoint_enabled").map_or_else(|e| format!("{e:#}"), |k| k.to_string());
    state += &format!("; sched_switch's static key on: {key}");
    state
}

/// Waits until the loaded tracer's count `name` (`calls`, `dropped`: one
/// of its parameters) reaches `at_least`, for at most `within`; returns
/// the count then.
pub(crate) fn tracer_count_reaches(
    name: &str,
    at_least: u64,
    within: Duration,
) -> anyhow::Result<u64> {
    tracer_reaches(name, at_least, within, || tracer_count(name))
}

/// Waits until the loaded tracer's `count` (read by `read`) reaches
/// `at_least`, for at most `within`; returns the count then. The failure
/// says what else the tracer counted.
pub(crate) fn tracer_reaches(
    count: &str,
    at_least: u64,
    within: Duration,
    read: impl Fn() -> anyhow::Result<u64>,
) -> anyhow::Result<u64> {
    let start = Instant::now();
    loop {
        let now = read()?;
        if now >= at_least {
            return Ok(now);
        }
        ensure!(
            start.elapsed() < within,
            "the tracer's {count} was {now} after {within:?}, not {at_least} ({})",
            tracer_state()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A client module's own counts, from the line its exit writes to the
/// kernel log (after its probe or timers are gone, so they are final).
#[derive(Debug, Default)]
pub(crate) struct Counts {
    /// Records offered: probe calls, timer expiries.
    pub(crate) calls: u64,
    pub(crate) written: u64,
    pub(crate) dropped: u64,
    /// Refused with `-EBUSY`: NMI, nested, a reset.
    pub(crate) refused: u64,
    /// Refused with `-ENODEV`: the ring's device is gone.
    pub(crate) gone: u64,
    pub(crate) failed: u64,
    /// The timer sampler's periods with no expiry (it fired more than a
    /// period late and was forwarded past them): samples not taken.
    pub(crate) skipped: u64,
}

/// A client module of `examples/kernel/`, loaded; unload it with
/// [`Client::unload`].
pub(crate) struct Client {
    name: &'static str,
    mark: String,
    loaded: bool,
}

impl Client {
    /// The `sched_switch` tracer, writing into the device under test, and
    /// called (see [`Self::tracer_with`]).
    pub(crate) fn tracer(env: &Env) -> anyhow::Result<Self> {
        let ring = env
            .device
            .rsplit('/')
            .next()
            .context("the device has no name")?;
        Self::tracer_with(&[format!("ring={ring}")])
    }

    /// The `sched_switch` tracer, loaded with `params`, once it has been
    /// called. A registration whose probe is never called (seen on the
    /// arm64 board under TCG: no call at all in 20 s under a switch load,
    /// twice in the unbind check, on the first boot of a freshly built
    /// kernel) is unloaded, having written nothing, and the tracer loaded
    /// once more; if that one is not called either, this fails, with the
    /// tracer's counts and whether `sched_switch`'s static key was on. The
    /// probe counts a call before it touches the ring: whether it is
    /// called says nothing of the driver.
    pub(crate) fn tracer_with(params: &[String]) -> anyhow::Result<Self> {
        let tracer = Self::load(TRACER_MODULE, params)?;
        let Err(e) = tracer_count_reaches("calls", 1, FIRST_CALL_WAIT) else {
            return Ok(tracer);
        };
        let log = tracer.remove()?;
        println!(
            "# {e:#}: loading the tracer again (its log: {})",
            log.trim()
        );
        let tracer = Self::load(TRACER_MODULE, params)?;
        tracer_count_reaches("calls", 1, FIRST_CALL_WAIT)
            .context("loaded again, the tracer was not called either")?;
        Ok(tracer)
    }

    /// The hard-IRQ timer sampler, `rate` samples a second on each CPU,
    /// writing into `device` (`/dev/rmemringN` or `rmemringN`).
    pub(crate) fn sampler(device: &str, rate: u32) -> anyhow::Result<Self> {
        let index = device
            .trim_start_matches("/dev/")
            .trim_start_matches("rmemring")
            .parse::<u32>()
            .context("the sampler takes /dev/rmemringN")?;
        Self::load(
            SAMPLER_MODULE,
            &[format!("ring={index}"), format!("rate={rate}")],
        )
    }

    /// Loads the module with one `finit_module(2)`, so its init runs once;
    /// an init that fails is the error [`InitFailed`] (its errno and the
    /// kernel log of that load). Busybox's insmod, after a failed
    /// `finit_module(2)`, loads the module again with `init_module(2)`: a
    /// module that checks things as it loads would run its checks twice,
    /// into the same ring, and the log would hold both runs.
    pub(crate) fn load_once(name: &'static str, params: &[String]) -> anyhow::Result<Self> {
        let path = format!("/lib/modules/{name}.ko");
        let file = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
        let params = CString::new(params.join(" "))?;
        let mark = kernel_log::mark();
        if let Err(errno) = finit_module(&file, &params, ModuleInitFlags::empty()) {
            return Err(InitFailed {
                name,
                errno,
                log: kernel_log::dmesg_since(&mark),
            }
            .into());
        }
        Ok(Self {
            name,
            mark,
            loaded: true,
        })
    }

    pub(crate) fn load(name: &'static str, params: &[String]) -> anyhow::Result<Self> {
        let mark = kernel_log::mark();
        let status = Command::new("insmod")
            .arg(format!("/lib/modules/{name}.ko"))
            .args(params)
            .status()?;
        if !status.success() {
            bail!(
                "insmod {name}: {status}: {}",
                kernel_log::dmesg_since(&mark)
            );
        }
        Ok(Self {
            name,
            mark,
            loaded: true,
        })
    }

    /// Unloads the module: the kernel log since it was loaded.
    pub(crate) fn remove(mut self) -> anyhow::Result<String> {
        self.loaded = false;
        let status = Command::new("rmmod").arg(self.name).status()?;
        ensure!(status.success(), "rmmod {}: {status}", self.name);
        Ok(kernel_log::dmesg_since(&self.mark))
    }

    /// Unloads the module: its counts, from the line its exit logs.
    pub(crate) fn unload(self) -> anyhow::Result<Counts> {
        let name = self.name;
        let log = self.remove()?;
        let prefix = format!("{name}: ");
        let line = log
            .lines()
            .find(|l| l.contains(&prefix) && l.contains(" written="))
            .with_context(|| format!("no counts in the kernel log: {log}"))?;
        let mut counts = Counts::default();
        for word in line.split_whitespace() {
            let Some((key, value)) = word.split_once('=') else {
                continue;
            };
            let value: u64 = value.parse().with_context(|| format!("in {line:?}"))?;
            match key {
                "calls" | "samples" => counts.calls = value,
                "written" => counts.written = value,
                "dropped" => counts.dropped = value,
                "refused" => counts.refused = value,
                "gone" => counts.gone = value,
                "failed" => counts.failed = value,
                "skipped" => counts.skipped = value,
                _ => {}
            }
        }
        Ok(counts)
    }
}

/// A module's init that failed, loaded by [`Client::load_once`].
#[derive(Debug)]
pub(crate) struct InitFailed {
    pub(crate) name: &'static str,
    /// What the init returned.
    pub(crate) errno: Errno,
    /// The kernel log of the load.
    pub(crate) log: String,
}

impl std::fmt::Display for InitFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "loading {}: {}: {}", self.name, self.errno, self.log)
    }
}

impl std::error::Error for InitFailed {}

impl Drop for Client {
    fn drop(&mut self) {
        if self.loaded {
            let _ = Command::new("rmmod").arg(self.name).status();
        }
    }
}

/// Context switches on demand: two threads ping-ponging a byte over two
/// pipes (each hand-over is a switch) and two busy loops (preempted at
/// every tick).
pub(crate) struct SwitchLoad {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl SwitchLoad {
    pub(crate) fn start() -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        // Two pipes, one each way. A thread that sees `stop` leaves,
        // closing its write end, and the other's read sees the end.
        let (a_reads, b_writes) = std::io::pipe()?;
        let (b_reads, a_writes) = std::io::pipe()?;
        for (first, mut reader, mut writer) in
            [(true, a_reads, a_writes), (false, b_reads, b_writes)]
        {
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || {
                let mut byte = [0u8];
                if first && writer.write_all(&byte).is_err() {
                    return;
                }
                while !stop.load(Ordering::Relaxed) {
                    if reader.read_exact(&mut byte).is_err() || writer.write_all(&byte).is_err() {
                        break;
                    }
                }
            }));
        }
        for _ in 0..2 {
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            }));
        }
        Ok(Self { stop, threads })
    }

    pub(crate) fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}
