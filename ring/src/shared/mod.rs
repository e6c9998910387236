// SPDX-License-Identifier: GPL-2.0-only OR MIT

//! The protocol shared by the kernel driver and user space.
//!
//! This module is the single implementation of the ring: its layout (the
//! ABI), its ioctl interface, and the producer and consumer index logic. It
//! uses only `core`, so the driver compiles this very source with
//! `#[path = "../ring/src/shared/mod.rs"] pub mod shared;`, and every host
//! test, model check and benchmark exercises the code the kernel runs.
//!
//! `docs/protocol.md` describes the same protocol for implementers in other
//! languages.

/// Records `$event` in the unit tests' access log (the `trace` module); nothing
/// at all outside `cfg(test)`.
macro_rules! trace {
    ($event:expr) => {
        #[cfg(test)]
        super::trace::record($event);
    };
}

pub mod consumer;
pub mod layout;
pub mod pattern;
pub mod producer;
pub mod sync;
#[cfg(test)]
mod tests;
#[cfg(test)]
pub mod trace;
pub mod uapi;
pub mod view;
