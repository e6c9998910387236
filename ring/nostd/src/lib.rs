//! `ring/src/shared/` as a `#![no_std]` crate with no `alloc` and no
//! dependencies, the way the kernel driver compiles it
//! (`#[path = "../ring/src/shared/mod.rs"]`).
//!
//! The `rmemring` crate links `std`, so a `use std::…` or an allocation
//! slipping into the shared module would still build there and fail only
//! in the kernel build, which needs a kernel tree. This crate fails on the
//! host, in `cargo clippy --workspace` and `cargo test --workspace`
//! (`cargo xtask test` runs both).

#![no_std]

#[path = "../../src/shared/mod.rs"]
pub mod shared;
