//! Errors of the user-space crate.

use std::fmt;
use std::io;
use std::path::PathBuf;

use rmemring_proto::consumer_core::ReadError;

/// Why a ring could not be opened, mapped or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, naming the file where there is one.
        what: String,
        /// The underlying error.
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
        "{}: mmap of the {part} ({len:#x} bytes at offset {offset:#x}, {}): {source}",
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
        "{}: no such device; load the driver (`insmod rmemring.ko phys_base=... phys_size=...`, \
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
    /// The ring's geometry is inconsistent.
    #[error("inconsistent ring layout: {0}")]
    Layout(String),
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
        opened: &'static str,
        /// What was attempted.
        wanted: &'static str,
    },
    /// The ring already has a consumer or producer (`"consumer"` or
    /// `"producer"`), made by this region, another region of the same
    /// ring, or another process. A ring has one of each at a time.
    #[error("the ring already has a {0} (in this or another process); it has one at a time")]
    Taken(&'static str),
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
    /// The descriptor or path is neither a device nor a regular file (or memfd).
    #[error("{}: a {kind} cannot hold a ring (a ring is a /dev/rmemringN device, a file or a memfd)", path.display())]
    NotARing {
        /// The path, or what `/proc/self/fd` says the descriptor is.
        path: PathBuf,
        /// What it is instead.
        kind: &'static str,
    },
}

impl Error {
    pub(crate) fn io(what: impl Into<String>, source: impl Into<io::Error>) -> Self {
        Self::Io {
            what: what.into(),
            source: source.into(),
        }
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
}
