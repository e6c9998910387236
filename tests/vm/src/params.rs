//! Module parameters: bad ones refuse the load with one clear line, the
//! reference ones load and claim the region, and a locked-down kernel
//! refuses them all.

use std::process::Command;

use anyhow::Context;
use rmemring_proto::modes::{
    CacheMode,
    Overflow, //
};

use crate::support::kmod::parse;
use crate::support::{
    Env,
    Report, //
};

/// A `cache_mode` parameter value that is no mode.
const NO_CACHE_MODE: u32 = 9;
/// An `overflow` parameter value that is no mode.
const NO_OVERFLOW_MODE: u32 = 2;
const _: () = assert!(
    CacheMode::from_abi(NO_CACHE_MODE).is_none()
        && Overflow::from_param(NO_OVERFLOW_MODE).is_none()
);

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
    let no_cache_mode = format!("cache_mode={NO_CACHE_MODE}");
    let no_overflow_mode = format!("overflow={NO_OVERFLOW_MODE}");
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
            format!("{} {no_cache_mode}", kmod.params),
            &no_cache_mode,
        ),
        (
            "unknown overflow mode".into(),
            format!("{} {no_overflow_mode}", kmod.params),
            &no_overflow_mode,
        ),
        (
            "setuid device mode".into(),
            format!("{} mode=0o4666", kmod.params),
            "mode=",
        ),
        // Without a region they would have nothing to apply to.
        (
            "a cache mode without a region".into(),
            format!("cache_mode={}", CacheMode::WriteCombine.abi()),
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
