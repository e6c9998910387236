//! Opening, creating, validating and mapping the memory a ring lives in.

use std::fs::{
    File,
    OpenOptions, //
};
use std::io;
use std::os::fd::{
    AsFd,
    AsRawFd,
    BorrowedFd,
    OwnedFd, //
};
use std::os::unix::fs::{
    FileTypeExt,
    OpenOptionsExt, //
};
use std::path::{
    Path,
    PathBuf, //
};
use std::ptr::NonNull;
use std::sync::atomic::{
    AtomicBool,
    Ordering, //
};
use std::sync::Arc;

use memmap2::{
    MmapOptions,
    MmapRaw, //
};

use crate::error::{
    Error,
    MapPart, //
};
use crate::shared::layout::{
    max_payload_for,
    ConsumerPage,
    ControlPage,
    Geometry,
    GeometryError,
    ABI_VERSION,
    CACHE_UNCACHED,
    CACHE_WRITE_COMBINE,
    CONSUMER_PAGE_INIT,
    FLAGS_KNOWN,
    FLAG_CACHE_MASK,
    FLAG_CACHE_SHIFT,
    FLAG_OVERWRITE,
    MAGIC,
    MAX_DATA_SIZE,
    MIN_DATA_SIZE, //
};
use crate::shared::producer::Overflow;
use crate::shared::view::RingView;
use crate::{
    Consumer,
    Producer, //
};

/// What a process may do with a region it opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read records: the control page and data area read-only, the consumer
    /// page read-write. On the device, only one consumer at a time.
    Consume,
    /// Write records (files and memfds only): the control page and data
    /// area read-write, the consumer page read-only.
    Produce,
    /// Read the control and consumer pages and the data area; write nothing.
    Observe,
    /// Everything read-write: a region this process created, which can hand
    /// out both a producer and a consumer.
    Full,
}

impl Access {
    fn name(self) -> &'static str {
        match self {
            Access::Consume => "consuming",
            Access::Produce => "producing",
            Access::Observe => "observing",
            Access::Full => "full access",
        }
    }

    fn writes_consumer_page(self) -> bool {
        matches!(self, Access::Consume | Access::Full)
    }

    fn writes_producer_parts(self) -> bool {
        matches!(self, Access::Produce | Access::Full)
    }
}

/// The kind of memory behind a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A `/dev/rmemringN` device: reserved physical memory and a kernel producer.
    Device,
    /// A regular file (shared between processes through the page cache).
    /// Truncating a mapped ring file makes its readers fault (`SIGBUS`), as
    /// with any shared file mapping; do not.
    File,
    /// An anonymous `memfd`, shared by inheritance or by passing the descriptor.
    Memfd,
}

/// How the producer maps the region (the kernel's choice for device rings).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheMode {
    /// Cacheable, write-back: the default and the fast one.
    WriteBack,
    /// Write-combining.
    WriteCombine,
    /// Uncached.
    Uncached,
}

/// A ring's identity and geometry, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingLayout {
    /// Page size of the layout (and of this system).
    pub page_size: u32,
    /// Bytes in the region.
    pub region_size: u64,
    /// Offset of the consumer page.
    pub consumer_offset: u64,
    /// Offset of the data area.
    pub data_offset: u64,
    /// Bytes in the data area.
    pub data_size: u64,
    /// Largest payload of one record.
    pub max_payload: u32,
    /// Control page flags.
    pub flags: u32,
    /// Physical address of the region (0 without one).
    pub phys_base: u64,
}

impl RingLayout {
    /// The overflow policy.
    pub fn overflow(&self) -> Overflow {
        if self.flags & FLAG_OVERWRITE != 0 {
            Overflow::OverwriteOldest
        } else {
            Overflow::DropNew
        }
    }

    /// The producer's cache mode.
    pub fn cache_mode(&self) -> CacheMode {
        match (self.flags & FLAG_CACHE_MASK) >> FLAG_CACHE_SHIFT {
            CACHE_WRITE_COMBINE => CacheMode::WriteCombine,
            CACHE_UNCACHED => CacheMode::Uncached,
            _ => CacheMode::WriteBack,
        }
    }

