// SPDX-License-Identifier: GPL-2.0-only OR MIT

//! Device tree: the `rmemring,ring` binding, its overlays and their checks.
//!
//! - [`check`] validates `dts/rmemring.yaml` with dt-schema's own tools
//!   (meta-schema, examples), compiles every overlay, applies the good ones
//!   onto a base tree and validates the result against the binding, and
//!   proves that the checks fail where they should: the broken overlays under
//!   `dts/tests/` must be rejected, each for its own reason.
//! - [`board_dtb`] builds the DTB a VM boots with: base DTB + overlay.
//! - [`board_overlay`] and [`broken_overlays`] name the overlays of the
//!   positive and negative VM tests.
//!
//! dt-schema cannot follow `memory-region` to the region it names, so the
//! rules about the region itself (`no-map`, size, alignment) are checked by
//! [`lint`], a small reader of the flattened tree in this file that applies
//! the driver's rules on the host.
//!
//! Tools: `dtc`, `fdtoverlay`, `fdtget` (Debian `device-tree-compiler`,
//! installed with apt-get when missing and running as root) and dt-schema
//! (PyPI `dtschema`, installed into a venv in the cache directory,
//! `$RMEMRING_CACHE` or `~/.cache/rmemring`).

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{
    Path,
    PathBuf, //
};
use std::process::Output;

use anyhow::{
    bail,
    ensure,
    Context,
    Result, //
};
use xshell::{
    cmd,
    Cmd,
    Shell, //
};

/// The dt-schema release the checks were written against. dt-schema's
/// messages and exit codes change between releases; bump deliberately.
const DTSCHEMA_VERSION: &str = "2026.9";
/// yamllint, which the kernel's `dt_binding_check` runs on bindings.
const YAMLLINT_VERSION: &str = "1.38.0";

/// The compatible string of the binding.
const COMPATIBLE: &str = "rmemring,ring";

/// The smallest page size Linux uses; [`lint`] checks alignment against it.
const MIN_PAGE: u64 = 4096;
/// The page sizes an arm64 kernel may use.
const PAGE_SIZES: [u64; 3] = [4096, 16384, 65536];
/// The smallest and largest data areas (`ring::layout::{MIN,MAX}_DATA_SIZE`).
const MIN_DATA: u64 = 4096;
const MAX_DATA: u64 = 1 << 31;

/// The generic overlay for any 64-bit board, relative to `dts/`.
const GENERIC_OVERLAY: &str = "rmemring-overlay.dtso";

/// The negative VM tests: name, overlay relative to `dts/`, and the
/// substring of the driver's refusal in dmesg (and of [`lint`]'s finding).
/// Each overlay has one broken ring, `rmemring-bad`, next to a sound one.
const BROKEN: [(&str, &str, &str); 8] = [
    (
        "no-memory-region",
        "tests/no-memory-region.dtso",
        "no memory-region",
    ),
    ("no-nomap", "tests/no-nomap.dtso", "lacks no-map"),
    ("too-small", "tests/too-small.dtso", "too small"),
    (
        "not-page-aligned",
        "tests/not-page-aligned.dtso",
        "not page-aligned",
    ),
    (
        "bad-cache-mode",
        "tests/bad-cache-mode.dtso",
        "rmemring,cache-mode: unknown value",
    ),
    ("bad-label", "tests/bad-label.dtso", "not a device name"),
    (
        "label-clash",
        "tests/label-clash.dtso",
        "already taken by another ring",
    ),
    (
        "dynamic-region",
        "tests/dynamic-region.dtso",
        "no static reg",
    ),
];

/// Overlays dt-validate must reject, with the messages it must print.
const SCHEMA_NEGATIVE: [(&str, &[&str]); 4] = [
    (
        "tests/no-memory-region.dtso",
        &["'memory-region' is a required property"],
    ),
    (
        "tests/bad-cache-mode.dtso",
        &["rmemring,cache-mode:0: 'write-through' is not one of"],
    ),
    (
        "tests/bad-label.dtso",
        &["label:0: 'ring/0' does not match"],
    ),
    (
        "tests/schema/bad-values.dtso",
        &[
            "rmemring,cache-mode:0: 'write-through' is not one of",
            "rmemring,overflow:0: 'drop-old' is not one of",
            "label:0: 'ring/0' does not match",
            "'rmemring,size' does not match any of the regexes",
        ],
    ),
];

/// The values of `rmemring,cache-mode`, default first (as the driver has them).
const CACHE_MODES: [&str; 3] = ["write-back", "write-combine", "uncached"];
/// The values of `rmemring,overflow`, default first.
const OVERFLOW_MODES: [&str; 2] = ["drop-new", "overwrite"];

/// The name of the broken ring in each of [`BROKEN`]'s overlays.
pub const BROKEN_RING: &str = "rmemring-bad";

/// A base tree with nothing but what the overlays need: 64-bit cells and 1 GiB
/// of RAM at 0x40000000, like QEMU virt with `-m 1024`. Unlike QEMU's own
/// tree, it is clean under dt-schema, so every message is about rmemring.
const MINIMAL_BASE: &str = r#"/dts-v1/;

/ {
	compatible = "linux,dummy-virt";
	model = "linux,dummy-virt";
	#address-cells = <2>;
	#size-cells = <2>;

	memory@40000000 {
		device_type = "memory";
		reg = <0x0 0x40000000 0x0 0x40000000>;
	};
};
"#;

/// The kernel's `Documentation/devicetree/bindings/.yamllint` (Linux 7.2).
const KERNEL_YAMLLINT: &str = r#"extends: relaxed

