//! Errors of the user-space crate.

use std::fmt;
use std::io;
use std::path::PathBuf;

use rmemring_proto::consumer_core::ReadError;
use rmemring_proto::layout::LayoutDefect;
use rmemring_proto::roles::Role;

use crate::region::Access;

/// Why a ring could not be opened, mapped or read.
///
/// A message says what failed and never repeats its
/// [`source`](std::error::Error::source): the system's error (the errno,
/// also [`Error::raw_os_error`]) is the source, so print the whole chain,
/// as `anyhow`'s `{:#}` does, to see both.
///
/// # Examples
///
/// ```
/// use std::error::Error as _;
/// use rmemring::{Access, Error, IoOp, Region};
///
/// let err = Region::open("/nonexistent/ring", Access::Observe).unwrap_err();
/// assert!(matches!(err, Error::Io { op: IoOp::Open, .. }));
/// assert_eq!(err.to_string(), "/nonexistent/ring: opening");
/// assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
/// // The chain, as `anyhow` prints it with `{:#}`: each part once.
/// let source = err.source().unwrap().to_string();
/// assert_eq!(format!("{err}: {source}"), "/nonexistent/ring: opening: No such file or directory (os error 2)");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A system call failed.
    #[error("{}: {op}", path.display())]
    Io {
        /// What was being done.
        op: IoOp,
        /// The file (a placeholder such as `memfd:rmemring` for a memfd).
        path: PathBuf,
        /// The system's error; its `raw_os_error` is the errno.
        #[source]
        source: io::Error,
    },
    /// One of the driver's ioctls failed (see [`Region::info`](crate::Region::info)
    /// and the other device methods).
    #[error("{}: {request}", path.display())]
    Ioctl {
        /// The request.
        request: IoctlRequest,
        /// The device.
        path: PathBuf,
        /// The driver's error; its `raw_os_error` is the errno (`EPERM`:
        /// the descriptor's role may not make this request; `EBUSY`: the
        /// producer runs; `ENOTTY`: not a ring device).
        #[source]
        source: io::Error,
    },
    /// Mapping one part of the region failed (`mmap(2)`).
    ///
    /// On a ring device, `EINVAL` here is most often a cache-type conflict:
    /// the driver maps user space with its kernel mapping's cache type, and
    /// x86 PAT refuses it when another mapping of the same physical range
    /// has another type (the kernel log says `x86/PAT: ... conflicting
    /// memory types`). See `docs/troubleshooting.md`.
    #[error(
        "{}: mmap of the {part} ({len:#x} bytes at offset {offset:#x}, {})",
        path.display(),
        if *writable { "read-write" } else { "read-only" }
    )]
    Map {
        /// The device or file.
        path: PathBuf,
        /// Which part of the region.
        part: MapPart,
        /// The part's offset in the region.
        offset: u64,
        /// The part's length.
        len: u64,
        /// Whether a writable mapping was asked for.
        writable: bool,
        /// The error `mmap` returned; its `raw_os_error` is the errno.
        #[source]
        source: io::Error,
    },
    /// The device does not exist.
    #[error(
        "{}: no such device; load the driver (`modprobe rmemring phys_base=... phys_size=...`, \
         or bind it through the device tree) and check `dmesg`",
        path.display()
    )]
    NoDevice {
        /// The device path.
        path: PathBuf,
    },
    /// Opening the device or file was not permitted.
    #[error("{}: permission denied (ring devices are root-only unless a udev rule, or for the module-parameter ring the driver's `mode` parameter, says otherwise)", path.display())]
    PermissionDenied {
        /// The path.
        path: PathBuf,
    },
    /// Another process already consumes this ring.
    #[error("{}: the ring already has a consumer (one at a time; open read-only to observe)", path.display())]
    Busy {
        /// The path.
        path: PathBuf,
    },
    /// The region is too small to hold a ring.
    #[error("region is {size} bytes; a ring needs at least {min}")]
    TooSmall {
        /// Bytes available.
        size: u64,
        /// Bytes needed.
        min: u64,
    },
    /// The first bytes are not the ring magic.
    #[error(
        "not an rmemring ring: magic is {found:#018x}, expected {expected:#018x} (\"RMEMRING\")"
    )]
    BadMagic {
        /// The value found.
        found: u64,
        /// [`MAGIC`](crate::layout::MAGIC).
        expected: u64,
    },
    /// The ring speaks another version of the protocol.
    #[error("ring ABI version {found} is not supported; this build speaks version {supported}")]
    AbiVersion {
        /// The ring's version.
        found: u32,
        /// The version this crate implements.
        supported: u32,
    },
    /// The ring was laid out for another page size.
    #[error("ring page size is {found}, this system's is {system}")]
    PageSize {
        /// The ring's page size.
        found: u32,
        /// The system's.
        system: u32,
    },
    /// The ring's geometry is inconsistent, or unusable here.
    #[error("inconsistent ring layout: {0}")]
    Layout(LayoutError),
    /// The ring has flags this version does not know.
    #[error("ring has unknown flags {0:#x}")]
    UnknownFlags(u32),
    /// The producer wrote something impossible into the ring.
    #[error("ring corrupt: {0}")]
    Corrupt(ReadError),
    /// Zero-copy batches need a drop-new ring.
    #[error("the ring is in overwrite mode, where records can change under a reader; use `Consumer::read_copy`")]
    OverwriteMode,
    /// The operation needs access the region was not opened with.
    #[error("the region was opened for {opened}, which does not allow {wanted}")]
    Access {
        /// The access the region has.
        opened: Access,
        /// The access the operation needs.
        wanted: Access,
    },
    /// A device was to be opened for producing ([`Access::Produce`] or
    /// [`Access::Full`]): a device's producer is the kernel.
    #[error("{}: a device's producer is the kernel; it cannot be opened for {access}", path.display())]
    DeviceAccess {
        /// The device.
        path: PathBuf,
        /// The access asked for.
        access: Access,
    },
    /// The ring already has a consumer or producer ([`Role::Consumer`] or
    /// [`Role::Producer`]), made by this region, another region of the same
    /// ring, or another process. A ring has one of each at a time.
    #[error("the ring already has a {0} (in this or another process); it has one at a time")]
    Taken(Role),
    /// After a reset the control page describes another geometry than the
    /// one mapped; only the flags may change.
    #[error("the ring's geometry changed under its mapping: mapped {mapped:?}, the control page now says {found:?}")]
    GeometryChanged {
        /// The layout the region mapped.
        mapped: Box<crate::RingLayout>,
        /// The layout the control page reports now.
        found: Box<crate::RingLayout>,
    },
    /// A ring to create was asked for a data area size it cannot have.
    #[error(
        "a data area of {size} bytes is impossible: it must be a power of two from {min} to {max}"
    )]
    DataSize {
        /// The size asked for.
        size: u64,
        /// [`MIN_DATA_SIZE`](crate::layout::MIN_DATA_SIZE).
        min: u64,
        /// [`MAX_DATA_SIZE`](crate::layout::MAX_DATA_SIZE).
        max: u64,
    },
    /// A driver's ioctl was asked of something that is not a ring device
    /// (a ring file or memfd has no driver), or a [`Device`](crate::Device)
    /// made of something that is no character device.
    #[error("{}: not a ring device (only /dev/rmemringN has the driver's ioctls)", path.display())]
    NotADevice {
        /// The path, or what `/proc/self/fd` says the descriptor is.
        path: PathBuf,
    },
    /// The descriptor or path is neither a device nor a regular file (or memfd).
    #[error("{}: a {kind} cannot hold a ring (a ring is a /dev/rmemringN device, a file or a memfd)", path.display())]
    NotARing {
        /// The path, or what `/proc/self/fd` says the descriptor is.
        path: PathBuf,
        /// What it is instead.
        kind: FileKind,
    },
}

