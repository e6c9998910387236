// SPDX-License-Identifier: GPL-2.0-only OR MIT

//! The driver's rules for a ring node and its region, applied on the host
//! to a merged tree: whatever would stop a ring from probing, or would
//! clash at boot.
//!
//! dt-schema cannot follow `memory-region` to the region it names, so the
//! rules about the region itself (static `reg`, `no-map`, size, alignment)
//! live here. Each finding about a ring is worded as the driver's refusal
//! in dmesg, so that a broken overlay's negative VM test and this check look
//! for the same words. The values, the label rule and the ring's geometry
//! are the driver's own, from `rmemring_proto`.

use std::collections::BTreeSet;
use std::ffi::CStr;
use std::fmt::Write as _;

use rmemring_proto::devicetree::{
    label_defect,
    lookup,
    CACHE_MODE_PROPERTY,
    CACHE_MODE_VALUES,
    LABEL_PROPERTY,
    OVERFLOW_PROPERTY,
    OVERFLOW_VALUES, //
};
use rmemring_proto::layout::{
    Geometry,
    MIN_DATA_SIZE,
    MIN_PAGE_SIZE, //
};

use super::board::ARM64_PAGE_SIZES;
use super::fdt::{
    Fdt,
    Node, //
};

/// The data area a region of `size` bytes gives with `page`-byte pages.
pub(super) fn data_size(size: u64, page: u32) -> Option<u64> {
    Geometry::for_region(size, page)
        .ok()
        .map(|geometry| geometry.data_size)
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.0.saturating_add(b.1) && b.0 < a.0.saturating_add(a.1)
}

/// The region a ring node names, checked; `Err` is the finding.
pub(super) fn ring_region(tree: &Fdt, ring: usize) -> Result<(usize, u64, u64), String> {
    let node = tree.node(ring);
    let Some(phandles) = node.prop(c"memory-region") else {
        return Err("no memory-region property".into());
    };
    let Ok(phandle) = <[u8; 4]>::try_from(phandles) else {
        return Err(format!(
            "memory-region must name exactly one region, it has {} cells",
            phandles.len() / 4
        ));
    };
    let phandle = u32::from_be_bytes(phandle);
    let Some(region) = tree.by_phandle(phandle) else {
        return Err(format!(
            "memory-region names phandle {phandle:#x}, which no node has"
        ));
    };
    let rpath = tree.path(region);
    let parent = tree.node(region).parent.map(|p| tree.path(p));
    if parent.as_deref() != Some("/reserved-memory") {
        return Err(format!(
            "memory-region {rpath} is not a child of /reserved-memory"
        ));
    }
    let Some(reg) = tree.reg(region) else {
        return Err(format!(
            "region {rpath} has no static reg (a 'size' region, allocated at boot, is not \
             supported)"
        ));
    };
    let (base, size) = reg[0];
    let unit = tree
        .node(region)
        .name
        .split_once('@')
        .map(|(_, u)| u.to_string());
    if unit
        .as_deref()
        .is_some_and(|u| u64::from_str_radix(u, 16) != Ok(base))
    {
        return Err(format!(
            "region {rpath}: unit address does not match reg base {base:#x}"
        ));
    }
    if tree.node(region).prop(c"no-map").is_none() {
        return Err(format!(
            "region {rpath} lacks no-map, so the kernel maps it as ordinary RAM"
        ));
    }
    // The host does not know the kernel's page size: a region fit for the
    // smallest page may still be refused by a kernel with larger pages.
    let page = u64::from(MIN_PAGE_SIZE);
    if !base.is_multiple_of(page) || !size.is_multiple_of(page) {
        return Err(format!(
            "region {rpath} ({base:#x}, size {size:#x}) is not page-aligned"
        ));
    }
    if data_size(size, MIN_PAGE_SIZE).is_none() {
        return Err(format!(
            "region {rpath} is too small: {size:#x} bytes, the minimum is {:#x} (two pages + {})",
            Geometry::region_size_for(MIN_DATA_SIZE, MIN_PAGE_SIZE),
            human(MIN_DATA_SIZE)
        ));
    }
    Ok((region, base, size))
}

