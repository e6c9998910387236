// SPDX-License-Identifier: GPL-2.0-only OR MIT

//! The board a VM boots: a base tree plus an overlay ([`board_dtb`]), and
//! what a guest booted with it must find ([`expectations`]), which the
//! in-guest board suites read back (`rmemring_board_expect`).

use std::collections::BTreeSet;
use std::path::{
    Path,
    PathBuf, //
};

use anyhow::{
    ensure,
    Context,
    Result, //
};
use rmemring_board_expect::{
    Expectations,
    Ring,
    Spare, //
};
use rmemring_proto::devicetree::{
    CACHE_MODE_PROPERTY,
    CACHE_MODE_VALUES,
    COMPATIBLE,
    LABEL_PROPERTY,
    OVERFLOW_PROPERTY,
    OVERFLOW_VALUES, //
};
use xshell::{
    cmd,
    Shell, //
};

use super::fdt::Fdt;
use super::lint::{
    choice,
    data_size,
    lint_tree,
    ring_region, //
};
use super::tools::{
    captured,
    compile_overlay,
    ensure_dtc,
    text, //
};

/// The page sizes an arm64 kernel may use, with the option that selects
/// each; without one, 4 KiB.
pub(super) const ARM64_PAGE_SIZES: [(u32, &str); 3] = [
    (4096, "CONFIG_ARM64_4K_PAGES"),
    (16384, "CONFIG_ARM64_16K_PAGES"),
    (65536, "CONFIG_ARM64_64K_PAGES"),
];

/// The page size of an arm64 kernel, from its `.config`.
pub fn arm64_page_size(config: &str) -> u32 {
    ARM64_PAGE_SIZES
        .iter()
        .find(|(_, option)| config.lines().any(|l| l == format!("{option}=y")))
        .map_or(ARM64_PAGE_SIZES[0].0, |(page, _)| *page)
}

/// Compiles `overlay` (a `.dtso`), applies it onto `base_dtb` with
/// fdtoverlay, writes the result to `out`, and checks with fdtget that the
/// result has an `rmemring,ring` node. The compiled overlay is kept next to
/// `out` as `<out>.dtbo`.
///
/// Refuses an overlay that restates the root's `#address-cells` or
/// `#size-cells` with values other than the base's: fdtoverlay would
/// silently rewrite them and break every `reg` in the board's tree.
pub fn board_dtb(sh: &Shell, base_dtb: &Path, overlay: &Path, out: &Path) -> Result<()> {
    ensure_dtc(sh)?;
    let dtbo = compiled_overlay(out);
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        sh.create_dir(dir)?;
    }
    compile_overlay(sh, overlay, &dtbo)?;
    check_root_cells(base_dtb, &dtbo)?;

    let res = captured(cmd!(sh, "fdtoverlay -i {base_dtb} -o {out} {dtbo}"))?;
    ensure!(
        res.status.success(),
        "fdtoverlay could not apply {} onto {}:\n{}",
        overlay.display(),
        base_dtb.display(),
        text(&res)
    );

    let tree = Fdt::read(out)?;
    let rings = tree.rings();
    let compatible = COMPATIBLE.to_string_lossy();
    ensure!(
        !rings.is_empty(),
        "{} has no {compatible} node after applying {}",
        out.display(),
        overlay.display()
    );
    for ring in rings {
        let path = tree.path(ring);
        let got = cmd!(sh, "fdtget -t s {out} {path} compatible")
            .quiet()
            .read()?;
        ensure!(
            got.split(' ').any(|c| c == compatible),
            "fdtget {} {path} compatible gave {got:?}",
            out.display()
        );
    }
    Ok(())
}

/// Where [`board_dtb`] keeps the compiled overlay of the board `out`.
fn compiled_overlay(out: &Path) -> PathBuf {
    let mut dtbo = out.as_os_str().to_owned();
    dtbo.push(".dtbo");
    PathBuf::from(dtbo)
}

/// An overlay that sets the root's `#address-cells`/`#size-cells` must set
/// them to the base's values.
fn check_root_cells(base_dtb: &Path, dtbo: &Path) -> Result<()> {
    let base = Fdt::read(base_dtb)?;
    let overlay = Fdt::read(dtbo)?;
    for fragment in &overlay.node(0).children {
        let fragment = overlay.node(*fragment);
        let to_root = fragment.prop(c"target-path").is_some_and(|p| p == b"/\0");
        let Some(body) = overlay.child(fragment, "__overlay__") else {
            continue;
        };
        if !to_root {
            continue;
        }
        for cells in [c"#address-cells", c"#size-cells"] {
            let (Some(want), Some(have)) = (overlay.node(body).u32(cells), base.node(0).u32(cells))
            else {
                continue;
            };
            ensure!(
                want == have,
                "{} sets the root's {} to <{want}>, but {} has <{have}>: adapt the overlay \
                 (see docs/device-tree.md)",
                dtbo.display(),
                cells.to_string_lossy(),
                base_dtb.display()
            );
        }
    }
    Ok(())
}

