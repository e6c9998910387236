//! `cargo xtask guest`: the guest's static user-space binaries, and busybox.
//!
//! x86_64 binaries come from the host toolchain, in their own target dir
//! (`target/guest`) so that the host's build cache is not thrashed by the
//! different RUSTFLAGS. arm64 binaries come from Debian's cargo in the chroot
//! with a cross std and libc, reading the repository through a read-only bind
//! mount and writing to a target dir in the cache. The C examples
//! (`examples/c`) come from their Makefile, with the host's C compiler for
//! x86_64 and Debian's cross compiler in the chroot for arm64.

use std::fs;
use std::path::{
    Path,
    PathBuf, //
};
use std::process::ExitCode;

use anyhow::{
    bail,
    Context,
    Result, //
};
use serde_json::Value;
use xshell::{
    cmd,
    Shell, //
};

use crate::arch::Arch;
use crate::cache;
use crate::chroot::{
    Bind,
    Chroot, //
};
use crate::exec::Log;
use crate::flags;
use crate::host;
use crate::project_root;

/// Workspace packages whose binaries all go into the guest.
const PACKAGES: &[&str] = &["rmemring-examples", "rmemring-vmtest"];

/// The `rmemring` CLI goes in too: its package and its binary.
const CLI: (&str, &str) = ("rmemring-cli", "rmemring");

/// The C examples: their directory, whose Makefile builds them against the
/// UAPI header (static, with `LDFLAGS=-static`), and the binaries it makes.
const C_EXAMPLES: &str = "examples/c";
const C_BINS: &[&str] = &["rmemring-consume-c"];

/// On x86_64 (the reference VM), the CLI also gets the benchmark's BPF ring
/// buffer peer.
const CLI_FEATURES_X86_64: &str = "rmemring-cli/bpf";

/// Host packages the `bpf` feature needs: clang for the BPF program, and
/// the tools of the vendored libbpf/elfutils/zlib build (it runs autoreconf
/// and make).
pub const BPF_HOST_PACKAGES: &[&str] = &[
    "clang",
    "make",
    "autoconf",
    "automake",
    "libtool",
    "autopoint",
    "flex",
    "bison",
    "gawk",
    "pkg-config",
    "m4",
    "gettext",
];

/// Static linking, so that the binaries need nothing from the guest but a
/// kernel; and every loop aligned to 64 bytes, so that one up to 64 bytes
/// long never crosses a page. QEMU TCG does not chain a jump from one
/// guest page's code to another's, so a hot loop whose body straddles a
/// page runs several times slower wherever the linker happens to place it:
/// `rmemring_proto::pattern::verify`'s inner loop at 0x380ff0-0x38102a,
/// across 0x381000, made every consumer that reads every byte (rmemring's,
/// `read()`'s, BPF's) about 4 times slower in `rmemring bench` than the
/// same source built a few strings apart, where it lay within one page.
const RUSTFLAGS: &str = "-C target-feature=+crt-static -C llvm-args=-align-loops=64";

/// Where the chroot sees the repository during the arm64 build.
const REPO_IN_CHROOT: &str = "/mnt/repo";

/// The arm64 cargo target dirs (one per checkout: see
/// [`arm64_target_dir`]) and cargo home, inside the chroot.
const ARM64_TARGET_DIRS: &str = "/work/guest-target";
const ARM64_CARGO_HOME: &str = "/work/cargo-home";

/// The host's CA bundle, copied in so that cargo trusts the same authorities
/// (TLS-intercepting proxies included) inside the chroot.
const HOST_CA: &str = "/etc/ssl/certs/ca-certificates.crt";
const CA_IN_CHROOT: &str = "/work/host-ca.crt";

