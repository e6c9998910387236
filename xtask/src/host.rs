//! Host packages: check with dpkg, install what is missing with apt when root.

use std::sync::{
    Mutex,
    PoisonError, //
};

use anyhow::{
    bail,
    Context,
    Result, //
};
use xshell::{
    cmd,
    Shell, //
};

use crate::exec::Log;

/// Host packages for the Debian sid chroot.
pub const CHROOT: &[&str] = &["debootstrap", "debian-archive-keyring"];
/// Host packages for x86_64 guests: QEMU and the static busybox.
pub const VM_X86_64: &[&str] = &["qemu-system-x86", "busybox-static"];
/// Host packages for arm64 guests: QEMU and the device-tree tools.
pub const VM_AARCH64: &[&str] = &["qemu-system-arm", "device-tree-compiler"];
/// Host packages for the device-tree checks: the dtc tools, what `dt::tools`
/// needs to pip-install dt-schema into a venv (pylibfdt compiles), and
/// QEMU's arm64 emulator, whose `virt` tree the overlays are checked on.
pub const DT: &[&str] = &[
    "device-tree-compiler",
    "python3-venv",
    "python3-dev",
    "gcc",
    "qemu-system-arm",
];
/// Host packages for the CLI's tests: bash, zsh and fish, which load its
/// completion scripts, and groff, which renders its manual pages.
pub const CLI_TEST: &[&str] = &["bash", "zsh", "fish", "groff-base"];
/// Host packages for static x86_64 guest binaries (the linker and `libc.a`).
pub const GUEST_X86_64: &[&str] = &["gcc", "libc6-dev"];

/// Apt options that bound every network step.
pub const APT_NET_OPTIONS: &[&str] = &[
    "-o",
    "Acquire::http::Timeout=60",
    "-o",
    "Acquire::https::Timeout=60",
    "-o",
    "Acquire::Retries=3",
];

/// `timeout` arguments that bound every step that downloads: 30 minutes,
/// then TERM (and KILL 30 s later). `--foreground` keeps the step in our
/// process group, so that Ctrl-C still reaches it.
pub const NET_TIMEOUT: &[&str] = &["--foreground", "--kill-after=30", "1800"];

/// Makes sure the host has `packages`, installing the missing ones with apt.
pub fn ensure(sh: &Shell, log: &Log, packages: &[&str]) -> Result<()> {
    // `cargo xtask test` installs from two threads (its build thread and
    // the host checks), and apt takes one installation at a time.
    static APT: Mutex<()> = Mutex::new(());
    let _apt = APT.lock().unwrap_or_else(PoisonError::into_inner);
    let missing = missing(sh, packages)?;
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    if !is_root(sh)? {
        bail!(
            "missing host packages: {list}\n\
             Install them with `sudo apt-get install --no-install-recommends {list}`, \
             or run this task as root."
        );
    }
    log.line(&format!("installing host packages: {list}"));
    let net = APT_NET_OPTIONS;
    let timeout = NET_TIMEOUT;
    let _env = sh.push_env("DEBIAN_FRONTEND", "noninteractive");
    log.run(cmd!(sh, "timeout {timeout...} apt-get {net...} update"))?;
    log.run(cmd!(
        sh,
        "timeout {timeout...} apt-get {net...} install -y --no-install-recommends {missing...}"
    ))?;
    let still = self::missing(sh, packages)?;
    if !still.is_empty() {
        bail!("apt-get did not install {}", still.join(" "));
    }
    Ok(())
}

/// Whether this process runs as root.
pub fn is_root(sh: &Shell) -> Result<bool> {
    Ok(cmd!(sh, "id -u").quiet().read()? == "0")
}

/// Fails with a clear message unless this process runs as root.
pub fn require_root(sh: &Shell, what: &str) -> Result<()> {
    if !is_root(sh)? {
        bail!("{what} needs root (debootstrap, chroot and mount namespaces); run it as root");
    }
    Ok(())
}

/// The packages of `packages` that dpkg does not list as installed.
fn missing<'a>(sh: &Shell, packages: &[&'a str]) -> Result<Vec<&'a str>> {
    // Unknown packages make dpkg-query exit 1 and say so on stderr only.
    let format = "${Package}\t${Status}\n";
    let output = cmd!(sh, "dpkg-query -W -f {format} {packages...}")
        .quiet()
        .ignore_status()
        .output()
        .context("running dpkg-query: is this a Debian or Ubuntu host?")?;
    let listed = String::from_utf8_lossy(&output.stdout);
    let installed: Vec<&str> = listed
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .filter(|(_, status)| status.ends_with(" installed"))
        .map(|(package, _)| package.split(':').next().unwrap_or(package))
        .collect();
    Ok(packages
        .iter()
        .copied()
        .filter(|package| !installed.contains(package))
        .collect())
}
