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
use std::ptr::{
    addr_of_mut,
    NonNull, //
};
use std::sync::atomic::{
    AtomicU64,
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
use crate::role::{
    Role,
    RoleLock, //
};
use crate::{
    Consumer,
    Producer, //
};
use rmemring_proto::layout::LayoutDefect;
use rmemring_proto::layout::{
    ConsumerPage,
    ControlPage,
    Geometry,
    GeometryError,
    ABI_VERSION,
    CONSUMER_PAGE_INIT,
    MAGIC,
    MAX_DATA_SIZE,
    MIN_DATA_SIZE, //
};
pub use rmemring_proto::modes::CacheMode;
use rmemring_proto::modes::Overflow;
use rmemring_proto::view::{
    load_control_page,
    MemoryOrdering,
    RingView, //
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

/// A ring's identity and geometry, validated: its [`Geometry`] (which it
/// dereferences to: `layout.data_size` and the like) and what the control
/// page says beyond it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingLayout {
    /// Where the ring's parts lie.
    pub geometry: Geometry,
    /// Largest payload of one record.
    pub max_payload: u32,
    /// Control page flags.
    pub flags: u32,
    /// Physical address of the region (0 without one, or when the driver
    /// keeps it from this process).
    pub phys_base: u64,
}

impl std::ops::Deref for RingLayout {
    type Target = Geometry;

    fn deref(&self) -> &Geometry {
        &self.geometry
    }
}

impl RingLayout {
    /// The overflow policy.
    pub fn overflow(&self) -> Overflow {
        Overflow::from_flags(self.flags)
    }

    /// The producer's cache mode (a mode this version does not know is
    /// refused by [`Self::validate`]).
    pub fn cache_mode(&self) -> CacheMode {
        CacheMode::from_flags(self.flags).unwrap_or(CacheMode::Uncached)
    }

    /// Checks a control page a consumer or observer found, for a system with
    /// pages of `system_page` bytes and, where known, `available` bytes of
    /// backing memory: the protocol's checks
    /// ([`ControlPage::geometry`]), then that the region fits its backing.
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
        let geometry = page.geometry(system_page).map_err(|defect| match defect {
            LayoutDefect::Magic(found) => Error::BadMagic {
                found,
                expected: MAGIC,
            },
            LayoutDefect::AbiVersion(found) => Error::AbiVersion {
                found,
                supported: ABI_VERSION,
            },
            LayoutDefect::PageSize { found, system } => Error::PageSize { found, system },
            LayoutDefect::UnknownFlags(bits) => Error::UnknownFlags(bits),
            other => Error::Layout(other.to_string()),
        })?;
        if let Some(available) = available {
            if page.region_size > available {
                return Err(Error::Layout(format!(
                    "region of {} bytes is larger than its {available}-byte backing",
                    page.region_size
                )));
            }
        }
        Ok(Self {
            geometry,
            max_payload: page.max_payload,
            flags: page.flags,
            phys_base: page.phys_base,
        })
    }
}

