//! Opening a ring (a device, a ring file or a descriptor) and mapping each
//! of its parts with the permissions its [`Access`] allows.

use std::fs::{
    File,
    OpenOptions, //
};
use std::io;
use std::os::fd::{
    AsRawFd,
    OwnedFd, //
};
use std::os::unix::fs::FileTypeExt;
use std::path::{
    Path,
    PathBuf, //
};
use std::ptr::NonNull;
use std::sync::atomic::Ordering;

use memmap2::{
    MmapOptions,
    MmapRaw, //
};
use nix::errno::Errno;

use super::{
    magic_word,
    system_page_size,
    Access,
    Backend,
    Region,
    RingLayout, //
};
use crate::error::{
    Error,
    FileKind,
    IoOp,
    LayoutError,
    MapPart, //
};
use rmemring_proto::layout::{
    ControlPage,
    Geometry,
    MIN_DATA_SIZE, //
};
use rmemring_proto::view::load_control_page;

impl Region {
    /// Opens the ring at `path`: a `/dev/rmemringN` device or a ring file.
    ///
    /// Validates the ring before returning; see [`RingLayout::validate`].
    /// What is not a ring is a typed error: [`Error::NoDevice`],
    /// [`Error::TooSmall`], [`Error::BadMagic`], [`Error::AbiVersion`],
    /// [`Error::NotARing`] and so on. On a device, `Access::Consume` opens
    /// the device's one consumer descriptor ([`Error::Busy`] while another
    /// process has it) and `Access::Observe` a read-only one.
    ///
    /// # Examples
    ///
    /// The device's consumer (it needs the driver, so this does not run here):
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use rmemring::{Access, Backend, Region};
    ///
    /// let region = Arc::new(Region::open("/dev/rmemring0", Access::Consume)?);
    /// assert_eq!(region.backend(), Backend::Device);
    /// let consumer = region.consumer()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// A file that is no ring:
    ///
    /// ```
    /// use rmemring::{Access, Error, Region};
    ///
    /// let path = std::env::temp_dir().join(format!("doc-open-{}.txt", std::process::id()));
    /// std::fs::write(&path, vec![b'x'; 1 << 16])?;
    /// assert!(matches!(Region::open(&path, Access::Observe), Err(Error::BadMagic { .. })));
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(path: impl AsRef<Path>, access: Access) -> Result<Self, Error> {
        let path = path.as_ref();
        let write = access != Access::Observe;
        // The standard library opens every file `O_CLOEXEC`.
        let file = OpenOptions::new()
            .read(true)
            .write(write)
            .open(path)
            .map_err(|e| open_error(path, e))?;
        let (kind, available) = classify(&file, path)?;
        let backend = match kind {
            Kind::Device => Backend::Device,
            Kind::Regular => Backend::File,
        };
        Self::open_fd(file.into(), path.to_owned(), backend, access, available)
    }

    /// Opens a ring from a descriptor of a device, memfd or file (for
    /// example one received from another process, or inherited).
    ///
    /// The descriptor's kind decides the backend (`fstat`: a character
    /// device is a [`Backend::Device`], a regular file a memfd or a
    /// [`Backend::File`]); anything else is [`Error::NotARing`]. The
    /// descriptor must allow what `access` maps writable. A region made
    /// from a `dup` of another region's descriptor is still the same ring:
    /// it cannot hand out a second consumer or producer.
    ///
    /// # Examples
    ///
    /// A consumer on a memfd that another part of the program (or another
    /// process, through `SCM_RIGHTS` or inheritance) produces into:
    ///
    /// ```
    /// use std::sync::Arc;
    /// use rmemring::{Access, Backend, CreateOptions, Region};
    ///
    /// let ring = Arc::new(Region::memfd(CreateOptions::default())?);
    /// let mut producer = ring.producer()?;
    ///
    /// let fd = ring.fd().try_clone_to_owned()?; // as if received
    /// let region = Arc::new(Region::from_fd(fd, Access::Consume)?);
    /// assert_eq!(region.backend(), Backend::Memfd);
    /// let mut consumer = region.consumer()?;
    ///
    /// producer.send(b"through the descriptor")?;
    /// assert_eq!(consumer.read_copy()?.unwrap().payload, b"through the descriptor");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_fd(fd: OwnedFd, access: Access) -> Result<Self, Error> {
        let file = File::from(fd);
        // What the descriptor refers to, for messages and the memfd test.
        let link = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()));
        let path = link.unwrap_or_else(|_| PathBuf::from("fd"));
        let (kind, available) = classify(&file, &path)?;
        let backend = match kind {
            Kind::Device => Backend::Device,
            Kind::Regular if path.to_string_lossy().starts_with("/memfd:") => Backend::Memfd,
            Kind::Regular => Backend::File,
        };
        Self::open_fd(file.into(), path, backend, access, available)
    }

    fn open_fd(
        fd: OwnedFd,
        path: PathBuf,
        backend: Backend,
        access: Access,
        available: Option<u64>,
    ) -> Result<Self, Error> {
        if backend == Backend::Device && access.writes_producer_parts() {
            return Err(Error::DeviceAccess { path, access });
        }
        let page = system_page_size();
        if let Some(size) = available {
            let min = Geometry::region_size_for(MIN_DATA_SIZE, page);
            if size < min {
                return Err(Error::TooSmall { size, min });
            }
        }
        // Map the control page alone first, to learn the layout.
        // SAFETY: See `map_part`; only read through raw pointers below.
        let probe = unsafe { map_part(&fd, &path, MapPart::ControlPage, 0, page as u64, false)? };
        let probe_ptr = NonNull::new(probe.as_mut_ptr().cast::<ControlPage>())
            .expect("map_part refuses a mapping at address 0");
        // ORDERING: Acquire; pairs with the Release store in `create`, so
        // the identity fields read below are the ones written before it.
        //
        // SAFETY: `probe` maps the page until it is dropped below. An atomic
        // load of a naturally aligned `u64` is fine on a read-only mapping
        // (it only reads, on every architecture the ABI supports).
        let magic = unsafe { magic_word(probe_ptr) }.load(Ordering::Acquire);
        // SAFETY: The mapping is one page, at least the size of a
        // `ControlPage`, and page-aligned; the copy is word by word with
        // atomic loads, which tolerate the producer writing its positions
        // meanwhile.
        let mut control = unsafe { load_control_page(probe_ptr) };
        control.magic = magic;
        drop(probe);
        let layout = RingLayout::validate(&control, page, available)?;
        Self::map(fd, path, backend, access, layout)
    }

    /// Maps the parts of a region laid out as `layout` says.
    pub(super) fn map(
        fd: OwnedFd,
        path: PathBuf,
        backend: Backend,
        access: Access,
        layout: RingLayout,
    ) -> Result<Self, Error> {
        let control = &layout.geometry;
        let page = u64::from(control.page_size);
        let producer = access.writes_producer_parts();
        // SAFETY: For all three maps: the region accesses them only through
        // raw pointers and `RingView`; memfds are sealed against shrinking
        // and devices cannot be truncated (ring files must not be, as
        // `Backend::File` documents).
        let control_map = unsafe { map_part(&fd, &path, MapPart::ControlPage, 0, page, producer)? };
        // SAFETY: As above.
        let consumer_page = unsafe {
            map_part(
                &fd,
                &path,
                MapPart::ConsumerPage,
                control.consumer_offset,
                page,
                access.writes_consumer_page(),
            )?
        };
        // SAFETY: As above.
        let data = unsafe {
            map_part(
                &fd,
                &path,
                MapPart::DataArea,
                control.data_offset,
                control.data_size,
                producer,
            )?
        };
        Ok(Self {
            fd,
            path,
            backend,
            access,
            layout,
            control: control_map,
            consumer_page,
            data,
        })
    }
}