impl Error {
    pub(crate) fn io(op: IoOp, path: impl Into<PathBuf>, source: impl Into<io::Error>) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source: source.into(),
        }
    }

    /// The errno of a failed system call ([`Error::Io`], [`Error::Ioctl`],
    /// [`Error::Map`]), as [`io::Error::raw_os_error`] gives it; `None`
    /// for the other variants, which say what is wrong themselves.
    ///
    /// # Examples
    ///
    /// ```
    /// use rmemring::{Access, Region};
    ///
    /// let err = Region::open("/nonexistent/ring", Access::Observe).unwrap_err();
    /// assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    /// ```
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. } | Error::Ioctl { source, .. } | Error::Map { source, .. } => {
                source.raw_os_error()
            }
            _ => None,
        }
    }
}

/// What the crate was doing when a system call failed ([`Error::Io`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IoOp {
    /// Opening the file or device (`open(2)`).
    Open,
    /// Reading its metadata (`fstat(2)`).
    Stat,
    /// Creating a memfd (`memfd_create(2)`).
    CreateMemfd,
    /// Giving a new ring's file or memfd its size (`ftruncate(2)`).
    Resize,
    /// Sealing a memfd against resizing (`fcntl(F_ADD_SEALS)`).
    Seal,
    /// Opening a description of the ring's file of the role's own,
    /// through `/proc/self/fd`, to lock the role on (is `/proc` mounted?).
    Reopen(Role),
    /// Locking the role's byte (`fcntl(F_OFD_SETLK)`).
    Lock(Role),
    /// Sleeping until the producer publishes (`ppoll(2)` or a futex).
    Wait,
    /// Duplicating a descriptor (`fcntl(F_DUPFD_CLOEXEC)`).
    Dup,
    /// Starting the thread and eventfd behind a file or memfd ring's
    /// [`WakeFd`](crate::WakeFd).
    StartWakeThread,
}

