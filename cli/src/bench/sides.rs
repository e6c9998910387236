//! Both sides of a measurement: the producer's CPU time and how full the
//! ring between the two sides was.
//!
//! Every peer of `rmemring bench` is fed by the driver's built-in producer,
//! a kernel thread named after the ring (`rmemring0`). Its CPU time is
//! everything the producing side spends per record: filling the payload,
//! reserving and committing in the ring, or, for the BPF peer, the
//! tracepoint and the BPF program that copies the record into the BPF ring
//! buffer, which run on that thread. It is read from the thread's CPU clock
//! (`clock_getcpuclockid`, nanoseconds; the kernel lets any process read
//! another's).
//!
//! The ring's fill says which side bounds a row: a producer that is faster
//! than its consumer keeps the ring full (and waits for room, or, for the
//! BPF ring buffer, drops); a consumer that is faster finds it nearly
//! empty.

use std::path::Path;
use std::time::{
    Duration,
    Instant, //
};

use nix::time::{
    clock_getcpuclockid,
    clock_gettime,
    ClockId, //
};
use nix::unistd::Pid;

/// How often a consumer samples the ring's fill, at most: the ring paths
/// ask the driver (`RMEMRING_IOC_STATS`, one system call), so not per
/// record.
pub(crate) const FILL_PERIOD: Duration = Duration::from_millis(2);

/// The name of the kernel thread of the ring behind `device`: the ring's
/// name, which is its device node's (`/dev/rmemring0` is `rmemring0`),
/// truncated as the kernel truncates thread names (15 bytes).
pub(crate) fn producer_thread_name(device: &Path) -> String {
    let device = std::fs::canonicalize(device).unwrap_or_else(|_| device.to_owned());
    let name = device
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    truncate_comm(&name)
}

/// `name` as `/proc/PID/stat` shows a thread named so (`TASK_COMM_LEN` is
/// 16, with the NUL).
fn truncate_comm(name: &str) -> String {
    let mut end = name.len().min(15);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_owned()
}

/// The producer's kernel thread, found by name, and its CPU clock.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ProducerThread {
    clock: ClockId,
}

impl ProducerThread {
    /// The kernel thread (a child of `kthreadd`, PID 2) named `name`, if
    /// one runs.
    pub(crate) fn find(name: &str) -> Option<Self> {
        let pid = std::fs::read_dir("/proc")
            .ok()?
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.parse().ok().map(Pid::from_raw))
            .find(|&pid| {
                std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                    parse_stat(&stat).is_some_and(|(comm, ppid)| comm == name && ppid == 2)
                })
            })?;
        let thread = Self {
            clock: clock_getcpuclockid(pid).ok()?,
        };
        thread.cpu().map(|_| thread)
    }

    /// The thread's CPU time so far; `None` once it has exited.
    pub(crate) fn cpu(&self) -> Option<Duration> {
        clock_gettime(self.clock).ok().map(Duration::from)
    }
}

/// The producer's CPU time between two readings of its clock, if both
/// were made.
pub(crate) fn cpu_between(start: Option<Duration>, end: Option<Duration>) -> Option<Duration> {
    end.zip(start).map(|(end, start)| end.saturating_sub(start))
}

/// The command name and parent PID of a `/proc/PID/stat` line; the name is
/// between the first `(` and the last `)`, as it may hold both.
fn parse_stat(stat: &str) -> Option<(&str, u32)> {
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let comm = stat.get(open + 1..close)?;
    let mut rest = stat.get(close + 1..)?.split_whitespace();
    let _state = rest.next()?;
    Some((comm, rest.next()?.parse().ok()?))
}

/// The ring's mean fill over a measurement, sampled by the consumer at
/// most every [`FILL_PERIOD`], whenever it looks for more records.
#[derive(Clone, Debug)]
pub(crate) struct Fill {
    sum: f64,
    samples: u64,
    next: Instant,
}

impl Fill {
    pub(crate) fn new() -> Self {
        Self {
            sum: 0.0,
            samples: 0,
            next: Instant::now(),
        }
    }

    /// Whether a sample is due at `now` (then the next one is due a period
    /// later).
    pub(crate) fn due(&mut self, now: Instant) -> bool {
        if now < self.next {
            return false;
        }
        self.next = now + FILL_PERIOD;
        true
    }

    /// One sample: `used` bytes of a ring of `size` bytes hold records the
    /// producer cannot reuse yet.
    pub(crate) fn add(&mut self, used: u64, size: u64) {
        self.sum += (used as f64 / size.max(1) as f64).min(1.0);
        self.samples += 1;
    }

    /// Forgets the samples so far (the warm-up's).
    pub(crate) fn restart(&mut self) {
        self.sum = 0.0;
        self.samples = 0;
    }

    /// The mean fill, 0 to 1, if sampled at all.
    pub(crate) fn mean(&self) -> Option<f64> {
        (self.samples > 0).then(|| self.sum / self.samples as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_give_name_and_parent() {
        assert_eq!(
            parse_stat("1234 (rmemring0) S 2 0 0 0 -1 2129984 0 0"),
            Some(("rmemring0", 2))
        );
        // A name may hold parentheses and spaces.
        assert_eq!(parse_stat("77 (a (b) c) R 1 77 77"), Some(("a (b) c", 1)));
        assert_eq!(parse_stat("77 no name here"), None);
    }

    #[test]
    fn thread_names_are_truncated_like_the_kernels() {
        assert_eq!(truncate_comm("rmemring0"), "rmemring0");
        assert_eq!(truncate_comm("a-very-long-ring-name"), "a-very-long-rin");
        assert_eq!(
            producer_thread_name(Path::new("/nonexistent/rmemring3")),
            "rmemring3"
        );
    }

    #[test]
    fn this_process_is_no_kernel_thread() {
        let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
        assert!(ProducerThread::find(comm.trim()).is_none());
    }

    #[test]
    fn fill_is_a_mean_of_capped_samples() {
        let mut fill = Fill::new();
        assert_eq!(fill.mean(), None);
        let now = Instant::now();
        assert!(fill.due(now));
        assert!(!fill.due(now));
        assert!(fill.due(now + FILL_PERIOD));
        fill.add(2, 4);
        // More than the ring (a position read mid-update) counts as full.
        fill.add(9, 4);
        assert!((fill.mean().unwrap() - 0.75).abs() < 1e-9);
        fill.restart();
        assert_eq!(fill.mean(), None);
    }
}
