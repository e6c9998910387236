//! Sleeping until the producer publishes: `poll(2)` on the device, a futex
//! on the control page's `wake_seq` word elsewhere.
//!
//! `ppoll` is nix's; the futex calls are raw `libc::syscall`s because nix
//! has no futex wrapper (and `std`'s is private).

use std::io;
use std::os::fd::BorrowedFd;
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{
    ppoll,
    PollFd,
    PollFlags, //
};
use nix::sys::time::TimeSpec;

/// `d` as a `timespec`, saturating where `time_t` cannot hold it (nix's
/// `TimeSpec::from` would wrap).
fn timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: d.as_secs().try_into().unwrap_or(libc::time_t::MAX),
        tv_nsec: d.subsec_nanos().into(),
    }
}

/// Sleeps until `fd` is readable, `timeout` passes or a signal arrives.
pub(crate) fn poll_readable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<()> {
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    let timeout = timeout.map(|t| TimeSpec::from_timespec(timespec(t)));
    match ppoll(&mut fds, timeout, None) {
        Ok(_) | Err(Errno::EINTR) => {}
        Err(e) => return Err(e.into()),
    }
    if fds[0]
        .revents()
        .is_some_and(|r| r.intersects(PollFlags::POLLERR | PollFlags::POLLNVAL))
    {
        return Err(io::Error::other(
            "poll reported an error on the ring descriptor",
        ));
    }
    Ok(())
}

/// Sleeps while the 32-bit word at `word` still holds `expected`, until
/// woken, `timeout` passes or a signal arrives.
///
/// The word is in a shared mapping, so this is a shared (not
/// process-private) futex: producers in other processes can wake it.
pub(crate) fn futex_wait(
    word: *const u32,
    expected: u32,
    timeout: Option<Duration>,
) -> io::Result<()> {
    let ts = timeout.map(timespec);
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` points to an aligned u32 in a live mapping (the caller's
    // region); the kernel only reads it. `ts` outlives the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word,
            libc::FUTEX_WAIT,
            expected,
            ts_ptr,
            0usize,
            0u32,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINTR) | Some(libc::ETIMEDOUT) => {}
            _ => return Err(e),
        }
    }
    Ok(())
}

/// Wakes every sleeper on the futex word at `word`.
pub(crate) fn futex_wake(word: *const u32) {
    // SAFETY: As for `futex_wait`; waking has no memory effects on our side.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word,
            libc::FUTEX_WAKE,
            i32::MAX,
            0usize,
            0usize,
            0u32,
        )
    };
}
