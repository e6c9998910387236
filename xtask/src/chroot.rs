//! The Debian sid chroot that builds the kernels, the driver and arm64 user space.
//!
//! The host's toolchain cannot build kernel Rust (no `rust-src`, and the kernel
//! wants a matching bindgen and clang), so everything kernel-side happens in a
//! sid chroot in the cache. Every command runs in a private mount namespace
//! (`unshare --mount`) that mounts `/proc`, `/dev` and any bind mounts for
//! that command alone: when it exits, the kernel drops them, so no mount is
//! ever left behind, not even after a crash or Ctrl-C.
//!
//! Setup is stamped in steps. A step without its stamp was interrupted (or
//! never ran) and is redone from the start, never trusted.

use std::fmt::Write as _;
use std::fs;
use std::path::{
    Path,
    PathBuf, //
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

use crate::cache;
use crate::exec::{
    shell_words,
    Log, //
};
use crate::host;

/// The toolchain of kernel builds: their versions are part of a build's key.
pub const TOOLCHAIN_PACKAGES: &[&str] = &[
    "linux-source-7.2",
    "rustc",
    "rust-src",
    "bindgen",
    "clang",
    "lld",
    "llvm",
];

/// What the kernel and driver builds need besides [`TOOLCHAIN_PACKAGES`].
pub const BUILD_PACKAGES: &[&str] = &[
    "rustfmt",
    // clippy-driver, for the driver build's CLIPPY=1.
    "rust-clippy",
    "make",
    "bc",
    "flex",
    "bison",
    "libelf-dev",
    "libssl-dev",
    "python3",
    "cpio",
    "xz-utils",
    "kmod",
];

/// What arm64 user space needs on top: Debian's cargo and a cross std and libc.
pub const ARM64_PACKAGES: &[&str] = &[
    "cargo",
    "libstd-rust-dev:arm64",
    "gcc-aarch64-linux-gnu",
    "libc6-dev-arm64-cross",
];

/// What a kernel with BTF (`xtask/kconfig/btf.config`) needs on top:
/// pahole, new enough for `--lang_exclude` (1.24), without which
/// `CONFIG_RUST` refuses `CONFIG_DEBUG_INFO_BTF`. Installed only when such a
/// kernel is built (stamped as `btf`, [`Chroot::ensure_pahole`]), and its
/// version is part of that kernel's build key, so that the other kernels'
/// keys do not move. (`dwarves` and `pahole`, its binary, are built from
/// one source package: one version.)
pub const BTF_PACKAGES: &[&str] = &["dwarves"];

/// pahole inside the chroot, moved off `PATH` by a local `dpkg-divert`, so
/// that only the builds that name it (`PAHOLE=`) run it. A kernel build
/// looks for `pahole` on `PATH`, records its version in `.config`
/// (`CONFIG_PAHOLE_VERSION`, 0 without one), and every out-of-tree module
/// build against that tree warns when the pahole it finds has another
/// version: the kernels without BTF, whose keys do not cover pahole, must
/// build exactly as before it was installed.
pub const PAHOLE: &str = "/usr/libexec/rmemring/pahole";

/// The kernel source package; the build refuses any other version.
pub const LINUX_SOURCE: &str = "linux-source-7.2";

/// Apt settings inside the chroot. The mirror may serve a frozen snapshot
/// whose Release file has expired, and every download must time out.
const APT_CONF: &str = "\
Acquire::Check-Valid-Until \"false\";
Acquire::http::Timeout \"60\";
Acquire::https::Timeout \"60\";
Acquire::Retries \"3\";
APT::Install-Recommends \"false\";
";

/// Enters the chroot: `sh -ec ENTER enter ROOT [HOST INNER ro|rw]... -- ARGV...`,
/// run inside `unshare --mount`, whose new namespace is private.
const ENTER: &str = r#"
root=$1; shift
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
while [ "$1" != -- ]; do
    mkdir -p "$root$2"
    mount --bind "$1" "$root$2"
    if [ "$3" = ro ]; then mount -o remount,bind,ro "$root$2"; fi
    shift 3
done
shift
exec chroot "$root" /usr/bin/env -i \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root LANG=C.UTF-8 "$@"
"#;

/// Stamp: debootstrap completed (inside the chroot, so it moves with it).
const BOOTSTRAPPED: &str = ".rmemring-bootstrapped";
/// Stamp: the base packages are installed (records the list).
const BASE_STAMP: &str = ".rmemring-base-packages";
/// Stamp: the arm64 packages are installed (records the list).
const ARM64_STAMP: &str = ".rmemring-arm64-packages";

/// The sid chroot in the cache.
pub struct Chroot {
    root: PathBuf,
}

/// A host directory mounted into the chroot for one command.
pub struct Bind<'a> {
    pub host: &'a Path,
    pub inner: &'a str,
    pub read_only: bool,
}