rules:
  quoted-strings:
    required: only-when-needed
    extra-allowed:
      - '[$^[]'
      - '^/$'
  line-length:
    max: 110
    allow-non-breakable-words: true
    level: warning
  braces:
    min-spaces-inside: 0
    max-spaces-inside: 1
    min-spaces-inside-empty: 0
    max-spaces-inside-empty: 0
  brackets:
    min-spaces-inside: 0
    max-spaces-inside: 1
    min-spaces-inside-empty: 0
    max-spaces-inside-empty: 0
  colons: {max-spaces-before: 0, max-spaces-after: 1}
  commas: {min-spaces-after: 1, max-spaces-after: 1}
  comments:
    require-starting-space: true
    min-spaces-from-content: 1
  comments-indentation: disable
  document-start:
    present: true
  empty-lines:
    max: 1
    max-end: 1
  empty-values:
    forbid-in-block-mappings: true
    forbid-in-flow-mappings: true
  hyphens:
    max-spaces-after: 1
  indentation:
    spaces: 2
    indent-sequences: true
    check-multi-line-strings: false
  trailing-spaces: false
"#;

/// The overlay of the positive VM test: two rings on QEMU virt `-m 1024`.
pub fn board_overlay() -> PathBuf {
    dts_dir().join("qemu-virt-board.dtso")
}

/// The overlays of the negative VM tests: `(name, overlay, expected dmesg
/// substring)`. Each has exactly one defect, which the driver must refuse.
pub fn broken_overlays() -> Vec<(String, PathBuf, String)> {
    BROKEN
        .iter()
        .map(|(name, path, msg)| (name.to_string(), dts_dir().join(path), msg.to_string()))
        .collect()
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
    let mut dtbo = out.as_os_str().to_owned();
    dtbo.push(".dtbo");
    let dtbo = PathBuf::from(dtbo);
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
    ensure!(
        !rings.is_empty(),
        "{} has no {COMPATIBLE} node after applying {}",
        out.display(),
        overlay.display()
    );
    for ring in rings {
        let path = tree.path(ring);
        let got = cmd!(sh, "fdtget -t s {out} {path} compatible")
            .quiet()
            .read()?;
        ensure!(
            got.split(' ').any(|c| c == COMPATIBLE),
            "fdtget {} {path} compatible gave {got:?}",
            out.display()
        );
    }
    Ok(())
}

/// Validates the binding and the overlays; see the module documentation.
pub fn check(sh: &Shell) -> Result<()> {
    ensure_dtc(sh)?;
    let bin = ensure_dtschema(sh)?;
    let dts = dts_dir();
    let out = workspace_root().join("target/dt");
    sh.remove_path(&out)?;
    sh.create_dir(&out)?;
    let binding = dts.join("rmemring.yaml");

    // 1. The binding against yamllint (kernel rules) and the meta-schema.
    let lint_cfg = out.join("yamllint.yaml");
    sh.write_file(&lint_cfg, KERNEL_YAMLLINT)?;
    let yamllint = bin.join("yamllint");
    silent(
        cmd!(sh, "{yamllint} -f parsable -c {lint_cfg} {binding}"),
        "yamllint",
    )?;
    let doc_validate = bin.join("dt-doc-validate");
    silent(cmd!(sh, "{doc_validate} -n {binding}"), "dt-doc-validate")?;

    // 2. Its examples, the way `make dt_binding_check` does them.
    let schema = out.join("processed-schema.json");
    let mk_schema = bin.join("dt-mk-schema");
    let res = captured(cmd!(sh, "{mk_schema} -j {binding}"))?;
    ensure!(
        res.status.success() && res.stderr.is_empty(),
        "dt-mk-schema failed:\n{}",
        text(&res)
    );
    sh.write_file(&schema, &res.stdout)?;
    let example_dts = out.join("rmemring.example.dts");
    let example_dtb = out.join("rmemring.example.dtb");
    let extract = bin.join("dt-extract-example");
    let example = cmd!(sh, "{extract} {binding}").read()?;
    sh.write_file(&example_dts, example)?;
    silent(
        cmd!(
            sh,
            "dtc -@ -Wno-avoid_unnecessary_addr_size -Wno-unique_unit_address
                 -Wunique_unit_address_if_enabled -I dts -O dtb -o {example_dtb} {example_dts}"
        ),
        "dtc (binding examples)",
    )?;
    let dt_validate = bin.join("dt-validate");
    silent(
        cmd!(sh, "{dt_validate} -s {schema} {example_dtb}"),
        "dt-validate (binding examples)",
    )?;

    // 3. Every overlay compiles without a warning.
    let mut sources = Vec::new();
    collect_dtso(&dts, &mut sources)?;
    sources.sort();
    for src in &sources {
        let rel = src.strip_prefix(&dts).unwrap_or(src);
        let dtbo = out.join("dtbo").join(rel).with_extension("dtbo");
        sh.create_dir(dtbo.parent().context("dtbo path")?)?;
        compile_overlay(sh, src, &dtbo)?;
    }
    println!("dt: {} overlays compile without warnings", sources.len());

    // 4. Base trees: a schema-clean minimal one, and QEMU's own when QEMU is here.
    let min_base = out.join("base-minimal.dtb");
    let min_src = out.join("base-minimal.dts");
    sh.write_file(&min_src, MINIMAL_BASE)?;
    silent(
        cmd!(sh, "dtc -I dts -O dtb -o {min_base} {min_src}"),
        "dtc (minimal base)",
    )?;
    // QEMU's tree is the one the VM tests boot: a missing QEMU fails the
    // check (`host::DT` installs it) rather than skipping it.
    let qemu_base = out.join("base-qemu-virt.dtb");
    dump_qemu_virt_dtb(sh, &qemu_base).context("dumping QEMU's arm64 virt device tree")?;
    let bases = [("minimal", min_base.clone()), ("qemu-virt", qemu_base)];

    // 5. The good overlays: applied, valid under the binding, regions sound.
    for overlay in [dts.join(GENERIC_OVERLAY), board_overlay()] {
        let name = overlay.file_name().unwrap_or_default().to_string_lossy();
        for (base_name, base) in &bases {
            let board = out.join(format!("{}-on-{base_name}.dtb", stem(&name)));
            board_dtb(sh, base, &overlay, &board)?;
            // QEMU's tree has nodes dt-schema's core schemas reject (no
            // binding for them here), so limit that run to this binding.
            let limit: &[&str] = if *base_name == "minimal" {
                &[]
            } else {
                &["-l", "rmemring.yaml"]
            };
            silent(
                cmd!(sh, "{dt_validate} {limit...} -s {schema} {board}"),
                &format!("dt-validate ({name} on {base_name})"),
            )?;
            // dtc's own checks on the merged tree, which it skips in overlays.
            silent(
                cmd!(sh, "dtc -I dtb -O dtb -o /dev/null {board}"),
                &format!("dtc ({name} on {base_name})"),
            )?;
            let tree = Fdt::read(&board)?;
            let findings = lint_tree(&tree);
            ensure!(
                findings.is_empty(),
                "{name} on {base_name}:\n  {}",
                findings.join("\n  ")
            );
            if *base_name == "minimal" {
                for line in describe(&tree) {
                    println!("dt: {name}: {line}");
                }
            }
            // What a VM booted with it must show (fails on any mismatch
            // between the overlay and the merged tree).
            let mut dtbo = board.clone().into_os_string();
            dtbo.push(".dtbo");
            let expected = expectations(Path::new(&dtbo), &board, MIN_PAGE)?;
            if *base_name == "qemu-virt" {
                for line in expected.lines() {
                    println!("dt: {name} on {base_name} expects: {line}");
                }
            }
        }
    }

    // 6. The checks can fail: dt-validate rejects trees outside the binding...
    for (name, expected) in SCHEMA_NEGATIVE {
        let board = out.join(format!("{}-on-minimal.dtb", stem(name)));
        board_dtb(sh, &min_base, &dts.join(name), &board)?;
        let res = captured(cmd!(sh, "{dt_validate} -s {schema} {board}"))?;
        let msg = text(&res);
        for want in expected {
            ensure!(
                msg.contains(want),
                "dt-validate accepted {name} (expected a message containing {want:?}); it said:\n{msg}"
            );
        }
        println!("dt: {name}: rejected by dt-validate as expected: {expected:?}");
    }

    // ... and the region rules reject each broken overlay, for its own
    // reason, and only its broken ring.
    for (name, overlay, expected) in broken_overlays() {
        for (base_name, base) in &bases {
            let board = out.join(format!("{name}-on-{base_name}.dtb"));
            board_dtb(sh, base, &overlay, &board)?;
            let findings = lint(&board)?;
            ensure!(
                findings.len() == 1
                    && findings[0].contains(&expected)
                    && findings[0].starts_with(&format!("/{BROKEN_RING}: ")),
                "{name} on {base_name}: expected exactly one finding, for /{BROKEN_RING}, \
                 containing {expected:?}, got {findings:?}"
            );
            let mut dtbo = board.clone().into_os_string();
            dtbo.push(".dtbo");
            let expected = expectations(Path::new(&dtbo), &board, MIN_PAGE)?;
            ensure!(
                expected.lines().filter(|l| l.starts_with("ring ")).count() >= 1
                    && expected.contains(&format!("refused node={BROKEN_RING}\n")),
                "{name} on {base_name}: expected a sound ring and {BROKEN_RING} refused:\n{expected}"
            );
            if *base_name == "minimal" {
                println!("dt: {name}: refused as expected: {}", findings[0]);
            }
        }
    }
    println!("dt: all device-tree checks passed (dtschema {DTSCHEMA_VERSION})");
    Ok(())
}

