// SPDX-License-Identifier: GPL-2.0

//! The module-parameter path: a region reserved on the kernel command line
//! (`memmap=SIZE$BASE` or `mem=`) and named by `phys_base`/`phys_size`.
//!
//! Every parameter is checked before anything is touched, and a bad one
//! refuses the load with one line in the log naming it and the reason.

use kernel::prelude::*;

use crate::device::{
    RingDevice,
    RingOptions, //
};
use crate::proto::modes::Overflow;
use crate::region::{
    Region,
    Reserved, //
};
use crate::sys::{
    self,
    CacheMode, //
};

/// The module parameters, as loaded.
pub(crate) struct Params {
    /// Physical base of the region, 0 for none.
    pub(crate) phys_base: u64,
    /// Size of the region in bytes, 0 for none.
    pub(crate) phys_size: u64,
    /// `CACHE_*`: 0 write-back, 1 write-combine, 2 uncached.
    pub(crate) cache_mode: u32,
    /// 0 drop-new, 1 overwrite-oldest.
    pub(crate) overflow: u32,
    /// Device node permissions.
    pub(crate) mode: u32,
    pub(crate) retain: u32,
}

impl Params {
    /// The module's parameters (set once, at load).
    pub(crate) fn of_module() -> Self {
        use crate::module_parameters as m;
        Self {
            phys_base: *m::phys_base.value(),
            phys_size: *m::phys_size.value(),
            cache_mode: *m::cache_mode.value(),
            overflow: *m::overflow.value(),
            mode: *m::mode.value(),
            retain: *m::retain.value(),
        }
    }
}

/// The `mode` parameter's default: the device node is root's alone.
pub(crate) const DEFAULT_MODE: u32 = 0o600;

/// The ring the parameters describe, checked.
pub(crate) struct ParamRing {
    pub(crate) base: u64,
    pub(crate) size: u64,
    pub(crate) cache: CacheMode,
    overflow: Overflow,
    mode: u16,
    retain: bool,
}

/// Creates the device the parameters describe, `None` if they describe
/// none (both `phys_base` and `phys_size` zero: device-tree use only).
/// The module's load does this, and hands the device to the platform
/// driver through the parameter ring's platform device (`platform_driver`).
pub(crate) fn probe(p: &Params) -> Result<Option<Pin<KBox<RingDevice>>>> {
    let Some(ring) = check(p)? else {
        return Ok(None);
    };
    let region =
        Region::claim(ring.base, ring.size, ring.cache, Reserved::Required).map_err(|e| {
            pr_err!(
                "phys_base={:#x} phys_size={:#x} rejected: {}\n",
                ring.base,
                ring.size,
                e
            );
            e.errno()
        })?;
    create(&ring, region).map(Some)
}

/// The ring the parameters describe, `None` if they describe none; a bad
/// parameter is named in the log and refused.
pub(crate) fn check(p: &Params) -> Result<Option<ParamRing>> {
    if p.phys_base == 0 && p.phys_size == 0 {
        // Device-tree use only. The other parameters describe the
        // parameter ring; given without one they would be ignored, so say
        // so instead of loading as if they had taken effect.
        if p.cache_mode != 0 || p.overflow != 0 || p.mode != DEFAULT_MODE || p.retain != 0 {
            pr_err!(
                "cache_mode, overflow, mode and retain apply to the ring of phys_base and phys_size, \
                 and none was given (device-tree rings take them from their node)\n"
            );
            return Err(EINVAL);
        }
        return Ok(None);
    }
    if p.phys_size == 0 {
        pr_err!(
            "phys_size=0: a region needs a size (phys_base={:#x})\n",
            p.phys_base
        );
        return Err(EINVAL);
    }
    let Some(cache) = CacheMode::from_abi(p.cache_mode) else {
        pr_err!(
            "cache_mode={}: unknown (0 write-back, 1 write-combine, 2 uncached)\n",
            p.cache_mode
        );
        return Err(EINVAL);
    };
    let Some(overflow) = Overflow::from_param(p.overflow) else {
        pr_err!(
            "overflow={}: unknown (0 drop-new, 1 overwrite-oldest)\n",
            p.overflow
        );
        return Err(EINVAL);
    };
    let retain = match p.retain {
        0 => false,
        1 => true,
        other => {
            pr_err!(
                "retain={}: unknown (0 start empty, 1 keep for the next boot)\n",
                other
            );
            return Err(EINVAL);
        }
    };
    if retain && overflow != Overflow::OverwriteOldest {
        pr_err!(
            "retain=1 needs overflow=1: only an overwrite-mode ring is kept for the next boot \
             (a flight recorder; docs/flight-recorder.md)\n"
        );
        return Err(EINVAL);
    }
    let Ok(mode) = u16::try_from(p.mode) else {
        pr_err!("mode={:#o}: not a permission mode\n", p.mode);
        return Err(EINVAL);
    };
    // Read and write bits only: a ring device is never executable, setuid
    // or sticky.
    if mode & !0o666 != 0 {
        pr_err!(
            "mode={:#o}: only read/write permission bits (0o666) are allowed\n",
            mode
        );
        return Err(EINVAL);
    }
    // Parameters that name physical memory are what lockdown exists to
    // refuse (the kernel's own `module_param_hw` ones are); a locked-down
    // machine describes its rings in the device tree.
    if sys::params_locked_down() {
        pr_err!(
            "phys_base={:#x} phys_size={:#x} refused: the kernel is locked down, and module \
             parameters may not name physical memory (describe the ring in the device tree)\n",
            p.phys_base,
            p.phys_size
        );
        return Err(EPERM);
    }
    Ok(Some(ParamRing {
        base: p.phys_base,
        size: p.phys_size,
        cache,
        overflow,
        mode,
        retain,
    }))
}

/// Lays the ring out in `region`, claimed for it, and registers its device.
pub(crate) fn create(ring: &ParamRing, region: Region) -> Result<Pin<KBox<RingDevice>>> {
    let device = RingDevice::new(
        region,
        RingOptions {
            overflow: ring.overflow,
            name: None,
            mode: ring.mode,
            retain: ring.retain,
        },
    )?;
    pr_info!(
        "{}: {:#x} bytes at {:#x}, {} ring of {:#x} bytes ({})\n",
        device.ring().name(),
        ring.size,
        ring.base,
        ring.cache.name(),
        device.ring().region().geometry().data_size,
        ring.overflow.name()
    );
    Ok(device)
}
