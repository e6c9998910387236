//! Loading and unloading the driver.

use std::process::Command;

use anyhow::{
    bail,
    Context, //
};

use rmemring_proto::modes::CacheMode;

use super::kernel_log;

/// How to load the driver in this guest.
#[derive(Clone)]
pub(crate) struct Kmod {
    /// Path of `rmemring.ko`.
    pub(crate) module: String,
    /// The reference parameters (empty on device-tree boards).
    pub(crate) params: String,
}

impl Kmod {
    /// The module and parameters of the reference VM: the harness writes
    /// `PARAMS=...` to `/etc/rmemring/config`; without it (a VM that does
    /// not load the driver itself), derive them from a `memmap=SIZE$BASE`
    /// on the kernel command line: the region is the largest ring that
    /// fits at BASE (two pages and a power-of-two data area, the part of
    /// any region the driver uses), and what is left of the reservation
    /// past it stays out (the reference VM reserves a guard page there,
    /// `xtask/src/reference.rs`).
    pub(crate) fn from_guest() -> anyhow::Result<Self> {
        let module =
            std::env::var("RMEMRING_MODULE").unwrap_or_else(|_| "/lib/modules/rmemring.ko".into());
        let config = std::fs::read_to_string("/etc/rmemring/config").unwrap_or_default();
        // Empty when the harness was told not to load the driver.
        let from_config = config
            .lines()
            .find_map(|l| {
                l.strip_prefix("PARAMS=")
                    .map(|p| p.trim_matches(|c| c == '"' || c == '\'').to_string())
            })
            .filter(|p| !p.is_empty());
        let params = match from_config {
            Some(p) => p,
            None => {
                let cmdline =
                    std::fs::read_to_string("/proc/cmdline").context("reading /proc/cmdline")?;
                cmdline
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("memmap="))
                    .and_then(|m| m.split_once('$'))
                    .and_then(|(size, base)| {
                        let size = ring_size(parse(size).ok()?);
                        Some(format!("phys_base={base} phys_size={size:#x}"))
                    })
                    .unwrap_or_default()
            }
        };
        Ok(Self { module, params })
    }

    /// Whether the driver is loaded.
    pub(crate) fn loaded(&self) -> bool {
        std::fs::read_to_string("/proc/modules")
            .map(|m| m.lines().any(|l| l.starts_with("rmemring ")))
            .unwrap_or(false)
    }

    /// `insmod` with `params`; on failure, the kernel log lines it produced.
    pub(crate) fn insmod(&self, params: &str) -> Result<(), String> {
        let mark = kernel_log::mark();
        let status = Command::new("insmod")
            .arg(&self.module)
            .args(params.split_whitespace())
            .status()
            .map_err(|e| format!("running insmod: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(kernel_log::dmesg_since(&mark))
        }
    }

    /// `rmmod rmemring`.
    pub(crate) fn rmmod(&self) -> anyhow::Result<()> {
        let status = Command::new("rmmod").arg("rmemring").status()?;
        if !status.success() {
            bail!("rmmod rmemring: {status}");
        }
        Ok(())
    }

    /// `rmmod rmemring` where refusals are expected and many: whether the
    /// driver is gone now; rmmod's complaints are not shown.
    pub(crate) fn try_rmmod(&self) -> bool {
        let removed = Command::new("rmmod")
            .arg("rmemring")
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        removed && !self.loaded()
    }

    /// The number the reference parameters give `name` (`phys_base`, say),
    /// if they name it.
    pub(crate) fn param(&self, name: &str) -> anyhow::Result<Option<u64>> {
        self.params
            .split_whitespace()
            .filter_map(|w| w.split_once('='))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| parse(value))
            .transpose()
    }

    /// [`Self::insmod`], whose failure is an error that quotes the log.
    pub(crate) fn load(&self, params: &str) -> anyhow::Result<()> {
        self.insmod(params)
            .map_err(|log| anyhow::anyhow!("insmod {params}: {log}"))
    }

    /// Loads the driver afresh with the reference parameters and the ring
    /// mapped in `mode` (`cache_mode`).
    pub(crate) fn reload_in(&self, mode: CacheMode) -> anyhow::Result<()> {
        if self.loaded() {
            self.rmmod()?;
        }
        self.load(&format!("{} cache_mode={}", self.params, mode.abi()))
    }

    /// Loads the driver afresh with the reference parameters alone.
    pub(crate) fn reload(&self) -> anyhow::Result<()> {
        if self.loaded() {
            self.rmmod()?;
        }
        self.ensure_loaded()
    }

    /// Loads the driver with the reference parameters unless it is loaded.
    pub(crate) fn ensure_loaded(&self) -> anyhow::Result<()> {
        if !self.loaded() {
            self.load(&self.params)?;
        }
        Ok(())
    }
}

/// The bytes of the largest ring in `size` bytes: the control and consumer
/// pages plus the largest power-of-two data area that fits.
fn ring_size(size: u64) -> u64 {
    const PAGE: u64 = 4096;
    match size.checked_sub(2 * PAGE) {
        Some(data) if data > 0 => 2 * PAGE + (1 << data.ilog2()),
        _ => size,
    }
}

/// Parses a decimal or `0x` hexadecimal number.
pub(crate) fn parse(s: &str) -> anyhow::Result<u64> {
    let r = match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    r.with_context(|| format!("bad number {s:?}"))
}