/// What a guest booted with `board` (built by [`board_dtb`]) must show, for
/// `rmemring-selftest`'s board groups: the rings in probe order, the spare
/// regions (`no-map` reserved-memory children of the overlay that no ring
/// names, for the module-parameter path), the rings the driver must refuse,
/// and the page size.
///
/// The values come from the compiled overlay, the order from the merged
/// tree (Linux creates and probes the platform devices in tree order), and
/// the names from the driver's rule: a labelled ring is `/dev/<label>`; the
/// others take the lowest free `rmemringN` in probe order, after the
/// module-parameter device (`dev_with_params`: loaded with the spare
/// region's `phys_base`/`phys_size`, that device is made first, at load, and
/// is `rmemring0`). A ring that the host's lint refuses in the merged tree
/// takes no number. Fails if the merged tree disagrees with the overlay.
pub fn expectations(board: &Path, page_size: u32) -> Result<Expectations> {
    let dtbo = compiled_overlay(board);
    expect_rings(&Fdt::read(&dtbo)?, &Fdt::read(board)?, page_size)
        .with_context(|| format!("{} applied as {}", dtbo.display(), board.display()))
}

/// [`expectations`] of parsed trees.
fn expect_rings(overlay: &Fdt, merged: &Fdt, page_size: u32) -> Result<Expectations> {
    let findings = lint_tree(merged);
    let mut expected = Expectations {
        page_size,
        rings: Vec::new(),
        spare: Vec::new(),
        refused: Vec::new(),
    };
    let (mut numbered, mut referenced) = (0, BTreeSet::new());
    for ring in merged.rings() {
        let path = merged.path(ring);
        let node = merged.node(ring);
        let ours = overlay
            .rings()
            .into_iter()
            .find(|r| overlay.node(*r).name == node.name)
            .with_context(|| format!("{path} is not from the overlay"))?;
        let region = overlay_region(overlay, ours);
        if let Some((region, _, _)) = region {
            referenced.insert(overlay.node(region).name.clone());
        }
        if findings.iter().any(|f| f.starts_with(&format!("{path}: "))) {
            expected.refused.push(node.name.clone());
            continue;
        }
        let (region, base, size) =
            region.with_context(|| format!("{path}: its region is not in the overlay"))?;
        let merged_reg = ring_region(merged, ring).map_err(anyhow::Error::msg)?;
        ensure!(
            (merged_reg.1, merged_reg.2) == (base, size),
            "{path}: the overlay says {base:#x}+{size:#x}, the merged tree has {:#x}+{:#x}",
            merged_reg.1,
            merged_reg.2
        );
        let data = data_size(size, page_size).context("a sound ring has a data area")?;
        let ring = overlay.node(ours);
        let (dev, dev_with_params) = match ring.str(LABEL_PROPERTY) {
            Some(label) => (label.clone(), label),
            None => {
                numbered += 1;
                (
                    format!("rmemring{}", numbered - 1),
                    format!("rmemring{numbered}"),
                )
            }
        };
        expected.rings.push(Ring {
            node: node.name.clone(),
            region: overlay.node(region).name.clone(),
            base,
            size,
            data,
            overflow: choice(ring, OVERFLOW_PROPERTY, &OVERFLOW_VALUES)
                .map_err(anyhow::Error::msg)?,
            cache: choice(ring, CACHE_MODE_PROPERTY, &CACHE_MODE_VALUES)
                .map_err(anyhow::Error::msg)?,
            dev,
            dev_with_params,
        });
    }
    let page = u64::from(page_size);
    for (region, base, size) in overlay_spare_regions(overlay) {
        let name = &overlay.node(region).name;
        if referenced.contains(name) {
            continue;
        }
        ensure!(
            merged.in_memory(base, size),
            "spare region {name} ({base:#x}+{size:#x}) is not inside any /memory range"
        );
        let data = data_size(size, page_size)
            .filter(|_| base.is_multiple_of(page) && size.is_multiple_of(page))
            .with_context(|| format!("spare region {name} cannot hold a ring"))?;
        expected.spare.push(Spare {
            region: name.clone(),
            base,
            size,
            data,
            dev: "rmemring0".into(),
        });
    }
    Ok(expected)
}

/// The region an overlay's ring node names, if it names one of the
/// overlay's own nodes with a static `reg`.
fn overlay_region(overlay: &Fdt, ring: usize) -> Option<(usize, u64, u64)> {
    let phandle = overlay.node(ring).u32(c"memory-region")?;
    let region = overlay.by_phandle(phandle)?;
    let (base, size) = *overlay.reg(region)?.first()?;
    Some((region, base, size))
}

