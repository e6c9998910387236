//! The driver's ioctls: methods of a [`Region`] opened on a device, and of
//! a [`Device`], a descriptor of the device that maps nothing.

use std::fs::{
    File,
    OpenOptions, //
};
use std::os::fd::{
    AsFd,
    AsRawFd,
    BorrowedFd,
    OwnedFd,
    RawFd, //
};
use std::os::unix::fs::FileTypeExt as _;
use std::path::{
    Path,
    PathBuf, //
};

use rmemring_proto::uapi::{
    ProducerConfig,
    RecoveryInfo,
    ResetConfig,
    RingInfo,
    RingStats, //
};

use crate::error::{Error, IoOp};
use crate::ioctl::Ioctls;
use crate::region::{
    open_error,
    Backend,
    Region, //
};

/// A descriptor of a `/dev/rmemringN` device for the driver's ioctls
/// alone: it maps nothing.
///
/// Most programs need none: a [`Region`] opened on a device has the same
/// methods. A `Device` is for starting and stopping the kernel producer
/// beside a consumer that is another process ([`Device::controller`]:
/// the device opened write-only, the controller role of
/// `docs/protocol.md`), or for a descriptor of the device received from
/// elsewhere ([`Device::from_fd`]). What each role may ask is the
/// driver's rule: a controller or consumer starts and stops the producer,
/// only the consumer resets it, anyone reads `info` and `stats`; the rest
/// fail with [`Error::Ioctl`] and `EPERM` (see
/// [`Error::raw_os_error`]).
///
/// # Examples
///
/// ```no_run
/// use rmemring::{uapi::ProducerConfig, Device};
///
/// let device = Device::controller("/dev/rmemring0")?;
/// device.start(&ProducerConfig { min_len: 64, max_len: 64, count: 1000, ..Default::default() })?;
/// while device.stats()?.producer_running != 0 {
///     std::thread::sleep(std::time::Duration::from_millis(10));
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Device {
    fd: OwnedFd,
    path: PathBuf,
}

impl Device {
    /// Opens the device write-only, as a controller: it may start and
    /// stop the producer (and read `info` and `stats`) whoever consumes.
    /// Closing it stops a producer it started.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use rmemring::Device;
    ///
    /// let device = Device::controller("/dev/rmemring0")?;
    /// device.stop()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn controller(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| open_error(path, e))?;
        Self::checked(file, path.to_owned())
    }

    /// A device from a descriptor of it, opened in any mode (the mode is
    /// its role: `O_RDWR` the consumer, `O_WRONLY` a controller,
    /// `O_RDONLY` an observer). What is not a character device is
    /// [`Error::NotADevice`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::fs::File;
    /// use rmemring::Device;
    ///
    /// let device = Device::from_fd(File::open("/dev/rmemring0")?.into())?;
    /// println!("{} records produced", device.stats()?.records_produced);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_fd(fd: OwnedFd) -> Result<Self, Error> {
        let file = File::from(fd);
        let link = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()));
        Self::checked(file, link.unwrap_or_else(|_| PathBuf::from("fd")))
    }

    fn checked(file: File, path: PathBuf) -> Result<Self, Error> {
        let meta = file
            .metadata()
            .map_err(|e| Error::io(IoOp::Stat, &path, e))?;
        if !meta.file_type().is_char_device() {
            return Err(Error::NotADevice { path });
        }
        Ok(Self {
            fd: file.into(),
            path,
        })
    }

    /// The path it was opened from (or what `/proc/self/fd` says).
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn ioctls(&self) -> Ioctls<'_> {
        Ioctls {
            fd: self.fd.as_fd(),
            path: &self.path,
        }
    }

    /// `RMEMRING_IOC_INFO`: the ring's geometry and physical base; see
    /// [`Region::info`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let device = rmemring::Device::controller("/dev/rmemring0")?;
    /// println!("{} bytes of data", device.info()?.data_size);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn info(&self) -> Result<RingInfo, Error> {
        self.ioctls().info()
    }

    /// `RMEMRING_IOC_STATS`: producer, consumer and driver counters; see
    /// [`Region::stats`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let device = rmemring::Device::controller("/dev/rmemring0")?;
    /// println!("producer running: {}", device.stats()?.producer_running != 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stats(&self) -> Result<RingStats, Error> {
        self.ioctls().stats()
    }

    /// `RMEMRING_IOC_START`: starts the kernel producer (the consumer or a
    /// controller); see [`Region::start`] and the type's example.
    pub fn start(&self, config: &ProducerConfig) -> Result<(), Error> {
        self.ioctls().start(config)
    }

    /// `RMEMRING_IOC_STOP`: stops the kernel producer and waits until it
    /// has (the consumer or a controller); see [`Device::controller`]'s
    /// example.
    pub fn stop(&self) -> Result<(), Error> {
        self.ioctls().stop()
    }

    /// `RMEMRING_IOC_RESET` (the consumer's descriptor only): see
    /// [`Region::reset`], which also re-reads the layout; a region of the
    /// ring mapped before this must be reopened.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::fs::OpenOptions;
    /// use rmemring::{uapi::ResetConfig, Device};
    ///
    /// let consumer = OpenOptions::new().read(true).write(true).open("/dev/rmemring0")?;
    /// let device = Device::from_fd(consumer.into())?;
    /// device.stop()?;
    /// device.reset(&ResetConfig::default())?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reset(&self, config: &ResetConfig) -> Result<(), Error> {
        self.ioctls().reset(config)
    }

    /// `RMEMRING_IOC_RECOVERY`: see [`Region::recovery`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let device = rmemring::Device::controller("/dev/rmemring0")?;
    /// println!("verdict {}", device.recovery()?.verdict);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recovery(&self) -> Result<RecoveryInfo, Error> {
        self.ioctls().recovery()
    }

    /// `RMEMRING_IOC_RELEASE_RECOVERED` (the consumer's descriptor only):
    /// see [`Region::release_recovered`].
    pub fn release_recovered(&self) -> Result<(), Error> {
        self.ioctls().release_recovered()
    }
}

