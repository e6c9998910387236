//! The machines rmemring is built for: an architecture and a kernel profile.

use std::fmt;

/// A guest architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Arch {
    /// The reference VM: QEMU `pc`, a `memmap=` reservation.
    #[value(name = "x86_64")]
    X86_64,
    /// The board: QEMU `virt`, a device-tree reservation.
    #[value(name = "aarch64")]
    Aarch64,
}

impl Arch {
    /// The name used on the command line and in cache paths.
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    /// The kernel's `ARCH=`.
    pub fn kernel_arch(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86",
            Arch::Aarch64 => "arm64",
        }
    }

    /// The kernel image `make all` leaves in the build directory.
    pub fn kernel_image(self) -> &'static str {
        match self {
            Arch::X86_64 => "arch/x86/boot/bzImage",
            Arch::Aarch64 => "arch/arm64/boot/Image",
        }
    }

    /// The Rust target of the guest's user space.
    pub fn rust_target(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-unknown-linux-gnu",
            Arch::Aarch64 => "aarch64-unknown-linux-gnu",
        }
    }
}

/// A kernel configuration profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// The reference configuration.
    Normal,
    /// The reference configuration plus sanitizers and lock/VM checkers.
    Debug,
}

/// A kernel to build and boot: an architecture and a profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    pub arch: Arch,
    pub profile: Profile,
}

impl fmt::Display for Target {
    /// `x86_64`, `x86_64-debug`, `aarch64`, ...
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.arch.name())?;
        if self.profile == Profile::Debug {
            f.write_str("-debug")?;
        }
        Ok(())
    }
}
