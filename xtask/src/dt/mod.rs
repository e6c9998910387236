// SPDX-License-Identifier: GPL-2.0-only OR MIT

//! Device tree: the `rmemring,ring` binding, its overlays and their checks.
//!
//! - [`check`] validates `dts/rmemring.yaml` with dt-schema's own tools
//!   (meta-schema, examples), compiles every overlay, applies the good ones
//!   onto a base tree and validates the result against the binding, and
//!   proves that the checks fail where they should: the broken overlays under
//!   `dts/tests/` must be rejected, each for its own reason.
//! - [`board_dtb`] builds the DTB a VM boots with: base DTB + overlay, and
//!   [`expectations`] says what a guest booted with it must find.
//! - [`board_overlay`] and [`broken_overlays`] name the overlays of the
//!   positive and negative VM tests.
//!
//! Its parts: `tools` installs and runs dtc, fdtoverlay, fdtget, dt-schema
//! and yamllint; `fdt` reads flattened trees; `lint` applies the driver's
//! rules to a ring and its region on the host, where dt-schema cannot
//! follow `memory-region`; `board` builds the board and its expectations.
//! The binding's facts that the driver shares (compatible, property values,
//! label rule, ring geometry) come from `rmemring_proto`, and a test holds
//! `dts/rmemring.yaml` to the same values.

mod board;
mod fdt;
#[cfg(test)]
mod fixtures;
mod lint;
mod tools;

use std::path::{
    Path,
    PathBuf, //
};

use anyhow::{
    ensure,
    Context,
    Result, //
};
use rmemring_proto::layout::MIN_PAGE_SIZE;
use xshell::{
    cmd,
    Shell, //
};

pub use self::board::{
    arm64_page_size,
    board_dtb,
    expectations, //
};
use self::fdt::Fdt;
use self::lint::{
    describe,
    lint_tree, //
};
use self::tools::{
    captured,
    compile_overlay,
    dump_qemu_virt_dtb,
    ensure_dtc,
    ensure_dtschema,
    silent,
    text,
    DTSCHEMA_VERSION,
    KERNEL_YAMLLINT, //
};

/// The generic overlay for any 64-bit board, relative to `dts/`.
const GENERIC_OVERLAY: &str = "rmemring-overlay.dtso";

/// The negative VM tests: name, overlay relative to `dts/`, and the
/// substring of the driver's refusal in dmesg (and of [`lint()`]'s finding).
/// Each overlay has one broken ring, [`BROKEN_RING`], next to a sound one.
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

/// The name of the broken ring in each of [`BROKEN`]'s overlays.
const BROKEN_RING: &str = "rmemring-bad";

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

/// Validates the binding and the overlays; see the module documentation.
pub fn check(sh: &Shell) -> Result<()> {
    ensure_dtc(sh)?;
    let bin = ensure_dtschema(sh)?;
    let dts = dts_dir();
    let out = crate::project_root().join("target/dt");
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
            let expected = expectations(&board, MIN_PAGE_SIZE)?;
            if *base_name == "qemu-virt" {
                for line in expected.to_string().lines() {
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
            let expected = expectations(&board, MIN_PAGE_SIZE)?;
            ensure!(
                !expected.rings.is_empty() && expected.refused.iter().any(|n| n == BROKEN_RING),
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

fn dts_dir() -> PathBuf {
    crate::project_root().join("dts")
}

fn stem(path: &str) -> String {
    Path::new(path)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
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

#[cfg(test)]
mod tests {
    use rmemring_proto::devicetree::{
        label_defect,
        CACHE_MODE_PROPERTY,
        CACHE_MODE_VALUES,
        COMPATIBLE,
        LABEL_MAX,
        LABEL_PROPERTY,
        OVERFLOW_PROPERTY,
        OVERFLOW_VALUES, //
    };
    use yaml_rust2::YamlLoader;

    use super::*;

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
            let dir = crate::project_root().join(dir);
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

    /// dt-schema checks trees against `dts/rmemring.yaml`, the driver and
    /// the host's lint against `rmemring_proto::devicetree`: both must say
    /// the same.
    #[test]
    fn the_binding_states_the_protocols_values() {
        fn names<T>(values: &[(&'static str, T)]) -> Vec<&'static str> {
            values.iter().map(|(name, _)| *name).collect()
        }
        let text = std::fs::read_to_string(dts_dir().join("rmemring.yaml")).expect("the binding");
        let docs = YamlLoader::load_from_str(&text).expect("the binding is YAML");
        let properties = &docs[0]["properties"];
        let property = |name: &std::ffi::CStr| {
            let schema = &properties[name.to_str().expect("an ASCII name")];
            assert!(!schema.is_badvalue(), "the binding has no {name:?}");
            schema
        };

        assert_eq!(
            properties["compatible"]["const"].as_str(),
            COMPATIBLE.to_str().ok()
        );
        for (name, values) in [
            (CACHE_MODE_PROPERTY, names(&CACHE_MODE_VALUES)),
            (OVERFLOW_PROPERTY, names(&OVERFLOW_VALUES)),
        ] {
            let schema = property(name);
            let listed: Vec<&str> = schema["enum"]
                .as_vec()
                .expect("an enum")
                .iter()
                .map(|v| v.as_str().expect("a string value"))
                .collect();
            assert_eq!(listed, values, "{name:?}");
            // The driver takes the table's first value when there is none.
            assert_eq!(schema["default"].as_str(), Some(values[0]), "{name:?}");
        }

        // The pattern must accept exactly the labels whose only defect, if
        // any, is one a pattern does not state: the `rmemringN` names.
        let pattern = property(LABEL_PROPERTY)["pattern"]
            .as_str()
            .expect("a label pattern");
        let pattern = regex::Regex::new(pattern).expect("a regular expression");
        let malformed = label_defect(b"");
        assert!(malformed.is_some());
        let mut labels: Vec<String> = ["rmemring0", "rmemring", "a.b_c-9", "é"]
            .map(String::from)
            .into();
        for len in [1, LABEL_MAX - 1, LABEL_MAX, LABEL_MAX + 1] {
            labels.push("a".repeat(len));
        }
        for c in (' '..='~').chain(['é']) {
            labels.extend([format!("{c}"), format!("{c}a"), format!("a{c}")]);
        }
        for label in &labels {
            assert_eq!(
                pattern.is_match(label),
                label_defect(label.as_bytes()) != malformed,
                "{label:?}: the pattern and label_defect disagree"
            );
        }
        assert!(pattern.is_match("rmemring0") && label_defect(b"rmemring0").is_some());
    }
}
