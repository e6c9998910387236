//! The reference reservation: the one place that says where the ring lives.
//!
//! x86_64: the kernel command line keeps the range from the kernel with
//! `memmap=SIZE$BASE` and the driver gets it as module parameters. arm64: the
//! ranges come from the device-tree overlay in `dts/` (applied by
//! [`crate::dt::board_dtb`]), so there are neither: the board overlay,
//! `dts/qemu-virt-board.dtso`, reserves four rings and one spare `no-map`
//! region inside the RAM of QEMU's `-m` (`vm::MEMORY_MIB`), and the
//! `board-params` scenario loads the driver with that spare region as
//! `phys_base`/`phys_size`, which the guest reads from the host's
//! expectations ([`crate::dt::expectations`]), not from here.
//!
//! Change the reservation here; every VM, suite and `cargo xtask run` follows.

use crate::arch::Arch;

/// Physical base of the x86_64 reference reservation.
pub const X86_64_PHYS_BASE: u64 = 0x1000_0000;

/// Size of the x86_64 ring region handed to the driver: a 16 MiB data area
/// plus two pages (control and header).
pub const X86_64_PHYS_SIZE: u64 = 0x100_2000;

/// Reserved bytes just past the x86_64 ring region, which the driver is not
/// told about: a guard the hostile-consumer test fills with a pattern and
/// checks afterwards, so a kernel write past the end of the data area shows
/// (`tests/vm/src/support/guard.rs`).
pub const X86_64_GUARD_SIZE: u64 = 0x1000;

/// Kernel command-line words that reserve the region (and its guard).
///
/// QEMU gets the command line as one argument (no shell), so the `$` needs
/// no quoting.
pub fn kernel_cmdline(arch: Arch) -> Vec<String> {
    match arch {
        Arch::X86_64 => vec![format!(
            "memmap={:#x}${X86_64_PHYS_BASE:#x}",
            X86_64_PHYS_SIZE + X86_64_GUARD_SIZE
        )],
        Arch::Aarch64 => Vec::new(),
    }
}

/// The driver's module parameters (for `insmod`).
pub fn module_params(arch: Arch) -> String {
    match arch {
        Arch::X86_64 => {
            format!("phys_base={X86_64_PHYS_BASE:#x} phys_size={X86_64_PHYS_SIZE:#x}")
        }
        Arch::Aarch64 => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x86_64_reference_matches_the_documented_values() {
        assert_eq!(
            kernel_cmdline(Arch::X86_64),
            ["memmap=0x1003000$0x10000000"]
        );
        assert_eq!(
            module_params(Arch::X86_64),
            "phys_base=0x10000000 phys_size=0x1002000"
        );
    }
}
