// SPDX-License-Identifier: GPL-2.0

//! The device-tree path: a platform driver for `compatible = "rmemring,ring"`
//! nodes whose `memory-region` points at a `no-map` reserved-memory node.
//!
//! Optional properties: `rmemring,cache-mode` ("write-back", the default,
//! "write-combine", "uncached"), `rmemring,overflow` ("drop-new", the
//! default, "overwrite") and `label` (the device node's name instead of
//! `rmemringN`). See `dts/rmemring.yaml`.
//!
//! Every refusal names its reason in one `dev_err!` line. [`RINGS`] keeps
//! what the probe needs to explain two of them: a `label` another ring's
//! device already has, and a rebind whose region is still held by the ring
//! of the previous binding (an open or mapped file keeps that ring, and with
//! it the region's claim, until it is closed: see `docs/device-tree.md`,
//! "Unbind and rebind").

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
use crate::region::{
    Region,
    RegionError,
    Reserved, //
};
use crate::proto::producer_core::Overflow;
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
    type Data<'bound> = BoundRing;
    const OF_ID_TABLE: Option<of::IdTable<Self::IdInfo>> = Some(&OF_TABLE);

    fn probe<'bound>(
        pdev: &'bound platform::Device<Core<'_>>,
        _info: Option<&'bound Self::IdInfo>,
    ) -> impl PinInit<Self::Data<'bound>, Error> + 'bound {
        probe(pdev.as_ref())
    }
}

/// The longest device name a slot of [`RINGS`] holds: the longest `label`
/// the binding allows (63 characters).
const NAME_MAX: usize = 63;

/// How many rings [`RINGS`] tracks: as many as there are device numbers
/// (`device::INDICES` has 64).
const SLOTS: usize = 64;

/// What one slot of [`RINGS`] describes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SlotState {
    /// Nothing.
    Free,
    /// A bound ring: its device exists.
    Bound,
    /// A ring whose node was unbound. Its region may still be claimed, by
    /// files of the old device that are still open or mapped; the slot is
    /// forgotten once a probe claims the range again.
    Retired,
}

/// A ring this driver created, for the probe's messages.
struct Slot {
    state: SlotState,
    base: u64,
    size: u64,
    /// The device's name (`/dev/<name>`), `name_len` bytes.
    name: [u8; NAME_MAX],
    name_len: usize,
}

impl Slot {
    const FREE: Slot = Slot {
        state: SlotState::Free,
        base: 0,
        size: 0,
        name: [0; NAME_MAX],
        name_len: 0,
    };

    fn name(&self) -> &[u8] {
        &self.name[..self.name_len.min(NAME_MAX)]
    }

    fn overlaps(&self, base: u64, size: u64) -> bool {
        base < self.base.saturating_add(self.size) && self.base < base.saturating_add(size)
    }
}

kernel::sync::global_lock! {
    // SAFETY: `init` initialises it in the module initialiser, before the
    // platform driver is registered, which is before its first use.
    unsafe(uninit) static RINGS: Mutex<[Slot; SLOTS]> = [Slot::FREE; SLOTS];
}

/// Initialises the driver's state. Called once, by the module initialiser,
/// before the platform driver is registered.
pub(crate) fn init() {
    // SAFETY: Called exactly once (from the module initialiser), before
    // anything can probe and so before any use of `RINGS`.
    unsafe { RINGS.init() };
}

/// A bound node: its ring device, and its slot in [`RINGS`].
pub(crate) struct BoundRing {
    /// Always `Some` until dropped.
    device: Option<Pin<KBox<RingDevice>>>,
    slot: usize,
}

