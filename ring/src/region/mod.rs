//! The memory a ring lives in, mapped into this process: [`Region`].
//!
//! - `layout`: what a region's control page says, validated ([`RingLayout`]);
//! - `create`: new rings in a memfd or a file ([`CreateOptions`]);
//! - `open`: opening a device, a ring file or a descriptor, and mapping
//!   each part with the permissions its [`Access`] allows.
//!
//! This module has what every region has: its parts, its accessors, and
//! the consumer and producer roles it hands out (`crate::role`).

use std::os::fd::{
    AsFd,
    AsRawFd,
    BorrowedFd,
    OwnedFd,
    RawFd, //
};
use std::path::{
    Path,
    PathBuf, //
};
use std::ptr::{
    addr_of_mut,
    NonNull, //
};
use std::sync::atomic::AtomicU64;

use memmap2::MmapRaw;

use crate::error::Error;
use crate::role::RingFile;
use rmemring_proto::layout::{
    ConsumerPage,
    ControlPage, //
};
pub use rmemring_proto::modes::CacheMode;
use rmemring_proto::view::{
    MemoryOrdering,
    RingView, //
};

mod create;
mod layout;
mod open;

pub use create::CreateOptions;
pub use layout::RingLayout;
pub(crate) use open::open_error;

/// What a process may do with a region it opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
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

/// What the access allows, in messages: "consuming", "producing",
/// "observing" or "full access".
impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Access::Consume => "consuming",
            Access::Produce => "producing",
            Access::Observe => "observing",
            Access::Full => "full access",
        })
    }
}

impl Access {
    pub(crate) fn writes_consumer_page(self) -> bool {
        matches!(self, Access::Consume | Access::Full)
    }

    pub(crate) fn writes_producer_parts(self) -> bool {
        matches!(self, Access::Produce | Access::Full)
    }
}

/// The kind of memory behind a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
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

/// One ring's memory, mapped into this process.
///
/// The three parts are mapped separately, each with the permissions its
/// [`Access`] allows, so a consumer cannot scribble on the producer's pages
/// by accident (on the device, the kernel enforces it).
///
/// A ring has at most one [`Consumer`](crate::Consumer) and one [`Producer`](crate::Producer) at a time,
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
/// driver and this crate's [`Producer`](crate::Producer) do not. Another process that maps
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
/// not trust, read with [`Consumer::read_copy`](crate::Consumer::read_copy): it copies each record out
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
///
/// # Examples
///
/// ```
/// let page = rmemring::system_page_size();
/// assert!(page.is_power_of_two() && page >= 4096);
/// ```
pub fn system_page_size() -> u32 {
    use nix::unistd::{
        sysconf,
        SysconfVar, //
    };
    match sysconf(SysconfVar::PAGE_SIZE) {
        Ok(Some(size)) => u32::try_from(size).unwrap_or(4096),
        _ => 4096,
    }
}

impl Region {
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
        self.reset_ioctl(config)?;
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

    /// The file descriptor, for `poll`, ioctls or passing to another
    /// process; the region is also [`AsFd`] and [`AsRawFd`].
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// What the role locks need to know of the file.
    pub(crate) fn ring_file(&self) -> RingFile<'_> {
        RingFile {
            fd: self.fd(),
            path: &self.path,
            device: self.backend == Backend::Device,
            consumer_offset: self.layout.consumer_offset,
        }
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
}

/// The ring's descriptor, for event loops (epoll, `mio`,
/// `tokio::io::unix::AsyncFd`), ioctls, or passing to another process;
/// the same descriptor as [`Region::fd`].
///
/// On a device it polls readable while published records are unreleased;
/// a consumer that sleeps on it arms a wake-up first
/// ([`Consumer::arm_wakeup`](crate::Consumer::arm_wakeup)), or the
/// producer does not wake it. A file or memfd ring wakes its consumer
/// through a futex, and `poll(2)` reports its descriptor readable at once:
/// there an event loop waits on the consumer's
/// [`WakeFd`](crate::WakeFd) instead
/// ([`Consumer::wake_fd`](crate::Consumer::wake_fd), which on a device is
/// this descriptor).
///
/// # Examples
///
/// ```
/// use std::os::fd::{AsFd, AsRawFd};
/// use rmemring::{CreateOptions, Region};
///
/// let region = Region::memfd(CreateOptions::default())?;
/// assert_eq!(region.as_fd().as_raw_fd(), region.as_raw_fd());
///
/// // Anything that takes `impl AsFd` takes a region: here `fstat`, which
/// // sees the memfd's size (the control page, consumer page and data area).
/// let stat = nix::sys::stat::fstat(&region)?;
/// assert_eq!(stat.st_size as u64, region.layout().region_size);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl AsFd for Region {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The raw form of [`AsFd`] for [`Region`], for interfaces that take a
/// `RawFd` (`libc`, older crates). The region still owns the descriptor:
/// it is closed when the region is dropped.
///
/// # Examples
///
/// ```
/// use std::os::fd::AsRawFd;
/// use rmemring::{CreateOptions, Region};
///
/// let region = Region::memfd(CreateOptions::default())?;
/// let link = std::fs::read_link(format!("/proc/self/fd/{}", region.as_raw_fd()))?;
/// assert!(link.to_string_lossy().starts_with("/memfd:rmemring"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl AsRawFd for Region {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
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