impl fmt::Display for IoOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IoOp::Open => f.write_str("opening"),
            IoOp::Stat => f.write_str("fstat"),
            IoOp::CreateMemfd => f.write_str("memfd_create"),
            IoOp::Resize => f.write_str("sizing the ring (ftruncate)"),
            IoOp::Seal => f.write_str("sealing the memfd (F_ADD_SEALS)"),
            IoOp::Reopen(role) => write!(
                f,
                "reopening through /proc/self/fd for the {role} lock (is /proc mounted?)"
            ),
            IoOp::Lock(role) => write!(f, "locking the {role} role (F_OFD_SETLK)"),
            IoOp::Wait => f.write_str("waiting for records"),
            IoOp::Dup => f.write_str("duplicating the descriptor"),
            IoOp::StartWakeThread => f.write_str("starting the wake-up thread and its eventfd"),
        }
    }
}

/// One of the driver's ioctls ([`Error::Ioctl`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IoctlRequest {
    /// `RMEMRING_IOC_INFO` ([`Region::info`](crate::Region::info)).
    Info,
    /// `RMEMRING_IOC_START` ([`Region::start`](crate::Region::start)).
    Start,
    /// `RMEMRING_IOC_STOP` ([`Region::stop`](crate::Region::stop)).
    Stop,
    /// `RMEMRING_IOC_STATS` ([`Region::stats`](crate::Region::stats)).
    Stats,
    /// `RMEMRING_IOC_RESET` ([`Region::reset`](crate::Region::reset)).
    Reset,
    /// `RMEMRING_IOC_RECOVERY` ([`Region::recovery`](crate::Region::recovery)).
    Recovery,
    /// `RMEMRING_IOC_RELEASE_RECOVERED`
    /// ([`Region::release_recovered`](crate::Region::release_recovered)).
    ReleaseRecovered,
}