/// The device's descriptor, for event loops and passing on.
///
/// # Examples
///
/// ```no_run
/// use std::os::fd::AsFd;
///
/// let device = rmemring::Device::controller("/dev/rmemring0")?;
/// let stat = nix::sys::stat::fstat(device.as_fd())?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl AsFd for Device {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The raw form of [`AsFd`] for [`Device`]; the device still owns the
/// descriptor.
///
/// # Examples
///
/// ```no_run
/// use std::os::fd::AsRawFd;
///
/// let device = rmemring::Device::controller("/dev/rmemring0")?;
/// assert!(device.as_raw_fd() >= 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
impl AsRawFd for Device {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// The driver's ioctls, on a region opened on a device (files and memfds
/// have no driver: [`Error::NotADevice`]). Any descriptor may read `info`,
/// `stats` and `recovery`; the consumer's ([`Access::Consume`]) may also
/// start, stop and reset the producer and release a recovered ring; an
/// observer's ([`Access::Observe`]) gets `EPERM` for those
/// ([`Error::Ioctl`]).
///
/// [`Access::Consume`]: crate::Access::Consume
/// [`Access::Observe`]: crate::Access::Observe
impl Region {
    fn ioctls(&self) -> Result<Ioctls<'_>, Error> {
        if self.backend() != Backend::Device {
            return Err(Error::NotADevice {
                path: self.path().to_owned(),
            });
        }
        Ok(Ioctls {
            fd: self.fd(),
            path: self.path(),
        })
    }

