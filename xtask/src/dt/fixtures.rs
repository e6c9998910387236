// SPDX-License-Identifier: GPL-2.0-only OR MIT

//! Trees for the unit tests, built in memory so that the tests need no dtc:
//! a DTB writer, and boards and overlays shaped like the real ones.

use rmemring_proto::devicetree::COMPATIBLE;

use super::fdt::{
    Fdt,
    FDT_BEGIN_NODE,
    FDT_END,
    FDT_END_NODE,
    FDT_MAGIC,
    FDT_PROP, //
};

/// Writes a DTB, node by node.
#[derive(Default)]
pub(super) struct Builder {
    structs: Vec<u8>,
    strings: Vec<u8>,
    memreserve: Vec<(u64, u64)>,
}

impl Builder {
    fn word(&mut self, w: u32) {
        self.structs.extend_from_slice(&w.to_be_bytes());
    }

    fn pad(&mut self) {
        while !self.structs.len().is_multiple_of(4) {
            self.structs.push(0);
        }
    }

    pub(super) fn begin(&mut self, name: &str) -> &mut Self {
        self.word(FDT_BEGIN_NODE);
        self.structs.extend_from_slice(name.as_bytes());
        self.structs.push(0);
        self.pad();
        self
    }

    pub(super) fn end(&mut self) -> &mut Self {
        self.word(FDT_END_NODE);
        self
    }

    pub(super) fn prop(&mut self, name: &str, value: &[u8]) -> &mut Self {
        let off = self.strings.len() as u32;
        self.strings.extend_from_slice(name.as_bytes());
        self.strings.push(0);
        self.word(FDT_PROP);
        self.word(value.len() as u32);
        self.word(off);
        self.structs.extend_from_slice(value);
        self.pad();
        self
    }

    pub(super) fn cells(&mut self, name: &str, cells: &[u32]) -> &mut Self {
        let v: Vec<u8> = cells.iter().flat_map(|c| c.to_be_bytes()).collect();
        self.prop(name, &v)
    }

    pub(super) fn string(&mut self, name: &str, s: &str) -> &mut Self {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.prop(name, &v)
    }

    /// The root of a QEMU-virt-like tree (64-bit cells, 1 GiB of RAM at
    /// 0x40000000), left open.
    pub(super) fn virt_root(&mut self) -> &mut Self {
        self.begin("")
            .cells("#address-cells", &[2])
            .cells("#size-cells", &[2]);
        self.begin("memory@40000000")
            .string("device_type", "memory")
            .cells("reg", &[0, 0x4000_0000, 0, 0x4000_0000])
            .end()
    }

    /// A `reserved-memory` node with `regions` (phandles 1, 2, ...).
    pub(super) fn regions(&mut self, regions: &[Region]) -> &mut Self {
        let split = |v: u64| [(v >> 32) as u32, v as u32];
        self.begin("reserved-memory")
            .cells("#address-cells", &[2])
            .cells("#size-cells", &[2])
            .prop("ranges", &[]);
        for (i, Region(addr, size, nomap)) in regions.iter().enumerate() {
            let [a0, a1] = split(*addr);
            let [s0, s1] = split(*size);
            self.begin(&format!("ring@{addr:x}"))
                .cells("reg", &[a0, a1, s0, s1])
                .cells("phandle", &[i as u32 + 1]);
            if *nomap {
                self.prop("no-map", &[]);
            }
            self.end();
        }
        self.end()
    }

    /// A ring node naming the region `phandle` (0: none), with string
    /// properties.
    pub(super) fn ring(&mut self, name: &str, phandle: u32, props: &[(&str, &str)]) -> &mut Self {
        let compatible = COMPATIBLE.to_str().expect("an ASCII compatible");
        self.begin(name).string("compatible", compatible);
        if phandle != 0 {
            self.cells("memory-region", &[phandle]);
        }
        for (k, v) in props {
            self.string(k, v);
        }
        self.end()
    }