impl IoctlRequest {
    /// The request's name in the driver's header, `RMEMRING_IOC_...`.
    pub fn name(self) -> &'static str {
        match self {
            IoctlRequest::Info => "RMEMRING_IOC_INFO",
            IoctlRequest::Start => "RMEMRING_IOC_START",
            IoctlRequest::Stop => "RMEMRING_IOC_STOP",
            IoctlRequest::Stats => "RMEMRING_IOC_STATS",
            IoctlRequest::Reset => "RMEMRING_IOC_RESET",
            IoctlRequest::Recovery => "RMEMRING_IOC_RECOVERY",
            IoctlRequest::ReleaseRecovered => "RMEMRING_IOC_RELEASE_RECOVERED",
        }
    }
}

impl fmt::Display for IoctlRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a ring's geometry is inconsistent, or unusable here ([`Error::Layout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LayoutError {
    /// The control page breaks one of the protocol's rules (the defects
    /// with variants of their own in [`Error`] are reported as those).
    Defect(LayoutDefect),
    /// The region is larger than the file behind it.
    PastBacking {
        /// The control page's region size.
        region_size: u64,
        /// Bytes in the file.
        backing: u64,
    },
    /// This system's page size is one no ring can be laid out for.
    PageSize(u32),
    /// A part of the ring is larger than this process can map.
    TooLarge(u64),
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayoutError::Defect(defect) => write!(f, "{defect}"),
            LayoutError::PastBacking {
                region_size,
                backing,
            } => write!(
                f,
                "region of {region_size} bytes is larger than its {backing}-byte backing"
            ),
            LayoutError::PageSize(size) => write!(f, "unsupported page size {size}"),
            LayoutError::TooLarge(len) => write!(f, "{len} bytes do not fit in memory"),
        }
    }
}

/// What a path or descriptor that cannot hold a ring is ([`Error::NotARing`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileKind {
    /// A directory.
    Directory,
    /// A block device.
    BlockDevice,
    /// A pipe (FIFO).
    Pipe,
    /// A socket.
    Socket,
    /// Anything else.
    Other,
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::Directory => "directory",
            FileKind::BlockDevice => "block device",
            FileKind::Pipe => "pipe",
            FileKind::Socket => "socket",
            FileKind::Other => "special file",
        })
    }
}

/// The parts of a region, each mapped on its own (see
/// `docs/protocol.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MapPart {
    /// The control page, read-only for a consumer.
    ControlPage,
    /// The consumer page, writable by the consumer.
    ConsumerPage,
    /// The data area, read-only for a consumer.
    DataArea,
}

impl fmt::Display for MapPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MapPart::ControlPage => "control page",
            MapPart::ConsumerPage => "consumer page",
            MapPart::DataArea => "data area",
        })
    }
}

impl From<ReadError> for Error {
    fn from(e: ReadError) -> Self {
        Self::Corrupt(e)
    }
}