    /// Checks a control page a consumer or observer found, for a system with
    /// pages of `system_page` bytes and, where known, `available` bytes of
    /// backing memory.
    ///
    /// # Examples
    ///
    /// ```
    /// use rmemring::layout::{Geometry, MAGIC};
    /// use rmemring::{Error, RingLayout};
    ///
    /// let geometry = Geometry::for_region(1 << 20, 4096).unwrap();
    /// let mut page = geometry.control_page(0, 0);
    /// assert!(RingLayout::validate(&page, 4096, Some(1 << 20)).is_ok());
    ///
    /// page.magic = 0;
    /// assert!(matches!(
    ///     RingLayout::validate(&page, 4096, None),
    ///     Err(Error::BadMagic { .. })
    /// ));
    /// ```
    pub fn validate(
        page: &ControlPage,
        system_page: u32,
        available: Option<u64>,
    ) -> Result<Self, Error> {
        if page.magic != MAGIC {
            return Err(Error::BadMagic {
                found: page.magic,
                expected: MAGIC,
            });
        }
        if page.abi_version != ABI_VERSION {
            return Err(Error::AbiVersion {
                found: page.abi_version,
                supported: ABI_VERSION,
            });
        }
        if page.page_size != system_page {
            return Err(Error::PageSize {
                found: page.page_size,
                system: system_page,
            });
        }
        let page_size = u64::from(page.page_size);
        let layout = |what: String| Err(Error::Layout(what));
        if page.consumer_offset != page_size {
            return layout(format!(
                "consumer page at {:#x}, expected one page in ({page_size:#x})",
                page.consumer_offset
            ));
        }
        if page.data_offset != 2 * page_size {
            return layout(format!(
                "data area at {:#x}, expected two pages in ({:#x})",
                page.data_offset,
                2 * page_size
            ));
        }
        if !page.data_size.is_power_of_two()
            || page.data_size < MIN_DATA_SIZE
            || page.data_size > MAX_DATA_SIZE
        {
            return layout(format!(
                "data area of {} bytes is not a power of two between {MIN_DATA_SIZE} and {MAX_DATA_SIZE}",
                page.data_size
            ));
        }
        match page.data_offset.checked_add(page.data_size) {
            Some(end) if end <= page.region_size => {}
            _ => {
                return layout(format!(
                    "data area ends past the region ({:#x} + {:#x} > {:#x})",
                    page.data_offset, page.data_size, page.region_size
                ))
            }
        }
        if let Some(available) = available {
            if page.region_size > available {
                return layout(format!(
                    "region of {} bytes is larger than its {available}-byte backing",
                    page.region_size
                ));
            }
        }
        if page.max_payload > max_payload_for(page.data_size) {
            return layout(format!(
                "max_payload {} exceeds a quarter of the data area",
                page.max_payload
            ));
        }
        if page.flags & !FLAGS_KNOWN != 0 {
            return Err(Error::UnknownFlags(page.flags & !FLAGS_KNOWN));
        }
        Ok(Self {
            page_size: page.page_size,
            region_size: page.region_size,
            consumer_offset: page.consumer_offset,
            data_offset: page.data_offset,
            data_size: page.data_size,
            max_payload: page.max_payload,
            flags: page.flags,
            phys_base: page.phys_base,
        })
    }
}

/// Options for a ring this process creates ([`Region::memfd`], [`Region::create_file`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreateOptions {
    /// Bytes in the data area; rounded down to a power of two.
    pub data_size: u64,
    /// What the producer does when the ring is full.
    pub overflow: Overflow,
}

impl Default for CreateOptions {
    fn default() -> Self {
        Self {
            data_size: 1 << 20,
            overflow: Overflow::DropNew,
        }
    }
}