    pub(super) fn finish(&mut self) -> Vec<u8> {
        self.word(FDT_END);
        let rsv = 40;
        let mut rsvmap = Vec::new();
        for (a, s) in self.memreserve.iter().chain([(0, 0)].iter()) {
            rsvmap.extend_from_slice(&a.to_be_bytes());
            rsvmap.extend_from_slice(&s.to_be_bytes());
        }
        let off_struct = rsv + rsvmap.len();
        let off_strings = off_struct + self.structs.len();
        let total = off_strings + self.strings.len();
        let mut blob = Vec::new();
        for w in [
            FDT_MAGIC,
            total as u32,
            off_struct as u32,
            off_strings as u32,
            rsv as u32,
            17,
            16,
            0,
        ]
        .into_iter()
        .chain([self.strings.len() as u32, self.structs.len() as u32])
        {
            blob.extend_from_slice(&w.to_be_bytes());
        }
        blob.extend_from_slice(&rsvmap);
        blob.extend_from_slice(&self.structs);
        blob.extend_from_slice(&self.strings);
        blob
    }
}

/// Describes one region for [`board`]: address, size, no-map.
pub(super) struct Region(pub(super) u64, pub(super) u64, pub(super) bool);

/// A sound region: 16 MiB + 64 KiB at 0x70000000.
pub(super) const GOOD: Region = Region(0x7000_0000, 0x101_0000, true);

/// A QEMU-virt-like tree: 1 GiB of RAM at 0x40000000, the regions
/// (phandles 1, 2, ...), and one ring per entry of `rings`, which names a
/// phandle (0 for none) and an optional label.
pub(super) fn board(
    regions: &[Region],
    rings: &[(u32, Option<&str>)],
    memreserve: &[(u64, u64)],
) -> Fdt {
    Fdt::parse(&board_blob(regions, rings, memreserve)).expect("test DTB parses")
}

/// [`board`] as a blob.
pub(super) fn board_blob(
    regions: &[Region],
    rings: &[(u32, Option<&str>)],
    memreserve: &[(u64, u64)],
) -> Vec<u8> {
    let props: Vec<Vec<(&str, &str)>> = rings
        .iter()
        .map(|(_, label)| label.map(|l| vec![("label", l)]).unwrap_or_default())
        .collect();
    let rings: Vec<(u32, &[(&str, &str)])> = rings
        .iter()
        .zip(&props)
        .map(|((phandle, _), props)| (*phandle, props.as_slice()))
        .collect();
    let names: Vec<String> = (0..rings.len()).map(|i| format!("rmemring-{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    board_blob_with(regions, &rings, &names, memreserve)
}

/// [`board_blob`] with string properties for the rings, and their names.
pub(super) fn board_props(
    regions: &[Region],
    rings: &[(u32, &[(&str, &str)])],
    names: &[&str],
) -> Vec<u8> {
    board_blob_with(regions, rings, names, &[])
}

fn board_blob_with(
    regions: &[Region],
    rings: &[(u32, &[(&str, &str)])],
    names: &[&str],
    memreserve: &[(u64, u64)],
) -> Vec<u8> {
    let mut b = Builder {
        memreserve: memreserve.to_vec(),
        ..Builder::default()
    };
    b.virt_root().regions(regions);
    for ((phandle, props), name) in rings.iter().zip(names) {
        b.ring(name, *phandle, props);
    }
    b.end();
    b.finish()
}

/// A ring node for [`overlay_blob`]: its name, the phandle of its region,
/// and string properties.
pub(super) type OverlayRing<'a> = (&'a str, u32, &'a [(&'a str, &'a str)]);

/// An overlay as dtc -@ compiles it: one fragment for the root, its
/// regions (phandles 1, 2, ...) and rings.
pub(super) fn overlay_blob(regions: &[Region], rings: &[OverlayRing<'_>]) -> Vec<u8> {
    let mut b = Builder::default();
    b.begin("");
    b.begin("fragment@0").string("target-path", "/");
    b.begin("__overlay__")
        .cells("#address-cells", &[2])
        .cells("#size-cells", &[2])
        .regions(regions);
    for (name, phandle, props) in rings {
        b.ring(name, *phandle, props);
    }
    b.end().end().end();
    b.finish()
}
