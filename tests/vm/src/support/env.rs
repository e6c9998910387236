//! Where a group runs: the ring device, and how to load the driver.

use anyhow::bail;

use super::kmod::Kmod;

/// Where a test group runs.
pub(crate) struct Env {
    /// The ring device.
    pub(crate) device: String,
    /// Loading and unloading the driver.
    pub(crate) kmod: Kmod,
}

impl Env {
    /// The reference ring, `/dev/rmemring0`, and this guest's driver.
    pub(crate) fn from_guest() -> anyhow::Result<Self> {
        Ok(Self {
            device: "/dev/rmemring0".into(),
            kmod: Kmod::from_guest()?,
        })
    }

    /// The same driver, with the ring `/dev/<dev>`.
    pub(crate) fn with_device(&self, dev: &str) -> Self {
        Self {
            device: format!("/dev/{dev}"),
            kmod: self.kmod.clone(),
        }
    }

    /// Unloads the driver (which must succeed now), checks that its device
    /// and its claim on the region went with it, and loads it again.
    pub(crate) fn reload(&self) -> anyhow::Result<()> {
        self.kmod.rmmod()?;
        if std::path::Path::new(&self.device).exists() {
            bail!("{} still exists after rmmod", self.device);
        }
        let iomem = std::fs::read_to_string("/proc/iomem")?;
        if iomem.contains("rmemring") {
            bail!("the region is still claimed after rmmod:\n{iomem}");
        }
        self.kmod.ensure_loaded()
    }
}