impl flags::Guest {
    pub fn run(self, sh: &Shell) -> Result<ExitCode> {
        let guest = build(sh, &Log::terminal(), self.arch)?;
        println!("{}", guest.busybox.display());
        for bin in &guest.bins {
            println!("{}", bin.display());
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// The guest's user space on the host.
#[derive(Clone)]
pub struct Guest {
    /// A static busybox.
    pub busybox: PathBuf,
    /// The workspace's guest binaries.
    pub bins: Vec<PathBuf>,
}

/// Builds the guest binaries for `arch` and finds busybox.
pub fn build(sh: &Shell, log: &Log, arch: Arch) -> Result<Guest> {
    // Also brings Cargo.lock up to date, which the arm64 build (--locked,
    // read-only repository) relies on.
    let metadata = log.read(cmd!(sh, "cargo metadata --no-deps --format-version 1"))?;
    let metadata: Value = serde_json::from_str(&metadata).context("parsing cargo metadata")?;

    let mut args = Vec::new();
    let mut names = Vec::new();
    for package in PACKAGES {
        // A renamed package must not quietly leave its binaries out.
        let bins = bin_names(&metadata, package)
            .with_context(|| format!("guest: no package {package} in the workspace"))?;
        args.extend(["-p", package]);
        names.extend(bins);
    }
    let (cli_package, cli_bin) = CLI;
    args.extend(["-p", cli_package, "--bins"]);
    if arch == Arch::X86_64 {
        args.extend(["--features", CLI_FEATURES_X86_64]);
    }
    names.push(cli_bin.to_owned());
    names.extend(C_BINS.iter().map(|&bin| bin.to_owned()));

    let release_dir = match arch {
        Arch::X86_64 => build_x86_64(sh, log, &args)?,
        Arch::Aarch64 => build_aarch64(sh, log, &args, &names)?,
    };
    let bins = names
        .iter()
        .map(|name| release_dir.join(name))
        .collect::<Vec<_>>();
    for bin in &bins {
        if !bin.exists() {
            bail!("the guest build did not produce {}", bin.display());
        }
    }
    let busybox = busybox(sh, log, arch)?;
    Ok(Guest { busybox, bins })
}

/// The binary targets of workspace package `package`, or `None` if it is not
/// in the workspace.
fn bin_names(metadata: &Value, package: &str) -> Option<Vec<String>> {
    let package = metadata["packages"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == package)?;
    let targets = package["targets"].as_array()?;
    Some(
        targets
            .iter()
            .filter(|t| {
                t["kind"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k == "bin"))
            })
            .filter_map(|t| t["name"].as_str().map(str::to_owned))
            .collect(),
    )
}

/// Builds with the host toolchain; returns the release directory.
fn build_x86_64(sh: &Shell, log: &Log, args: &[&str]) -> Result<PathBuf> {
    host::ensure(sh, log, host::GUEST_X86_64)?;
    host::ensure(sh, log, BPF_HOST_PACKAGES).context(
        "the guest's rmemring CLI is built with the BPF ring buffer peer (--features bpf), \
         which needs clang and the build tools of the vendored libbpf",
    )?;
    let target = Arch::X86_64.rust_target();
    log.run(cmd!(
        sh,
        "env RUSTFLAGS={RUSTFLAGS} cargo build --release --target {target} --target-dir target/guest {args...}"
    ))?;
    let release_dir = project_root()
        .join("target/guest")
        .join(target)
        .join("release");
    // With the host's C compiler, into the same directory.
    let output = format!("OUTPUT={}/", release_dir.display());
    log.run(cmd!(sh, "make -C {C_EXAMPLES} LDFLAGS=-static {output}"))?;
    Ok(release_dir)
}

/// This checkout's arm64 cargo target dir, inside the chroot. Not one for
/// every checkout that shares the cache: each is mounted at the same
/// [`REPO_IN_CHROOT`], and cargo takes a crate for up to date when its
/// sources are older than its last build, so a checkout whose changed
/// files were older than another checkout's last build got that build's
/// binaries, its own changes not built (seen 2026-12-05: a worktree's
/// `vm board-kapi` ran a selftest without the kapi.rs change made 5
/// minutes before another worktree's build).
fn arm64_target_dir() -> String {
    let checkout: String = project_root()
        .to_string_lossy()
        .trim_matches('/')
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("{ARM64_TARGET_DIRS}/{checkout}")
}

/// Builds with Debian's cargo in the chroot; returns a directory of this
/// checkout's with the binaries `names` in it.
fn build_aarch64(sh: &Shell, log: &Log, args: &[&str], names: &[String]) -> Result<PathBuf> {
    let chroot = Chroot::ensure(sh, log)?;
    chroot.ensure_arm64(sh, log)?;
    if Path::new(HOST_CA).exists() {
        fs::create_dir_all(chroot.host_path("/work"))?;
        fs::copy(HOST_CA, chroot.host_path(CA_IN_CHROOT))?;
    }
    // The cargo home is shared.
    let _lock = cache::lock("guest-aarch64")?;
    let target = Arch::Aarch64.rust_target();
    let target_dir = arm64_target_dir();
    let manifest = format!("{REPO_IN_CHROOT}/Cargo.toml");
    let home = format!("CARGO_HOME={ARM64_CARGO_HOME}");
    let ca = format!("CARGO_HTTP_CAINFO={CA_IN_CHROOT}");
    let rustflags = format!("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS={RUSTFLAGS}");
    let mut argv = vec![
        &home,
        &ca,
        "CARGO_HTTP_TIMEOUT=60",
        "CARGO_NET_RETRY=5",
        "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc",
        &rustflags,
    ];
    // It downloads crates.
    argv.push("timeout");
    argv.extend_from_slice(host::NET_TIMEOUT);
    argv.extend([
        "cargo",
        "build",
        "--locked",
        "--release",
        "--manifest-path",
        &manifest,
        "--target",
        target,
        "--target-dir",
        &target_dir,
    ]);
    argv.extend_from_slice(args);
    let repo = project_root();
    let binds = [Bind {
        host: &repo,
        inner: REPO_IN_CHROOT,
        read_only: true,
    }];
    chroot
        .run_with(sh, log, &binds, &argv)
        .context("building the arm64 guest binaries in the chroot")?;
    // The C examples, with the cross compiler the Rust build links with.
    // `-B`: make, too, would take a binary newer than this checkout's
    // sources for up to date.
    let c_dir = format!("{REPO_IN_CHROOT}/{C_EXAMPLES}");
    let c_output = format!("OUTPUT={target_dir}/{target}/release/");
    let make = [
        "make",
        "-B",
        "-C",
        &c_dir,
        "CC=aarch64-linux-gnu-gcc",
        "LDFLAGS=-static",
        &c_output,
    ];
    chroot
        .run_with(sh, log, &binds, &make)
        .context("building the arm64 C examples in the chroot")?;
    // Into the checkout, where the boot packs them from.
    let built = chroot.host_path(&format!("{target_dir}/{target}/release"));
    let out = project_root()
        .join("target/guest")
        .join(target)
        .join("release");
    fs::create_dir_all(&out)?;
    for name in names {
        let (from, to) = (built.join(name), out.join(name));
        // No stale copy may stand in for a binary this build did not make.
        let _ = fs::remove_file(&to);
        if from.exists() {
            fs::copy(&from, &to)
                .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
        }
    }
    Ok(out)
}

/// A static busybox for `arch`: the host's for x86_64, Debian's arm64 package
/// (downloaded once in the chroot and cached) for arm64.
fn busybox(sh: &Shell, log: &Log, arch: Arch) -> Result<PathBuf> {
    match arch {
        Arch::X86_64 => {
            host::ensure(sh, log, &["busybox-static"])?;
            Ok(PathBuf::from("/bin/busybox"))
        }
        Arch::Aarch64 => {
            let cached = cache::root()?.join("busybox-arm64/busybox");
            if cached.exists() {
                return Ok(cached);
            }
            let chroot = Chroot::ensure(sh, log)?;
            chroot.ensure_arm64(sh, log)?;
            let inner = "/work/busybox-arm64";
            cache::remove_dir(&chroot.host_path(inner))?;
            fs::create_dir_all(chroot.host_path(inner))?;
            let download = [
                &["timeout"],
                host::NET_TIMEOUT,
                &["apt-get", "download", "busybox-static:arm64"],
            ];
            chroot.run_in(sh, log, inner, &download.concat())?;
            let deb = fs::read_dir(chroot.host_path(inner))?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .find(|name| name.ends_with(".deb"))
                .context("apt-get download busybox-static:arm64 left no .deb")?;
            chroot.run_in(sh, log, inner, &["dpkg-deb", "-x", &deb, "x"])?;
            let extracted = ["x/usr/bin/busybox", "x/bin/busybox"]
                .iter()
                .map(|rel| chroot.host_path(inner).join(rel))
                .find(|path| path.exists())
                .context("busybox-static:arm64 has no usr/bin/busybox")?;
            fs::create_dir_all(cached.parent().unwrap_or(Path::new("/")))?;
            let partial = cached.with_extension("partial");
            fs::copy(&extracted, &partial)?;
            fs::rename(&partial, &cached)?;
            Ok(cached)
        }
    }
}