/// Options for a ring this process creates ([`Region::memfd`], [`Region::create_file`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreateOptions {
    /// Bytes in the data area: a power of two from
    /// [`MIN_DATA_SIZE`](crate::layout::MIN_DATA_SIZE) (4 KiB) to
    /// [`MAX_DATA_SIZE`](crate::layout::MAX_DATA_SIZE) (2 GiB); anything
    /// else is [`Error::DataSize`].
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
/// by accident (on the device, the kernel enforces it).
///
/// A ring has at most one [`Consumer`] and one [`Producer`] at a time,
/// across every region of it in every process: [`Region::consumer`] and
/// [`Region::producer`] take the role with a lock on the ring (an
/// open-file-description lock on files and memfds, the kernel's
/// one-consumer rule on devices) and fail with [`Error::Taken`] while
/// someone else holds it; dropping the consumer or producer gives the role
/// back. `docs/protocol.md` (section 9) describes the locks for peers in
/// other languages.
///
/// # Safety model
///
/// The constructors are safe functions, and what safe code does with a
/// region cannot cause undefined behaviour in this process: every shared
/// word is accessed atomically, every header is validated, and the only
/// references into the mapping are a [`Batch`](crate::Batch)'s `&[u8]`
/// payloads (drop-new mode, where the protocol forbids the producer to
/// write them until they are released, and the role locks keep a second
/// consumer from releasing them) and a [`Reservation`](crate::Reservation)'s
/// `&mut [u8]` (free space no consumer may read, reserved by the one
/// producer).
///
/// Zero copy trusts the producer to follow the protocol: it must not write
/// records it published until the consumer releases them. The kernel
/// driver and this crate's [`Producer`] do not. Another process that maps
/// the same file or memfd and writes it regardless (ignoring the role
/// locks, which are advisory, or the protocol) can change bytes under a
/// borrowed `&[u8]`, and that, like any modification of a process's
/// memory from outside (see `memmap2::Mmap`'s safety section, or
/// `/proc/self/mem`), is outside what Rust can guarantee; so is truncating
/// a ring file while it is mapped (`SIGBUS`). Nothing such a peer writes
/// can make the consumer read or write outside the mapping: that part
/// does not depend on trust.
///
/// These preconditions are about other processes, which no caller of a
/// constructor can check or promise more about than the file permissions
/// (and the role locks) already say, and the kernel, which owns the
/// device. So the constructors are not `unsafe`: an `unsafe fn` would
/// move the same unprovable promise into every caller. With a peer you do
/// not trust, read with [`Consumer::read_copy`]: it copies each record out
/// of the mapping with atomic word loads and lends only its own copy, so a
/// misbehaving producer can garble the records, nothing more.
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
    ///
    /// # Examples
    ///
    /// ```
    /// use rmemring::{Backend, CreateOptions, Overflow, Region};
    ///
    /// let region = Region::memfd(CreateOptions {
    ///     data_size: 1 << 16, // a power of two, 4 KiB to 2 GiB
    ///     overflow: Overflow::OverwriteOldest,
    /// })?;
    /// assert_eq!(region.backend(), Backend::Memfd);
    /// assert_eq!(region.layout().data_size, 1 << 16);
    /// assert_eq!(region.layout().max_payload, (1 << 16) / 4 - 24);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
    ///
    /// Other processes can then [`Region::open`] the file. Do not create a
    /// ring over a file that others have mapped: truncating it makes their
    /// accesses fault (`SIGBUS`).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use rmemring::{Access, CreateOptions, Region};
    ///
    /// let path = std::env::temp_dir().join(format!("doc-create-{}.ring", std::process::id()));
    /// let created = Arc::new(Region::create_file(&path, CreateOptions::default())?);
    /// created.producer()?.send(b"kept in the file")?;
    ///
    /// let opened = Arc::new(Region::open(&path, Access::Consume)?);
    /// let mut consumer = opened.consumer()?;
    /// assert_eq!(consumer.read_copy()?.unwrap().payload, b"kept in the file");
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
        let mut control = geometry.control_page(options.overflow.flag(), 0);
        control.magic = 0;
        let layout = RingLayout {
            geometry,
            max_payload: control.max_payload,
            flags: control.flags,
            phys_base: 0,
        };
        let region = Self::map(fd, path, backend, Access::Full, layout)?;
        // Word by word with atomic stores, like every other access to the
        // pages: a file ring may be mapped by an opener already (it finds
        // no magic yet, and refuses it, but may read meanwhile).
        let view = region.view();
        view.write_control_page(&control);
        view.write_consumer_page(&CONSUMER_PAGE_INIT);
        // ORDERING: Release; pairs with the Acquire load of the magic in
        // `open_fd`: the magic goes in last, so an opener that sees it sees
        // the whole control and consumer pages written above.
        // SAFETY: The region maps its control page while it lives.
        unsafe { magic_word(region.control_ptr()) }.store(MAGIC, Ordering::Release);
        Ok(region)
    }

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
        let file = OpenOptions::new()
            .read(true)
            .write(write)
            .custom_flags(libc::O_CLOEXEC)
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
            return Err(Error::Access {
                opened: "a device, whose producer is the kernel",
                wanted: access.name(),
            });
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
        let probe_ptr =
            NonNull::new(probe.as_mut_ptr().cast::<ControlPage>()).ok_or_else(null_mapping)?;
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
    fn map(
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
        // The accessors rely on this: `mmap` without `MAP_FIXED` never maps
        // at address 0, but that is the kernel's promise, not ours.
        if [&control_map, &consumer_page, &data]
            .iter()
            .any(|map| map.as_ptr().is_null())
        {
            return Err(null_mapping());
        }
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

    /// Resets a device ring (`RMEMRING_IOC_RESET`): with its producer
    /// stopped, empties it, zeroes its counters and sets its overflow mode,
    /// then re-reads the layout. Make the consumer after this.
    ///
    /// A reset may change the flags, nothing else: the parts stay mapped as
    /// they were, so a control page that now reports another geometry
    /// (sizes, offsets, page size, region size, maximum payload) is
    /// [`Error::GeometryChanged`], and the region keeps its old layout.
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
        self.reload_layout()
    }

    /// Re-reads and validates the layout in the control page, as
    /// [`Self::reset`] does after the ioctl: the flags (the overflow mode)
    /// may have changed, nothing else.
    ///
    /// A control page that describes another geometry than the one mapped
    /// is [`Error::GeometryChanged`]; the region then keeps its layout, so
    /// no consumer or producer made later can reach past its mappings.
    ///
    /// # Examples
    ///
    /// ```
    /// use rmemring::{CreateOptions, Overflow, Region};
    ///
    /// let mut region = Region::memfd(CreateOptions::default())?;
    /// region.reload_layout()?; // nothing changed
    /// assert_eq!(region.layout().overflow(), Overflow::DropNew);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reload_layout(&mut self) -> Result<(), Error> {
        let available = (self.backend == Backend::File).then_some(self.layout.region_size);
        let layout = RingLayout::validate(&self.control(), self.layout.page_size, available)?;
        let same_geometry = RingLayout {
            flags: self.layout.flags,
            ..layout
        } == self.layout;
        if !same_geometry {
            return Err(Error::GeometryChanged {
                mapped: Box::new(self.layout),
                found: Box::new(layout),
            });
        }
        self.layout = layout;
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
        self.view().read_control_page()
    }

    /// A copy of the consumer page as it is now.
    pub fn consumer_page(&self) -> ConsumerPage {
        self.view().read_consumer_page()
    }

    fn control_ptr(&self) -> NonNull<ControlPage> {
        // SAFETY: `map` checked that the mapping does not start at null,
        // and a mapping does not move.
        unsafe { NonNull::new_unchecked(self.control.as_mut_ptr().cast()) }
    }

    fn consumer_ptr(&self) -> NonNull<ConsumerPage> {
        // SAFETY: As for `control_ptr`.
        unsafe { NonNull::new_unchecked(self.consumer_page.as_mut_ptr().cast()) }
    }

    fn data_nonnull(&self) -> NonNull<u8> {
        // SAFETY: As for `control_ptr`.
        unsafe { NonNull::new_unchecked(self.data.as_mut_ptr()) }
    }

    /// A view of this region's memory, kept alive by the caller's `Arc`
    /// (or, for a view used at once, by `&self`). Its memory ordering
    /// follows the cache mode in the ring's flags: a write-combining or
    /// uncached device ring gets the barriers it needs.
    pub(crate) fn view(&self) -> RingView {
        let data = self.data_nonnull();
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
                MemoryOrdering::from_flags(self.layout.flags),
            )
        }
    }

    /// The start of the data area in this process.
    pub(crate) fn data_ptr(&self) -> *const u8 {
        self.data.as_ptr()
    }

    /// The ring's consumer: takes the consumer role until the [`Consumer`]
    /// is dropped.
    ///
    /// Fails with [`Error::Taken`] while another consumer of the ring
    /// exists, whether made by this region, another region of the same
    /// ring (say, from [`Region::from_fd`] of a duplicated descriptor, or a
    /// second [`Region::open`] of the file) or another process; with
    /// [`Error::Access`] if the region was not opened to consume; and with
    /// [`Error::Corrupt`] if the ring's positions are impossible.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use rmemring::{Access, CreateOptions, Error, Region};
    ///
    /// let region = Arc::new(Region::memfd(CreateOptions::default())?);
    /// let consumer = region.consumer()?;
    ///
    /// // The same memfd through another descriptor is the same ring.
    /// let again = Arc::new(Region::from_fd(region.fd().try_clone_to_owned()?, Access::Full)?);
    /// assert!(matches!(again.consumer(), Err(Error::Taken("consumer"))));
    ///
    /// drop(consumer); // gives the role back
    /// let consumer = again.consumer()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn consumer(self: &Arc<Self>) -> Result<Consumer, Error> {
        if !self.access.writes_consumer_page() {
            return Err(Error::Access {
                opened: self.access.name(),
                wanted: "consuming",
            });
        }
        let role = RoleLock::acquire(self, Role::Consumer)?;
        // On failure the lock is dropped, so a later call may try again.
        Consumer::new(self.clone(), role)
    }

    /// The ring's producer (files and memfds): takes the producer role
    /// until the [`Producer`] is dropped.
    ///
    /// Fails with [`Error::Taken`] while another producer of the ring
    /// exists, in this process or another, and with [`Error::Access`] if
    /// the region was not opened to produce (devices never are: their
    /// producer is the kernel).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use rmemring::{CreateOptions, Error, Region};
    ///
    /// let region = Arc::new(Region::memfd(CreateOptions::default())?);
    /// let mut producer = region.producer()?;
    /// assert!(matches!(region.producer(), Err(Error::Taken("producer"))));
    /// producer.send(b"one")?;
    /// drop(producer);
    ///
    /// // A later producer continues where the last one stopped.
    /// let producer = region.producer()?;
    /// assert_eq!(producer.next_seq(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn producer(self: &Arc<Self>) -> Result<Producer, Error> {
        if !self.access.writes_producer_parts() {
            return Err(Error::Access {
                opened: self.access.name(),
                wanted: "producing",
            });
        }
        let role = RoleLock::acquire(self, Role::Producer)?;
        Ok(Producer::new(self.clone(), role))
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
        .map_err(|e| Error::io(format!("{}: fstat", path.display()), e))?;
    let file_type = meta.file_type();
    let kind = if file_type.is_char_device() {
        return Ok((Kind::Device, None));
    } else if file_type.is_file() {
        return Ok((Kind::Regular, Some(meta.len())));
    } else if file_type.is_dir() {
        "directory"
    } else if file_type.is_block_device() {
        "block device"
    } else if file_type.is_fifo() {
        "pipe"
    } else if file_type.is_socket() {
        "socket"
    } else {
        "special file"
    };
    Err(Error::NotARing {
        path: path.to_owned(),
        kind,
    })
}

/// The (never expected) error of a mapping at address 0.
fn null_mapping() -> Error {
    Error::io("mmap", io::Error::other("the mapping starts at address 0"))
}

/// The control page's magic, as the atomic it is at creation and opening.
///
/// # Safety
///
/// `control` must point to a mapped, page-aligned control page that stays
/// mapped for `'a`.
unsafe fn magic_word<'a>(control: NonNull<ControlPage>) -> &'a AtomicU64 {
    // SAFETY: The caller guarantees the page is mapped and aligned for
    // `'a`. The magic is accessed atomically wherever it is written or
    // checked; the volatile copies of the whole page can meet only writers
    // of the positions and counters, never of the magic.
    unsafe { AtomicU64::from_ptr(addr_of_mut!((*control.as_ptr()).magic)) }
}

fn create_geometry(data_size: u64) -> Result<Geometry, Error> {
    let page = system_page_size();
    if !data_size.is_power_of_two() || !(MIN_DATA_SIZE..=MAX_DATA_SIZE).contains(&data_size) {
        return Err(Error::DataSize {
            size: data_size,
            min: MIN_DATA_SIZE,
            max: MAX_DATA_SIZE,
        });
    }
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
