//! The VM test scenarios of `cargo xtask test`: one row per guest command.
//!
//! To add a scenario, add a row to [`SUITES`]. Each boots a fresh VM of its
//! target, loads the driver with the reference parameters (unless `load` is
//! false), runs `command` with `sh -c` and passes when the command exits 0,
//! `rmmod` succeeds and the kernel log is clean (no splat, sanitizer or
//! lockdep report: see `vm::KERNEL_PROBLEMS`). Every binary of
//! `rmemring-examples` and `rmemring-selftest`, and the `rmemring` CLI, are
//! in the guest's `/bin`; busybox provides the rest.
//!
//! Run some with `cargo xtask test --filter NAME`, or one by hand with
//! `cargo xtask vm-run [--arch aarch64] [--debug] -- COMMAND`.

use crate::arch::{
    Arch,
    Profile,
    Target, //
};

/// One VM scenario.
pub struct Suite {
    /// Shown as `ok - vm NAME`; what `--filter` matches.
    pub name: &'static str,
    pub arch: Arch,
    pub profile: Profile,
    /// Load the driver at boot with the reference parameters.
    pub load: bool,
    /// arm64 only: the device-tree overlay, relative to `dts/`; `None` is
    /// the board's own (`dt::board_overlay`).
    pub overlay: Option<&'static str>,
    /// The guest command, for `sh -c`.
    pub command: &'static str,
    /// Seconds before the VM is killed and the suite fails.
    pub timeout: u64,
}

impl Suite {
    pub fn target(&self) -> Target {
        Target {
            arch: self.arch,
            profile: self.profile,
        }
    }
}

/// The boot check, the same on every kernel: the driver loaded, and shows up
/// as its device and its claimed range.
const BOOT: &str = "lsmod | grep rmemring && cat /proc/iomem \
     && grep -i rmemring /proc/iomem && test -c /dev/rmemring0";

/// The scenarios, in the order they run.
pub const SUITES: &[Suite] = &[
    Suite {
        name: "boot",
        arch: Arch::X86_64,
        profile: Profile::Normal,
        load: true,
        overlay: None,
        command: BOOT,
        timeout: 120,
    },
    Suite {
        name: "boot-debug",
        arch: Arch::X86_64,
        profile: Profile::Debug,
        load: true,
        overlay: None,
        command: BOOT,
        timeout: 300,
    },
    Suite {
        name: "board",
        arch: Arch::Aarch64,
        profile: Profile::Normal,
        load: true,
        overlay: None,
        command: "lsmod | grep rmemring && ls /sys/bus/platform/devices/ \
             && test -c /dev/rmemring0",
        timeout: 300,
    },
];
