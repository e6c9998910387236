// SPDX-License-Identifier: GPL-2.0

//! The platform driver: it binds `compatible = "rmemring,ring"` device-tree
//! nodes whose `memory-region` points at a `no-map` reserved-memory node,
//! and the module-parameter ring's platform device, `rmemring.0`, which the
//! module registers for the ring its parameters describe (no firmware node;
//! it matches by name). Either one's unbind (`echo ID >
//! /sys/bus/platform/drivers/rmemring/unbind`) revokes its ring the same
//! way, and a bind makes it anew, the parameter ring from the module's
//! parameters.
//!
//! Optional properties: `rmemring,retain`, `rmemring,cache-mode`, `rmemring,overflow` and
//! `label` (the device node's name instead of `rmemringN`); their values
//! and rules are the protocol's (`proto/src/devicetree.rs`), and
//! `dts/rmemring.yaml` states them for dt-schema.
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
use crate::params;
use crate::proto::devicetree;
use crate::proto::modes::Overflow;
use crate::region::{
    Region,
    RegionError,
    Reserved, //
};
use crate::sys::{
    self,
    CacheMode, //
};

/// The driver's name, and the parameter ring's platform device's.
pub(crate) const NAME: &CStr = c"rmemring";

/// The parameter ring's platform device's instance: it is `rmemring.0`.
const PARAM_DEVICE_ID: i32 = 0;

/// The platform driver.
pub(crate) struct RingDriver;

kernel::of_device_table!(
    OF_TABLE,
    MODULE_OF_TABLE,
    <RingDriver as platform::Driver>::IdInfo,
    [(of::DeviceId::new(devicetree::COMPATIBLE), ())]
);

impl platform::Driver for RingDriver {
    type IdInfo = ();
    type Data<'bound> = BoundRing;
    const OF_ID_TABLE: Option<of::IdTable<Self::IdInfo>> = Some(&OF_TABLE);

    fn probe<'bound>(
        pdev: &'bound platform::Device<Core<'_>>,
        info: Option<&'bound Self::IdInfo>,
    ) -> impl PinInit<Self::Data<'bound>, Error> + 'bound {
        let dev = pdev.as_ref();
        match (info, dev.fwnode()) {
            (Some(()), _) => probe_node(dev),
            (None, None) => probe_params(dev),
            // A node named like the driver, whose compatible is another's:
            // not a ring (refused quietly, as a mismatch).
            (None, Some(_)) => Err(ENODEV),
        }
    }
}

/// The longest device name a slot of [`RINGS`] holds: the longest `label`
/// the binding allows.
const NAME_MAX: usize = devicetree::LABEL_MAX;

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

/// The parameter ring the module's load made, on its way to the probe of
/// its platform device.
struct Pending {
    device: Pin<KBox<RingDevice>>,
    base: u64,
    size: u64,
}

/// The driver's state.
struct Rings {
    slots: [Slot; SLOTS],
    /// Set only while `register_param_device` registers the device.
    pending: Option<Pending>,
}

kernel::sync::global_lock! {
    // SAFETY: `init` initialises it in the module initialiser, before the
    // platform driver is registered, which is before its first use.
    unsafe(uninit) static RINGS: Mutex<Rings> = Rings {
        slots: [Slot::FREE; SLOTS],
        pending: None,
    };
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
        if let Some(slot) = rings.slots.get_mut(self.slot) {
            slot.state = SlotState::Retired;
        }
    }
}

/// Reads a string property that must be one of `values` (the protocol's
/// tables, `proto::devicetree`); absent gives the first.
fn choose<T: Copy>(dev: &Device, name: &CStr, values: &[(&str, T)]) -> Result<T> {
    let Some(fwnode) = dev.fwnode() else {
        return Ok(values[0].1);
    };
    if !fwnode.property_present(name) {
        return Ok(values[0].1);
    }
    let value = fwnode.property_read::<CString>(name).required_by(dev)?;
    if let Some(result) = devicetree::lookup(values, value.to_bytes()) {
        return Ok(result);
    }
    dev_err!(dev, "{}: unknown value {:?}\n", name, value);
    Err(EINVAL)
}