/// Why a record could not be produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProduceError {
    /// Drop-new mode and the consumer has not released enough room.
    #[error("the ring is full")]
    Full,
    /// The payload exceeds the ring's maximum.
    #[error("payload of {len} bytes exceeds the ring's maximum of {max}")]
    TooLarge {
        /// Requested payload bytes.
        len: usize,
        /// The ring's `max_payload`.
        max: u32,
    },
    /// Records laid out in place ([`Producer::reserve_span`](crate::Producer::reserve_span))
    /// need a drop-new ring: in overwrite mode a reader the producer laps
    /// may be copying the very bytes.
    #[error("records are laid out in place only in a drop-new ring")]
    NeedsDropNew,
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;
    use crate::RingLayout;
    use rmemring_proto::consumer_core::RecordDefect;
    use rmemring_proto::layout::Geometry;

    fn errno(code: i32) -> io::Error {
        io::Error::from_raw_os_error(code)
    }

    /// One error of every variant, each with a source where it has one.
    fn every_variant() -> Vec<Error> {
        let path = || PathBuf::from("/dev/rmemring0");
        let layout = RingLayout {
            geometry: Geometry::for_region(1 << 20, 4096).unwrap(),
            max_payload: 64,
            flags: 0,
            phys_base: 0,
        };
        let all = vec![
            Error::Io {
                op: IoOp::Lock(Role::Consumer),
                path: path(),
                source: errno(libc::ENOENT),
            },
            Error::Io {
                op: IoOp::Reopen(Role::Producer),
                path: path(),
                source: io::Error::other("/proc/self/fd names another file"),
            },
            Error::Ioctl {
                request: IoctlRequest::Start,
                path: path(),
                source: errno(libc::EPERM),
            },
            Error::Map {
                path: path(),
                part: MapPart::DataArea,
                offset: 0x2000,
                len: 0x1000,
                writable: true,
                source: errno(libc::EINVAL),
            },
            Error::NoDevice { path: path() },
            Error::PermissionDenied { path: path() },
            Error::Busy { path: path() },
            Error::TooSmall { size: 1, min: 2 },
            Error::BadMagic {
                found: 1,
                expected: 2,
            },
            Error::AbiVersion {
                found: 9,
                supported: 1,
            },
            Error::PageSize {
                found: 65536,
                system: 4096,
            },
            Error::Layout(LayoutError::Defect(LayoutDefect::MaxPayload(7))),
            Error::Layout(LayoutError::PastBacking {
                region_size: 2,
                backing: 1,
            }),
            Error::UnknownFlags(0x80),
            Error::Corrupt(ReadError::BadRecord {
                pos: 8,
                defect: RecordDefect::Kind(9),
            }),
            Error::OverwriteMode,
            Error::Access {
                opened: Access::Observe,
                wanted: Access::Consume,
            },
            Error::DeviceAccess {
                path: path(),
                access: Access::Produce,
            },
            Error::Taken(Role::Consumer),
            Error::GeometryChanged {
                mapped: Box::new(layout),
                found: Box::new(layout),
            },
            Error::DataSize {
                size: 3,
                min: 4096,
                max: 1 << 31,
            },
            Error::NotARing {
                path: path(),
                kind: FileKind::Pipe,
            },
            Error::NotADevice { path: path() },
        ];
        // Exhaustive (inside the crate `#[non_exhaustive]` does not apply):
        // a new variant fails to compile here until it is in the list.
        for e in &all {
            match e {
                Error::Io { .. }
                | Error::Ioctl { .. }
                | Error::Map { .. }
                | Error::NoDevice { .. }
                | Error::PermissionDenied { .. }
                | Error::Busy { .. }
                | Error::TooSmall { .. }
                | Error::BadMagic { .. }
                | Error::AbiVersion { .. }
                | Error::PageSize { .. }
                | Error::Layout(_)
                | Error::UnknownFlags(_)
                | Error::Corrupt(_)
                | Error::OverwriteMode
                | Error::Access { .. }
                | Error::DeviceAccess { .. }
                | Error::Taken(_)
                | Error::GeometryChanged { .. }
                | Error::DataSize { .. }
                | Error::NotARing { .. }
                | Error::NotADevice { .. } => {}
            }
        }
        all
    }

    #[test]
    fn no_message_repeats_its_source() {
        let mut sources = 0;
        for e in every_variant() {
            let message = e.to_string();
            assert!(!message.is_empty(), "{e:?}");
            if let Some(source) = e.source() {
                sources += 1;
                let source = source.to_string();
                assert!(
                    !message.contains(&source),
                    "{e:?}: {message:?} repeats its source {source:?}"
                );
            }
        }
        assert_eq!(sources, 4, "the variants with a source were all checked");
    }

    #[test]
    fn the_errno_stays_reachable() {
        let errnos: Vec<_> = every_variant()
            .iter()
            .filter_map(Error::raw_os_error)
            .collect();
        assert_eq!(errnos, [libc::ENOENT, libc::EPERM, libc::EINVAL]);
    }
}
