//! Where a group runs: the ring device, and how to load the driver.

use anyhow::bail;

use super::kmod::Kmod;

/// Where a test group runs.
pub(crate) struct Env {
    /// The ring device.
    pub(crate) device: String,
    /// Loading and unloading the driver.
    pub(crate) kmod: Kmod,
    /// The guest runs the debug kernel (`RMEMRING_DEBUG_KERNEL=1`, set by
    /// the VM's `/init`), several times slower: the longest checks run a
    /// tenth of their length there (see [`Env::scaled`]).
    pub(crate) debug_kernel: bool,
}

impl Env {
    /// The reference ring, `/dev/rmemring0`, and this guest's driver.
    pub(crate) fn from_guest() -> anyhow::Result<Self> {
        Ok(Self {
            device: "/dev/rmemring0".into(),
            kmod: Kmod::from_guest()?,
            debug_kernel: std::env::var_os("RMEMRING_DEBUG_KERNEL").is_some_and(|v| v == "1"),
        })
    }

    /// The same driver, with the ring `/dev/<dev>`.
    pub(crate) fn with_device(&self, dev: &str) -> Self {
        Self {
            device: format!("/dev/{dev}"),
            kmod: self.kmod.clone(),
            debug_kernel: self.debug_kernel,
        }
    }

    /// `n` on the normal kernel, a tenth of it on the debug kernel: what the
    /// debug kernel is for (KASAN, lockdep and the VM checks watching the
    /// driver's paths) needs every path taken, not the normal kernel's
    /// volume, which it would take ten minutes to get through under TCG.
    pub(crate) fn scaled(&self, n: u64) -> u64 {
        if self.debug_kernel {
            n / 10
        } else {
            n
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

/// What the host wrote for the arm64 board, from its device-tree overlay:
/// the rings' regions, modes and device names (see the `board` group).
pub(crate) fn board_expectations() -> anyhow::Result<rmemring_board_expect::Expectations> {
    use anyhow::Context;
    let path = std::path::Path::new("/add").join(rmemring_board_expect::FILE_NAME);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {} (written by cargo xtask from the overlay)",
            path.display()
        )
    })?;
    rmemring_board_expect::Expectations::from_json(&text)
        .with_context(|| format!("parsing {}", path.display()))
}
