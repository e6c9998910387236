// SPDX-License-Identifier: GPL-2.0

//! rmemring: zero-copy kernel-to-user streaming through reserved memory.
//!
//! (Skeleton: the full driver lands with the driver issue.)

use kernel::prelude::*;

/// The ring's ABI and index logic, shared with user space.
#[path = "../ring/src/shared/mod.rs"]
pub mod shared;

module! {
    type: RmemRing,
    name: "rmemring",
    authors: ["rmemring developers"],
    description: "Zero-copy kernel-to-user streaming through reserved memory",
    license: "GPL",
    params: {
        phys_base: u64 {
            default: 0,
            description: "Physical address of the reserved region",
        },
        phys_size: u64 {
            default: 0,
            description: "Size of the reserved region in bytes",
        },
    },
}

struct RmemRing;

impl kernel::Module for RmemRing {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        pr_info!(
            "loaded (phys_base={:#x} phys_size={:#x}, ABI {})\n",
            *module_parameters::phys_base.value(),
            *module_parameters::phys_size.value(),
            shared::layout::ABI_VERSION
        );
        Ok(RmemRing)
    }
}
