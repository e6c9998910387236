// SPDX-License-Identifier: GPL-2.0-only OR MIT

//! A ring's two modes, overflow and cache, and every way the protocol
//! spells them: bits of the control page's `flags`, values of the module
//! parameters, names in messages and reports. (The device-tree property
//! values are in [`devicetree`](super::devicetree).)

use super::layout::{
    CACHE_UNCACHED,
    CACHE_WRITE_BACK,
    CACHE_WRITE_COMBINE,
    FLAG_CACHE_MASK,
    FLAG_CACHE_SHIFT,
    FLAG_OVERWRITE, //
};
use super::view::MemoryOrdering;

/// What the producer does when a record does not fit.
///
/// Exhaustive on purpose, like the other encodings of the ABI: another
/// mode would be another flag, so a new ABI version, and every match on
/// the modes in the driver, the library and the tests should then fail
/// to compile until it handles it.
///
/// With the `serde` feature it serializes as its [`name`](Self::name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "kebab-case")
)]
pub enum Overflow {
    /// Refuse the new record; the producer counts it as dropped
    /// ([`ProducerStats::dropped`](super::producer_core::ProducerStats::dropped)).
    DropNew,
    /// Overwrite the oldest records (a flight recorder).
    OverwriteOldest,
}

impl Overflow {
    /// Both modes, in the order of their parameter values.
    pub const ALL: [Overflow; 2] = [Overflow::DropNew, Overflow::OverwriteOldest];

    /// The mode a control page's `flags` say.
    ///
    /// # Examples
    ///
    /// ```
    /// use rmemring_proto::layout::FLAG_OVERWRITE;
    /// use rmemring_proto::modes::Overflow;
    ///
    /// assert_eq!(Overflow::from_flags(FLAG_OVERWRITE), Overflow::OverwriteOldest);
    /// assert_eq!(Overflow::from_flags(0).flag(), 0);
    /// ```
    pub const fn from_flags(flags: u32) -> Self {
        if flags & FLAG_OVERWRITE != 0 {
            Overflow::OverwriteOldest
        } else {
            Overflow::DropNew
        }
    }

    /// The mode's bit in the control page's `flags` (and in
    /// `reset_config.flags`).
    pub const fn flag(self) -> u32 {
        match self {
            Overflow::DropNew => 0,
            Overflow::OverwriteOldest => FLAG_OVERWRITE,
        }
    }

    /// The mode of the driver's `overflow` module parameter value, if any.
    pub const fn from_param(value: u32) -> Option<Self> {
        match value {
            0 => Some(Overflow::DropNew),
            1 => Some(Overflow::OverwriteOldest),
            _ => None,
        }
    }

    /// The mode's name in messages and reports.
    pub const fn name(self) -> &'static str {
        match self {
            Overflow::DropNew => "drop-new",
            Overflow::OverwriteOldest => "overwrite-oldest",
        }
    }
}

/// How the region is mapped, by the kernel and (the same) by user space.
///
/// Exhaustive on purpose (see [`Overflow`]).
///
/// With the `serde` feature it serializes as its [`name`](Self::name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "kebab-case")
)]
pub enum CacheMode {
    /// Cacheable, write-back: the default and the fast one.
    WriteBack,
    /// Write-combining (device memory that tolerates it).
    WriteCombine,
    /// Uncached (device memory).
    Uncached,
}

impl CacheMode {
    /// Every mode, in the order of their ABI values.
    pub const ALL: [CacheMode; 3] = [
        CacheMode::WriteBack,
        CacheMode::WriteCombine,
        CacheMode::Uncached,
    ];

    /// The mode's `CACHE_*` value: bits 8-11 of the control page's `flags`,
    /// and the driver's `cache_mode` module parameter.
    pub const fn abi(self) -> u32 {
        match self {
            CacheMode::WriteBack => CACHE_WRITE_BACK,
            CacheMode::WriteCombine => CACHE_WRITE_COMBINE,
            CacheMode::Uncached => CACHE_UNCACHED,
        }
    }

    /// The mode of a `CACHE_*` value, if this version knows it.
    pub const fn from_abi(value: u32) -> Option<Self> {
        match value {
            CACHE_WRITE_BACK => Some(CacheMode::WriteBack),
            CACHE_WRITE_COMBINE => Some(CacheMode::WriteCombine),
            CACHE_UNCACHED => Some(CacheMode::Uncached),
            _ => None,
        }
    }

    /// The mode a control page's `flags` say, if this version knows it.
    ///
    /// # Examples
    ///
    /// ```
    /// use rmemring_proto::modes::CacheMode;
    ///
    /// let flags = CacheMode::WriteCombine.flags();
    /// assert_eq!(CacheMode::from_flags(flags), Some(CacheMode::WriteCombine));
    /// assert_eq!(CacheMode::from_flags(0), Some(CacheMode::WriteBack));
    /// ```
    pub const fn from_flags(flags: u32) -> Option<Self> {
        Self::from_abi((flags & FLAG_CACHE_MASK) >> FLAG_CACHE_SHIFT)
    }

    /// The mode's bits in the control page's `flags`.
    pub const fn flags(self) -> u32 {
        self.abi() << FLAG_CACHE_SHIFT
    }

    /// The mode's name in messages, reports and the device tree's
    /// `rmemring,cache-mode`.
    pub const fn name(self) -> &'static str {
        match self {
            CacheMode::WriteBack => "write-back",
            CacheMode::WriteCombine => "write-combine",
            CacheMode::Uncached => "uncached",
        }
    }

    /// How memory of this type orders one CPU's accesses: which barriers
    /// the ring needs.
    pub const fn ordering(self) -> MemoryOrdering {
        match self {
            CacheMode::WriteBack => MemoryOrdering::WriteBack,
            CacheMode::WriteCombine | CacheMode::Uncached => MemoryOrdering::Weak,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_round_trips() {
        for mode in Overflow::ALL {
            assert_eq!(Overflow::from_flags(mode.flag()), mode);
            assert_eq!(Overflow::from_param(mode as u32), Some(mode));
        }
        assert_eq!(Overflow::from_param(2), None);
        for mode in CacheMode::ALL {
            assert_eq!(CacheMode::from_abi(mode.abi()), Some(mode));
            assert_eq!(
                CacheMode::from_flags(mode.flags() | FLAG_OVERWRITE),
                Some(mode)
            );
            assert_eq!(
                MemoryOrdering::from_flags(mode.flags()),
                mode.ordering(),
                "{mode:?}"
            );
        }
        assert_eq!(CacheMode::from_abi(3), None);
    }
}
