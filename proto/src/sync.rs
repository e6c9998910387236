// SPDX-License-Identifier: GPL-2.0-only OR MIT

//! The one place the ring names its atomics, so `--cfg loom` can swap in
//! loom's model-checked ones (the crossbeam-utils `primitive` pattern).
//!
//! The kernel compiles this too. Rust's `core` atomics on shared memory lower
//! to the same instructions as the kernel's LKMM primitives on the
//! architectures the ABI supports:
//!
//! | here                      | kernel C              | x86-64            | arm64        |
//! |---------------------------|-----------------------|-------------------|--------------|
//! | `load(Acquire)`           | `smp_load_acquire()`  | `mov`             | `ldar`       |
//! | `store(Release)`          | `smp_store_release()` | `mov`             | `stlr`       |
//! | `fence(SeqCst)`           | `smp_mb()`            | `mfence`/`lock`   | `dmb ish`    |
//! | `fence(Release)`          | `smp_wmb()` (*)       | compiler barrier  | `dmb ish`    |
//! | `fence(Acquire)`          | `smp_rmb()` (*)       | compiler barrier  | `dmb ishld`  |
//!
//! (*) Strictly stronger than the C barrier, which orders only stores
//! (`smp_wmb`) or only loads (`smp_rmb`).
//!
//! Those orderings hold for write-back (cacheable) memory only. A ring in
//! write-combining or uncached memory also needs the kernel's mandatory
//! barriers, [`io_wmb`] and [`io_rmb`]: see `docs/protocol.md`, section 5,
//! "Rings that are not write-back".

#[cfg(loom)]
pub use loom::sync::atomic::{
    AtomicU32,
    AtomicU64, //
};
#[cfg(loom)]
pub use model::{
    fence,
    omit_seqcst_fences, //
};

#[cfg(not(loom))]
pub use core::sync::atomic::{
    fence,
    AtomicU32,
    AtomicU64, //
};

pub use core::sync::atomic::Ordering;

/// The kernel's `wmb()`: every store this CPU issued before it, including
/// stores still in write-combining buffers, becomes visible before any
/// store it issues after it.
///
/// A `Release` store or fence does not do that on write-combining memory:
/// on x86-64 it is a plain `mov` (or nothing), and WC stores may pass each
/// other on their way out of the CPU. The producer of a ring that is not
/// write-back calls this before it publishes and after it announces
/// retired records (see [`RingView::ordering`](super::view::RingView::ordering)).
///
/// | x86-64   | arm64    | others           |
/// |----------|----------|------------------|
/// | `sfence` | `dsb st` | `fence(SeqCst)`  |
///
/// An assembler string needs no target feature, so this builds in the
/// kernel (which has no SSE) as it does here. Loom does not model the
/// memory types this is about; its model rings are write-back and never
/// call it.
#[inline(always)]
pub fn io_wmb() {
    trace!(super::trace::Event::Wmb);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `sfence` only orders stores; it reads and writes no memory
    // and no register. Without `nomem` the compiler also treats it as a
    // barrier, like the kernel's `"memory"` clobber.
    unsafe {
        core::arch::asm!("sfence", options(nostack, preserves_flags))
    };
    #[cfg(target_arch = "aarch64")]
    // SAFETY: As for x86-64: `dsb st` waits for earlier stores to complete.
    unsafe {
        core::arch::asm!("dsb st", options(nostack, preserves_flags))
    };
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    core::sync::atomic::fence(Ordering::SeqCst);
}

/// The kernel's `rmb()`, the load counterpart of [`io_wmb`]: every load
/// this CPU issued before it completes before any load it issues after
/// it, also from write-combining or uncached memory, whose loads x86-64
/// and arm64 may reorder even after an `Acquire` load.
///
/// | x86-64   | arm64    | others           |
/// |----------|----------|------------------|
/// | `lfence` | `dsb ld` | `fence(SeqCst)`  |
#[inline(always)]
pub fn io_rmb() {
    trace!(super::trace::Event::Rmb);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `lfence` only orders loads; it reads and writes no memory
    // and no register. Without `nomem` it is also a compiler barrier.
    unsafe {
        core::arch::asm!("lfence", options(nostack, preserves_flags))
    };
    #[cfg(target_arch = "aarch64")]
    // SAFETY: As for x86-64: `dsb ld` waits for earlier loads to complete.
    unsafe {
        core::arch::asm!("dsb ld", options(nostack, preserves_flags))
    };
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    core::sync::atomic::fence(Ordering::SeqCst);
}

/// Loom's fence, with a switch for showing that the model checks can fail.
#[cfg(loom)]
mod model {
    use core::cell::Cell;
    use core::sync::atomic::Ordering;

    loom::thread_local! {
        static OMIT_SEQCST: Cell<bool> = Cell::new(false);
    }

    /// `loom::sync::atomic::fence`, except that `fence(SeqCst)` does nothing
    /// on a model thread that called [`omit_seqcst_fences`].
    pub fn fence(order: Ordering) {
        if order == Ordering::SeqCst && OMIT_SEQCST.with(Cell::get) {
            return;
        }
        loom::sync::atomic::fence(order);
    }

    /// Model checks only: turns every later `fence(SeqCst)` on the calling
    /// model thread into nothing, so a test can show that loom catches the
    /// lost wake-up those fences prevent. The two `SeqCst` fences of the
    /// ring are the wake-up handshake's, one in `ProducerCore::publish` and
    /// one in `ConsumerCore::prepare_sleep`; choosing the thread chooses the
    /// side. Outside `--cfg loom` this does not exist.
    pub fn omit_seqcst_fences() {
        OMIT_SEQCST.with(|omit| omit.set(true));
    }
}