impl Chroot {
    /// The chroot, created and provisioned with [`TOOLCHAIN_PACKAGES`] and
    /// [`BUILD_PACKAGES`] if needed.
    pub fn ensure(sh: &Shell, log: &Log) -> Result<Chroot> {
        let chroot = Chroot {
            root: cache::root()?.join("sid"),
        };
        let packages = [TOOLCHAIN_PACKAGES, BUILD_PACKAGES].concat();
        let want = packages.join(" ");
        let stamp = chroot.root.join(BASE_STAMP);
        if cache::stamp_matches(&stamp, &want) {
            return Ok(chroot);
        }
        host::require_root(sh, "building the Debian sid chroot")?;
        let _lock = cache::lock("chroot")?;
        if cache::stamp_matches(&stamp, &want) {
            return Ok(chroot);
        }
        host::ensure(sh, log, host::CHROOT)?;
        if !chroot.root.join(BOOTSTRAPPED).exists() {
            chroot.bootstrap(sh, log)?;
        }
        chroot.apt_update(sh, log)?;
        if chroot
            .read(
                sh,
                log,
                &["apt-cache", "show", "--no-all-versions", LINUX_SOURCE],
            )
            .is_err()
        {
            bail!(
                "{LINUX_SOURCE} is not in the Debian sid mirror any more; rmemring \
                 targets Linux 7.2 and will not silently build another version. \
                 Update chroot::LINUX_SOURCE and the docs deliberately."
            );
        }
        chroot.apt_install(sh, log, &packages)?;
        cache::write_stamp(&stamp, &want)?;
        Ok(chroot)
    }

    /// Adds arm64 as a foreign architecture and installs [`ARM64_PACKAGES`].
    pub fn ensure_arm64(&self, sh: &Shell, log: &Log) -> Result<()> {
        let want = ARM64_PACKAGES.join(" ");
        let stamp = self.root.join(ARM64_STAMP);
        if cache::stamp_matches(&stamp, &want) {
            return Ok(());
        }
        let _lock = cache::lock("chroot")?;
        if cache::stamp_matches(&stamp, &want) {
            return Ok(());
        }
        self.run(sh, log, &["dpkg", "--add-architecture", "arm64"])?;
        self.apt_update(sh, log)?;
        self.apt_install(sh, log, ARM64_PACKAGES)?;
        cache::write_stamp(&stamp, &want)
    }

    /// Installs `packages` once, stamped as `name`.
    pub fn ensure_packages(
        &self,
        sh: &Shell,
        log: &Log,
        name: &str,
        packages: &[&str],
    ) -> Result<()> {
        let want = packages.join(" ");
        let stamp = self.root.join(format!(".rmemring-{name}-packages"));
        if cache::stamp_matches(&stamp, &want) {
            return Ok(());
        }
        let _lock = cache::lock("chroot")?;
        if cache::stamp_matches(&stamp, &want) {
            return Ok(());
        }
        self.apt_update(sh, log)?;
        self.apt_install(sh, log, packages)?;
        cache::write_stamp(&stamp, &want)
    }

    /// Installs [`BTF_PACKAGES`] and moves pahole to [`PAHOLE`], once.
    pub fn ensure_pahole(&self, sh: &Shell, log: &Log) -> Result<()> {
        self.ensure_packages(sh, log, "btf", BTF_PACKAGES)?;
        if self.host_path(PAHOLE).exists() {
            return Ok(());
        }
        let _lock = cache::lock("chroot")?;
        if self.host_path(PAHOLE).exists() {
            return Ok(());
        }
        let dir = PAHOLE.rsplit_once('/').map_or(PAHOLE, |(dir, _)| dir);
        self.run(sh, log, &["mkdir", "-p", dir])?;
        self.run(
            sh,
            log,
            &[
                "dpkg-divert",
                "--local",
                "--rename",
                "--divert",
                PAHOLE,
                "--add",
                "/usr/bin/pahole",
            ],
        )?;
        Ok(())
    }

    /// The host path of the chroot's `inner` (an absolute path inside it).
    pub fn host_path(&self, inner: &str) -> PathBuf {
        self.root.join(inner.trim_start_matches('/'))
    }

    /// `PACKAGE VERSION` lines for `packages`, as installed in the chroot.
    pub fn versions(&self, sh: &Shell, log: &Log, packages: &[&str]) -> Result<String> {
        let mut argv = vec!["dpkg-query", "-W", "-f", "${Package} ${Version}\\n"];
        argv.extend_from_slice(packages);
        self.read(sh, log, &argv)
    }