/// The node's `label`, checked.
fn label(dev: &Device) -> Result<Option<CString>> {
    let Some(fwnode) = dev.fwnode() else {
        return Ok(None);
    };
    if !fwnode.property_present(devicetree::LABEL_PROPERTY) {
        return Ok(None);
    }
    let label = fwnode
        .property_read::<CString>(devicetree::LABEL_PROPERTY)
        .required_by(dev)?;
    if let Some(why) = devicetree::label_defect(label.to_bytes()) {
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

/// Binds a device-tree node.
fn probe_node(dev: &Device) -> Result<BoundRing> {
    let region = memory_region(dev)?;
    let cache = choose(
        dev,
        devicetree::CACHE_MODE_PROPERTY,
        &devicetree::CACHE_MODE_VALUES,
    )?;
    let overflow = choose(
        dev,
        devicetree::OVERFLOW_PROPERTY,
        &devicetree::OVERFLOW_VALUES,
    )?;
    let name = label(dev)?;
    let retain = dev
        .fwnode()
        .is_some_and(|node| node.property_present(devicetree::RETAIN_PROPERTY));
    if retain && overflow != Overflow::OverwriteOldest {
        dev_err!(
            dev,
            "rmemring,retain needs rmemring,overflow = \"overwrite\": only an overwrite-mode \
             ring is kept for the next boot\n"
        );
        return Err(EINVAL);
    }
    let (base, size) = (region.base, region.size);

    // Held until the slot is filled in: two probes with the same label
    // cannot both pass the check.
    let mut rings = RINGS.lock();
    if let Some(label) = &name {
        let taken = rings
            .slots
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
    let claimed = claim(
        dev,
        &rings,
        "memory-region",
        (base, size),
        cache,
        Reserved::Checked,
    )?;
    // For the message if the name turns out to be taken by another driver.
    let wanted = name.as_ref().map(|n| n.to_cstring()).transpose()?;
    let device = RingDevice::new(
        claimed,
        RingOptions {
            overflow,
            name,
            mode: 0o600,
            retain,
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
    dev_info!(
        dev,
        "/dev/{}: {:#x} bytes at {:#x}, {} ring of {:#x} bytes\n",
        device.ring().name(),
        size,
        base,
        cache.name(),
        device.ring().region().geometry().data_size
    );
    bound(dev, &mut rings, device, base, size)
}

/// Binds the parameter ring's platform device: to the ring the module's
/// load made ([`register_param_device`]), or, in a bind after an unbind,
/// to one made anew from the module's parameters (checked again: a kernel
/// locked down since the load refuses them).
fn probe_params(dev: &Device) -> Result<BoundRing> {
    let mut rings = RINGS.lock();
    if let Some(Pending { device, base, size }) = rings.pending.take() {
        return bound(dev, &mut rings, device, base, size);
    }
    let Some(ring) = params::check(&params::Params::of_module())? else {
        // No parameter ring: a device of the driver's name that is not ours.
        return Err(ENODEV);
    };
    let claimed = claim(
        dev,
        &rings,
        "phys_base/phys_size region",
        (ring.base, ring.size),
        ring.cache,
        Reserved::Required,
    )?;
    let device = params::create(&ring, claimed)?;
    bound(dev, &mut rings, device, ring.base, ring.size)
}

/// Claims `range` (base, size) for a probe. A refusal is named in the log,
/// with the ring of an earlier binding that still holds the range, if
/// that is why.
fn claim(
    dev: &Device,
    rings: &Rings,
    what: &str,
    (base, size): (u64, u64),
    cache: CacheMode,
    reserved: Reserved,
) -> Result<Region> {
    Region::claim(base, size, cache, reserved).map_err(|e| {
        let retired = rings
            .slots
            .iter()
            .find(|s| s.state == SlotState::Retired && s.overlaps(base, size));
        match retired {
            Some(old) if e == RegionError::Busy => dev_err!(
                dev,
                "{} {:#x}+{:#x} is still held by the ring of an earlier binding \
                 (/dev/{}): a process still has that device open or mapped, or a kernel \
                 module holds the ring (rmemring_get); close it or unload that module, \
                 then bind again\n",
                what,
                base,
                size,
                kernel::str::BStr::from_bytes(old.name())
            ),
            _ => dev_err!(dev, "{} {:#x}+{:#x}: {}\n", what, base, size, e),
        }
        e.errno()
    })
}

/// Records `device`, whose ring holds `[base, base + size)`, as bound in a
/// slot of [`RINGS`].
fn bound(
    dev: &Device,
    rings: &mut Rings,
    device: Pin<KBox<RingDevice>>,
    base: u64,
    size: u64,
) -> Result<BoundRing> {
    // The range is claimed again, so the rings that held it before are gone.
    for slot in rings.slots.iter_mut() {
        if slot.state == SlotState::Retired && slot.overlaps(base, size) {
            *slot = Slot::FREE;
        }
    }
    let free = rings
        .slots
        .iter()
        .position(|s| s.state == SlotState::Free)
        .or_else(|| {
            rings
                .slots
                .iter()
                .position(|s| s.state == SlotState::Retired)
        });
    let Some(slot) = free else {
        dev_err!(dev, "too many rings: this driver makes at most {}\n", SLOTS);
        return Err(ENOSPC);
    };
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
    rings.slots[slot] = entry;
    Ok(BoundRing {
        device: Some(device),
        slot,
    })
}

/// Registers the parameter ring's platform device, `rmemring.0`, which
/// this driver (registered already) binds at once to `device`, the ring
/// the module's load made from its parameters at `[base, base + size)`.
/// The load made it before the driver's registration, so that the
/// parameter ring is `/dev/rmemring0` whatever the device tree holds, and
/// so that a bad parameter refuses the load with its own message.
pub(crate) fn register_param_device(
    device: Pin<KBox<RingDevice>>,
    base: u64,
    size: u64,
) -> Result<sys::PlatformDevice> {
    RINGS.lock().pending = Some(Pending { device, base, size });
    let pdev = sys::PlatformDevice::register(NAME, PARAM_DEVICE_ID);
    // Not taken if the probe did not run (or ran elsewhere): dropped here.
    let leftover = RINGS.lock().pending.take();
    let pdev = pdev.inspect_err(|e| {
        pr_err!(
            "the parameter ring's platform device cannot be registered ({:?})\n",
            e
        )
    })?;
    if leftover.is_some() || !pdev.is_bound() {
        pr_err!(
            "the parameter ring's platform device was not bound at its registration \
             (is the module's probing asynchronous, async_probe?)\n"
        );
        return Err(ENODEV);
    }
    Ok(pdev)
}
