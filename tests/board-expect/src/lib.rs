// SPDX-License-Identifier: GPL-2.0-only OR MIT

//! What a guest booted with a device-tree board must find, handed from the
//! host to the guest.
//!
//! The host knows the board: `cargo xtask` applied the overlay, and
//! `xtask/src/dt/board.rs` makes an [`Expectations`] from the compiled
//! overlay and the merged tree. It writes it as JSON into the arm64 guest's
//! `/add/`, as [`FILE_NAME`], and the in-guest board suites
//! (`rmemring-selftest board`, `board-params`, `broken=MSG`) read it back
//! and hold every device to it.
//!
//! The type has a crate of its own because both sides build it and neither
//! should build the other: xtask is a host tool with host-only
//! dependencies, the selftest a static guest binary, and `rmemring-proto`,
//! which the kernel compiles, takes no dependency. The modes are written as
//! the device tree spells them, through `rmemring_proto::devicetree`'s
//! tables, so a file with a value the driver would refuse does not parse.

use std::fmt;

use rmemring_proto::devicetree::{
    CACHE_MODE_VALUES,
    OVERFLOW_VALUES, //
};
use rmemring_proto::modes::{
    CacheMode,
    Overflow, //
};
use serde::{
    Deserialize,
    Serialize, //
};

/// The file's name in the guest's `/add/`.
pub const FILE_NAME: &str = "board-rings.json";

/// Everything a guest booted with the board must find.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectations {
    /// The guest kernel's page size in bytes: the data areas depend on it.
    pub page_size: u32,
    /// The rings the driver must make, in probe order.
    pub rings: Vec<Ring>,
    /// The overlay's `no-map` regions that no ring names, for the
    /// module-parameter path.
    pub spare: Vec<Spare>,
    /// The nodes whose probe the driver must refuse, by name.
    pub refused: Vec<String>,
}

/// A ring the overlay describes and the driver must accept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ring {
    /// The node's name (the platform device's name).
    pub node: String,
    /// The name of the reserved-memory node it points at.
    pub region: String,
    /// The region's physical address.
    pub base: u64,
    /// The region's size in bytes.
    pub size: u64,
    /// The data area's size in bytes, with [`Expectations::page_size`] pages.
    pub data: u64,
    /// Its `rmemring,overflow`, the default when the node has none.
    #[serde(with = "devicetree_value")]
    pub overflow: Overflow,
    /// Its `rmemring,cache-mode`, likewise.
    #[serde(with = "devicetree_value")]
    pub cache: CacheMode,
    /// `/dev/<dev>` when the driver is loaded without parameters...
    pub dev: String,
    /// ... and when it is loaded with the spare region as parameters,
    /// whose device is made first and takes `rmemring0`.
    pub dev_with_params: String,
}

/// A `no-map` region no ring names: the module parameters' region.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spare {
    /// The reserved-memory node's name.
    pub region: String,
    /// The region's physical address.
    pub base: u64,
    /// The region's size in bytes.
    pub size: u64,
    /// The data area's size in bytes, with [`Expectations::page_size`] pages.
    pub data: u64,
    /// The device the driver makes of it when given it as parameters.
    pub dev: String,
}

impl Expectations {
    /// The file's contents.
    pub fn to_json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }

    /// Reads the file's contents.
    pub fn from_json(text: &str) -> serde_json::Result<Self> {
        serde_json::from_str(text)
    }
}

/// One line per ring, spare region and refused node, for people: the host
/// prints them, and the guest's failures can quote them.
impl fmt::Display for Expectations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "page-size {}", self.page_size)?;
        for ring in &self.rings {
            writeln!(
                f,
                "ring node={} region={} base={:#x} size={:#x} data={:#x} overflow={} cache={} \
                 dev={} dev-with-params={}",
                ring.node,
                ring.region,
                ring.base,
                ring.size,
                ring.data,
                ring.overflow.devicetree_value(),
                ring.cache.devicetree_value(),
                ring.dev,
                ring.dev_with_params
            )?;
        }
        for spare in &self.spare {
            writeln!(
                f,
                "spare region={} base={:#x} size={:#x} data={:#x} dev={}",
                spare.region, spare.base, spare.size, spare.data, spare.dev
            )?;
        }
        for node in &self.refused {
            writeln!(f, "refused node={node}")?;
        }
        Ok(())
    }
}