    /// Runs `argv` in the chroot, streaming its output to `log`.
    /// Leading `NAME=VALUE` words set the environment, as with `env`.
    pub fn run(&self, sh: &Shell, log: &Log, argv: &[&str]) -> Result<Vec<String>> {
        self.run_with(sh, log, &[], argv)
    }

    /// Like [`Chroot::run`], in the chroot's directory `dir`.
    pub fn run_in(&self, sh: &Shell, log: &Log, dir: &str, argv: &[&str]) -> Result<Vec<String>> {
        let mut full = vec!["sh", "-c", r#"cd "$0" && exec "$@""#, dir];
        full.extend_from_slice(argv);
        self.run(sh, log, &full)
    }

    /// Like [`Chroot::run`], with `binds` mounted for this command.
    pub fn run_with(
        &self,
        sh: &Shell,
        log: &Log,
        binds: &[Bind<'_>],
        argv: &[&str],
    ) -> Result<Vec<String>> {
        log.run_shown(self.cmd(sh, binds, argv), &shown(binds, argv))
    }

    /// Runs `argv` in the chroot and returns its trimmed stdout.
    pub fn read(&self, sh: &Shell, log: &Log, argv: &[&str]) -> Result<String> {
        log.echo(&shown(&[], argv));
        let output = self.cmd(sh, &[], argv).quiet().ignore_status().output()?;
        if !output.status.success() {
            bail!(
                "[sid] {} failed ({}): {}",
                argv.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// The command that runs `argv` in the chroot with `binds`.
    fn cmd<'a>(&self, sh: &'a Shell, binds: &[Bind<'_>], argv: &[&str]) -> xshell::Cmd<'a> {
        let root = &self.root;
        let mut cmd = cmd!(
            sh,
            "unshare --mount --propagation private -- sh -ec {ENTER} enter {root}"
        );
        for bind in binds {
            let mode = if bind.read_only { "ro" } else { "rw" };
            cmd = cmd.arg(bind.host).arg(bind.inner).arg(mode);
        }
        cmd.arg("--").args(argv)
    }

    /// Creates the chroot with debootstrap, from scratch.
    fn bootstrap(&self, sh: &Shell, log: &Log) -> Result<()> {
        let partial = self.root.with_file_name("sid.partial");
        // Whatever is there is the remains of an interrupted setup.
        cache::remove_dir(&self.root)?;
        cache::remove_dir(&partial)?;
        let timeout = host::NET_TIMEOUT;
        // debootstrap mounts /proc in the target and leaves it mounted when
        // interrupted: give it a namespace of its own too.
        log.run(cmd!(
            sh,
            "unshare --mount --propagation private -- timeout {timeout...} debootstrap --variant=minbase --include=ca-certificates sid {partial}"
        ))
        .context("debootstrap of Debian sid failed (network?)")?;
        let conf = partial.join("etc/apt/apt.conf.d/99rmemring");
        fs::write(&conf, APT_CONF).with_context(|| format!("writing {}", conf.display()))?;
        cache::write_stamp(&partial.join(BOOTSTRAPPED), "")?;
        fs::rename(&partial, &self.root)
            .with_context(|| format!("moving {} into place", partial.display()))
    }

    fn apt_update(&self, sh: &Shell, log: &Log) -> Result<()> {
        let argv = [&["timeout"], host::NET_TIMEOUT, &["apt-get", "update"]].concat();
        self.run(sh, log, &argv)
            .context("apt-get update in the chroot failed (network?)")?;
        Ok(())
    }

    fn apt_install(&self, sh: &Shell, log: &Log, packages: &[&str]) -> Result<()> {
        // An interrupted install leaves dpkg half-configured: finish it first.
        self.run(
            sh,
            log,
            &[
                "DEBIAN_FRONTEND=noninteractive",
                "dpkg",
                "--configure",
                "-a",
            ],
        )?;
        let argv = [
            &["DEBIAN_FRONTEND=noninteractive", "timeout"],
            host::NET_TIMEOUT,
            &["apt-get", "install", "-y", "--no-install-recommends"],
            packages,
        ]
        .concat();
        self.run(sh, log, &argv)
            .context("apt-get install in the chroot failed")?;
        self.run(sh, log, &["apt-get", "clean"])?;
        Ok(())
    }
}

/// How a chroot command is echoed: `[sid] ARGV` plus its bind mounts.
fn shown(binds: &[Bind<'_>], argv: &[&str]) -> String {
    let mut s = String::from("[sid");
    for bind in binds {
        let mode = if bind.read_only { ":ro" } else { "" };
        let _ = write!(s, " {}->{}{mode}", bind.host.display(), bind.inner);
    }
    s.push_str("] ");
    s.push_str(&shell_words(argv));
    s
}
