// SPDX-License-Identifier: GPL-2.0-only OR MIT

//! The rmemring protocol: every fact the kernel driver and user space share.
//!
//! This crate is the single implementation of the ring: its layout (the
//! ABI) and geometry, the ioctl interface, the producer and consumer index
//! logic, the encodings of the overflow and cache modes, the `read()`
//! record stream and the device-tree property values. It uses only `core`
//! and has no dependencies, so the kernel driver compiles this very source
//! as a module (`#[path = "../proto/src/lib.rs"] pub mod proto;` in
//! `driver/rmemring_main.rs`), user space uses it as a crate (`rmemring`,
//! the fuzzers, the in-guest tests, xtask), and every host test, model
//! check, fuzz run and benchmark exercises the code the kernel runs.
//!
//! Its modules refer to one another as `super::`, never `crate::`, because
//! in the driver `crate` is the driver.
//!
//! # What this crate promises
//!
//! This is the ABI crate, for the driver and for whoever implements the
//! protocol elsewhere (a C or BPF peer goes by `rmemring.h` and
//! `docs/protocol.md`, which say the same): the layout ([`layout`]), the
//! ioctl structures ([`uapi`]), the encodings ([`modes`], [`roles`],
//! [`stream`], [`devicetree`], [`events`], [`pattern`]) and the errors
//! and counters the index logic reports. Programs that map and read a
//! ring want the `rmemring` crate, which re-exports what of this they need.
//!
//! The index logic itself (`ConsumerCore`, `ProducerCore`, the raw
//! `view::RingView` over shared memory, the `sync` shims) is public only
//! because the driver, the fuzzers and the in-guest tests compile against
//! it: it is hidden from this documentation and may change in any
//! release.
//!
//! `docs/protocol.md` describes the same protocol for implementers in other
//! languages.

// A crate of its own everywhere but in the kernel, which compiles this
// file as a module (with `CONFIG_RUST` set) and is `no_std` already.
#![cfg_attr(not(any(test, loom, CONFIG_RUST)), no_std)]

/// Records `$event` in the unit tests' access log (the `trace` module); nothing
/// at all outside `cfg(test)`.
macro_rules! trace {
    ($event:expr) => {
        #[cfg(test)]
        super::trace::record($event);
    };
}

pub mod consumer_core;
pub mod devicetree;
pub mod events;
pub mod layout;
pub mod modes;
pub mod pattern;
#[cfg(not(CONFIG_RUST))]
mod pod;
pub mod producer_core;
#[cfg(not(loom))]
pub mod recovery;
pub mod roles;
pub mod stream;
// Internal (see above): the atomics the kernel, loom and the host share.
#[doc(hidden)]
pub mod sync;
#[cfg(test)]
mod tests;
#[cfg(test)]
pub mod trace;
pub mod uapi;
// Internal (see above): raw access to the shared memory.
#[doc(hidden)]
pub mod view;

/// The crate README's example (what crates.io shows), run by `cargo test
/// --doc`. Only doctest builds have it, never the kernel's.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