/// Checks the rings in a DTB file against the rules the driver applies; one
/// string per problem, empty when every ring is sound.
pub fn lint(dtb: &Path) -> Result<Vec<String>> {
    Ok(lint_tree(&Fdt::read(dtb)?))
}

/// What a guest booted with `board` (built by [`board_dtb`] from the overlay
/// `dtbo`) must show, for `rmemring-selftest`'s board groups: one line per
/// ring in probe order, one per spare region (a `no-map` reserved-memory
/// child of the overlay that no ring names, for the module-parameter path),
/// one per ring the driver must refuse, and the page size:
///
/// ```text
/// page-size 4096
/// ring node=rmemring region=ring@70000000 base=0x70000000 size=0x1010000 data=0x1000000 overflow=drop-new cache=write-back dev=rmemring0 dev-with-params=rmemring1
/// spare region=ring@76000000 base=0x76000000 size=0x1002000 data=0x1000000 dev=rmemring0
/// refused node=rmemring-bad
/// ```
///
/// The values come from the compiled overlay, the order from the merged
/// tree (Linux creates and probes the platform devices in tree order), and
/// the names from the driver's rule: a labelled ring is `/dev/<label>`; the
/// others take the lowest free `rmemringN` in probe order, after the
/// module-parameter device (`dev-with-params`: loaded with the spare
/// region's `phys_base`/`phys_size`, that device is made first, at load, and
/// is `rmemring0`). A ring that [`lint`] refuses in the merged tree takes
/// no number. Fails if the merged tree disagrees with the overlay.
pub fn expectations(dtbo: &Path, board: &Path, page: u64) -> Result<String> {
    expect_rings(&Fdt::read(dtbo)?, &Fdt::read(board)?, page)
        .with_context(|| format!("{} applied as {}", dtbo.display(), board.display()))
}