/// The value of an optional property chosen from one of the protocol's
/// tables, as the driver reads it: the table's first entry when absent,
/// `Err` (the driver's message) when not in the table.
pub(super) fn choice<T: Copy>(
    node: &Node,
    property: &CStr,
    values: &[(&str, T)],
) -> Result<T, String> {
    let Some(value) = node.bytes(property) else {
        return Ok(values[0].1);
    };
    lookup(values, value).ok_or_else(|| {
        format!(
            "{}: unknown value {:?}",
            property.to_string_lossy(),
            String::from_utf8_lossy(value)
        )
    })
}

/// An optional property's value as the tree spells it (not as messages
/// name the mode), or the driver's default: the table's first value.
pub(super) fn spelled<T>(node: &Node, property: &CStr, values: &[(&str, T)]) -> String {
    node.str(property)
        .unwrap_or_else(|| values[0].0.to_string())
}

/// The optional properties of a ring node, checked as the driver checks
/// them, in its order; `Err` is the finding, worded as the driver's message.
fn ring_properties(node: &Node) -> Result<(), String> {
    choice(node, CACHE_MODE_PROPERTY, &CACHE_MODE_VALUES)?;
    choice(node, OVERFLOW_PROPERTY, &OVERFLOW_VALUES)?;
    if let Some(label) = node.bytes(LABEL_PROPERTY) {
        if let Some(why) = label_defect(label) {
            return Err(format!("label {:?}: {why}", String::from_utf8_lossy(label)));
        }
    }
    Ok(())
}

/// Everything that would stop a ring from probing or that would clash at
/// boot, one line per problem.
pub(super) fn lint_tree(tree: &Fdt) -> Vec<String> {
    let mut findings = Vec::new();
    let root = tree.node(0);
    let resmem = tree.child(root, "reserved-memory");
    if let Some(rm) = resmem {
        if tree.cells(rm) != tree.cells(0) || tree.node(rm).prop(c"ranges").is_none() {
            findings.push(
                "/reserved-memory: #address-cells/#size-cells differ from the root's or 'ranges' is \
                 missing, so the kernel ignores every region in it"
                    .to_string(),
            );
        }
    }
    let others: Vec<(usize, (u64, u64))> = resmem
        .map(|rm| tree.node(rm).children.clone())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| Some((c, tree.reg(c)?.first().copied()?)))
        .collect();

    let mut used = BTreeSet::new();
    let mut labels = BTreeSet::new();
    for ring in tree.rings() {
        let path = tree.path(ring);
        // What the driver checks, in its order: the region, the properties,
        // then whether the label is free (a refused ring takes none).
        let (region, base, size) = match ring_region(tree, ring) {
            Ok(r) => r,
            Err(msg) => {
                findings.push(format!("{path}: {msg}"));
                continue;
            }
        };
        if let Err(msg) = ring_properties(tree.node(ring)) {
            findings.push(format!("{path}: {msg}"));
            continue;
        }
        if let Some(label) = tree.node(ring).str(LABEL_PROPERTY) {
            if !labels.insert(label.clone()) {
                findings.push(format!(
                    "{path}: label {label:?}: /dev/{label} is already taken by another ring"
                ));
                continue;
            }
        }
        let rpath = tree.path(region);
        if !used.insert(region) {
            findings.push(format!(
                "{path}: region {rpath} is used by another ring too"
            ));
        }
        if !tree.in_memory(base, size) {
            findings.push(format!(
                "{path}: region {rpath} is not inside any /memory range"
            ));
        }
        for (other, range) in &others {
            if *other != region && overlaps((base, size), *range) {
                findings.push(format!(
                    "{path}: region {rpath} overlaps {}",
                    tree.path(*other)
                ));
            }
        }
        for range in &tree.memreserve {
            if overlaps((base, size), *range) {
                findings.push(format!(
                    "{path}: region {rpath} overlaps /memreserve/ {:#x}+{:#x}",
                    range.0, range.1
                ));
            }
        }
    }
    findings
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b.is_multiple_of(1 << 30) => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 && b.is_multiple_of(1 << 20) => format!("{} MiB", b >> 20),
        b => format!("{} KiB", b >> 10),
    }
}

