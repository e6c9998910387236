//! One consumer and one producer per ring, whichever [`Region`]s and
//! processes ask.
//!
//! A [`Batch`](crate::Batch) lends the consumer's records as `&[u8]` and a
//! [`Reservation`](crate::Reservation) lends the producer's free space as
//! `&mut [u8]`, both straight from the mapping. That is sound only while
//! there is one consumer (a second one would release what the first still
//! reads, and the producer would overwrite it) and one producer (a second
//! one would reserve the same bytes). Per-[`Region`] flags cannot see other
//! regions of the same ring, nor other processes, so the roles are locks on
//! the ring itself:
//!
//! - **Files and memfds**: an open-file-description lock
//!   (`fcntl(F_OFD_SETLK)`, `F_WRLCK`) on one byte of the ring, the first
//!   byte of the page the role writes: offset 0 (the control page) for the
//!   producer, `consumer_offset` (the consumer page) for the consumer. The
//!   lock is taken on a description of the role's own, opened anew through
//!   `/proc/self/fd`, so it conflicts with every other holder: another
//!   region of this process, a duplicated or inherited descriptor, another
//!   process. It is released when the [`Consumer`](crate::Consumer) or
//!   [`Producer`](crate::Producer) is dropped (or the process ends).
//!   Traditional `fcntl(F_SETLK)` locks of C peers conflict with it too.
//! - **Devices**: the kernel lets one descriptor at a time open the device
//!   for consuming (`EBUSY`) and the producer is the kernel, so only regions
//!   of this process sharing that one descriptor (through `dup` or
//!   [`Region::from_fd`]) could meet; a table of the devices this process
//!   consumes keeps them to one consumer.
//!
//! The locks are advisory: they bind this crate and peers that follow
//! `docs/protocol.md`, not a process that ignores them and writes the
//! memory anyway (see [`Region`]'s safety model).

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{
    AsFd,
    AsRawFd,
    BorrowedFd,
    OwnedFd, //
};
use std::sync::Mutex;

use nix::errno::Errno;
use nix::fcntl::{
    fcntl,
    FcntlArg, //
};
use nix::sys::stat::{
    dev_t,
    fstat,
    FileStat, //
};

use std::path::Path;

use rmemring_proto::roles::Role;

use crate::error::{
    Error,
    IoOp,
    LayoutError, //
};

/// The file a ring lives in, as far as its role locks need it.
pub(crate) struct RingFile<'a> {
    /// The region's descriptor.
    pub(crate) fd: BorrowedFd<'a>,
    /// Its path, for messages.
    pub(crate) path: &'a Path,
    /// Whether it is a device (whose producer is the kernel), rather than
    /// a memfd or a ring file.
    pub(crate) device: bool,
    /// Offset of the consumer page: the byte the consumer's lock covers.
    pub(crate) consumer_offset: u64,
}

/// A role held for as long as this lives.
#[derive(Debug)]
pub(crate) struct RoleLock {
    _held: Held,
}

#[derive(Debug)]
enum Held {
    /// The open file description that holds the byte lock; closing it
    /// releases the lock.
    Ofd { _description: OwnedFd },
    /// The device's entry in [`DEVICE_CONSUMERS`], removed on drop.
    Device { _entry: DeviceConsumer },
}

/// The devices (by device number) that a consumer of this process reads.
static DEVICE_CONSUMERS: Mutex<Vec<dev_t>> = Mutex::new(Vec::new());

#[derive(Debug)]
struct DeviceConsumer(dev_t);

impl Drop for DeviceConsumer {
    fn drop(&mut self) {
        let mut held = DEVICE_CONSUMERS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        held.retain(|&rdev| rdev != self.0);
    }
}

impl RoleLock {
    /// Takes `role` (the producer's or the consumer's) on the ring in
    /// `ring`, or fails with [`Error::Taken`] if someone holds it.
    pub(crate) fn acquire(ring: &RingFile<'_>, role: Role) -> Result<Self, Error> {
        let held = if ring.device {
            Held::Device {
                _entry: device_consumer(ring, role)?,
            }
        } else {
            Held::Ofd {
                _description: ofd_lock(ring, role)?,
            }
        };
        Ok(Self { _held: held })
    }
}

fn device_consumer(ring: &RingFile<'_>, role: Role) -> Result<DeviceConsumer, Error> {
    // `Region::producer` refuses devices before this; a kernel ring has no
    // user-space producer role to hand out.
    if role != Role::Consumer {
        return Err(Error::Taken(role));
    }
    let rdev = stat(ring.fd, ring)?.st_rdev;
    let mut held = DEVICE_CONSUMERS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if held.contains(&rdev) {
        return Err(Error::Taken(role));
    }
    held.push(rdev);
    Ok(DeviceConsumer(rdev))
}

fn stat(fd: impl AsFd, ring: &RingFile<'_>) -> Result<FileStat, Error> {
    fstat(fd).map_err(|e| Error::io(IoOp::Stat, ring.path, e))
}

/// Opens a description of the ring's file of our own and locks the role's
/// byte on it.
fn ofd_lock(ring: &RingFile<'_>, role: Role) -> Result<OwnedFd, Error> {
    // A new open file description of the same file: locks taken on the
    // region's own descriptor would be shared with every `dup` of it and
    // every process that inherited it.
    let proc_path = format!("/proc/self/fd/{}", ring.fd.as_raw_fd());
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&proc_path)
        .map_err(|e| Error::io(IoOp::Reopen(role), ring.path, e))?;
    // The same file, not whatever the descriptor number means by now.
    let (ours, theirs) = (stat(&file, ring)?, stat(ring.fd, ring)?);
    if (ours.st_dev, ours.st_ino) != (theirs.st_dev, theirs.st_ino) {
        return Err(Error::io(
            IoOp::Reopen(role),
            ring.path,
            io::Error::other("/proc/self/fd names another file"),
        ));
    }
    let start = match role {
        Role::Producer => 0,
        Role::Consumer => ring.consumer_offset,
        // Controllers and observers hold no lock: they write nothing.
        Role::Controller | Role::Observer => return Err(Error::Taken(role)),
    };
    // nix passes a `libc::flock` through and has no constructor of its own.
    let lock = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: libc::off_t::try_from(start)
            .map_err(|_| Error::Layout(LayoutError::TooLarge(start)))?,
        l_len: 1,
        // Must be zero for open-file-description locks.
        l_pid: 0,
    };
    match fcntl(file.as_fd(), FcntlArg::F_OFD_SETLK(&lock)) {
        Ok(_) => Ok(file.into()),
        Err(Errno::EAGAIN | Errno::EACCES) => Err(Error::Taken(role)),
        Err(e) => Err(Error::io(IoOp::Lock(role), ring.path, e)),
    }
}