impl Drop for BoundRing {
    fn drop(&mut self) {
        // The device goes first (its name is free again once this returns),
        // then the slot says that its ring may outlive it.
        drop(self.device.take());
        let mut rings = RINGS.lock();
        if let Some(slot) = rings.get_mut(self.slot) {
            slot.state = SlotState::Retired;
        }
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

/// Why `label` cannot name a device, if it cannot: the binding's pattern
/// (`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`), and not `rmemringN`, the names of
/// unlabelled rings.
fn bad_label(label: &[u8]) -> Option<&'static str> {
    let first_ok = label.first().is_some_and(u8::is_ascii_alphanumeric);
    let rest_ok = label
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    if label.is_empty() || label.len() > NAME_MAX || !first_ok || !rest_ok {
        return Some(
            "not a device name: 1 to 63 letters, digits, '_', '.' or '-', starting with a \
             letter or digit",
        );
    }
    let numbered = label
        .strip_prefix(b"rmemring")
        .is_some_and(|n| !n.is_empty() && n.iter().all(u8::is_ascii_digit));
    if numbered {
        return Some("names of the form rmemringN belong to unlabelled rings");
    }
    None
}

/// The node's `label`, checked.
fn label(dev: &Device) -> Result<Option<CString>> {
    let Some(fwnode) = dev.fwnode() else {
        return Ok(None);
    };
    if !fwnode.property_present(c"label") {
        return Ok(None);
    }
    let label = fwnode.property_read::<CString>(c"label").required_by(dev)?;
    if let Some(why) = bad_label(label.to_bytes()) {
        dev_err!(dev, "label {:?}: {}\n", label, why);
        return Err(EINVAL);
    }
    Ok(Some(label))
}

/// The node's region, checked: it exists, is static and is `no-map`.
fn memory_region(dev: &Device) -> Result<sys::OfRegion> {
    if !cfg!(CONFIG_OF_RESERVED_MEM) {
        dev_err!(
            dev,
            "memory-region cannot be resolved: the kernel lacks CONFIG_OF_RESERVED_MEM\n"
        );
        return Err(EINVAL);
    }
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
            dev_err!(
                dev,
                "memory-region cannot be resolved ({:?}): is it a /reserved-memory child the \
                 kernel reserved (see 'OF: reserved mem' in the log)?\n",
                e
            );
            return Err(e);
        }
    };
    if !region.static_reg {
        dev_err!(
            dev,
            "memory-region {:#x}+{:#x} has no static reg: it was allocated at boot ('size'), \
             which the binding does not allow; give the region a fixed 'reg'\n",
            region.base,
            region.size
        );
        return Err(EINVAL);
    }
    if !region.no_map {
        dev_err!(
            dev,
            "memory-region {:#x}+{:#x} lacks no-map: the kernel would use it as RAM\n",
            region.base,
            region.size
        );
        return Err(EINVAL);
    }
    Ok(region)
}

fn probe(dev: &Device) -> Result<BoundRing> {
    let region = memory_region(dev)?;
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
    let name = label(dev)?;
    let (base, size) = (region.base, region.size);

    // Held until the slot is filled in: two probes with the same label
    // cannot both pass the check.
    let mut rings = RINGS.lock();
    if let Some(label) = &name {
        let taken = rings
            .iter()
            .any(|s| s.state == SlotState::Bound && s.name() == label.to_bytes());
        if taken {
            dev_err!(
                dev,
                "label {:?}: /dev/{} is already taken by another ring\n",
                label,
                &**label
            );
            return Err(EEXIST);
        }
    }
    let claimed = match Region::claim(base, size, cache, Reserved::Checked) {
        Ok(claimed) => claimed,
        Err(e) => {
            let retired = rings
                .iter()
                .find(|s| s.state == SlotState::Retired && s.overlaps(base, size));
            match retired {
                Some(old) if e == RegionError::Busy => dev_err!(
                    dev,
                    "memory-region {:#x}+{:#x} is still held by the ring of an earlier binding \
                     (/dev/{}): a process still has that device open or mapped; close it, \
                     then bind again\n",
                    base,
                    size,
                    kernel::str::BStr::from_bytes(old.name())
                ),
                _ => dev_err!(dev, "memory-region {:#x}+{:#x}: {}\n", base, size, e),
            }
            return Err(e.errno());
        }
    };
    // The range is claimed again, so the rings that held it before are gone.
    for slot in rings.iter_mut() {
        if slot.state == SlotState::Retired && slot.overlaps(base, size) {
            *slot = Slot::FREE;
        }
    }
    let free = rings
        .iter()
        .position(|s| s.state == SlotState::Free)
        .or_else(|| rings.iter().position(|s| s.state == SlotState::Retired));
    let Some(slot) = free else {
        dev_err!(dev, "too many rings: this driver makes at most {}\n", SLOTS);
        return Err(ENOSPC);
    };
    // For the message if the name turns out to be taken by another driver.
    let wanted = name.as_ref().map(|n| n.to_cstring()).transpose()?;
    let device = RingDevice::new(
        claimed,
        RingOptions {
            overflow,
            name,
            mode: 0o600,
        },
    )
    .inspect_err(|e| match &wanted {
        Some(label) if *e == EEXIST => dev_err!(
            dev,
            "label {:?}: /dev/{} is already taken by another device (see /sys/class/misc)\n",
            label,
            &**label
        ),
        _ => dev_err!(dev, "the ring device cannot be registered ({:?})\n", e),
    })?;
    let dev_name = device.ring().name().to_bytes();
    let len = dev_name.len().min(NAME_MAX);
    let mut entry = Slot {
        state: SlotState::Bound,
        base,
        size,
        name: [0; NAME_MAX],
        name_len: len,
    };
    entry.name[..len].copy_from_slice(&dev_name[..len]);
    rings[slot] = entry;
    drop(rings);

    dev_info!(
        dev,
        "/dev/{}: {:#x} bytes at {:#x}, {} ring of {:#x} bytes\n",
        device.ring().name(),
        size,
        base,
        cache.name(),
        device.ring().region().geometry().data_size
    );
    Ok(BoundRing {
        device: Some(device),
        slot,
    })
}