/// The `no-map` children with a static `reg` of the overlay's
/// `reserved-memory` nodes.
fn overlay_spare_regions(overlay: &Fdt) -> Vec<(usize, u64, u64)> {
    (0..overlay.nodes.len())
        .filter(|i| {
            let parent = overlay.nodes[*i].parent;
            parent.is_some_and(|p| overlay.nodes[p].name == "reserved-memory")
                && overlay.nodes[*i].prop(c"no-map").is_some()
        })
        .filter_map(|i| {
            let (base, size) = *overlay.reg(i)?.first()?;
            Some((i, base, size))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{
        board_props,
        overlay_blob,
        OverlayRing,
        Region,
        GOOD, //
    };
    use super::*;

    #[test]
    fn expectations_follow_the_overlay_and_the_numbering_rule() {
        let regions = [
            GOOD,
            Region(0x7200_0000, 0x12_0000, true),
            Region(0x7300_0000, 0x41_0000, true),
            Region(0x7600_0000, 0x100_2000, true),
        ];
        let rings: [OverlayRing<'_>; 3] = [
            ("rmemring", 1, &[]),
            (
                "rmemring-small",
                2,
                &[("label", "small"), ("rmemring,overflow", "overwrite")],
            ),
            (
                "rmemring-wc",
                3,
                &[("rmemring,cache-mode", "write-combine")],
            ),
        ];
        let overlay = Fdt::parse(&overlay_blob(&regions, &rings)).expect("parses");
        let merged = Fdt::parse(&board_props(
            &regions,
            &[
                (1, &[]),
                (2, &[("label", "small"), ("rmemring,overflow", "overwrite")]),
                (3, &[("rmemring,cache-mode", "write-combine")]),
            ],
            &["rmemring", "rmemring-small", "rmemring-wc"],
        ))
        .expect("parses");
        let got = expect_rings(&overlay, &merged, 4096).expect("expectations");
        let want = "page-size 4096\n\
            ring node=rmemring region=ring@70000000 base=0x70000000 size=0x1010000 data=0x1000000 overflow=drop-new cache=write-back dev=rmemring0 dev-with-params=rmemring1\n\
            ring node=rmemring-small region=ring@72000000 base=0x72000000 size=0x120000 data=0x100000 overflow=overwrite cache=write-back dev=small dev-with-params=small\n\
            ring node=rmemring-wc region=ring@73000000 base=0x73000000 size=0x410000 data=0x400000 overflow=drop-new cache=write-combine dev=rmemring1 dev-with-params=rmemring2\n\
            spare region=ring@76000000 base=0x76000000 size=0x1002000 data=0x1000000 dev=rmemring0\n";
        assert_eq!(got.to_string(), want);
        // With 64 KiB pages the data areas shrink, and the spare region (not
        // a multiple of 64 KiB) cannot hold a ring.
        assert!(expect_rings(&overlay, &merged, 65536).is_err());

        // A refused ring takes no number; the next unlabelled one is rmemring0.
        let bad = Fdt::parse(&board_props(
            &regions[..2],
            &[(1, &[("rmemring,cache-mode", "write-through")]), (2, &[])],
            &["rmemring-bad", "rmemring-good"],
        ))
        .expect("parses");
        let bad_overlay = Fdt::parse(&overlay_blob(
            &regions[..2],
            &[
                (
                    "rmemring-bad",
                    1,
                    &[("rmemring,cache-mode", "write-through")],
                ),
                ("rmemring-good", 2, &[]),
            ],
        ))
        .expect("parses");
        let got = expect_rings(&bad_overlay, &bad, 4096).expect("expectations");
        assert_eq!(got.refused, ["rmemring-bad"]);
        let [good] = got.rings.as_slice() else {
            panic!("{got}");
        };
        assert_eq!(
            (good.node.as_str(), good.base, good.dev.as_str()),
            ("rmemring-good", 0x7200_0000, "rmemring0"),
            "{got}"
        );

        // The merged tree must agree with the overlay.
        let moved = Fdt::parse(&board_props(
            &[Region(0x7100_0000, 0x101_0000, true)],
            &[(1, &[])],
            &["rmemring"],
        ))
        .expect("parses");
        let one = Fdt::parse(&overlay_blob(&[GOOD], &[("rmemring", 1, &[])])).expect("parses");
        let err = expect_rings(&one, &moved, 4096).expect_err("a moved region");
        assert!(
            format!("{err:#}").contains("the merged tree has 0x71000000"),
            "{err:#}"
        );
    }

    #[test]
    fn page_size_from_the_kernel_config() {
        assert_eq!(
            arm64_page_size("CONFIG_ARM64=y\nCONFIG_ARM64_4K_PAGES=y\n"),
            4096
        );
        assert_eq!(arm64_page_size("CONFIG_ARM64_16K_PAGES=y\n"), 16384);
        assert_eq!(arm64_page_size("CONFIG_ARM64_64K_PAGES=y\n"), 65536);
        assert_eq!(
            arm64_page_size("# CONFIG_ARM64_64K_PAGES is not set\n"),
            4096
        );
    }
}