/// A mode a ring node's property chooses, with that property's values.
pub trait DeviceTreeValue: Copy + PartialEq + 'static {
    /// The property's values, from `rmemring_proto::devicetree`.
    const VALUES: &'static [(&'static str, Self)];

    /// How the device tree spells the mode.
    fn devicetree_value(self) -> &'static str {
        Self::VALUES
            .iter()
            .find(|(_, mode)| *mode == self)
            .map(|(name, _)| *name)
            .expect("every mode has a device-tree value (rmemring_proto's tests)")
    }
}

impl DeviceTreeValue for Overflow {
    const VALUES: &'static [(&'static str, Self)] = &OVERFLOW_VALUES;
}

impl DeviceTreeValue for CacheMode {
    const VALUES: &'static [(&'static str, Self)] = &CACHE_MODE_VALUES;
}

/// Serde's view of a [`DeviceTreeValue`]: the string, checked on reading.
mod devicetree_value {
    use rmemring_proto::devicetree::lookup;
    use serde::de::Error as _;
    use serde::{
        Deserialize,
        Deserializer,
        Serializer, //
    };

    use super::DeviceTreeValue;

    pub fn serialize<T: DeviceTreeValue, S: Serializer>(mode: &T, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(mode.devicetree_value())
    }

    pub fn deserialize<'de, T: DeviceTreeValue, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
        let value = String::deserialize(d)?;
        lookup(T::VALUES, value.as_bytes()).ok_or_else(|| {
            let names: Vec<&str> = T::VALUES.iter().map(|(name, _)| *name).collect();
            D::Error::custom(format!(
                "unknown value {value:?}, expected one of {names:?}"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Expectations {
        Expectations {
            page_size: 4096,
            rings: vec![Ring {
                node: "rmemring-small".into(),
                region: "ring@72000000".into(),
                base: 0x7200_0000,
                size: 0x12_0000,
                data: 0x10_0000,
                overflow: Overflow::OverwriteOldest,
                cache: CacheMode::WriteCombine,
                dev: "small".into(),
                dev_with_params: "small".into(),
            }],
            spare: vec![Spare {
                region: "ring@76000000".into(),
                base: 0x7600_0000,
                size: 0x100_2000,
                data: 0x100_0000,
                dev: "rmemring0".into(),
            }],
            refused: vec!["rmemring-bad".into()],
        }
    }

    #[test]
    fn the_file_reads_back_and_spells_modes_as_the_device_tree() {
        let expected = sample();
        let json = expected.to_json().expect("serialises");
        assert!(json.contains(r#""overflow": "overwrite""#), "{json}");
        assert!(json.contains(r#""cache": "write-combine""#), "{json}");
        assert_eq!(Expectations::from_json(&json).expect("parses"), expected);

        let unknown = json.replace(r#""overwrite""#, r#""overwrite-oldest""#);
        let err = Expectations::from_json(&unknown).expect_err("not a device-tree value");
        assert!(err.to_string().contains("unknown value"), "{err}");
        let extra = json.replacen('{', r#"{"pages": 1,"#, 1);
        assert!(Expectations::from_json(&extra).is_err());
    }

    #[test]
    fn every_mode_has_a_device_tree_value() {
        for mode in Overflow::ALL {
            assert_eq!(Overflow::VALUES.iter().filter(|v| v.1 == mode).count(), 1);
            mode.devicetree_value();
        }
        for mode in CacheMode::ALL {
            assert_eq!(mode.devicetree_value(), mode.name());
        }
    }

    #[test]
    fn the_text_form_has_a_line_each() {
        assert_eq!(
            sample().to_string(),
            "page-size 4096\n\
             ring node=rmemring-small region=ring@72000000 base=0x72000000 size=0x120000 \
             data=0x100000 overflow=overwrite cache=write-combine dev=small dev-with-params=small\n\
             spare region=ring@76000000 base=0x76000000 size=0x1002000 data=0x1000000 \
             dev=rmemring0\n\
             refused node=rmemring-bad\n"
        );
    }
}
