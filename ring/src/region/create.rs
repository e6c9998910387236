//! New rings, in a memfd or a file this process creates.

use std::fs::{
    File,
    OpenOptions, //
};
use std::os::fd::OwnedFd;
use std::path::{
    Path,
    PathBuf, //
};
use std::sync::atomic::Ordering;

use super::{
    magic_word,
    open::open_error,
    system_page_size,
    Access,
    Backend,
    Region,
    RingLayout, //
};
use crate::error::{
    Error,
    IoOp,
    LayoutError, //
};
use nix::fcntl::{
    fcntl,
    FcntlArg,
    SealFlag, //
};
use rmemring_proto::layout::{
    Geometry,
    GeometryError,
    CONSUMER_PAGE_INIT,
    MAGIC,
    MAX_DATA_SIZE,
    MIN_DATA_SIZE, //
};
use rmemring_proto::modes::Overflow;

/// What a memfd region calls its path, in messages.
const MEMFD_PATH: &str = "memfd:rmemring";

/// Options for a ring this process creates ([`Region::memfd`], [`Region::create_file`]).
///
/// Built with [`CreateOptions::new`] (or [`Default`]: 1 MiB, drop-new) and
/// its setters, so that options added later do not break callers; the
/// fields can be read.
///
/// # Examples
///
/// ```
/// use rmemring::{CreateOptions, Overflow, Region};
///
/// let options = CreateOptions::new(1 << 16).overflow(Overflow::OverwriteOldest);
/// assert_eq!((options.data_size, options.overflow), (1 << 16, Overflow::OverwriteOldest));
/// let region = Region::memfd(options)?;
/// assert_eq!(region.layout().overflow(), Overflow::OverwriteOldest);
/// # Ok::<(), rmemring::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CreateOptions {
    /// Bytes in the data area: a power of two from
    /// [`MIN_DATA_SIZE`](crate::layout::MIN_DATA_SIZE) (4 KiB) to
    /// [`MAX_DATA_SIZE`](crate::layout::MAX_DATA_SIZE) (2 GiB); anything
    /// else is [`Error::DataSize`].
    pub data_size: u64,
    /// What the producer does when the ring is full.
    pub overflow: Overflow,
}

/// A 1 MiB data area in drop-new mode.
impl Default for CreateOptions {
    fn default() -> Self {
        Self::new(1 << 20)
    }
}

impl CreateOptions {
    /// A ring of `data_size` bytes of data (a power of two from 4 KiB to
    /// 2 GiB, checked when the ring is created) in drop-new mode.
    ///
    /// # Examples
    ///
    /// ```
    /// use rmemring::{CreateOptions, Overflow};
    ///
    /// let options = CreateOptions::new(4096);
    /// assert_eq!(options.overflow, Overflow::DropNew);
    /// ```
    pub const fn new(data_size: u64) -> Self {
        Self {
            data_size,
            overflow: Overflow::DropNew,
        }
    }

    /// Sets the size of the data area.
    ///
    /// # Examples
    ///
    /// ```
    /// let options = rmemring::CreateOptions::default().data_size(1 << 16);
    /// assert_eq!(options.data_size, 1 << 16);
    /// ```
    pub const fn data_size(mut self, data_size: u64) -> Self {
        self.data_size = data_size;
        self
    }

    /// Sets what the producer does when the ring is full.
    ///
    /// # Examples
    ///
    /// ```
    /// use rmemring::{CreateOptions, Overflow};
    ///
    /// let options = CreateOptions::default().overflow(Overflow::OverwriteOldest);
    /// assert_eq!(options.overflow, Overflow::OverwriteOldest);
    /// ```
    pub const fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }
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
    /// // A power of two, 4 KiB to 2 GiB.
    /// let region = Region::memfd(CreateOptions::new(1 << 16).overflow(Overflow::OverwriteOldest))?;
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
        .map_err(|e| Error::io(IoOp::CreateMemfd, MEMFD_PATH, e))?;
        let file = File::from(fd);
        let geometry = create_geometry(options.data_size)?;
        file.set_len(geometry.region_size)
            .map_err(|e| Error::io(IoOp::Resize, MEMFD_PATH, e))?;
        let seals = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL;
        fcntl(&file, FcntlArg::F_ADD_SEALS(seals))
            .map_err(|e| Error::io(IoOp::Seal, MEMFD_PATH, e))?;
        Self::create(
            file.into(),
            PathBuf::from(MEMFD_PATH),
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
            .map_err(|e| Error::io(IoOp::Resize, path, e))?;
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
        GeometryError::PageSize => Error::Layout(LayoutError::PageSize(page)),
        GeometryError::TooSmall => Error::TooSmall {
            size: data_size,
            min: MIN_DATA_SIZE,
        },
    })
}