/// [`expectations`] of parsed trees.
fn expect_rings(overlay: &Fdt, merged: &Fdt, page: u64) -> Result<String> {
    let findings = lint_tree(merged);
    let mut out = format!("page-size {page}\n");
    let mut refused = String::new();
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
            refused += &format!("refused node={}\n", node.name);
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
        let data = data_size(size, page).context("a sound ring has a data area")?;
        let ring = overlay.node(ours);
        let overflow = ring.str("rmemring,overflow");
        let cache = ring.str("rmemring,cache-mode");
        let (dev, with_params) = match ring.str("label") {
            Some(label) => (label.clone(), label),
            None => {
                numbered += 1;
                (
                    format!("rmemring{}", numbered - 1),
                    format!("rmemring{numbered}"),
                )
            }
        };
        let _ = writeln!(
            out,
            "ring node={} region={} base={base:#x} size={size:#x} data={data:#x} overflow={} \
             cache={} dev={dev} dev-with-params={with_params}",
            node.name,
            overlay.node(region).name,
            overflow.as_deref().unwrap_or(OVERFLOW_MODES[0]),
            cache.as_deref().unwrap_or(CACHE_MODES[0]),
        );
    }
    let memory: Vec<(u64, u64)> = merged
        .node(0)
        .children
        .iter()
        .filter(|c| merged.node(**c).str("device_type").as_deref() == Some("memory"))
        .filter_map(|c| merged.reg(*c))
        .flatten()
        .collect();
    for (region, base, size) in overlay_spare_regions(overlay) {
        let name = &overlay.node(region).name;
        if referenced.contains(name) {
            continue;
        }
        ensure!(
            memory
                .iter()
                .any(|m| m.0 <= base && base.saturating_add(size) <= m.0.saturating_add(m.1)),
            "spare region {name} ({base:#x}+{size:#x}) is not inside any /memory range"
        );
        let data = data_size(size, page)
            .filter(|_| base.is_multiple_of(page) && size.is_multiple_of(page))
            .with_context(|| format!("spare region {name} cannot hold a ring"))?;
        let _ = writeln!(
            out,
            "spare region={name} base={base:#x} size={size:#x} data={data:#x} dev=rmemring0"
        );
    }
    Ok(out + &refused)
}

/// The region an overlay's ring node names, if it names one of the
/// overlay's own nodes with a static `reg`.
fn overlay_region(overlay: &Fdt, ring: usize) -> Option<(usize, u64, u64)> {
    let phandle = overlay.node(ring).u32("memory-region")?;
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
                && overlay.nodes[*i].prop("no-map").is_some()
        })
        .filter_map(|i| {
            let (base, size) = *overlay.reg(i)?.first()?;
            Some((i, base, size))
        })
        .collect()
}

/// The page size of an arm64 kernel, from its `.config`.
pub fn arm64_page_size(config: &str) -> u64 {
    if config.lines().any(|l| l == "CONFIG_ARM64_64K_PAGES=y") {
        65536
    } else if config.lines().any(|l| l == "CONFIG_ARM64_16K_PAGES=y") {
        16384
    } else {
        4096
    }
}

// ---------------------------------------------------------------------------
// Tools

fn workspace_root() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).to_path_buf()
}

fn dts_dir() -> PathBuf {
    workspace_root().join("dts")
}

fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("RMEMRING_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| OsString::from("/tmp"));
    PathBuf::from(home).join(".cache/rmemring")
}

fn stem(path: &str) -> String {
    Path::new(path)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Runs a command to completion whatever its status, keeping its output.
fn captured(cmd: Cmd<'_>) -> Result<Output> {
    Ok(cmd.ignore_status().output()?)
}

fn text(out: &Output) -> String {
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    s
}

/// Runs a check that must succeed and print nothing. dt-schema's tools exit
/// 0 after reporting errors (dt-validate always does, dt-doc-validate for
/// `$ref` problems), so any output counts as a failure.
fn silent(cmd: Cmd<'_>, what: &str) -> Result<()> {
    let res = captured(cmd)?;
    let msg = text(&res);
    ensure!(
        res.status.success() && msg.trim().is_empty(),
        "{what} failed ({}):\n{msg}",
        res.status
    );
    Ok(())
}

fn is_root(sh: &Shell) -> bool {
    cmd!(sh, "id -u")
        .quiet()
        .read()
        .map(|s| s.trim() == "0")
        .unwrap_or(false)
}

/// Whether `tool` is an executable file in a directory of `$PATH`.
fn have(tool: &str) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .any(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// `dtc`, `fdtoverlay` and `fdtget`, from Debian's device-tree-compiler.
fn ensure_dtc(sh: &Shell) -> Result<()> {
    let missing = || {
        ["dtc", "fdtoverlay", "fdtget"]
            .into_iter()
            .filter(|t| !have(t))
            .collect::<Vec<_>>()
    };
    if missing().is_empty() {
        return Ok(());
    }
    if is_root(sh) {
        cmd!(sh, "apt-get update -q").run()?;
        cmd!(
            sh,
            "apt-get install -y -q --no-install-recommends device-tree-compiler"
        )
        .run()?;
    }
    let still = missing();
    ensure!(
        still.is_empty(),
        "missing {still:?}: install Debian's device-tree-compiler"
    );
    Ok(())
}

/// dt-schema and yamllint in a venv in the cache directory; returns its
/// `bin` directory.
fn ensure_dtschema(sh: &Shell) -> Result<PathBuf> {
    let venv = cache_dir().join("venv-dtschema");
    let bin = venv.join("bin");
    let stamp = venv.join(format!(
        ".rmemring-dtschema-{DTSCHEMA_VERSION}-yamllint-{YAMLLINT_VERSION}"
    ));
    if sh.path_exists(&stamp) {
        return Ok(bin);
    }
    println!(
        "dt: installing dtschema {DTSCHEMA_VERSION} into {}",
        venv.display()
    );
    sh.remove_path(&venv)?;
    sh.create_dir(cache_dir())?;
    cmd!(sh, "python3 -m venv {venv}").run().context(
        "python3 -m venv failed; on Debian install python3-venv (and python3-dev, which \
         dtschema's pylibfdt needs to build)",
    )?;
    let pip = bin.join("pip");
    cmd!(sh, "{pip} install -q --disable-pip-version-check dtschema=={DTSCHEMA_VERSION} yamllint=={YAMLLINT_VERSION}")
        .run()
        .context("pip could not install dtschema (pylibfdt builds from source: it needs python3-dev)")?;
    let dt_validate = bin.join("dt-validate");
    let version = cmd!(sh, "{dt_validate} --version").read()?;
    ensure!(
        version.trim() == DTSCHEMA_VERSION,
        "dt-validate reports version {version:?}"
    );
    sh.write_file(&stamp, "")?;
    Ok(bin)
}

/// Compiles an overlay; any dtc warning is an error. `avoid_unnecessary_addr_size`
/// is off because an overlay for `&{/}` must restate the root's cell counts
/// for dtc to check its `reg`s, and then has no `reg` of its own at the root
/// (the kernel's dtbs builds turn this warning off too).
fn compile_overlay(sh: &Shell, src: &Path, dtbo: &Path) -> Result<()> {
    silent(
        cmd!(
            sh,
            "dtc -@ -Wno-avoid_unnecessary_addr_size -I dts -O dtb -o {dtbo} {src}"
        ),
        &format!("dtc {}", src.display()),
    )
}

fn collect_dtso(dir: &Path, into: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            collect_dtso(&path, into)?;
        } else if path.extension().is_some_and(|e| e == "dtso") {
            into.push(path);
        }
    }
    Ok(())
}

