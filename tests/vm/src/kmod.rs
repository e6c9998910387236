//! Loading and unloading the driver, and the module-parameter checks.

use std::process::Command;

use anyhow::{
    bail,
    Context, //
};

use crate::{
    Env,
    Report, //
};

/// How to load the driver in this guest.
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
        let mark = mark_log();
        let status = Command::new("insmod")
            .arg(&self.module)
            .args(params.split_whitespace())
            .status()
            .map_err(|e| format!("running insmod: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(kernel_log_since(&mark))
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

    /// Loads the driver with the reference parameters unless it is loaded.
    pub(crate) fn ensure_loaded(&self) -> anyhow::Result<()> {
        if !self.loaded() {
            self.insmod(&self.params)
                .map_err(|log| anyhow::anyhow!("insmod {}: {log}", self.params))?;
        }
        Ok(())
    }
}

/// Writes a unique line into the kernel log and returns it, so the lines
/// that follow can be told apart from everything before (timestamps and
/// line counts are not reliable: clocks differ, and a full log buffer drops
/// its oldest lines).
pub(crate) fn mark_log() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mark = format!("rmemring-selftest: mark {}-{n}", std::process::id());
    let _ = std::fs::write("/dev/kmsg", format!("{mark}\n"));
    mark
}

/// The kernel log lines after the line `mark` wrote.
fn kernel_log_since(mark: &str) -> String {
    let log = Command::new("dmesg")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    let start = lines
        .iter()
        .rposition(|l| l.ends_with(mark))
        .map_or(0, |i| i + 1);
    lines[start..].join("\n")
}

/// Bad module parameters refuse the load with one clear line.
pub(crate) fn params(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    let kmod = &env.kmod;
    if kmod.params.is_empty() {
        report.skip(
            "params",
            "no module parameters: no PARAMS in /etc/rmemring/config, no memmap= on the command line",
        );
        return Ok(());
    }
    if kmod.loaded() {
        kmod.rmmod()?;
    }
    let good: Vec<(&str, &str)> = kmod
        .params
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .collect();
    let base = good
        .iter()
        .find(|p| p.0 == "phys_base")
        .map(|p| p.1)
        .unwrap_or("0");
    let size = good
        .iter()
        .find(|p| p.0 == "phys_size")
        .map(|p| p.1)
        .unwrap_or("0");
    let base_value = parse(base)?;
    let size_value = parse(size)?;
    let iomem = std::fs::read_to_string("/proc/iomem")?;
    let Some((bar_base, bar_what)) = pci_registers(&iomem) else {
        report.skip(
            "params: naming a PCI device's registers",
            "no PCI memory of three pages or more in /proc/iomem",
        );
        return Ok(());
    };
    let cases: Vec<(String, String, &str)> = vec![
        (
            "zero size".into(),
            format!("phys_base={base} phys_size=0"),
            "phys_size=0",
        ),
        (
            "unaligned size".into(),
            format!("phys_base={base} phys_size={:#x}", size_value + 1),
            "not page-aligned",
        ),
        (
            "unaligned base".into(),
            format!("phys_base={:#x} phys_size={size}", base_value + 0x800),
            "not page-aligned",
        ),
        (
            "overlapping System RAM".into(),
            format!("phys_base=0x1000000 phys_size={size}"),
            "overlaps System RAM",
        ),
        (
            "overflowing the address space".into(),
            "phys_base=0xfffffffffffff000 phys_size=0x100000".into(),
            "overflows",
        ),
        (
            "too small".into(),
            format!("phys_base={base} phys_size=0x2000"),
            "too small",
        ),
        (
            "claimed by someone else (the video ROM)".into(),
            "phys_base=0xc0000 phys_size=0x3000".into(),
            "already claimed",
        ),
        (
            format!("naming a PCI device's registers ({bar_what})"),
            format!("phys_base={bar_base:#x} phys_size=0x3000"),
            "not reserved memory",
        ),
        (
            "unknown cache mode".into(),
            format!("{} cache_mode=9", kmod.params),
            "cache_mode=9",
        ),
        (
            "unknown overflow mode".into(),
            format!("{} overflow=2", kmod.params),
            "overflow=2",
        ),
        (
            "setuid device mode".into(),
            format!("{} mode=0o4666", kmod.params),
            "mode=",
        ),
        // Without a region they would have nothing to apply to.
        (
            "a cache mode without a region".into(),
            "cache_mode=1".into(),
            "apply to the ring of phys_base and phys_size",
        ),
        (
            "a device mode without a region".into(),
            "mode=0660".into(),
            "apply to the ring of phys_base and phys_size",
        ),
    ];
    for (what, params, message) in cases {
        let result = kmod.insmod(&params);
        let name = format!("params: {what} refuses the load ({params})");
        match result {
            Ok(()) => {
                report.check(&name, Err(anyhow::anyhow!("the module loaded")));
                kmod.rmmod()?;
            }
            Err(log) => {
                // One line per load attempt, naming the parameter and the
                // reason (busybox's insmod may try twice: finit_module, then
                // init_module).
                // The first load of an out-of-tree module also says it
                // taints the kernel.
                let lines: Vec<&str> = log
                    .lines()
                    .filter(|l| l.contains("rmemring:") && !l.contains("taints kernel"))
                    .collect();
                let clear = !lines.is_empty() && lines.iter().all(|l| l.contains(message));
                report.expect(&name, clear && !kmod.loaded(), || {
                    format!("expected only rmemring lines with {message:?}; log:\n{log}")
                });
            }
        }
    }
    let loaded = kmod.insmod(&kmod.params);
    report.expect(
        "params: the reference parameters load",
        loaded.is_ok(),
        || format!("{loaded:?}"),
    );
    let iomem = std::fs::read_to_string("/proc/iomem")?;
    let claim = format!(
        "{:08x}-{:08x} : rmemring",
        base_value,
        base_value + size_value - 1
    );
    report.expect(
        "params: the region is claimed in /proc/iomem",
        iomem.contains(&claim),
        || format!("no {claim:?} in:\n{iomem}"),
    );
    lockdown(env, report)
}