/// One ring's memory, mapped into this process.
///
/// The three parts are mapped separately, each with the permissions its
/// [`Access`] allows, so a consumer cannot scribble on the producer's pages
/// by accident (on the device, the kernel enforces it). A region hands out
/// at most one [`Producer`] and one [`Consumer`].
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use rmemring::{CreateOptions, Region};
///
/// let region = Arc::new(Region::memfd(CreateOptions::default())?);
/// let mut producer = region.producer()?;
/// let mut consumer = region.consumer()?;
///
/// producer.send(b"hello")?;
/// let mut batch = consumer.batch()?;
/// let record = batch.iter().next().unwrap()?;
/// assert_eq!(record.payload, b"hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Region {
    fd: OwnedFd,
    path: PathBuf,
    backend: Backend,
    access: Access,
    layout: RingLayout,
    control: MmapRaw,
    consumer_page: MmapRaw,
    data: MmapRaw,
    producer_taken: AtomicBool,
    consumer_taken: AtomicBool,
}

/// The system page size.
pub fn system_page_size() -> u32 {
    // SAFETY: `sysconf` has no memory-safety preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u32::try_from(size).unwrap_or(4096)
}

impl Region {
    /// Creates a ring in an anonymous memfd, for tests, benchmarks and
    /// user-to-user streaming (pass [`Region::fd`] to another process or fork).
    ///
    /// The memfd is sealed against shrinking, so no holder can truncate the
    /// memory out from under a mapping.
    pub fn memfd(options: CreateOptions) -> Result<Self, Error> {
        use nix::sys::memfd::{
            memfd_create,
            MFdFlags, //
        };
        let fd = memfd_create(
            "rmemring",
            MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
        )
        .map_err(|e| Error::io("memfd_create", e))?;
        let file = File::from(fd);
        let geometry = create_geometry(options.data_size)?;
        file.set_len(geometry.region_size)
            .map_err(|e| Error::io("sizing the memfd", e))?;
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        // SAFETY: `F_ADD_SEALS` takes an integer argument and touches no memory of ours.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
            return Err(Error::io("sealing the memfd", io::Error::last_os_error()));
        }
        Self::create(
            file.into(),
            PathBuf::from("memfd:rmemring"),
            Backend::Memfd,
            geometry,
            options,
        )
    }

    /// Creates (or truncates) a ring file at `path`.
    pub fn create_file(path: impl AsRef<Path>, options: CreateOptions) -> Result<Self, Error> {
        let path = path.as_ref();
        let geometry = create_geometry(options.data_size)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| open_error(path, e))?;
        file.set_len(geometry.region_size)
            .map_err(|e| Error::io(format!("{}: sizing", path.display()), e))?;
        Self::create(
            file.into(),
            path.to_owned(),
            Backend::File,
            geometry,
            options,
        )
    }

    fn create(
        fd: OwnedFd,
        path: PathBuf,
        backend: Backend,
        geometry: Geometry,
        options: CreateOptions,
    ) -> Result<Self, Error> {
        let flags = match options.overflow {
            Overflow::DropNew => 0,
            Overflow::OverwriteOldest => FLAG_OVERWRITE,
        };
        let mut control = geometry.control_page(flags, 0);
        control.magic = 0;
        let region = Self::map(fd, path, backend, Access::Full, &control)?;
        // SAFETY: The region was just created and sized by this process and
        // nothing else has it yet; both pages are mapped read-write.
        unsafe {
            region.control_ptr().as_ptr().write_volatile(control);
            region
                .consumer_ptr()
                .as_ptr()
                .write_volatile(CONSUMER_PAGE_INIT);
        }
        // The magic goes in last, so an opener never sees a half-made ring.
        std::sync::atomic::fence(Ordering::Release);
        // SAFETY: As above.
        unsafe {
            std::ptr::addr_of_mut!((*region.control_ptr().as_ptr()).magic).write_volatile(MAGIC)
        };
        Ok(region)
    }

    /// Opens the ring at `path`: a `/dev/rmemringN` device or a ring file.
    ///
    /// Validates the ring before returning; see [`RingLayout::validate`].
    pub fn open(path: impl AsRef<Path>, access: Access) -> Result<Self, Error> {
        let path = path.as_ref();
        let write = access != Access::Observe;
        let file = OpenOptions::new()
            .read(true)
            .write(write)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| open_error(path, e))?;
        let meta = file
            .metadata()
            .map_err(|e| Error::io(format!("{}: stat", path.display()), e))?;
        let backend = if meta.file_type().is_char_device() {
            Backend::Device
        } else {
            Backend::File
        };
        if backend == Backend::Device && access.writes_producer_parts() {
            return Err(Error::Access {
                opened: "a device, whose producer is the kernel",
                wanted: access.name(),
            });
        }
        let available = (backend == Backend::File).then_some(meta.len());
        Self::open_fd(file.into(), path.to_owned(), backend, access, available)
    }

    /// Opens a ring from a descriptor of a memfd or file (for example one
    /// received from another process).
    pub fn from_fd(fd: OwnedFd, access: Access) -> Result<Self, Error> {
        let file = File::from(fd);
        let len = file.metadata().map_err(|e| Error::io("fstat", e))?.len();
        Self::open_fd(
            file.into(),
            PathBuf::from("fd"),
            Backend::Memfd,
            access,
            Some(len),
        )
    }

    fn open_fd(
        fd: OwnedFd,
        path: PathBuf,
        backend: Backend,
        access: Access,
        available: Option<u64>,
    ) -> Result<Self, Error> {
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
        // SAFETY: The mapping is one page, at least the size of a `ControlPage`,
        // and page-aligned.
        let control = unsafe { probe.as_ptr().cast::<ControlPage>().read_volatile() };
        drop(probe);
        let layout = RingLayout::validate(&control, page, available)?;
        let region = Self::map(fd, path, backend, access, &control)?;
        Ok(Self { layout, ..region })
    }

    /// Maps the parts of a region laid out as `control` describes.
    fn map(
        fd: OwnedFd,
        path: PathBuf,
        backend: Backend,
        access: Access,
        control: &ControlPage,
    ) -> Result<Self, Error> {
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
            layout: RingLayout {
                page_size: control.page_size,
                region_size: control.region_size,
                consumer_offset: control.consumer_offset,
                data_offset: control.data_offset,
                data_size: control.data_size,
                max_payload: control.max_payload,
                flags: control.flags,
                phys_base: control.phys_base,
            },
            control: control_map,
            consumer_page,
            data,
            producer_taken: AtomicBool::new(false),
            consumer_taken: AtomicBool::new(false),
        })
    }

    /// Resets a device ring (`RMEMRING_IOC_RESET`): with its producer
    /// stopped, empties it, zeroes its counters and sets its overflow mode,
    /// then re-reads the layout. Make the consumer after this.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use rmemring::{layout::FLAG_OVERWRITE, uapi::ResetConfig, Access, Overflow, Region};
    ///
    /// let mut region = Region::open("/dev/rmemring0", Access::Consume)?;
    /// region.reset(&ResetConfig { flags: FLAG_OVERWRITE, ..Default::default() })?;
    /// assert_eq!(region.layout().overflow(), Overflow::OverwriteOldest);
    /// let consumer = Arc::new(region).consumer()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reset(&mut self, config: &crate::uapi::ResetConfig) -> Result<(), Error> {
        crate::device::reset(self.fd(), config)
            .map_err(|e| Error::io(format!("{}: RMEMRING_IOC_RESET", self.path.display()), e))?;
        let available = (self.backend == Backend::File).then_some(self.layout.region_size);
        self.layout = RingLayout::validate(&self.control(), self.layout.page_size, available)?;
        Ok(())
    }

    /// The validated layout.
    pub fn layout(&self) -> &RingLayout {
        &self.layout
    }

    /// What is behind the region.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The access the region was opened with.
    pub fn access(&self) -> Access {
        self.access
    }

    /// The path it was opened from (a placeholder for memfds).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file descriptor, for `poll`, ioctls or passing to another process.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// A copy of the control page as it is now (fields written concurrently
    /// may be from slightly different moments).
    pub fn control(&self) -> ControlPage {
        // SAFETY: The mapping holds a whole, aligned control page for as long
        // as `self` lives; a volatile copy tolerates concurrent writers.
        unsafe { self.control_ptr().as_ptr().read_volatile() }
    }

    /// A copy of the consumer page as it is now.
    pub fn consumer_page(&self) -> ConsumerPage {
        // SAFETY: As for `control`.
        unsafe { self.consumer_ptr().as_ptr().read_volatile() }
    }

    fn control_ptr(&self) -> NonNull<ControlPage> {
        NonNull::new(self.control.as_mut_ptr().cast()).expect("mmap never returns null")
    }

    fn consumer_ptr(&self) -> NonNull<ConsumerPage> {
        NonNull::new(self.consumer_page.as_mut_ptr().cast()).expect("mmap never returns null")
    }

    /// A view of this region's memory, kept alive by the caller's `Arc`.
    pub(crate) fn view(&self) -> RingView {
        let data = NonNull::new(self.data.as_mut_ptr()).expect("mmap never returns null");
        // SAFETY: The three mappings are page-aligned, hold a whole control
        // page, consumer page and `data_size` bytes (a validated power of
        // two), and live as long as `self`, which every holder of a view
        // keeps alive through an `Arc`. Producers and consumers write only
        // the parts their access mapped writable (checked when they are made).
        unsafe {
            RingView::new(
                self.control_ptr(),
                self.consumer_ptr(),
                data,
                self.layout.data_size,
            )
        }
    }

    /// The start of the data area in this process.
    pub(crate) fn data_ptr(&self) -> *const u8 {
        self.data.as_ptr()
    }

    /// The one consumer of this region.
    pub fn consumer(self: &Arc<Self>) -> Result<Consumer, Error> {
        if !self.access.writes_consumer_page() {
            return Err(Error::Access {
                opened: self.access.name(),
                wanted: "consuming",
            });
        }
        if self.consumer_taken.swap(true, Ordering::AcqRel) {
            return Err(Error::Taken("consumer"));
        }
        Consumer::new(self.clone()).inspect_err(|_| {
            // Nothing was handed out, so a later call may try again.
            self.consumer_taken.store(false, Ordering::Release);
        })
    }

    /// The one producer of this region (files and memfds).
    pub fn producer(self: &Arc<Self>) -> Result<Producer, Error> {
        if !self.access.writes_producer_parts() {
            return Err(Error::Access {
                opened: self.access.name(),
                wanted: "producing",
            });
        }
        if self.producer_taken.swap(true, Ordering::AcqRel) {
            return Err(Error::Taken("producer"));
        }
        Ok(Producer::new(self.clone()))
    }
}

