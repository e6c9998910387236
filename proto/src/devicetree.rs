// SPDX-License-Identifier: GPL-2.0-only OR MIT

//! The `rmemring,ring` device-tree binding's values, as the driver reads
//! them and as the host's checks (`cargo xtask test`'s `dt` check) apply
//! them: the optional properties' values and the `label` rule.
//! `dts/rmemring.yaml` states the same for dt-schema, and a test of xtask
//! keeps the two equal.

use core::ffi::CStr;

use super::modes::{
    CacheMode,
    Overflow, //
};

/// The `compatible` string of a ring node.
pub const COMPATIBLE: &CStr = c"rmemring,ring";

/// The property that chooses the [`CacheMode`] (default write-back). The
/// property names are C strings: the kernel looks them up by pointer.
pub const CACHE_MODE_PROPERTY: &CStr = c"rmemring,cache-mode";

/// The values of [`CACHE_MODE_PROPERTY`].
pub const CACHE_MODE_VALUES: [(&str, CacheMode); 3] = [
    (CacheMode::WriteBack.name(), CacheMode::WriteBack),
    (CacheMode::WriteCombine.name(), CacheMode::WriteCombine),
    (CacheMode::Uncached.name(), CacheMode::Uncached),
];

/// The property that chooses the [`Overflow`] mode (default drop-new).
pub const OVERFLOW_PROPERTY: &CStr = c"rmemring,overflow";

/// The values of [`OVERFLOW_PROPERTY`]. The binding spells overwrite mode
/// `overwrite` (messages say `overwrite-oldest`).
pub const OVERFLOW_VALUES: [(&str, Overflow); 2] = [
    ("drop-new", Overflow::DropNew),
    ("overwrite", Overflow::OverwriteOldest),
];

/// The boolean property that keeps the ring for the next boot and serves a
/// previous boot's ring found in the region (the module's `retain=1`;
/// docs/flight-recorder.md).
pub const RETAIN_PROPERTY: &CStr = c"rmemring,retain";

/// The property that names the device node (`/dev/<label>`).
pub const LABEL_PROPERTY: &CStr = c"label";

/// The longest label: a device name the kernel accepts in one path
/// component of `/dev`, as the binding's pattern says.
pub const LABEL_MAX: usize = 63;

/// The value `value` names in `values`, if any: how the driver and the
/// host's checks read [`CACHE_MODE_VALUES`] and [`OVERFLOW_VALUES`].
///
/// # Examples
///
/// ```
/// use rmemring_proto::devicetree::{lookup, OVERFLOW_VALUES};
/// use rmemring_proto::modes::Overflow;
///
/// assert_eq!(lookup(&OVERFLOW_VALUES, b"overwrite"), Some(Overflow::OverwriteOldest));
/// assert_eq!(lookup(&OVERFLOW_VALUES, b"oldest"), None);
/// ```
pub fn lookup<T: Copy>(values: &[(&str, T)], value: &[u8]) -> Option<T> {
    values
        .iter()
        .find(|(name, _)| name.as_bytes() == value)
        .map(|&(_, mode)| mode)
}

/// Why `label` cannot name a device, if it cannot: the binding's pattern
/// (`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`), and not `rmemringN`, the names of
/// unlabelled rings. The reason completes a sentence about the label.
///
/// # Examples
///
/// ```
/// use rmemring_proto::devicetree::label_defect;
///
/// assert_eq!(label_defect(b"adc0"), None);
/// assert!(label_defect(b"rmemring3").is_some());
/// assert!(label_defect(b"-bad").is_some());
/// ```
pub fn label_defect(label: &[u8]) -> Option<&'static str> {
    let first_ok = label.first().is_some_and(u8::is_ascii_alphanumeric);
    let rest_ok = label
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    if label.is_empty() || label.len() > LABEL_MAX || !first_ok || !rest_ok {
        return Some(
            "not a device name: 1 to 63 letters, digits, '_', '.' or '-', starting with a \
             letter or digit",
        );
    }
    let numbered = label
        .strip_prefix(b"rmemring")
        .is_some_and(|n| !n.is_empty() && n.iter().all(u8::is_ascii_digit));
    if numbered {
        return Some("names of the form rmemringN belong to unlabelled rings");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        for good in [
            &b"a"[..],
            b"ring_0.x-y",
            b"rmemring",
            b"rmemringx",
            &[b'a'; 63],
        ] {
            assert_eq!(label_defect(good), None, "{good:?}");
        }
        for bad in [
            &b""[..],
            b"_a",
            b"a b",
            b"rmemring0",
            b"rmemring42",
            &[b'a'; 64],
        ] {
            assert!(label_defect(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn every_mode_has_one_value() {
        for mode in CacheMode::ALL {
            assert_eq!(
                lookup(&CACHE_MODE_VALUES, mode.name().as_bytes()),
                Some(mode)
            );
        }
        for mode in Overflow::ALL {
            assert_eq!(OVERFLOW_VALUES.iter().filter(|v| v.1 == mode).count(), 1);
        }
    }
}