    /// `RMEMRING_IOC_INFO`: the ring's geometry, physical base and state.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use rmemring::{Access, Region};
    ///
    /// let region = Region::open("/dev/rmemring0", Access::Observe)?;
    /// let info = region.info()?;
    /// println!("ring {} at {:#x}: {} bytes of data", info.index, info.phys_base, info.data_size);
    /// assert_eq!(info.data_size, region.layout().data_size);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn info(&self) -> Result<RingInfo, Error> {
        self.ioctls()?.info()
    }

    /// `RMEMRING_IOC_STATS`: producer, consumer and driver counters.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use rmemring::{Access, Region};
    ///
    /// let region = Region::open("/dev/rmemring0", Access::Observe)?;
    /// let stats = region.stats()?;
    /// println!(
    ///     "{} produced, {} dropped, {} consumed, producer running: {}",
    ///     stats.records_produced,
    ///     stats.records_dropped,
    ///     stats.records_consumed,
    ///     stats.producer_running != 0
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stats(&self) -> Result<RingStats, Error> {
        self.ioctls()?.stats()
    }

    /// `RMEMRING_IOC_START`: starts the kernel producer (the consumer's
    /// region; a [`Device::controller`] may too).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use rmemring::uapi::{ProducerConfig, PRODUCER_WAIT};
    /// use rmemring::{Access, Region};
    ///
    /// let region = Arc::new(Region::open("/dev/rmemring0", Access::Consume)?);
    /// // 1000 records of 64 to 256 bytes, 10 000 a second, waiting for room when full.
    /// let config = ProducerConfig {
    ///     min_len: 64,
    ///     max_len: 256,
    ///     rate: 10_000,
    ///     count: 1000,
    ///     flags: PRODUCER_WAIT,
    ///     ..Default::default()
    /// };
    /// region.start(&config)?;
    /// let mut consumer = region.consumer()?;
    /// let mut seen = 0;
    /// while seen < 1000 {
    ///     consumer.wait(None)?;
    ///     for record in &mut consumer.batch()? {
    ///         let record = record?;
    ///         // The default pattern (`PATTERN_SEQ`) derives every byte from the sequence number.
    ///         assert!(rmemring::pattern::verify(record.seq, record.payload));
    ///         seen += 1;
    ///     }
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn start(&self, config: &ProducerConfig) -> Result<(), Error> {
        self.ioctls()?.start(config)
    }

    /// `RMEMRING_IOC_STOP`: stops the kernel producer and waits until it has.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use rmemring::{uapi::ProducerConfig, Access, Region};
    ///
    /// let region = Region::open("/dev/rmemring0", Access::Consume)?;
    /// region.start(&ProducerConfig { min_len: 8, max_len: 8, ..Default::default() })?;
    /// std::thread::sleep(std::time::Duration::from_millis(100));
    /// region.stop()?;
    /// assert_eq!(region.stats()?.producer_running, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stop(&self) -> Result<(), Error> {
        self.ioctls()?.stop()
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
    /// use rmemring::{Access, Region};
    ///
    /// let region = Region::open("/dev/rmemring0", Access::Observe)?;
    /// let found = region.recovery()?;
    /// if found.verdict == RECOVERY_RECOVERED {
    ///     println!("{} records of the previous boot", found.records);
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recovery(&self) -> Result<RecoveryInfo, Error> {
        self.ioctls()?.recovery()
    }

    /// `RMEMRING_IOC_RELEASE_RECOVERED`: lets go of a recovered ring; the
    /// driver lays out an empty one and producers may start (reopen the
    /// region to read it). `EINVAL` if none is served. Needs the
    /// consumer's region, as [`Region::reset`] does.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use rmemring::{Access, Region};
    ///
    /// let region = Region::open("/dev/rmemring0", Access::Consume)?;
    /// region.release_recovered()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn release_recovered(&self) -> Result<(), Error> {
        self.ioctls()?.release_recovered()
    }

    /// A [`Device`] on a duplicate of the region's descriptor: the same
    /// open file, so the same role (a consumer's may reset the ring). For
    /// the ioctls of a region shared through an `Arc`, where
    /// [`Region::reset`], which takes `&mut self`, cannot be called.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use rmemring::{uapi::ResetConfig, Access, Region};
    ///
    /// let region = Arc::new(Region::open("/dev/rmemring0", Access::Consume)?);
    /// region.stop()?;
    /// region.device()?.reset(&ResetConfig::default())?;
    /// drop(region); // reopen to see the reset ring's layout
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn device(&self) -> Result<Device, Error> {
        let ioctls = self.ioctls()?;
        let fd = ioctls
            .fd
            .try_clone_to_owned()
            .map_err(|e| Error::io(IoOp::Dup, self.path(), e))?;
        Ok(Device {
            fd,
            path: self.path().to_owned(),
        })
    }

    /// The ioctl of [`Region::reset`], before it re-reads the layout.
    pub(crate) fn reset_ioctl(&self, config: &ResetConfig) -> Result<(), Error> {
        self.ioctls()?.reset(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CreateOptions;

    #[test]
    fn files_and_memfds_have_no_driver() {
        let region = Region::memfd(CreateOptions::default()).unwrap();
        assert!(matches!(region.stats(), Err(Error::NotADevice { .. })));
        let file = tempfile_in_tmp();
        assert!(matches!(
            Device::from_fd(File::open(&file).unwrap().into()),
            Err(Error::NotADevice { .. })
        ));
        std::fs::remove_file(&file).unwrap();
        // A character device that is no ring: its driver refuses the
        // request, and the errno reaches the caller.
        let null = Device::from_fd(File::open("/dev/null").unwrap().into()).unwrap();
        let err = null.stats().unwrap_err();
        assert!(
            matches!(
                err,
                Error::Ioctl {
                    request: crate::IoctlRequest::Stats,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.raw_os_error(), Some(libc::ENOTTY));
        assert_eq!(err.to_string(), "/dev/null: RMEMRING_IOC_STATS");
    }

    fn tempfile_in_tmp() -> PathBuf {
        let path = std::env::temp_dir().join(format!("rmemring-device-{}", std::process::id()));
        std::fs::write(&path, b"").unwrap();
        path
    }
}
