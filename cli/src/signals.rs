//! Ctrl-C (SIGINT), SIGTERM and SIGHUP as a polite request to stop.
//!
//! Through `signal-hook`, the first such signal sets a flag and writes a
//! byte into a pipe (the self-pipe trick), so a subcommand sleeping
//! in `ppoll(2)` on its ring wakes up without any race between checking the
//! flag and going to sleep. A second delivery of the same signal takes its
//! default action (`register_conditional_default`): a second Ctrl-C kills
//! the process the usual way, as `SA_RESETHAND` would.
//!
//! signal-hook installs its handlers with `SA_RESTART`, so an interrupted
//! `read(2)` resumes: every wait that must end on a stop signal is a
//! `ppoll` here (which a handler always interrupts, and the pipe
//! wakes even if the signal came just before it) or a bounded nap (`cat`'s
//! 200 ms futex waits on a ring file).

use std::io;
use std::os::fd::{
    AsFd,
    BorrowedFd,
    OwnedFd, //
};
use std::sync::atomic::{
    AtomicBool,
    Ordering, //
};
use std::sync::{
    Arc,
    OnceLock, //
};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{
    ppoll,
    PollFd,
    PollFlags, //
};
use nix::sys::time::TimeSpec;
use nix::unistd::pipe2;
use signal_hook::consts::{
    SIGHUP,
    SIGINT,
    SIGTERM, //
};
use signal_hook::{
    flag,
    low_level::pipe, //
};

/// Set by the first stop signal.
static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();
/// The pipe's read end, which a stop signal makes readable.
static WAKE: OnceLock<OwnedFd> = OnceLock::new();

/// Installs the handlers. Failures leave the default actions, which only
/// makes Ctrl-C less polite.
pub(crate) fn install() {
    let stop = STOP.get_or_init(Arc::default);
    // A pipe, not a socket pair: the reference kernels (and many an
    // embedded one) have no networking, and `socketpair(2)` fails there.
    // Non-blocking, so that the handler never blocks on a full pipe.
    let Ok((read, write)) = pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK) else {
        eprintln!("rmemring: no pipe for the signal handlers: Ctrl-C will kill, not stop");
        return;
    };
    if WAKE.set(read).is_err() {
        return;
    }
    for signal in [SIGINT, SIGTERM, SIGHUP] {
        // Each signal has its own "seen" flag, so that SIGTERM after a
        // Ctrl-C is still polite, as each handler resetting itself was.
        let seen = Arc::new(AtomicBool::new(false));
        // Handlers run in the order they were registered: the default
        // action if this signal came before, then the flags, then the wake.
        let _ = flag::register_conditional_default(signal, Arc::clone(&seen))
            .and_then(|_| flag::register(signal, seen))
            .and_then(|_| flag::register(signal, Arc::clone(stop)))
            .and_then(|_| pipe::register(signal, write.try_clone()?));
    }
}

/// Whether a stop signal arrived.
pub(crate) fn stop_requested() -> bool {
    // ORDERING: Relaxed is enough; the pipe's write is what wakes
    // sleepers, and they re-read the flag after `ppoll` returns.
    STOP.get().is_some_and(|stop| stop.load(Ordering::Relaxed))
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
    let mut fds: Vec<PollFd<'_>> = WAKE
        .get()
        .into_iter()
        .map(AsFd::as_fd)
        .chain(fd)
        .map(|fd| PollFd::new(fd, PollFlags::POLLIN))
        .collect();
    match ppoll(&mut fds, timeout.map(TimeSpec::from_duration), None) {
        Ok(_) | Err(Errno::EINTR) => {}
        Err(e) => return Err(e.into()),
    }
    if stop_requested() {
        return Ok(Woken::Stop);
    }
    let readable = fd.is_some()
        && fds
            .last()
            .and_then(PollFd::revents)
            .is_some_and(|r| !r.is_empty());
    Ok(if readable {
        Woken::Readable
    } else {
        Woken::TimedOut
    })
}

/// Sleeps for `d` or until a stop signal; says whether to stop.
pub(crate) fn pause(d: Duration) -> io::Result<bool> {
    Ok(sleep_until(None, Some(d))? == Woken::Stop)
}
