// SPDX-License-Identifier: GPL-2.0

//! The device-tree path: a platform driver for `compatible = "rmemring,ring"`
//! nodes whose `memory-region` points at a `no-map` reserved-memory node.
//!
//! Optional properties: `rmemring,cache-mode` ("write-back", the default,
//! "write-combine", "uncached"), `rmemring,overflow` ("drop-new", the
//! default, "overwrite") and `label` (the device node's name instead of
//! `rmemringN`). See `dts/rmemring.yaml`.

use kernel::{
    device::{
        Core,
        Device, //
    },
    of,
    platform,
    prelude::*,
    str::CString, //
};

use crate::device::{
    RingDevice,
    RingOptions, //
};
use crate::region::Region;
use crate::shared::producer::Overflow;
use crate::sys::{
    self,
    CacheMode, //
};

/// The platform driver.
pub(crate) struct RingDriver;

kernel::of_device_table!(
    OF_TABLE,
    MODULE_OF_TABLE,
    <RingDriver as platform::Driver>::IdInfo,
    [(of::DeviceId::new(c"rmemring,ring"), ())]
);

impl platform::Driver for RingDriver {
    type IdInfo = ();
    type Data<'bound> = Pin<KBox<RingDevice>>;
    const OF_ID_TABLE: Option<of::IdTable<Self::IdInfo>> = Some(&OF_TABLE);

    fn probe<'bound>(
        pdev: &'bound platform::Device<Core<'_>>,
        _info: Option<&'bound Self::IdInfo>,
    ) -> impl PinInit<Self::Data<'bound>, Error> + 'bound {
        probe(pdev.as_ref())
    }
}

/// Reads a string property that must be one of `choices`; absent gives the
/// first choice.
fn choose<T: Copy>(dev: &Device, name: &CStr, choices: &[(&CStr, T)]) -> Result<T> {
    let Some(fwnode) = dev.fwnode() else {
        return Ok(choices[0].1);
    };
    if !fwnode.property_present(name) {
        return Ok(choices[0].1);
    }
    let value = fwnode.property_read::<CString>(name).required_by(dev)?;
    for (choice, result) in choices {
        if value.to_bytes() == choice.to_bytes() {
            return Ok(*result);
        }
    }
    dev_err!(dev, "{}: unknown value {:?}\n", name, value);
    Err(EINVAL)
}

fn probe(dev: &Device) -> Result<Pin<KBox<RingDevice>>> {
    let region = match sys::of_memory_region(dev) {
        Ok(region) => region,
        Err(e) if e == ENOENT => {
            dev_err!(
                dev,
                "no memory-region: point it at a no-map reserved-memory node\n"
            );
            return Err(EINVAL);
        }
        Err(e) => {
            dev_err!(dev, "memory-region cannot be resolved ({:?})\n", e);
            return Err(e);
        }
    };
    if !region.no_map {
        dev_err!(
            dev,
            "memory-region {:#x}+{:#x} lacks no-map: the kernel would use it as RAM\n",
            region.base,
            region.size
        );
        return Err(EINVAL);
    }
    let cache = choose(
        dev,
        c"rmemring,cache-mode",
        &[
            (c"write-back", CacheMode::WriteBack),
            (c"write-combine", CacheMode::WriteCombine),
            (c"uncached", CacheMode::Uncached),
        ],
    )?;
    let overflow = choose(
        dev,
        c"rmemring,overflow",
        &[
            (c"drop-new", Overflow::DropNew),
            (c"overwrite", Overflow::OverwriteOldest),
        ],
    )?;
    let name = match dev.fwnode() {
        Some(fwnode) if fwnode.property_present(c"label") => {
            Some(fwnode.property_read::<CString>(c"label").required_by(dev)?)
        }
        _ => None,
    };
    let claimed = Region::claim(region.base, region.size, cache).map_err(|e| {
        dev_err!(
            dev,
            "memory-region {:#x}+{:#x}: {}\n",
            region.base,
            region.size,
            e
        );
        e.errno()
    })?;
    let device = RingDevice::new(
        claimed,
        RingOptions {
            overflow,
            name,
            mode: 0o600,
        },
    )?;
    dev_info!(
        dev,
        "/dev/{}: {:#x} bytes at {:#x}, {} ring of {:#x} bytes\n",
        device.ring().name(),
        region.size,
        region.base,
        cache.name(),
        device.ring().region().geometry().data_size
    );
    Ok(device)
}