/// One line per sound ring: region, data area per page size, options, and
/// the device name.
pub(super) fn describe(tree: &Fdt) -> Vec<String> {
    let mut unnamed = 0..;
    let mut lines = Vec::new();
    for ring in tree.rings() {
        let node = tree.node(ring);
        let Ok((region, base, size)) = ring_region(tree, ring) else {
            continue;
        };
        let mut line = format!(
            "{} -> {} {base:#x}+{size:#x}, data area",
            tree.path(ring),
            tree.path(region)
        );
        for (page, _) in ARM64_PAGE_SIZES {
            let aligned = base.is_multiple_of(page.into()) && size.is_multiple_of(page.into());
            let data = data_size(size, page).filter(|_| aligned);
            let data = data.map_or_else(|| "-".to_string(), human);
            let _ = write!(line, " {data} ({}K pages)", page >> 10);
        }
        let cache = spelled(node, CACHE_MODE_PROPERTY, &CACHE_MODE_VALUES);
        let overflow = spelled(node, OVERFLOW_PROPERTY, &OVERFLOW_VALUES);
        let dev = node.str(LABEL_PROPERTY).unwrap_or_else(|| {
            format!(
                "rmemring{} (numbered in probe order)",
                unnamed.next().unwrap_or_default()
            )
        });
        let _ = write!(line, ", {cache}, {overflow}, /dev/{dev}");
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use rmemring_proto::layout::MAX_DATA_SIZE;

    use super::super::fixtures::{
        board,
        board_blob,
        board_props,
        Builder,
        Region,
        GOOD, //
    };
    use super::super::BROKEN;
    use super::*;

    fn only_finding(tree: &Fdt) -> String {
        let findings = lint_tree(tree);
        assert_eq!(findings.len(), 1, "{findings:?}");
        findings[0].clone()
    }

    #[test]
    fn data_size_follows_the_page_size() {
        // 16 MiB + 128 KiB gives 16 MiB with every arm64 page size; 16 MiB +
        // 64 KiB only with 4 and 16 KiB pages.
        for (page, _) in ARM64_PAGE_SIZES {
            assert_eq!(data_size(0x102_0000, page), Some(16 << 20));
            assert_eq!(data_size(0x12_0000, page), Some(1 << 20));
        }
        assert_eq!(data_size(0x101_0000, 16384), Some(16 << 20));
        assert_eq!(data_size(0x101_0000, 65536), Some(8 << 20));
        // Exactly 16 MiB + two 4 KiB pages: 16 MiB with 4 KiB pages only.
        assert_eq!(data_size(0x100_2000, 4096), Some(16 << 20));
        assert_eq!(data_size(0x100_2000, 16384), Some(8 << 20));
        assert_eq!(data_size(0x3000, 4096), Some(4096));
        assert_eq!(data_size(0x2fff, 4096), None);
        assert_eq!(data_size(0x3000, 16384), None);
        assert_eq!(data_size(u64::MAX, 4096), Some(MAX_DATA_SIZE));
    }

    #[test]
    fn sound_rings_pass() {
        let tree = board(
            &[GOOD, Region(0x7200_0000, 0x12_0000, true)],
            &[(1, None), (2, Some("small"))],
            &[],
        );
        assert_eq!(lint_tree(&tree), Vec::<String>::new());
        let lines = describe(&tree);
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].contains("16 MiB (4K pages) 16 MiB (16K pages) 8 MiB (64K pages)"),
            "{lines:?}"
        );
        assert!(
            lines[0].ends_with(", write-back, drop-new, /dev/rmemring0 (numbered in probe order)"),
            "{lines:?}"
        );
        assert!(
            lines[1].contains("1 MiB (4K pages) 1 MiB (16K pages) 1 MiB (64K pages)"),
            "{lines:?}"
        );
        assert!(lines[1].ends_with("/dev/small"), "{lines:?}");
    }

    #[test]
    fn each_defect_gives_the_drivers_message() {
        let [missing, nomap, small, unaligned, cache, label, clash, dynamic] =
            BROKEN.map(|(_, _, msg)| msg);
        assert!(only_finding(&board(&[GOOD], &[(0, None)], &[])).contains(missing));
        assert!(only_finding(&board(
            &[Region(0x7000_0000, 0x101_0000, false)],
            &[(1, None)],
            &[]
        ))
        .contains(nomap));
        let msg = only_finding(&board(
            &[Region(0x7000_0000, 0x2000, true)],
            &[(1, None)],
            &[],
        ));
        assert!(msg.contains(small), "{msg}");
        assert!(
            msg.ends_with("the minimum is 0x3000 (two pages + 4 KiB)"),
            "{msg}"
        );
        let msg = only_finding(&board(
            &[Region(0x7000_0800, 0x101_0000, true)],
            &[(1, None)],
            &[],
        ));
        assert!(msg.contains(unaligned), "{msg}");

        let msg = only_finding(
            &Fdt::parse(&board_props(
                &[GOOD],
                &[(1, &[("rmemring,cache-mode", "write-through")])],
                &["rmemring-0"],
            ))
            .expect("parses"),
        );
        assert!(msg.contains(cache), "{msg}");
        let msg = only_finding(
            &Fdt::parse(&board_props(
                &[GOOD],
                &[(1, &[("rmemring,overflow", "drop-old")])],
                &["rmemring-0"],
            ))
            .expect("parses"),
        );
        assert!(
            msg.contains("rmemring,overflow: unknown value \"drop-old\""),
            "{msg}"
        );
        for bad in ["ring/0", "", "-ring", "rmemring7"] {
            let msg = only_finding(&board(&[GOOD], &[(1, Some(bad))], &[]));
            assert!(
                msg.starts_with(&format!("/rmemring-0: label {bad:?}: ")),
                "{msg}"
            );
            if bad != "rmemring7" {
                assert!(msg.contains(label), "{msg}");
            }
        }
        for good in ["rmemring", "rmemring-small", "a.b_c-9", "rmemring7x"] {
            assert_eq!(
                lint_tree(&board(&[GOOD], &[(1, Some(good))], &[])),
                Vec::<String>::new()
            );
        }
        // The second ring with a label is refused, and only it.
        let two = board(
            &[GOOD, Region(0x7200_0000, 0x12_0000, true)],
            &[(1, Some("dup")), (2, Some("dup"))],
            &[],
        );
        let msg = only_finding(&two);
        assert!(
            msg.starts_with("/rmemring-1: ") && msg.contains(clash),
            "{msg}"
        );
        // A region the kernel allocates ('size', no 'reg').
        let mut b = Builder::default();
        b.virt_root();
        b.begin("reserved-memory")
            .cells("#address-cells", &[2])
            .cells("#size-cells", &[2])
            .prop("ranges", &[]);
        b.begin("ring")
            .cells("size", &[0, 0x101_0000])
            .cells("phandle", &[1])
            .prop("no-map", &[])
            .end();
        b.end();
        b.ring("rmemring", 1, &[]).end();
        let msg = only_finding(&Fdt::parse(&b.finish()).expect("parses"));
        assert!(msg.contains(dynamic), "{msg}");
    }

    #[test]
    fn clashes_are_found() {
        let outside = board(&[Region(0x8000_0000, 0x101_0000, true)], &[(1, None)], &[]);
        assert!(only_finding(&outside).contains("not inside any /memory range"));
        let overlap = board(
            &[GOOD, Region(0x7100_0000, 0x1000, true)],
            &[(1, None)],
            &[],
        );
        assert!(only_finding(&overlap).contains("overlaps /reserved-memory/ring@71000000"));
        let rsv = board(&[GOOD], &[(1, None)], &[(0x7000_1000, 0x1000)]);
        assert!(only_finding(&rsv).contains("/memreserve/"));
        // A second ring on the same region; with the same label too, the
        // label refuses it first, as in the driver.
        let shared = board(&[GOOD], &[(1, None), (1, None)], &[]);
        assert!(only_finding(&shared).contains("is used by another ring too"));
        let shared = board(&[GOOD], &[(1, Some("a")), (1, Some("a"))], &[]);
        assert!(only_finding(&shared).contains("is already taken"));
        let mut misnamed = board_blob(&[GOOD], &[(1, None)], &[]);
        let at = misnamed
            .windows(14)
            .position(|w| w == b"ring@70000000\0")
            .expect("node name");
        misnamed[at + 12] = b'1';
        let misnamed = Fdt::parse(&misnamed).expect("parses");
        assert!(only_finding(&misnamed).contains("unit address does not match"));
        let dangling = board(&[GOOD], &[(7, None)], &[]);
        assert!(only_finding(&dangling).contains("no node has"));
    }
}
