//! The machine: pinning, priority, the two threads of a measurement, and
//! how much of the CPUs others took.

use std::hint::spin_loop;
use std::sync::atomic::{
    AtomicBool,
    Ordering, //
};
use std::sync::Barrier;

use crate::workload::Timing;

/// Where the threads of a measurement run.
#[derive(Clone, Copy)]
pub struct Placement {
    /// Whether the threads are pinned.
    pub pin: bool,
    /// The producer's and the consumer's CPU, see [`cpu_pair`]; `memcpy`
    /// runs on the producer's.
    pub cpus: (usize, usize),
}

/// Pins the calling thread to `cpu`; says whether that worked.
pub fn pin(cpu: usize) -> bool {
    if cpu >= libc::CPU_SETSIZE as usize {
        return false;
    }
    // SAFETY: `cpu_set_t` is plain data for which all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` is below `CPU_SETSIZE`, checked above.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid, initialised `cpu_set_t` of the size passed.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0 }
}

/// The CPUs for the producer and the consumer: the first this process may
/// run on, and the first other one that is not a hyperthread of it (two
/// hyperthreads would share one core's caches and execution units), or just
/// the first other one.
pub fn cpu_pair() -> (usize, usize) {
    // SAFETY: `cpu_set_t` is plain data for which all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid `cpu_set_t` of the size passed.
    let ok =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    let allowed: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below `CPU_SETSIZE`; `set` is initialised.
        .filter(|&cpu| ok == 0 && unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect();
    let Some(&first) = allowed.first() else {
        return (0, 1);
    };
    // A list such as "0,8" or "0-1".
    let siblings: Vec<usize> = std::fs::read_to_string(format!(
        "/sys/devices/system/cpu/cpu{first}/topology/thread_siblings_list"
    ))
    .unwrap_or_default()
    .trim()
    .split(',')
    .filter_map(|part| {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        Some(lo.parse().ok()?..=hi.parse().ok()?)
    })
    .flatten()
    .collect();
    let other = |skip_siblings: bool| {
        allowed
            .iter()
            .copied()
            .find(|&cpu| cpu != first && !(skip_siblings && siblings.contains(&cpu)))
    };
    (first, other(true).or(other(false)).unwrap_or(first))
}

/// Set when either thread of a measurement panics, so the other one stops
/// spinning on a ring that will never move again.
pub struct Stop(AtomicBool);

impl Stop {
    /// Called where a thread waits for the other: panics if it is gone.
    #[inline(always)]
    fn check(&self) {
        if self.0.load(Ordering::Relaxed) {
            Self::fail();
        }
    }

    #[cold]
    fn fail() -> ! {
        panic!("the other thread failed");
    }
}

/// Sets the [`Stop`] flag if the thread it lives in panics.
struct PanicFlag<'a>(&'a Stop);

impl Drop for PanicFlag<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0 .0.store(true, Ordering::Relaxed);
        }
    }
}

/// Waits a moment for the other thread, unless it is gone.
#[inline(always)]
pub fn idle(stop: &Stop) {
    spin_loop();
    stop.check();
}

/// Gives this process a larger share of the CPUs than other work on a
/// shared machine: nice -19, in a session of its own, because with
/// autogroups (`/proc/sys/kernel/sched_autogroup_enabled`) the scheduler
/// shares the CPUs between sessions first, whatever their processes' nice
/// values. The session, and so the priority, ends with the process. Needs
/// root (CAP_SYS_NICE), and a parent such as cargo: a process group leader
/// (a command run straight from a shell) cannot start a session. Says
/// whether it worked.
pub fn raise_priority() -> bool {
    // SAFETY: `prctl(PR_SET_PDEATHSIG)`, `setsid` and `setpriority` have no
    // memory-safety preconditions.
    unsafe {
        // Out of the terminal's session Ctrl-C reaches only cargo; follow it.
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
        if libc::setsid() < 0 || libc::setpriority(libc::PRIO_PROCESS, 0, -19) < 0 {
            return false;
        }
    }
    // Without autogroups the file is missing and the nice value suffices.
    let autogroups = std::fs::read_to_string("/proc/sys/kernel/sched_autogroup_enabled")
        .is_ok_and(|v| v.trim() == "1");
    !autogroups || std::fs::write("/proc/self/autogroup", "-19").is_ok()
}

/// Runs `producer` and `consumer` on the CPUs of `place`, started
/// together, and returns the consumer's timing.
pub fn two_threads(
    place: Placement,
    producer: impl FnOnce(&Stop) + Send,
    consumer: impl FnOnce(&Stop) -> Timing + Send,
) -> Timing {
    let start = Barrier::new(2);
    let stop = Stop(AtomicBool::new(false));
    std::thread::scope(|s| {
        let (start, stop) = (&start, &stop);
        let (pin_on, (producer_cpu, consumer_cpu)) = (place.pin, place.cpus);
        let p = s.spawn(move || {
            let _flag = PanicFlag(stop);
            if pin_on {
                pin(producer_cpu);
            }
            start.wait();
            producer(stop);
        });
        let c = s.spawn(move || {
            let _flag = PanicFlag(stop);
            if pin_on {
                pin(consumer_cpu);
            }
            start.wait();
            consumer(stop)
        });
        p.join().expect("producer thread");
        c.join().expect("consumer thread")
    })
}

/// CPU time counters, to tell how much of the machine others took.
#[derive(Clone, Copy)]
pub struct CpuSample {
    /// Busy ticks of all CPUs (`/proc/stat`), steal excluded.
    busy: u64,
    /// All ticks of all CPUs, steal included.
    total: u64,
    /// Ticks the hypervisor gave to other guests.
    steal: u64,
    /// Ticks this process ran (`/proc/self/stat`).
    ours: u64,
}

impl CpuSample {
    pub fn now() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let cpu: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        // user nice system idle iowait irq softirq steal ...
        let field = |i: usize| cpu.get(i).copied().unwrap_or(0);
        let busy = field(0) + field(1) + field(2) + field(5) + field(6);
        let total = busy + field(3) + field(4) + field(7);
        let own = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the parenthesised command name; utime and stime are
        // the 14th and 15th of the whole line.
        let rest = own.rsplit_once(')')?.1;
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        let ours = f.get(11)? + f.get(12)?;
        Some(Self {
            busy,
            total,
            steal: field(7),
            ours,
        })
    }

    /// The share of all CPUs' time since `earlier` that other processes
    /// ran, and that the hypervisor stole, in percent.
    pub fn others_since(&self, earlier: &Self) -> (f64, f64) {
        let ticks = (self.total - earlier.total).max(1) as f64;
        let others = (self.busy - earlier.busy).saturating_sub(self.ours - earlier.ours);
        let steal = self.steal - earlier.steal;
        (100.0 * others as f64 / ticks, 100.0 * steal as f64 / ticks)
    }
}

/// The one-minute load average (`/proc/loadavg`), for the report.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// This process's nice value.
pub fn nice_value() -> i32 {
    // SAFETY: `getpriority` has no memory-safety preconditions.
    unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
}
