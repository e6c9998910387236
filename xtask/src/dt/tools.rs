// SPDX-License-Identifier: GPL-2.0-only OR MIT

//! The device-tree tools, installed when missing and run so that a warning
//! counts as a failure: `dtc`, `fdtoverlay` and `fdtget` (Debian
//! `device-tree-compiler`, installed with apt-get when running as root),
//! dt-schema and yamllint (PyPI `dtschema` and `yamllint`, pinned, in a venv
//! in the cache directory), and QEMU's arm64 `virt` tree.

use std::path::{
    Path,
    PathBuf, //
};
use std::process::Output;

use anyhow::{
    ensure,
    Context,
    Result, //
};
use xshell::{
    cmd,
    Cmd,
    Shell, //
};

use crate::{
    cache,
    host,
    vm, //
};

/// The dt-schema release the checks were written against. dt-schema's
/// messages and exit codes change between releases; bump deliberately.
pub(super) const DTSCHEMA_VERSION: &str = "2026.9";
/// yamllint, which the kernel's `dt_binding_check` runs on bindings.
const YAMLLINT_VERSION: &str = "1.38.0";

/// The kernel's `Documentation/devicetree/bindings/.yamllint` (Linux 7.2).
pub(super) const KERNEL_YAMLLINT: &str = r#"extends: relaxed

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

/// Runs a command to completion whatever its status, keeping its output.
pub(super) fn captured(cmd: Cmd<'_>) -> Result<Output> {
    Ok(cmd.ignore_status().output()?)
}

/// A command's stdout and stderr, one after the other.
pub(super) fn text(out: &Output) -> String {
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    s
}

/// Runs a check that must succeed and print nothing. dt-schema's tools exit
/// 0 after reporting errors (dt-validate always does, dt-doc-validate for
/// `$ref` problems), so any output counts as a failure.
pub(super) fn silent(cmd: Cmd<'_>, what: &str) -> Result<()> {
    let res = captured(cmd)?;
    let msg = text(&res);
    ensure!(
        res.status.success() && msg.trim().is_empty(),
        "{what} failed ({}):\n{msg}",
        res.status
    );
    Ok(())
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
pub(super) fn ensure_dtc(sh: &Shell) -> Result<()> {
    let missing = || {
        ["dtc", "fdtoverlay", "fdtget"]
            .into_iter()
            .filter(|t| !have(t))
            .collect::<Vec<_>>()
    };
    if missing().is_empty() {
        return Ok(());
    }
    if host::is_root(sh).unwrap_or(false) {
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
pub(super) fn ensure_dtschema(sh: &Shell) -> Result<PathBuf> {
    let venv = cache::root()?.join("venv-dtschema");
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
pub(super) fn compile_overlay(sh: &Shell, src: &Path, dtbo: &Path) -> Result<()> {
    silent(
        cmd!(
            sh,
            "dtc -@ -Wno-avoid_unnecessary_addr_size -I dts -O dtb -o {dtbo} {src}"
        ),
        &format!("dtc {}", src.display()),
    )
}

/// Writes the tree of QEMU's arm64 `virt` machine, as the VMs get it, to `out`.
pub(super) fn dump_qemu_virt_dtb(sh: &Shell, out: &Path) -> Result<()> {
    ensure!(have("qemu-system-aarch64"), "qemu-system-aarch64 not found");
    let machine = format!("virt,dumpdtb={}", out.display());
    // The VMs' memory size: the overlays' regions must lie in its RAM.
    let memory = vm::MEMORY_MIB;
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
