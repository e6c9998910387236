//! Ctrl-C (SIGINT), SIGTERM and SIGHUP as a polite request to stop.
//!
//! The first such signal sets a flag and writes a byte into a pipe (the
//! self-pipe trick), so a subcommand sleeping in `poll(2)` on its ring wakes
//! up without any race between checking the flag and going to sleep. The
//! handler resets itself (`SA_RESETHAND`): a second Ctrl-C kills the
//! process the usual way.

use std::io;
use std::os::fd::{
    AsRawFd,
    BorrowedFd,
    RawFd, //
};
use std::sync::atomic::{
    AtomicBool,
    AtomicI32,
    Ordering, //
};
use std::time::Duration;

/// Set by the first stop signal.
static STOP: AtomicBool = AtomicBool::new(false);
/// The pipe's write end, or -1 before [`install`].
static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);
/// The pipe's read end, or -1 before [`install`].
static PIPE_READ: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(_signal: libc::c_int) {
    // ORDERING: Relaxed is enough; the pipe's write is what wakes sleepers,
    // and they re-read the flag after `poll` returns.
    STOP.store(true, Ordering::Relaxed);
    let fd = PIPE_WRITE.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = 1u8;
        // SAFETY: `write` is async-signal-safe; `byte` is valid for one
        // byte. The pipe is non-blocking, so a full pipe cannot hang us.
        unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
    }
}

/// Installs the handlers. Failures leave the default actions, which only
/// makes Ctrl-C less polite.
pub(crate) fn install() {
    let mut fds = [-1; 2];
    // SAFETY: `fds` has room for the two descriptors `pipe2` writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return;
    }
    PIPE_READ.store(fds[0], Ordering::Relaxed);
    PIPE_WRITE.store(fds[1], Ordering::Relaxed);
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: A zeroed `sigaction` is a valid starting point; the
        // handler is an `extern "C" fn(c_int)` that only touches atomics
        // and calls `write`, both async-signal-safe.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESETHAND;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// Whether a stop signal arrived.
pub(crate) fn stop_requested() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// Why [`sleep_until`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Woken {
    /// The descriptor is readable (or reports an error: the caller finds
    /// out which when it reads).
    Readable,
    /// The timeout passed.
    TimedOut,
    /// A stop signal arrived.
    Stop,
}

/// Sleeps until `fd` is readable, `timeout` passes or a stop signal arrives.
pub(crate) fn sleep_until(
    fd: Option<BorrowedFd<'_>>,
    timeout: Option<Duration>,
) -> io::Result<Woken> {
    if stop_requested() {
        return Ok(Woken::Stop);
    }
    let pipe: RawFd = PIPE_READ.load(Ordering::Relaxed);
    let mut fds = [
        libc::pollfd {
            fd: pipe,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: fd.map_or(-1, |fd| fd.as_raw_fd()),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: d.as_secs().try_into().unwrap_or(libc::time_t::MAX),
        tv_nsec: d.subsec_nanos().into(),
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `fds` and `ts` outlive the call; negative descriptors are
    // ignored by `ppoll`; a null signal mask keeps the current one.
    let r = unsafe { libc::ppoll(fds.as_mut_ptr(), 2, ts_ptr, std::ptr::null()) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    if stop_requested() {
        return Ok(Woken::Stop);
    }
    if fds[1].revents != 0 {
        return Ok(Woken::Readable);
    }
    Ok(Woken::TimedOut)
}

/// Sleeps for `d` or until a stop signal; says whether to stop.
pub(crate) fn pause(d: Duration) -> io::Result<bool> {
    Ok(sleep_until(None, Some(d))? == Woken::Stop)
}
