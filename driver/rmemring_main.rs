// SPDX-License-Identifier: GPL-2.0

//! rmemring: zero-copy kernel-to-user streaming through reserved memory.
//!
//! The driver claims a physically contiguous region the kernel was told not
//! to use, lays a ring out in it (see `proto/src/layout.rs`), exposes
//! it as `/dev/rmemringN` whose `mmap` maps the region itself into the
//! consumer, and runs a producer thread that writes verifiable records.
//!
//! The region comes from module parameters:
//!
//! ```text
//! # Kernel command line: keep 16 MiB + 2 pages at 256 MiB away from the kernel.
//! memmap=0x1002000$0x10000000
//! # Then:
//! insmod rmemring.ko phys_base=0x10000000 phys_size=0x1002000
//! ```
//!
//! or from device-tree nodes with `compatible = "rmemring,ring"` and a
//! `memory-region` (see `dts/`). `cargo xtask vm-run -- rmemring info` shows
//! it working in a reference VM; `examples/` has a complete consumer.
//!
//! The ring's layout and index logic are compiled from `proto/src`, the
//! sources of the `rmemring-proto` crate that user space uses.

use kernel::{
    driver,
    platform,
    prelude::*, //
};

/// The protocol (layout, ioctls, index logic), shared with user space: the
/// `rmemring-proto` crate's very sources.
#[path = "../proto/src/lib.rs"]
pub mod proto;

mod api;
mod device;
mod file;
mod fops;
mod mmap;
mod params;
mod platform_driver;
mod producer;
mod region;
mod ring;
mod sys;

module! {
    type: RmemRing,
    name: "rmemring",
    authors: ["rmemring developers"],
    description: "Zero-copy kernel-to-user streaming through reserved memory",
    license: "GPL",
    params: {
        phys_base: u64 {
            default: 0,
            description: "Physical address of a reserved region (boot with memmap=SIZE$BASE)",
        },
        phys_size: u64 {
            default: 0,
            description: "Size in bytes of the region: a power of two plus two pages is optimal",
        },
        cache_mode: u32 {
            default: 0,
            description: "Kernel and user mapping type: 0 write-back, 1 write-combine, 2 uncached",
        },
        overflow: u32 {
            default: 0,
            description: "When full: 0 drop new records, 1 overwrite the oldest",
        },
        retain: u32 {
            default: 0,
            description: "1: keep the region's ring for the next boot, and serve a previous boot's ring found there (docs/flight-recorder.md)",
        },
        // Keep equal to `params::DEFAULT_MODE`, which tells a `mode` given
        // without a region from the default.
        mode: u32 {
            default: 0o600,
            description: "Permissions of the device node",
        },
    },
}

/// The module: the platform driver, which binds device-tree nodes, and the
/// platform device of the ring the parameters describe, if any.
#[pin_data]
struct RmemRing {
    /// Unregistered first (its ring revoked and, once unused, freed), while
    /// the driver that binds it is still registered.
    param_device: Option<sys::PlatformDevice>,
    #[pin]
    platform: driver::Registration<platform::Adapter<platform_driver::RingDriver>>,
}

impl kernel::InPlaceModule for RmemRing {
    fn init(module: &'static ThisModule) -> impl PinInit<Self, Error> {
        api::init();
        platform_driver::init();
        let params = params::Params::of_module();
        // The parameter ring first: it is `/dev/rmemring0`, and a bad
        // parameter refuses the load before anything else happens.
        pin_init::pin_init_scope(move || {
            let param_ring = params::probe(&params)?;
            Ok(try_pin_init!(Self {
                platform <- driver::Registration::new(platform_driver::NAME, module),
                param_device: match param_ring {
                    Some(ring) => Some(platform_driver::register_param_device(
                        ring,
                        params.phys_base,
                        params.phys_size,
                    )?),
                    None => None,
                },
            }))
        })
    }
}