impl std::fmt::Debug for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Region")
            .field("path", &self.path)
            .field("backend", &self.backend)
            .field("access", &self.access)
            .field("layout", &self.layout)
            .finish()
    }
}

fn create_geometry(data_size: u64) -> Result<Geometry, Error> {
    let page = system_page_size();
    let data_size = data_size.clamp(MIN_DATA_SIZE, MAX_DATA_SIZE);
    let data_size = 1u64 << (63 - data_size.leading_zeros());
    Geometry::for_region(Geometry::region_size_for(data_size, page), page).map_err(|e| match e {
        GeometryError::PageSize => Error::Layout(format!("unsupported page size {page}")),
        GeometryError::TooSmall => Error::TooSmall {
            size: data_size,
            min: MIN_DATA_SIZE,
        },
    })
}

fn open_error(path: &Path, e: io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENXIO) | Some(libc::ENODEV) if path.starts_with("/dev") => {
            Error::NoDevice {
                path: path.to_owned(),
            }
        }
        Some(libc::EACCES) | Some(libc::EPERM) => Error::PermissionDenied {
            path: path.to_owned(),
        },
        Some(libc::EBUSY) => Error::Busy {
            path: path.to_owned(),
        },
        _ => Error::io(path.display().to_string(), e),
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
    let size = usize::try_from(len)
        .map_err(|_| Error::Layout(format!("{len} bytes do not fit in memory")))?;
    let mut options = MmapOptions::new();
    options.offset(offset).len(size);
    let result = if writable {
        options.map_raw(fd)
    } else {
        options.map_raw_read_only(fd)
    };
    result.map_err(|source| Error::Map {
        path: path.to_owned(),
        part,
        offset,
        len,
        writable,
        source,
    })
}