fn dump_qemu_virt_dtb(sh: &Shell, out: &Path) -> Result<()> {
    ensure!(have("qemu-system-aarch64"), "qemu-system-aarch64 not found");
    let machine = format!("virt,dumpdtb={}", out.display());
    // The VMs' memory size: the overlays' regions must lie in its RAM.
    let memory = crate::vm::MEMORY_MIB;
    // No network device: its option ROM (efi-virtio.rom) is in
    // ipxe-qemu, which `--no-install-recommends` leaves out, and QEMU
    // refuses to start without it. The VMs run with `-nic none` too.
    let res = captured(cmd!(
        sh,
        "qemu-system-aarch64 -M {machine} -cpu cortex-a57 -m {memory} -smp 2 -nographic -nic none"
    ))?;
    ensure!(
        sh.path_exists(out),
        "qemu-system-aarch64 wrote no DTB:\n{}",
        text(&res)
    );
    Ok(())
}

/// An overlay that sets the root's `#address-cells`/`#size-cells` must set
/// them to the base's values.
fn check_root_cells(base_dtb: &Path, dtbo: &Path) -> Result<()> {
    let base = Fdt::read(base_dtb)?;
    let overlay = Fdt::read(dtbo)?;
    for fragment in &overlay.node(0).children {
        let fragment = overlay.node(*fragment);
        let to_root = fragment.prop("target-path").is_some_and(|p| p == b"/\0");
        let Some(body) = overlay.child(fragment, "__overlay__") else {
            continue;
        };
        if !to_root {
            continue;
        }
        for cells in ["#address-cells", "#size-cells"] {
            let (Some(want), Some(have)) = (overlay.node(body).u32(cells), base.node(0).u32(cells))
            else {
                continue;
            };
            ensure!(
                want == have,
                "{} sets the root's {cells} to <{want}>, but {} has <{have}>: adapt the overlay \
                 (see docs/device-tree.md)",
                dtbo.display(),
                base_dtb.display()
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// A reader of flattened device trees (the DTB format of the Devicetree
// Specification, chapter 5), enough for the checks above.

#[derive(Debug, Default)]
struct Node {
    name: String,
    parent: Option<usize>,
    props: Vec<(String, Vec<u8>)>,
    children: Vec<usize>,
}

impl Node {
    fn prop(&self, name: &str) -> Option<&[u8]> {
        self.props
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    fn u32(&self, name: &str) -> Option<u32> {
        let v = self.prop(name)?;
        Some(u32::from_be_bytes(v.try_into().ok()?))
    }

    /// A string property's first string.
    fn str(&self, name: &str) -> Option<String> {
        let v = self.prop(name)?;
        let s = v.split(|b| *b == 0).next()?;
        Some(String::from_utf8_lossy(s).into_owned())
    }

    fn strings(&self, name: &str) -> Vec<String> {
        self.prop(name)
            .map(|v| {
                v.split(|b| *b == 0)
                    .filter(|s| !s.is_empty())
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn enabled(&self) -> bool {
        self.str("status").is_none_or(|s| s == "okay" || s == "ok")
    }
}

/// A parsed tree; node 0 is the root.
#[derive(Debug, Default)]
struct Fdt {
    nodes: Vec<Node>,
    /// The `/memreserve/` entries: (address, size).
    memreserve: Vec<(u64, u64)>,
}

const FDT_MAGIC: u32 = 0xd00d_feed;
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;

fn be32(blob: &[u8], at: usize) -> Result<u32> {
    let b = blob.get(at..at + 4).context("DTB truncated")?;
    Ok(u32::from_be_bytes(b.try_into()?))
}

fn be64(blob: &[u8], at: usize) -> Result<u64> {
    Ok((u64::from(be32(blob, at)?) << 32) | u64::from(be32(blob, at + 4)?))
}

fn cstr(blob: &[u8], at: usize) -> Result<&[u8]> {
    let rest = blob.get(at..).context("DTB string out of range")?;
    let end = rest
        .iter()
        .position(|b| *b == 0)
        .context("DTB string not terminated")?;
    Ok(&rest[..end])
}

impl Fdt {
    fn read(path: &Path) -> Result<Self> {
        let blob = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&blob).with_context(|| format!("parsing {}", path.display()))
    }

    fn parse(blob: &[u8]) -> Result<Self> {
        ensure!(
            be32(blob, 0)? == FDT_MAGIC,
            "not a flattened device tree (bad magic)"
        );
        let total = be32(blob, 4)? as usize;
        ensure!(
            total <= blob.len(),
            "DTB header says {total} bytes, file has {}",
            blob.len()
        );
        let blob = &blob[..total];
        let off_struct = be32(blob, 8)? as usize;
        let off_strings = be32(blob, 12)? as usize;
        let off_rsvmap = be32(blob, 16)? as usize;
        ensure!(be32(blob, 20)? >= 16, "DTB version below 16");

        let mut tree = Fdt::default();
        let mut at = off_rsvmap;
        loop {
            let (addr, size) = (be64(blob, at)?, be64(blob, at + 8)?);
            at += 16;
            if addr == 0 && size == 0 {
                break;
            }
            tree.memreserve.push((addr, size));
        }

        let mut at = off_struct;
        let mut stack: Vec<usize> = Vec::new();
        loop {
            let token = be32(blob, at)?;
            at += 4;
            match token {
                FDT_BEGIN_NODE => {
                    let name = cstr(blob, at)?;
                    at += (name.len() + 1).next_multiple_of(4);
                    let idx = tree.nodes.len();
                    let parent = stack.last().copied();
                    tree.nodes.push(Node {
                        name: String::from_utf8_lossy(name).into_owned(),
                        parent,
                        ..Node::default()
                    });
                    if let Some(p) = parent {
                        tree.nodes[p].children.push(idx);
                    }
                    stack.push(idx);
                }
                FDT_END_NODE => {
                    stack.pop().context("unbalanced FDT_END_NODE")?;
                }
                FDT_PROP => {
                    let len = be32(blob, at)? as usize;
                    let name_off = be32(blob, at + 4)? as usize;
                    let value = blob
                        .get(at + 8..at + 8 + len)
                        .context("property value out of range")?
                        .to_vec();
                    at += 8 + len.next_multiple_of(4);
                    let name =
                        String::from_utf8_lossy(cstr(blob, off_strings + name_off)?).into_owned();
                    let node = *stack.last().context("property outside any node")?;
                    tree.nodes[node].props.push((name, value));
                }
                FDT_NOP => {}
                FDT_END => break,
                other => bail!("unknown DTB token {other:#x} at offset {}", at - 4),
            }
        }
        ensure!(
            stack.is_empty() && !tree.nodes.is_empty(),
            "DTB structure block is unbalanced"
        );
        Ok(tree)
    }

    fn node(&self, idx: usize) -> &Node {
        &self.nodes[idx]
    }

    fn child(&self, node: &Node, name: &str) -> Option<usize> {
        node.children
            .iter()
            .copied()
            .find(|c| self.nodes[*c].name == name)
    }

    fn path(&self, idx: usize) -> String {
        let mut parts = Vec::new();
        let mut cur = Some(idx);
        while let Some(i) = cur {
            if self.nodes[i].parent.is_some() {
                parts.push(self.nodes[i].name.as_str());
            }
            cur = self.nodes[i].parent;
        }
        parts.reverse();
        format!("/{}", parts.join("/"))
    }

    fn by_phandle(&self, phandle: u32) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.u32("phandle").or_else(|| n.u32("linux,phandle")) == Some(phandle))
    }

    /// Enabled nodes compatible with the binding, in tree order (the order
    /// in which Linux creates their platform devices).
    fn rings(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| {
                self.nodes[*i].enabled()
                    && self.nodes[*i]
                        .strings("compatible")
                        .iter()
                        .any(|c| c == COMPATIBLE)
            })
            .collect()
    }

    /// `#address-cells`/`#size-cells` a node gives its children (the
    /// Devicetree Specification's defaults are 2 and 1).
    fn cells(&self, node: usize) -> (u32, u32) {
        let n = &self.nodes[node];
        (
            n.u32("#address-cells").unwrap_or(2),
            n.u32("#size-cells").unwrap_or(1),
        )
    }

    /// A node's `reg` entries as (address, size), in its parent's cells.
    fn reg(&self, node: usize) -> Option<Vec<(u64, u64)>> {
        let parent = self.nodes[node].parent?;
        let (ac, sc) = self.cells(parent);
        let raw = self.nodes[node].prop("reg")?;
        let words: Vec<u32> = raw
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes(c.try_into().expect("chunk of 4")))
            .collect();
        let (ac, sc) = (ac as usize, sc as usize);
        if ac == 0
            || ac > 2
            || sc > 2
            || !raw.len().is_multiple_of(4)
            || !words.len().is_multiple_of(ac + sc)
        {
            return None;
        }
        let num = |w: &[u32]| w.iter().fold(0u64, |acc, x| (acc << 32) | u64::from(*x));
        Some(
            words
                .chunks_exact(ac + sc)
                .map(|e| (num(&e[..ac]), num(&e[ac..])))
                .collect(),
        )
    }
}

// ---------------------------------------------------------------------------
// The region rules

/// The data area a region of `size` bytes gives with `page`-byte pages: the
/// largest power of two in [4 KiB, 2 GiB] that fits after two pages.
fn data_size(size: u64, page: u64) -> Option<u64> {
    let avail = size.checked_sub(2 * page)?.min(MAX_DATA);
    if avail < MIN_DATA {
        return None;
    }
    Some(1 << (63 - avail.leading_zeros()))
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.0.saturating_add(b.1) && b.0 < a.0.saturating_add(a.1)
}

/// The region a ring node names, checked; `Err` is the finding.
fn ring_region(tree: &Fdt, ring: usize) -> Result<(usize, u64, u64), String> {
    let node = tree.node(ring);
    let Some(phandles) = node.prop("memory-region") else {
        return Err("no memory-region property".into());
    };
    if phandles.len() != 4 {
        return Err(format!(
            "memory-region must name exactly one region, it has {} cells",
            phandles.len() / 4
        ));
    }
    let phandle = u32::from_be_bytes(phandles.try_into().expect("4 bytes"));
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
    if tree.node(region).prop("no-map").is_none() {
        return Err(format!(
            "region {rpath} lacks no-map, so the kernel maps it as ordinary RAM"
        ));
    }
    if !base.is_multiple_of(MIN_PAGE) || !size.is_multiple_of(MIN_PAGE) {
        return Err(format!(
            "region {rpath} ({base:#x}, size {size:#x}) is not page-aligned"
        ));
    }
    if data_size(size, MIN_PAGE).is_none() {
        return Err(format!(
            "region {rpath} is too small: {size:#x} bytes, the minimum is {:#x} (two pages + 4 KiB)",
            2 * MIN_PAGE + MIN_DATA
        ));
    }
    Ok((region, base, size))
}

/// Why `label` cannot name a device, as the driver says it
/// (`platform_driver.rs`, `bad_label`), if it cannot.
fn bad_label(label: &str) -> Option<&'static str> {
    let first_ok = label
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric());
    let rest_ok = label
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    if label.is_empty() || label.len() > 63 || !first_ok || !rest_ok {
        return Some(
            "not a device name: 1 to 63 letters, digits, '_', '.' or '-', starting with a \
             letter or digit",
        );
    }
    let numbered = label
        .strip_prefix("rmemring")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if numbered {
        return Some("names of the form rmemringN belong to unlabelled rings");
    }
    None
}

/// The optional properties of a ring node, checked as the driver checks
/// them; `Err` is the finding, worded as the driver's message.
fn ring_properties(node: &Node) -> Result<(), String> {
    for (name, choices) in [
        ("rmemring,cache-mode", &CACHE_MODES[..]),
        ("rmemring,overflow", &OVERFLOW_MODES[..]),
    ] {
        if let Some(value) = node.str(name) {
            if !choices.contains(&value.as_str()) {
                return Err(format!("{name}: unknown value {value:?}"));
            }
        }
    }
    if let Some(label) = node.str("label") {
        if let Some(why) = bad_label(&label) {
            return Err(format!("label {label:?}: {why}"));
        }
    }
    Ok(())
}

/// Everything that would stop a ring from probing or that would clash at
/// boot, one line per problem.
fn lint_tree(tree: &Fdt) -> Vec<String> {
    let mut findings = Vec::new();
    let root = tree.node(0);
    let memory: Vec<(u64, u64)> = root
        .children
        .iter()
        .filter(|c| tree.node(**c).str("device_type").as_deref() == Some("memory"))
        .filter_map(|c| tree.reg(*c))
        .flatten()
        .collect();
    let resmem = tree.child(root, "reserved-memory");
    if let Some(rm) = resmem {
        if tree.cells(rm) != tree.cells(0) || tree.node(rm).prop("ranges").is_none() {
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
        if let Some(label) = tree.node(ring).str("label") {
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
        if !memory
            .iter()
            .any(|m| m.0 <= base && base.saturating_add(size) <= m.0.saturating_add(m.1))
        {
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
fn describe(tree: &Fdt) -> Vec<String> {
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
        for page in PAGE_SIZES {
            let data = if base.is_multiple_of(page) && size.is_multiple_of(page) {
                data_size(size, page)
            } else {
                None
            };
            let data = data.map_or_else(|| "-".to_string(), human);
            let _ = write!(line, " {data} ({}K pages)", page >> 10);
        }
        let cache = node
            .str("rmemring,cache-mode")
            .unwrap_or_else(|| "write-back".into());
        let overflow = node
            .str("rmemring,overflow")
            .unwrap_or_else(|| "drop-new".into());
        let dev = node.str("label").unwrap_or_else(|| {
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
    use super::*;

    /// Builds DTBs for the tests, so that they need no dtc.
    #[derive(Default)]
    struct Builder {
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
        fn begin(&mut self, name: &str) -> &mut Self {
            self.word(FDT_BEGIN_NODE);
            self.structs.extend_from_slice(name.as_bytes());
            self.structs.push(0);
            self.pad();
            self
        }
        fn end(&mut self) -> &mut Self {
            self.word(FDT_END_NODE);
            self
        }
        fn prop(&mut self, name: &str, value: &[u8]) -> &mut Self {
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
        fn cells(&mut self, name: &str, cells: &[u32]) -> &mut Self {
            let v: Vec<u8> = cells.iter().flat_map(|c| c.to_be_bytes()).collect();
            self.prop(name, &v)
        }
        fn string(&mut self, name: &str, s: &str) -> &mut Self {
            let mut v = s.as_bytes().to_vec();
            v.push(0);
            self.prop(name, &v)
        }
        /// The root of a QEMU-virt-like tree (64-bit cells, 1 GiB of RAM at
        /// 0x40000000), left open.
        fn virt_root(&mut self) -> &mut Self {
            self.begin("")
                .cells("#address-cells", &[2])
                .cells("#size-cells", &[2]);
            self.begin("memory@40000000")
                .string("device_type", "memory")
                .cells("reg", &[0, 0x4000_0000, 0, 0x4000_0000])
                .end()
        }
        /// A `reserved-memory` node with `regions` (phandles 1, 2, ...).
        fn regions(&mut self, regions: &[Region]) -> &mut Self {
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
        fn ring(&mut self, name: &str, phandle: u32, props: &[(&str, &str)]) -> &mut Self {
            self.begin(name).string("compatible", COMPATIBLE);
            if phandle != 0 {
                self.cells("memory-region", &[phandle]);
            }
            for (k, v) in props {
                self.string(k, v);
            }
            self.end()
        }
        fn finish(&mut self) -> Vec<u8> {
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
    struct Region(u64, u64, bool);

    /// A QEMU-virt-like tree: 1 GiB of RAM at 0x40000000, the regions
    /// (phandles 1, 2, ...), and one ring per entry of `rings`, which names a
    /// phandle (0 for none) and an optional label.
    fn board(regions: &[Region], rings: &[(u32, Option<&str>)], memreserve: &[(u64, u64)]) -> Fdt {
        Fdt::parse(&board_blob(regions, rings, memreserve)).expect("test DTB parses")
    }

    fn board_blob(
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
    fn board_props(
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

    const GOOD: Region = Region(0x7000_0000, 0x101_0000, true);

    fn only_finding(tree: &Fdt) -> String {
        let findings = lint_tree(tree);
        assert_eq!(findings.len(), 1, "{findings:?}");
        findings[0].clone()
    }

    #[test]
    fn data_size_follows_the_page_size() {
        // 16 MiB + 128 KiB gives 16 MiB with every arm64 page size; 16 MiB +
        // 64 KiB only with 4 and 16 KiB pages.
        for page in PAGE_SIZES {
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
        assert_eq!(data_size(u64::MAX, 4096), Some(MAX_DATA));
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
        assert!(only_finding(&board(
            &[Region(0x7000_0000, 0x2000, true)],
            &[(1, None)],
            &[]
        ))
        .contains(small));
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

    /// A ring node for [`overlay_blob`]: its name, the phandle of its
    /// region, and string properties.
    type OverlayRing<'a> = (&'a str, u32, &'a [(&'a str, &'a str)]);

    /// An overlay as dtc -@ compiles it: one fragment for the root, its
    /// regions (phandles 1, 2, ...) and rings.
    fn overlay_blob(regions: &[Region], rings: &[OverlayRing<'_>]) -> Vec<u8> {
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
        assert_eq!(got, want);
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
        assert!(got.contains("ring node=rmemring-good region=ring@72000000 base=0x72000000 size=0x120000 data=0x100000 overflow=drop-new cache=write-back dev=rmemring0 "), "{got}");
        assert!(got.ends_with("refused node=rmemring-bad\n"), "{got}");

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

    /// The string literals of a Rust source, with `\`-continued lines
    /// joined (escapes other than that are kept as written).
    fn string_literals(source: &str) -> Vec<String> {
        let mut literals = Vec::new();
        let mut chars = source.chars().peekable();
        let mut in_comment = false;
        let mut prev = ' ';
        while let Some(c) = chars.next() {
            if in_comment {
                in_comment = c != '\n';
            } else if c == '/' && chars.peek() == Some(&'/') {
                in_comment = true;
            } else if c == '"' && prev != '\'' {
                let mut lit = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => match chars.next() {
                            Some('\n') => {
                                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                                    chars.next();
                                }
                            }
                            Some(e) => {
                                lit.push('\\');
                                lit.push(e);
                            }
                            None => {}
                        },
                        c => lit.push(c),
                    }
                }
                literals.push(lit);
            }
            prev = c;
        }
        literals
    }

    /// Each negative test looks for a message only its own refusal prints:
    /// its substring is in exactly one of the driver's string literals.
    #[test]
    fn each_broken_message_is_the_drivers_and_only_one() {
        // What the kernel compiles: the driver and the protocol crate.
        let mut literals = Vec::new();
        for dir in ["driver", "proto/src"] {
            let dir = workspace_root().join(dir);
            for entry in std::fs::read_dir(&dir).expect("kernel sources") {
                let path = entry.expect("entry").path();
                if path.extension().is_some_and(|e| e == "rs") {
                    let source = std::fs::read_to_string(&path).expect("source");
                    literals.extend(string_literals(&source));
                }
            }
        }
        assert!(literals.iter().any(|l| l.contains("lacks no-map")));
        for (name, _, message) in BROKEN {
            // The driver composes this one: "{}: unknown value {:?}" with the
            // property's name.
            let (property, message) = message
                .split_once(": ")
                .filter(|(p, _)| p.starts_with("rmemring,"))
                .unwrap_or(("", message));
            let holders: Vec<&String> = literals.iter().filter(|l| l.contains(message)).collect();
            assert_eq!(holders.len(), 1, "{name}: {message:?} is in {holders:?}");
            if !property.is_empty() {
                assert!(
                    literals.iter().any(|l| l == property),
                    "{name}: the driver never names {property}"
                );
            }
        }
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

    #[test]
    fn the_overlays_exist() {
        assert!(board_overlay().is_file());
        assert!(dts_dir().join(GENERIC_OVERLAY).is_file());
        let broken = broken_overlays();
        assert_eq!(broken.len(), BROKEN.len());
        for (name, path, _) in broken {
            assert!(path.is_file(), "{name}: {}", path.display());
        }
        for (path, _) in SCHEMA_NEGATIVE {
            assert!(dts_dir().join(path).is_file(), "{path}");
        }
    }

    #[test]
    fn the_reader_reads_what_it_should() {
        let blob = board_blob(&[GOOD], &[(1, Some("x"))], &[(0x4000_0000, 0x1000)]);
        let tree = Fdt::parse(&blob).expect("parses");
        assert_eq!(tree.memreserve, vec![(0x4000_0000, 0x1000)]);
        let rings = tree.rings();
        assert_eq!(rings.len(), 1);
        assert_eq!(tree.path(rings[0]), "/rmemring-0");
        let region = tree.by_phandle(1).expect("phandle 1");
        assert_eq!(tree.path(region), "/reserved-memory/ring@70000000");
        assert_eq!(tree.reg(region), Some(vec![(0x7000_0000, 0x101_0000)]));

        assert!(Fdt::parse(b"").is_err());
        assert!(Fdt::parse(&[0u8; 64]).is_err());
        assert!(Fdt::parse(&blob[..blob.len() - 8]).is_err(), "truncated");
        let mut bad = blob.clone();
        bad[0] ^= 1;
        assert!(Fdt::parse(&bad).is_err(), "bad magic");
    }
}
