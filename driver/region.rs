// SPDX-License-Identifier: GPL-2.0

//! The reserved physical region: validated, claimed and mapped.

use core::mem::size_of;
use core::ptr::NonNull;
use core::sync::atomic::{
    AtomicU64,
    Ordering, //
};

use kernel::{
    page::PAGE_SIZE,
    prelude::*, //
};

use crate::proto::layout::{
    ConsumerPage,
    ControlPage,
    Geometry,
    CONSUMER_PAGE_INIT,
    MIN_DATA_SIZE, //
};
use crate::proto::recovery::Recovered;
use crate::proto::view::RingView;
use crate::sys::{
    self,
    CacheMode,
    IomemClaim,
    KernelMapping, //
};

/// Why a physical range cannot hold a ring. Its `Display` completes a
/// sentence that names where the range came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RegionError {
    /// Size zero.
    ZeroSize,
    /// Base or size not a multiple of the page size.
    NotPageAligned,
    /// `base + size` overflows the physical address space.
    Overflow,
    /// Smaller than two pages plus the smallest data area.
    TooSmall,
    /// Overlaps memory the kernel's allocator owns.
    SystemRam,
    /// Another driver or resource claims part of it.
    Busy,
    /// It does not lie inside memory the platform reserved.
    NotReserved,
    /// The kernel could not map it.
    MapFailed,
}

impl RegionError {
    /// The errno that refuses the load or the probe.
    pub(crate) fn errno(self) -> Error {
        match self {
            RegionError::Busy => EBUSY,
            RegionError::MapFailed => ENOMEM,
            _ => EINVAL,
        }
    }
}

impl kernel::fmt::Display for RegionError {
    fn fmt(&self, f: &mut kernel::fmt::Formatter<'_>) -> kernel::fmt::Result {
        match self {
            RegionError::ZeroSize => write!(f, "size is zero"),
            RegionError::NotPageAligned => {
                write!(
                    f,
                    "base or size is not page-aligned (page size {PAGE_SIZE:#x})"
                )
            }
            RegionError::Overflow => write!(f, "base + size overflows the address space"),
            RegionError::TooSmall => write!(
                f,
                "region is too small: a ring needs two pages plus at least {MIN_DATA_SIZE:#x} bytes"
            ),
            RegionError::SystemRam => write!(
                f,
                "region overlaps System RAM; reserve it at boot (memmap=SIZE$BASE, mem=, or a \
                 no-map reserved-memory node)"
            ),
            RegionError::Busy => write!(f, "region is already claimed (see /proc/iomem)"),
            RegionError::NotReserved => write!(
                f,
                "region is not reserved memory (a device's registers, a PCI window or a hole); \
                 reserve it at boot with memmap=SIZE$BASE (also under mem=), or use a no-map \
                 reserved-memory node; /proc/iomem must show it inside a Reserved range"
            ),
            RegionError::MapFailed => write!(f, "the kernel could not map the region"),
        }
    }
}

/// Whether [`Region::claim`] requires the range to lie in reserved memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reserved {
    /// Refuse a range the platform did not reserve (module parameters).
    Required,
    /// The caller vouches for the range (a device-tree reserved-memory node).
    Checked,
}

/// How many bytes of the data area [`Region::zero_data`] clears between
/// looks at the scheduler.
const ZERO_CHUNK: u64 = 1 << 20;

/// A reserved physical region, claimed in `/proc/iomem` and mapped.
///
/// # Invariants
///
/// `mapping` maps exactly `[base, base + geometry.region_size)`, which
/// `claim` holds, and the layout in `geometry` fits inside it.
pub(crate) struct Region {
    base: u64,
    geometry: Geometry,
    cache: CacheMode,
    mapping: KernelMapping,
    _claim: IomemClaim,
}

