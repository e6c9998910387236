//! File descriptors, and the system calls the groups make on them
//! directly (`open`, `read`, `poll`, `epoll`): the library would hide the
//! errno, and the errno is what most checks look at.

use std::ffi::CString;
use std::io;
use std::os::fd::{
    AsRawFd,
    BorrowedFd,
    FromRawFd,
    OwnedFd,
    RawFd, //
};
use std::time::Duration;

use anyhow::bail;
use rmemring::Device;
use rmemring_proto::roles::Role;

/// A [`Device`] on a duplicate of `fd`, an open descriptor of the device:
/// the same open file, so the same role, for the driver's ioctls.
/// Dropping it closes the duplicate alone; the file lives on in `fd`.
pub(crate) fn device_of(fd: RawFd) -> anyhow::Result<Device> {
    // SAFETY: The caller's open descriptor, borrowed to duplicate it.
    let dup = unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned()?;
    Ok(Device::from_fd(dup)?)
}

/// `e` as the `io::Error` of its errno, for the checks that look at the
/// errno alone (an error of the library without one becomes
/// `ErrorKind::Other`).
pub(crate) fn io_error(e: rmemring::Error) -> io::Error {
    match e.raw_os_error() {
        Some(errno) => io::Error::from_raw_os_error(errno),
        None => io::Error::other(e),
    }
}

/// `Ok(r)`, or the errno of a libc call that returned `r < 0`.
pub(crate) fn errno_of(r: isize) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// `open(path, flags | O_CLOEXEC)`; the caller owns the descriptor.
pub(crate) fn open(path: &str, flags: i32) -> io::Result<RawFd> {
    let path = CString::new(path).expect("no NUL in the device path");
    // SAFETY: A valid C string and plain flags.
    let fd = unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) };
    errno_of(fd as isize).map(|_| fd)
}

/// [`open`], owned: an early return closes it.
pub(crate) fn open_owned(path: &str, flags: i32) -> io::Result<OwnedFd> {
    // SAFETY: `open` returned a descriptor nothing else owns.
    open(path, flags).map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The access mode (`O_RDONLY`, `O_WRONLY` or `O_RDWR`) whose device file
/// has `role`, as the driver gives roles; `None` for the producer.
pub(crate) fn access_mode(role: Role) -> Option<i32> {
    [libc::O_RDONLY, libc::O_WRONLY, libc::O_RDWR]
        .into_iter()
        .find(|&mode| Role::of_access_mode(mode as u32) == Some(role))
}

/// Opens the device as a file of `role` (a consumer, controller or
/// observer); the caller owns the descriptor.
pub(crate) fn open_as(path: &str, role: Role) -> io::Result<RawFd> {
    let mode = access_mode(role).expect("a role a device file can have");
    open(path, mode)
}

/// [`open_as`], owned.
pub(crate) fn open_owned_as(path: &str, role: Role) -> io::Result<OwnedFd> {
    let mode = access_mode(role).expect("a role a device file can have");
    open_owned(path, mode)
}

/// Closes a descriptor the caller opened and owns.
pub(crate) fn close(fd: RawFd) {
    // SAFETY: The caller owns `fd` and does not use it again.
    unsafe { libc::close(fd) };
}

/// One `read()` into `buf`: how many bytes it returned.
pub(crate) fn read_into(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for `buf.len()` bytes of writes.
    errno_of(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) })
}

/// One `read()` of up to `len` bytes: what it returned.
pub(crate) fn read(fd: RawFd, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let n = read_into(fd, &mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

/// Makes `read()` on `fd` fail with `EAGAIN` instead of blocking, or
/// block again. (`F_SETFL` sets every status flag; the device's files have
/// no other.)
pub(crate) fn set_nonblocking(fd: RawFd, nonblocking: bool) {
    let flags = if nonblocking { libc::O_NONBLOCK } else { 0 };
    // SAFETY: Plain fcntl on the caller's descriptor.
    unsafe { libc::fcntl(fd, libc::F_SETFL, flags) };
}

/// `poll(fd, POLLIN, timeout)`: the returned events, 0 on timeout.
pub(crate) fn poll_in(fd: RawFd, timeout: Duration) -> io::Result<i16> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: One valid pollfd.
    let n = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) };
    errno_of(n as isize)?;
    Ok(pfd.revents)
}

/// A new epoll instance with `fd` registered for input.
pub(crate) fn epoll_with(fd: RawFd) -> anyhow::Result<OwnedFd> {
    // SAFETY: A plain epoll call.
    let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if epfd < 0 {
        bail!("epoll_create1: {}", io::Error::last_os_error());
    }
    // SAFETY: `epoll_create1` returned a descriptor nothing else owns.
    let epfd = unsafe { OwnedFd::from_raw_fd(epfd) };
    let mut event = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: 0,
    };
    // SAFETY: Descriptors we hold; `event` is valid for the call.
    if unsafe { libc::epoll_ctl(epfd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event) } < 0 {
        bail!("epoll_ctl: {}", io::Error::last_os_error());
    }
    Ok(epfd)
}

/// `epoll_wait` for one event on `epfd`: its events, 0 on timeout.
pub(crate) fn epoll_wait_one(epfd: RawFd, timeout: Duration) -> io::Result<u32> {
    let mut out = libc::epoll_event { events: 0, u64: 0 };
    // SAFETY: `out` has room for the one event asked for.
    let n = unsafe { libc::epoll_wait(epfd, &mut out, 1, timeout.as_millis() as i32) };
    Ok(if errno_of(n as isize)? == 0 {
        0
    } else {
        out.events
    })
}
