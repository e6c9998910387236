//! The driver's ioctls, for a [`Region`](crate::Region) opened on a
//! `/dev/rmemringN` device (see [`crate::uapi`] for the structs).
//!
//! # Examples
//!
//! ```no_run
//! use std::sync::Arc;
//! use rmemring::{ioctl, uapi::ProducerConfig, Access, Region};
//!
//! let region = Arc::new(Region::open("/dev/rmemring0", Access::Consume)?);
//! ioctl::start(region.fd(), &ProducerConfig { min_len: 64, max_len: 64, count: 1000, ..Default::default() })?;
//! let mut consumer = region.consumer()?;
//! let mut seen = 0;
//! while seen < 1000 {
//!     consumer.wait(None)?;
//!     for record in &mut consumer.batch()? {
//!         let record = record?;
//!         // The default pattern (`PATTERN_SEQ`) derives every byte from the sequence number.
//!         assert!(rmemring::pattern::verify(record.seq, record.payload));
//!         seen += 1;
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io;
use std::os::fd::{
    AsRawFd,
    BorrowedFd, //
};

use rmemring_proto::uapi::{
    ProducerConfig,
    RecoveryInfo,
    ResetConfig,
    RingInfo,
    RingStats,
    IOC_INFO,
    IOC_RECOVERY,
    IOC_RELEASE_RECOVERED,
    IOC_RESET,
    IOC_START,
    IOC_STATS,
    IOC_STOP, //
};

fn ioctl(fd: BorrowedFd<'_>, request: u32, arg: *mut libc::c_void) -> io::Result<()> {
    // SAFETY: Every caller passes a request whose size field matches the
    // object `arg` points to (or a null `arg` for `_IO` requests), valid for
    // the duration of the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, arg) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `RMEMRING_IOC_INFO`: the ring's geometry and physical base.
///
/// Any descriptor of the device may ask, an observer's too.
///
/// # Examples
///
/// ```no_run
/// use rmemring::{ioctl, Access, Region};
///
/// let region = Region::open("/dev/rmemring0", Access::Observe)?;
/// let info = ioctl::info(region.fd())?;
/// println!("ring {} at {:#x}: {} bytes of data", info.index, info.phys_base, info.data_size);
/// assert_eq!(info.data_size, region.layout().data_size);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn info(fd: BorrowedFd<'_>) -> io::Result<RingInfo> {
    let mut info = RingInfo::default();
    ioctl(fd, IOC_INFO, (&mut info as *mut RingInfo).cast())?;
    Ok(info)
}

/// `RMEMRING_IOC_STATS`: producer, consumer and driver counters.
///
/// # Examples
///
/// ```no_run
/// use rmemring::{ioctl, Access, Region};
///
/// let region = Region::open("/dev/rmemring0", Access::Observe)?;
/// let stats = ioctl::stats(region.fd())?;
/// println!(
///     "{} produced, {} dropped, {} consumed, producer running: {}",
///     stats.records_produced,
///     stats.records_dropped,
///     stats.records_consumed,
///     stats.producer_running != 0
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn stats(fd: BorrowedFd<'_>) -> io::Result<RingStats> {
    let mut stats = RingStats::default();
    ioctl(fd, IOC_STATS, (&mut stats as *mut RingStats).cast())?;
    Ok(stats)
}

/// `RMEMRING_IOC_START`: starts the kernel producer (needs the consumer's
/// descriptor, or a controller's: the device opened write-only).
///
/// # Examples
///
/// ```no_run
/// use rmemring::uapi::{ProducerConfig, PRODUCER_WAIT};
/// use rmemring::{ioctl, Access, Region};
///
/// let region = Region::open("/dev/rmemring0", Access::Consume)?;
/// // 64 to 256-byte records, 10 000 a second, waiting for room when full.
/// let config = ProducerConfig {
///     min_len: 64,
///     max_len: 256,
///     rate: 10_000,
///     flags: PRODUCER_WAIT,
///     ..Default::default()
/// };
/// ioctl::start(region.fd(), &config)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn start(fd: BorrowedFd<'_>, config: &ProducerConfig) -> io::Result<()> {
    let mut config = *config;
    ioctl(fd, IOC_START, (&mut config as *mut ProducerConfig).cast())
}