impl Region {
    /// Validates, claims and maps `[base, base + size)`.
    ///
    /// Checks everything before touching anything: non-zero, page-aligned,
    /// no overflow, large enough, not System RAM, not already claimed, and
    /// with `Reserved::Required`, inside memory the platform reserved. The
    /// module parameters require that: they are numbers from whoever
    /// loads the module, and without it could name any device's registers
    /// that no driver claimed. A device-tree node's `memory-region` has
    /// been checked against its reserved-memory node already.
    pub(crate) fn claim(
        base: u64,
        size: u64,
        cache: CacheMode,
        reserved: Reserved,
    ) -> Result<Self, RegionError> {
        let page = PAGE_SIZE as u64;
        if size == 0 {
            return Err(RegionError::ZeroSize);
        }
        if base % page != 0 || size % page != 0 {
            return Err(RegionError::NotPageAligned);
        }
        if base.checked_add(size).is_none() {
            return Err(RegionError::Overflow);
        }
        let geometry =
            Geometry::for_region(size, PAGE_SIZE as u32).map_err(|_| RegionError::TooSmall)?;
        if sys::overlaps_system_ram(base, size) {
            return Err(RegionError::SystemRam);
        }
        let claim = IomemClaim::new(base, size).map_err(|_| RegionError::Busy)?;
        // After claiming: the claim's place in the resource tree says what
        // the range lies in. Dropping the claim on the way out releases it.
        if reserved == Reserved::Required && !claim.in_reserved_memory() {
            return Err(RegionError::NotReserved);
        }
        let mapping = KernelMapping::new(base, size, cache).map_err(|_| RegionError::MapFailed)?;
        // INVARIANT: The mapping and the claim cover exactly `size` bytes,
        // and `for_region` laid the ring out inside `size` bytes.
        Ok(Self {
            base,
            geometry,
            cache,
            mapping,
            _claim: claim,
        })
    }

    /// Physical base address.
    pub(crate) fn base(&self) -> u64 {
        self.base
    }

    /// Where the ring's parts lie.
    pub(crate) fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// The cache mode of the kernel mapping (and of user mappings).
    pub(crate) fn cache(&self) -> CacheMode {
        self.cache
    }

    /// Writes a fresh control page (with `flags`, laid out by the boot
    /// `boot_id`, with the wall clock's offset now) and an empty consumer
    /// page.
    ///
    /// The control page's `phys_base` is 0: it is mapped for every opener,
    /// and physical addresses are for `CAP_SYS_ADMIN` only (`RMEMRING_IOC_INFO`
    /// gives it to them). Word by word, with the atomic stores every other
    /// access to the pages uses, because user space may have them mapped.
    /// The caller makes sure no producer runs meanwhile.
    pub(crate) fn initialise(&self, flags: u32, boot_id: [u64; 2]) {
        let view = self.view();
        let page = self
            .geometry
            .control_page(flags, 0)
            .with_boot(boot_id, sys::realtime_offset_ns());
        view.write_control_page(&page);
        view.write_consumer_page(&CONSUMER_PAGE_INIT);
        // The structs fill only the head of their pages, and every opener
        // may map both pages whole: nothing the region held before may
        // show in the rest (another boot's data survives a warm reboot).
        let g = &self.geometry;
        self.zero_words(size_of::<ControlPage>() as u64, g.consumer_offset);
        self.zero_words(
            g.consumer_offset + size_of::<ConsumerPage>() as u64,
            g.data_offset,
        );
    }

    /// Serves the records `recovered` found in this region's retained ring:
    /// the published position cut to the last record that verified, and the
    /// consumer page at the oldest. Everything else stays as the previous
    /// boot left it. No producer may run.
    pub(crate) fn serve_recovered(&self, recovered: &Recovered) {
        let view = self.view();
        // ORDERING: Release, as a producer publishes; no reader has the
        // ring yet, but one may map it as soon as the device exists.
        view.producer_pos().store(recovered.end, Ordering::Release);
        self.rewind_recovered(recovered);
    }

