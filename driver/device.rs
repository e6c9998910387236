// SPDX-License-Identifier: GPL-2.0

//! A ring device: a claimed region laid out as a ring, `/dev/NAME` and its
//! debugfs statistics. Both the module-parameter path and the device-tree
//! path end here.

use core::sync::atomic::{
    AtomicU64,
    Ordering, //
};

use kernel::{
    debugfs::{
        Dir,
        File, //
    },
    fmt,
    prelude::*,
    str::CString,
    sync::Arc, //
};

use crate::fops::MiscRegistration;
use crate::proto::modes::Overflow;
use crate::region::Region;
use crate::ring::Ring;

/// Device numbers in use, one bit each: `/dev/rmemringN` takes the lowest
/// free `N`, so unbinding and rebinding gives the same name back. Devices
/// named by a `label` take numbers from the top, so the numbering of the
/// unnamed ones does not depend on probe order.
static INDICES: AtomicU64 = AtomicU64::new(0);

/// A device number, released on drop.
struct Index(u32);

impl Index {
    fn take(from_top: bool) -> Result<Self> {
        let mut used = INDICES.load(Ordering::Relaxed);
        loop {
            let free = if from_top {
                (u64::BITS - 1)
                    .checked_sub((!used).leading_zeros())
                    .unwrap_or(u64::BITS)
            } else {
                (!used).trailing_zeros()
            };
            if free >= u64::BITS {
                return Err(ENOSPC);
            }
            match INDICES.compare_exchange(
                used,
                used | (1 << free),
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(Self(free)),
                Err(now) => used = now,
            }
        }
    }
}

impl Drop for Index {
    fn drop(&mut self) {
        INDICES.fetch_and(!(1u64 << self.0), Ordering::AcqRel);
    }
}

/// How a ring device is set up, from module parameters or device-tree
/// properties.
pub(crate) struct RingOptions {
    /// What the producer does when the ring is full.
    pub(crate) overflow: Overflow,
    /// `/dev/<name>` instead of `/dev/rmemringN`.
    pub(crate) name: Option<CString>,
    /// Permissions of the device node.
    pub(crate) mode: u16,
    /// Keep what the region holds for the next boot, and serve a previous
    /// boot's ring found there (docs/flight-recorder.md).
    pub(crate) retain: bool,
}

/// A registered ring device.
#[pin_data(PinnedDrop)]
pub(crate) struct RingDevice {
    ring: Arc<Ring>,
    #[pin]
    misc: MiscRegistration,
    #[pin]
    stats: File<Arc<Ring>>,
    debugfs: Dir,
    index: Index,
    registered: Registered,
}

/// The ring's entry in the in-kernel API's registry, removed on drop.
struct Registered(Arc<Ring>);

impl Registered {
    fn new(ring: &Arc<Ring>) -> Result<Self> {
        crate::api::register(ring)?;
        Ok(Self(ring.clone()))
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        crate::api::unregister(&self.0);
    }
}

impl RingDevice {
    /// Lays a ring out in `region` and registers its device.
    pub(crate) fn new(region: Region, options: RingOptions) -> Result<Pin<KBox<Self>>> {
        let index = Index::take(options.name.is_some())?;
        let name = match options.name {
            Some(name) => name,
            None => CString::try_from_fmt(fmt!("rmemring{}", index.0))?,
        };
        let ring = Ring::new(index.0, name, region, options.overflow, options.retain)?;
        let debugfs = Dir::new(ring.name());
        let for_registry = ring.clone();
        KBox::try_pin_init(
            try_pin_init!(Self {
                misc <- MiscRegistration::register(ring.clone(), options.mode),
                stats <- debugfs.read_callback_file(c"stats", ring.clone(), &write_stats),
                ring,
                debugfs,
                index,
                // Last, once nothing else can fail: a client that finds the
                // ring may write at once, and only a device that exists
                // shuts its ring down when it goes.
                registered: Registered::new(&for_registry)?,
            }),
            GFP_KERNEL,
        )
    }

    /// The ring.
    pub(crate) fn ring(&self) -> &Arc<Ring> {
        &self.ring
    }
}

#[pinned_drop]
impl PinnedDrop for RingDevice {
    fn drop(self: Pin<&mut Self>) {
        // Before the device node goes: no new client finds the ring, the
        // producers stop (clients' writes fail from now on) and new work
        // is turned away. Open files and clients' references keep the
        // ring (and its memory) until closed and put.
        crate::api::unregister(&self.ring);
        self.ring.shutdown();
    }
}

/// The debugfs `stats` file.
fn write_stats(ring: &Arc<Ring>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let s = ring.stats();
    let region = ring.region();
    let g = region.geometry();
    writeln!(f, "phys_base           {:#x}", region.base())?;
    writeln!(f, "region_size         {:#x}", g.region_size)?;
    writeln!(f, "data_size           {:#x}", g.data_size)?;
    writeln!(f, "cache_mode          {}", region.cache().name())?;
    writeln!(
        f,
        "overwrite           {}",
        ring.overflow() == Overflow::OverwriteOldest
    )?;
    writeln!(f, "producer_running    {}", s.producer_running)?;
    writeln!(f, "consumer_open       {}", s.consumer_open)?;
    writeln!(f, "producer_pos        {}", s.producer_pos)?;
    writeln!(f, "consumer_pos        {}", s.consumer_pos)?;
    writeln!(f, "records_produced    {}", s.records_produced)?;
    writeln!(f, "bytes_produced      {}", s.bytes_produced)?;
    writeln!(f, "records_dropped     {}", s.records_dropped)?;
    writeln!(f, "records_overwritten {}", s.records_overwritten)?;
    writeln!(f, "wakeups             {}", s.wakeups)?;
    writeln!(f, "consumer_errors     {}", s.consumer_errors)?;
    writeln!(f, "records_consumed    {}", s.records_consumed)?;
    writeln!(f, "bytes_consumed      {}", s.bytes_consumed)?;
    writeln!(f, "records_lost        {}", s.records_lost)?;
    writeln!(f, "sleeps              {}", s.sleeps)?;
    writeln!(f, "records_read        {}", s.records_read)?;
    writeln!(f, "records_hooked      {}", s.records_hooked)?;
    writeln!(f, "records_refused     {}", s.records_refused)
}