/// `RMEMRING_IOC_STOP`: stops the kernel producer and waits until it has.
///
/// # Examples
///
/// ```no_run
/// use rmemring::{ioctl, uapi::ProducerConfig, Access, Region};
///
/// let region = Region::open("/dev/rmemring0", Access::Consume)?;
/// ioctl::start(region.fd(), &ProducerConfig { min_len: 8, max_len: 8, ..Default::default() })?;
/// std::thread::sleep(std::time::Duration::from_millis(100));
/// ioctl::stop(region.fd())?;
/// assert_eq!(ioctl::stats(region.fd())?.producer_running, 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn stop(fd: BorrowedFd<'_>) -> io::Result<()> {
    ioctl(fd, IOC_STOP, std::ptr::null_mut())
}

/// `RMEMRING_IOC_RESET`: empties a stopped ring, zeroes its counters and
/// sets its overflow mode. [`Region::reset`](crate::Region::reset) does this
/// and re-reads the layout; after this function alone, reopen the region.
///
/// # Examples
///
/// ```no_run
/// use rmemring::layout::FLAG_OVERWRITE;
/// use rmemring::{ioctl, uapi::ResetConfig, Access, Region};
///
/// let region = Region::open("/dev/rmemring0", Access::Consume)?;
/// ioctl::stop(region.fd())?;
/// ioctl::reset(region.fd(), &ResetConfig { flags: FLAG_OVERWRITE, ..Default::default() })?;
/// drop(region);
/// let region = Region::open("/dev/rmemring0", Access::Consume)?; // sees overwrite mode
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn reset(fd: BorrowedFd<'_>, config: &ResetConfig) -> io::Result<()> {
    let mut config = *config;
    ioctl(fd, IOC_RESET, (&mut config as *mut ResetConfig).cast())
}

/// `RMEMRING_IOC_RECOVERY`: what the driver found in its region when it
/// claimed it: a previous boot's ring it serves read-only
/// ([`RECOVERY_RECOVERED`](crate::uapi::RECOVERY_RECOVERED)), nothing
/// (and why), or that it was not asked to look (`retain=0`). See
/// docs/flight-recorder.md.
///
/// # Examples
///
/// ```no_run
/// use rmemring::uapi::RECOVERY_RECOVERED;
/// use rmemring::{ioctl, Access, Region};
///
/// let region = Region::open("/dev/rmemring0", Access::Observe)?;
/// let found = ioctl::recovery(region.fd())?;
/// if found.verdict == RECOVERY_RECOVERED {
///     println!("{} records of the previous boot", found.records);
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn recovery(fd: BorrowedFd<'_>) -> io::Result<RecoveryInfo> {
    let mut info = RecoveryInfo::default();
    ioctl(fd, IOC_RECOVERY, (&mut info as *mut RecoveryInfo).cast())?;
    Ok(info)
}

/// `RMEMRING_IOC_RELEASE_RECOVERED`: lets go of a recovered ring; the
/// driver lays out an empty one and producers may start. `EINVAL` if none
/// is served. Needs the consumer's descriptor, as `RMEMRING_IOC_RESET` does.
///
/// # Examples
///
/// ```no_run
/// use rmemring::{ioctl, Access, Region};
///
/// let region = Region::open("/dev/rmemring0", Access::Consume)?;
/// ioctl::release_recovered(region.fd())?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn release_recovered(fd: BorrowedFd<'_>) -> io::Result<()> {
    ioctl(fd, IOC_RELEASE_RECOVERED, std::ptr::null_mut())
}
