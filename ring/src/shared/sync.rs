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
