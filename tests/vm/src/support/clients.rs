//! The client modules of `examples/kernel/` (kernel code producing
//! through rmemring's in-kernel API), loaded and unloaded with their own
//! counts, and a load that makes the guest switch tasks.

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

use super::env::Env;
use super::kernel_log;

/// The `sched_switch` tracer (`examples/kernel/sched_switch`), in
/// `/lib/modules`.
pub(crate) const TRACER_MODULE: &str = "rmemring_sched_switch";
/// The hard-IRQ timer sampler (`examples/kernel/timer_sampler`).
const SAMPLER_MODULE: &str = "rmemring_timer_sampler";
/// The API's edges, checked at load (`tests/kernel/api_contract`).
pub(crate) const CONTRACT_MODULE: &str = "rmemring_api_contract";
/// Writes from probes on the producer lock's own tracepoints, checked at
/// load (`tests/kernel/nested_lock`).
pub(crate) const NESTED_MODULE: &str = "rmemring_nested_lock";

/// Waits until the loaded tracer's count `name` (`calls`, `dropped`: one
/// of its parameters) reaches `at_least`, for at most `within`; returns
/// the count then.
pub(crate) fn tracer_count_reaches(
    name: &str,
    at_least: u64,
    within: Duration,
) -> anyhow::Result<u64> {
    let path = format!("/sys/module/{TRACER_MODULE}/parameters/{name}");
    let start = Instant::now();
    loop {
        let now: u64 = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {path}"))?
            .trim()
            .parse()
            .with_context(|| format!("parsing {path}"))?;
        if now >= at_least {
            return Ok(now);
        }
        ensure!(
            start.elapsed() < within,
            "the tracer's {name} was {now} after {within:?}, not {at_least}"
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
    /// The `sched_switch` tracer, writing into the device under test.
    pub(crate) fn tracer(env: &Env) -> anyhow::Result<Self> {
        let ring = env
            .device
            .rsplit('/')
            .next()
            .context("the device has no name")?;
        Self::load(TRACER_MODULE, &[format!("ring={ring}")])
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
