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
    fence,
    AtomicU32,
    AtomicU64, //
};

#[cfg(not(loom))]
pub use core::sync::atomic::{
    fence,
    AtomicU32,
    AtomicU64, //
};

pub use core::sync::atomic::Ordering;
