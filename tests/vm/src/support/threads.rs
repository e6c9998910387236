//! Threads that block: a call on a thread of its own, started once it is
//! asleep in the kernel, so that what the caller does next happens to a
//! sleeper.

use std::os::unix::thread::JoinHandleExt;
use std::sync::mpsc;
use std::time::{
    Duration,
    Instant, //
};

use anyhow::bail;

extern "C" fn on_signal(_: libc::c_int) {}

/// System calls a sleeper may block in, by what it calls: `read`, `poll`
/// (glibc may use `ppoll`), `epoll_wait` (or `epoll_pwait`); arm64 has only
/// the `p` variants.
pub(crate) const IN_READ: &[libc::c_long] = &[libc::SYS_read];
#[cfg(target_arch = "x86_64")]
pub(crate) const IN_POLL: &[libc::c_long] = &[libc::SYS_poll, libc::SYS_ppoll];
#[cfg(not(target_arch = "x86_64"))]
pub(crate) const IN_POLL: &[libc::c_long] = &[libc::SYS_ppoll];
#[cfg(target_arch = "x86_64")]
pub(crate) const IN_EPOLL: &[libc::c_long] = &[libc::SYS_epoll_wait, libc::SYS_epoll_pwait];
#[cfg(not(target_arch = "x86_64"))]
pub(crate) const IN_EPOLL: &[libc::c_long] = &[libc::SYS_epoll_pwait];

/// The system call a task is in, from its `syscall` file in `/proc`
/// ("NR args... sp pc" while blocked in one), and the file's text.
pub(crate) fn syscall_of(path: &str) -> (Option<libc::c_long>, String) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let nr = text.split_whitespace().next().and_then(|w| w.parse().ok());
    (nr, text)
}

/// Whether the thread of `/proc/self/task/TID/stat` sleeps (state `S`).
/// A thread preempted just after it entered a system call shows that
/// call in its `syscall` file too, before it holds anything (a file, a
/// lock), so that alone does not say it is asleep in the call.
fn asleep(stat: &str) -> bool {
    let text = std::fs::read_to_string(stat).unwrap_or_default();
    // The state follows the command name, which is in parentheses and may
    // itself hold spaces and parentheses.
    text.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .is_some_and(|state| state == "S")
}

/// Blocks every signal on the calling thread but `SIGUSR1`, the one
/// [`Sleeper`] interrupts with, so that nothing else ends its sleep.
///
/// A stray signal would: `Command::status()` blocks all signals in the
/// spawning thread until its child has exec'd, and a child that exits
/// before the mask is restored (busybox `rmmod` refusing at once) queues
/// its `SIGCHLD` for the whole process, which the kernel then hands to a
/// thread that does not block it: the sleeper. Its call returns
/// `-ERESTARTSYS`, the ignored `SIGCHLD` is dropped and the call restarts,
/// now on a descriptor the test has closed meanwhile (`EBADF`).
fn only_interrupts() {
    // SAFETY: Filling and applying a signal set the thread owns.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::sigdelset(&mut set, libc::SIGUSR1);
        libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// A blocking call running on a thread of its own.
pub(crate) struct Sleeper<T> {
    handle: std::thread::JoinHandle<()>,
    done: mpsc::Receiver<T>,
    started: Instant,
}

impl<T: Send + 'static> Sleeper<T> {
    /// Runs `f` on a new thread and returns once that thread is blocked in
    /// one of the system calls `calls` (as `/proc/self/task/TID/syscall`
    /// says) and asleep there (its `stat`), so that what the caller does
    /// next happens to a sleeper.
    pub(crate) fn spawn(
        calls: &[libc::c_long],
        f: impl FnOnce() -> T + Send + 'static,
    ) -> anyhow::Result<Self> {
        // SIGUSR1 interrupts blocking calls (no SA_RESTART) and does
        // nothing else; see `Self::finish`.
        // SAFETY: Installing a handler that does nothing.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as *const () as usize;
            libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut());
        }
        let (tx, done) = mpsc::channel();
        let (tid_tx, tid_rx) = mpsc::channel();
        let handle = std::thread::spawn(move || {
            only_interrupts();
            // SAFETY: `gettid` has no preconditions.
            let _ = tid_tx.send(unsafe { libc::gettid() });
            let _ = tx.send(f());
        });
        let tid = tid_rx.recv()?;
        let sleeper = Self {
            handle,
            done,
            started: Instant::now(),
        };
        let path = format!("/proc/self/task/{tid}/syscall");
        let stat = format!("/proc/self/task/{tid}/stat");
        loop {
            let (nr, text) = syscall_of(&path);
            if nr.is_some_and(|nr| calls.contains(&nr)) && asleep(&stat) {
                // Blocked in it; let it get to sleep there.
                std::thread::sleep(Duration::from_millis(50));
                return Ok(sleeper);
            }
            if sleeper.started.elapsed() > Duration::from_secs(10) {
                let _ = sleeper.finish(Duration::ZERO);
                bail!("the sleeper never blocked in system call {calls:?} ({path}: {text:?})");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends the thread one `SIGUSR1`, which ends an interruptible wait in
    /// a system call with `EINTR`.
    pub(crate) fn interrupt(&self) {
        // SAFETY: The thread has not been joined (`self` owns the handle),
        // so its pthread_t is valid; the handler does nothing.
        unsafe { libc::pthread_kill(self.handle.as_pthread_t(), libc::SIGUSR1) };
    }

    /// Whether it is still blocked, after waiting up to `wait` for it.
    pub(crate) fn still_blocked(&self, wait: Duration) -> Result<bool, T> {
        match self.done.recv_timeout(wait) {
            Ok(result) => Err(result),
            Err(_) => Ok(true),
        }
    }

    /// Waits up to `limit` (from the start) for the call to return; after
    /// that, interrupts it with signals until it does. Returns its result,
    /// how long it ran and whether it had to be interrupted.
    pub(crate) fn finish(self, limit: Duration) -> (T, Duration, bool) {
        let left = limit.saturating_sub(self.started.elapsed());
        if let Ok(result) = self.done.recv_timeout(left) {
            let took = self.started.elapsed();
            let _ = self.handle.join();
            return (result, took, false);
        }
        let took = self.started.elapsed();
        loop {
            // SAFETY: The thread has not been joined, so its pthread_t is
            // valid; the handler does nothing.
            unsafe { libc::pthread_kill(self.handle.as_pthread_t(), libc::SIGUSR1) };
            if let Ok(result) = self.done.recv_timeout(Duration::from_millis(100)) {
                let _ = self.handle.join();
                return (result, took, true);
            }
        }
    }
}