    /// Points the consumer page at the oldest of the `recovered` records,
    /// for the next reader: each reads the records from the start.
    pub(crate) fn rewind_recovered(&self, recovered: &Recovered) {
        let view = self.view();
        let page = recovered.consumer_page(&view.read_consumer_page());
        view.write_consumer_page(&page);
    }

    /// Writes what the kernel wrote into the region back to memory; see
    /// [`KernelMapping::write_back`].
    pub(crate) fn write_back(&self) {
        self.mapping.write_back();
    }

    /// Zeroes `[start, end)` of the pages before the data area, word by
    /// word with relaxed atomic stores (user space may have them mapped).
    fn zero_words(&self, start: u64, end: u64) {
        let end = end.min(self.geometry.data_offset);
        let mut at = start.next_multiple_of(8);
        while at + 8 <= end {
            let word = self.part(at).as_ptr().cast::<u64>();
            // SAFETY: `at` is a multiple of 8 and `at + 8` lies within the
            // pages before the data area, so `word` is an aligned word of
            // this region's mapping, which lives as long as `self`. Others
            // access these bytes only atomically or through their own
            // mappings, never as Rust references.
            unsafe { AtomicU64::from_ptr(word) }.store(0, Ordering::Relaxed);
            at += 8;
        }
    }

    /// Zeroes the data area, so that no byte from before the ring was laid
    /// out (another ring's records, another boot's data) reaches a reader
    /// through padding, pad records or payloads the producer does not
    /// fill. Process context: it yields between megabytes.
    ///
    /// Aligned 8-byte stores, valid on write-combined and uncached mappings
    /// too (where `memset` may use instructions, such as arm64's `dc zva`,
    /// that fault on device memory). The caller makes sure no producer runs.
    pub(crate) fn zero_data(&self) {
        let view = self.view();
        let size = view.data_size();
        let mut off = 0;
        while off < size {
            view.zero_data(off, ZERO_CHUNK);
            off += ZERO_CHUNK;
            sys::cond_resched();
        }
    }

    /// The kernel address of the byte at `offset` into the region.
    fn part(&self, offset: u64) -> NonNull<u8> {
        let offset = (offset as usize).min(self.mapping.size());
        // SAFETY: `offset` is clamped to the mapping, so the result points
        // into it or one past its end, and is therefore not null.
        unsafe { NonNull::new_unchecked(self.mapping.addr().as_ptr().add(offset)) }
    }

    /// The kernel address of `[offset, offset + len)` of the data area, if
    /// that range lies inside the data area.
    ///
    /// A raw pointer, not a slice: others may write those bytes at any time
    /// (the producer thread, and user space through the consumer page it
    /// controls), so only raw copies may read them. The address is valid
    /// as long as the region is.
    pub(crate) fn data_ptr(&self, offset: u64, len: u64) -> Option<*const u8> {
        let end = offset.checked_add(len)?;
        if end > self.geometry.data_size {
            return None;
        }
        Some(
            self.part(self.geometry.data_offset + offset)
                .as_ptr()
                .cast_const(),
        )
    }

    /// A view of the ring in this region for the producer and the `read()`
    /// consumer.
    ///
    /// The view holds raw addresses: the caller keeps the region alive as
    /// long as the view is used (the `Ring` owns both).
    pub(crate) fn view(&self) -> RingView {
        let g = &self.geometry;
        // SAFETY: By the type invariants, the control page at 0, the
        // consumer page at `consumer_offset` and the data area of
        // `data_size` bytes (a power of two) at `data_offset` all lie
        // inside the live mapping and are page-aligned. The `Ring` that
        // owns this region owns every view made from it and drops them
        // first.
        unsafe {
            RingView::new(
                self.mapping.addr().cast(),
                self.part(g.consumer_offset).cast(),
                self.part(g.data_offset),
                g.data_size,
                self.cache.ordering(),
            )
        }
    }
}