/// Where a PCI device's registers (or, failing that, a PCI window) are:
/// memory that is not RAM and not reserved, which the driver must not
/// take for a ring whoever names it. The first device BAR, else the first
/// host-bridge window, of at least three pages (the smallest ring), with
/// its `/proc/iomem` line.
fn pci_registers(iomem: &str) -> Option<(u64, String)> {
    let entries: Vec<(u64, u64, &str)> = iomem
        .lines()
        .filter_map(|line| {
            let (range, name) = line.trim().split_once(" : ")?;
            let (start, end) = range.split_once('-')?;
            let start = u64::from_str_radix(start, 16).ok()?;
            let end = u64::from_str_radix(end, 16).ok()?;
            Some((start, end, name))
        })
        .filter(|&(start, end, _)| start % 4096 == 0 && end - start + 1 >= 0x3000)
        .collect();
    // A device BAR is named by its PCI address, "0000:00:02.0".
    let is_device = |name: &str| {
        let b = name.as_bytes();
        b.len() == 12 && b[4] == b':' && b[7] == b':' && b[10] == b'.'
    };
    entries
        .iter()
        .find(|e| is_device(e.2))
        .or_else(|| entries.iter().find(|e| e.2.starts_with("PCI Bus")))
        .map(|&(start, end, name)| (start, format!("{start:x}-{end:x} : {name}")))
}

/// A kernel locked down against parameters that name hardware refuses the
/// driver's `phys_base`, whatever it names (the reference region too).
/// Locking down cannot be undone, so this is the group's last check.
fn lockdown(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    let kmod = &env.kmod;
    let _ = std::fs::create_dir_all("/sys/kernel/security");
    let _ = Command::new("mount")
        .args(["-t", "securityfs", "securityfs", "/sys/kernel/security"])
        .status();
    let path = "/sys/kernel/security/lockdown";
    if !std::path::Path::new(path).exists() {
        report.skip(
            "params: lockdown refuses the parameters",
            "no lockdown LSM (CONFIG_SECURITY_LOCKDOWN_LSM, securityfs)",
        );
        return Ok(());
    }
    if kmod.loaded() {
        kmod.rmmod()?;
    }
    std::fs::write(path, "integrity").context("locking the kernel down")?;
    let result = kmod.insmod(&kmod.params);
    let name = "params: a locked-down kernel refuses the reference parameters";
    match result {
        Ok(()) => {
            report.check(name, Err(anyhow::anyhow!("the module loaded")));
            kmod.rmmod()?;
        }
        Err(log) => report.expect(
            name,
            log.contains("rmemring:") && log.contains("locked down") && !kmod.loaded(),
            || format!("expected a line saying the kernel is locked down; log:\n{log}"),
        ),
    }
    Ok(())
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
