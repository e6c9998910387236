// SPDX-License-Identifier: GPL-2.0

//! Mapping the ring into user space.
//!
//! The region is mapped with `remap_pfn_range`, part by part, each with the
//! permissions its owner allows:
//!
//! | offset          | length      | part          | consumer    | observer  |
//! |-----------------|-------------|---------------|-------------|-----------|
//! | 0               | 1 page      | control page  | read-only   | read-only |
//! | 1 page          | 1 page      | consumer page | read-write  | read-only |
//! | 2 pages         | `data_size` | data area     | read-only   | read-only |
//!
//! Any page-aligned range inside the ring may be mapped read-only; only the
//! consumer page, mapped alone by the consumer, may be writable. Read-only
//! mappings lose `VM_MAYWRITE`, so `mprotect` cannot make them writable, and
//! since a writable mapping never covers a read-only page, the shared PFN
//! write-fault path (which would silently make a read-only PTE writable) is
//! never reached. The user mapping's cache type is the kernel mapping's.

use kernel::{
    mm::virt::VmaNew,
    page::PAGE_SIZE,
    prelude::*, //
};

use crate::ring::Ring;
use crate::sys;

/// Maps the part of `ring` that `vma` asks for, or refuses with an errno.
pub(crate) fn map(ring: &Ring, consumer: bool, vma: &VmaNew) -> Result {
    // An unbound device's files stay open, but hand out nothing new.
    if !ring.is_live() {
        return Err(ENODEV);
    }
    let geometry = ring.region().geometry();
    // Private mappings of device memory make no sense (copy-on-write of a
    // ring the producer keeps writing): shared only.
    if !sys::vma_may_share(vma) {
        return Err(EINVAL);
    }
    // Nothing in a ring is code.
    if vma.executable() {
        return Err(EPERM);
    }
    vma.try_clear_mayexec()?;

    let len = vma.end() - vma.start();
    // The page offset comes from user space: bound it before shifting.
    let offset = sys::vma_pgoff(vma).checked_mul(PAGE_SIZE).ok_or(EINVAL)?;
    let end = offset.checked_add(len).ok_or(EINVAL)?;
    // Only the ring itself, not any unused tail of the region.
    let ring_end = (geometry.data_offset + geometry.data_size) as usize;
    if len == 0 || end > ring_end {
        return Err(EINVAL);
    }

    let own_page = consumer && offset == geometry.consumer_offset as usize && len == PAGE_SIZE;
    if vma.writable() && !own_page {
        return Err(EACCES);
    }
    if !own_page {
        // Keep it read-only for good.
        vma.try_clear_maywrite()?;
    }
    // SAFETY: `offset..end` lies inside the ring (checked above), which is
    // inside the region `ring` claimed (`Region::claim`: not System RAM,
    // held in /proc/iomem) and keeps claimed while any mapping exists (the
    // VMA holds the file, which holds the ring); `len` is the VMA's length;
    // the cache type is the region's own. Write access is possible only for
    // the consumer's own page: every other mapping lost `VM_MAYWRITE`.
    unsafe {
        sys::remap_pfn_range(
            vma,
            ring.region().base() + offset as u64,
            len,
            ring.region().cache(),
        )
    }
}