/// The kinds of file a ring can live in.
enum Kind {
    /// A character device (`/dev/rmemringN`).
    Device,
    /// A regular file or a memfd.
    Regular,
}

/// What `file` is, and (for regular files) how many bytes back it.
fn classify(file: &File, path: &Path) -> Result<(Kind, Option<u64>), Error> {
    let meta = file
        .metadata()
        .map_err(|e| Error::io(IoOp::Stat, path, e))?;
    let file_type = meta.file_type();
    let kind = if file_type.is_char_device() {
        return Ok((Kind::Device, None));
    } else if file_type.is_file() {
        return Ok((Kind::Regular, Some(meta.len())));
    } else if file_type.is_dir() {
        FileKind::Directory
    } else if file_type.is_block_device() {
        FileKind::BlockDevice
    } else if file_type.is_fifo() {
        FileKind::Pipe
    } else if file_type.is_socket() {
        FileKind::Socket
    } else {
        FileKind::Other
    };
    Err(Error::NotARing {
        path: path.to_owned(),
        kind,
    })
}

pub(crate) fn open_error(path: &Path, e: io::Error) -> Error {
    match e.raw_os_error().map(Errno::from_raw) {
        Some(Errno::ENOENT | Errno::ENXIO | Errno::ENODEV) if path.starts_with("/dev") => {
            Error::NoDevice {
                path: path.to_owned(),
            }
        }
        Some(Errno::EACCES | Errno::EPERM) => Error::PermissionDenied {
            path: path.to_owned(),
        },
        Some(Errno::EBUSY) => Error::Busy {
            path: path.to_owned(),
        },
        _ => Error::io(IoOp::Open, path, e),
    }
}

/// Maps `len` bytes at `offset` of `fd`, shared, writable or not; a
/// failure is an [`Error::Map`] naming `part`.
///
/// # Safety
///
/// The caller accesses the mapping only through raw pointers (never `&`/`&mut`
/// to memory another process may write), and keeps the descriptor's file from
/// being truncated below `offset + len` while it is mapped (memfds are sealed;
/// devices cannot be truncated).
unsafe fn map_part(
    fd: &OwnedFd,
    path: &Path,
    part: MapPart,
    offset: u64,
    len: u64,
    writable: bool,
) -> Result<MmapRaw, Error> {
    let size = usize::try_from(len).map_err(|_| Error::Layout(LayoutError::TooLarge(len)))?;
    let mut options = MmapOptions::new();
    options.offset(offset).len(size);
    let result = if writable {
        options.map_raw(fd)
    } else {
        options.map_raw_read_only(fd)
    };
    // The accessors rely on this: `mmap` without `MAP_FIXED` never maps
    // at address 0, but that is the kernel's promise, not ours.
    let result = result.and_then(|map| {
        if map.as_ptr().is_null() {
            Err(io::Error::other("the mapping starts at address 0"))
        } else {
            Ok(map)
        }
    });
    result.map_err(|source| Error::Map {
        path: path.to_owned(),
        part,
        offset,
        len,
        writable,
        source,
    })
}
