//! `cargo xtask module`: the driver, built out of tree against a reference kernel.
//!
//! The driver compiles `../proto/src/lib.rs` as its `proto` module, so
//! `driver/` and `proto/src/` are mirrored, in that relative layout, into
//! a scratch tree next to the kernel build (`T-KEY.module/`) and built there:
//! no build product ever lands in the repository. Only files whose content
//! changed are copied, so an unchanged driver rebuilds in seconds. The
//! module is then copied to this checkout's `target/driver/T/`.
//!
//! The client modules of `examples/kernel/` (kernel code producing through
//! the driver's in-kernel API) and the selftest's own (`tests/kernel/`)
//! are built next, against the driver's
//! `Module.symvers` (`KBUILD_EXTRA_SYMBOLS`), as docs/kernel-api.md tells
//! their authors to, and copied next to it.

use std::collections::BTreeSet;
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
use xshell::Shell;

use crate::cache;
use crate::chroot::Chroot;
use crate::exec::Log;
use crate::flags;
use crate::kernel::{
    self,
    Kernel, //
};
use crate::project_root;

/// The trees the driver build needs, relative to the repository root.
const TREES: &[&str] = &["driver", "proto/src", "examples/kernel", "tests/kernel"];

/// Where the client modules live: the examples, and the tests' own
/// (`tests/kernel/`: the selftest's API checks, and the reboot tests'
/// deliberate panic and reserved-memory mark); one directory each, with a
/// `Kbuild` making `rmemring_NAME.ko`.
const CLIENTS: &[&str] = &["examples/kernel", "tests/kernel"];

/// Directories under `driver/` that are not part of the kernel module.
const SKIP_DIRS: &[&str] = &["target"];

/// Build products that a stray in-tree `make` may have left in `driver/`
/// (`.symvers` and `.order` cover `Module.symvers` and `modules.order`).
const SKIP_SUFFIXES: &[&str] = &[
    ".o", ".ko", ".mod", ".mod.c", ".d", ".a", ".rmeta", ".rlib", ".cmd", ".order", ".symvers",
];

/// Lists what was copied last time, so that files deleted since go too.
const MANIFEST: &str = ".rmemring-manifest";

impl flags::Module {
    pub fn run(self, sh: &Shell) -> Result<ExitCode> {
        let log = Log::terminal();
        let kernel = kernel::build(sh, &log, self.target.target())?;
        let module = build(sh, &log, &kernel, self.force)?;
        if !module.warnings.is_empty() {
            eprintln!(
                "{} warning line(s) in the module build:",
                module.warnings.len()
            );
            for warning in &module.warnings {
                eprintln!("  {warning}");
            }
        }
        println!("{}", module.ko.display());
        Ok(ExitCode::SUCCESS)
    }
}

/// A built driver.
#[derive(Clone)]
pub struct Module {
    /// `rmemring.ko` on the host, in this checkout's `target/driver/TARGET/`.
    pub ko: PathBuf,
    /// The client modules of `examples/kernel/` and `tests/kernel/`, next
    /// to it.
    pub clients: Vec<PathBuf>,
    /// The compiler's and modpost's warning lines (all of them only when
    /// everything was rebuilt: see `force`).
    pub warnings: Vec<String>,
}

/// Builds the driver against `kernel`. With `force`, cleans first, so that
/// every warning is reported again.
pub fn build(sh: &Shell, log: &Log, kernel: &Kernel, force: bool) -> Result<Module> {
    let chroot = Chroot::ensure(sh, log)?;
    let _lock = cache::lock(&format!("module-{}", kernel.target))?;
    let inner = format!("{}.module", kernel.inner_dir);
    let scratch = chroot.host_path(&inner);
    for tree in TREES {
        sync_tree(&project_root().join(tree), &scratch.join(tree))
            .with_context(|| format!("mirroring {tree} into {}", scratch.display()))?;
    }

    let vars = kernel.make_vars();
    let jobs = format!("-j{}", std::thread::available_parallelism()?.get());
    // `make modules` (after `make clean` with `force`) of the module in
    // `dir` of the scratch tree, with `extra` variables; its warning lines.
    let make = |dir: &str, extra: &str, what: &str| -> Result<Vec<String>> {
        let m = format!("M={inner}/{dir}");
        let mut make = vec!["make", "-C", &kernel.inner_dir, &m];
        make.extend(vars.iter().map(String::as_str));
        make.extend([jobs.as_str(), extra]);
        if force {
            chroot.run(sh, log, &[&make[..], &["clean"]].concat())?;
        }
        let output = chroot
            .run(sh, log, &[&make[..], &["modules"]].concat())
            .with_context(|| format!("building {what} against kernel {}", kernel.target))?;
        Ok(output.into_iter().filter(|line| is_warning(line)).collect())
    };
    // CLIPPY=1: the kernel's own clippy lints (rust_common_flags) on the
    // driver's Rust, as `make CLIPPY=1` does in-tree.
    let mut warnings = make("driver", "CLIPPY=1", "the driver")?;
    // The scratch tree is shared by every checkout that uses this cache (git
    // worktrees, say), and the lock ends with this call: hand out copies of
    // this checkout's own, so that another checkout's build cannot replace
    // the modules between here and the boot that packs them.
    let out = project_root()
        .join("target/driver")
        .join(kernel.target.to_string());
    fs::create_dir_all(&out)?;
    let ko = install(sh, log, &chroot, kernel, &inner, "driver", "rmemring", &out)?;

    // The clients, as their authors would build them (docs/kernel-api.md).
    let symvers = format!("KBUILD_EXTRA_SYMBOLS={inner}/driver/Module.symvers");
    let mut clients = Vec::new();
    for dir in client_dirs()? {
        let name = dir.rsplit('/').next().unwrap_or(&dir).to_owned();
        warnings.extend(make(&dir, &symvers, &dir)?);
        let module = format!("rmemring_{name}");
        clients.push(install(
            sh, log, &chroot, kernel, &inner, &dir, &module, &out,
        )?);
    }
    Ok(Module {
        ko,
        clients,
        warnings,
    })
}

/// The client modules' directories, relative to the repository.
fn client_dirs() -> Result<Vec<String>> {
    let mut dirs = Vec::new();
    for parent in CLIENTS {
        for entry in fs::read_dir(project_root().join(parent))? {
            let entry = entry?;
            if entry.path().join("Kbuild").exists() {
                dirs.push(format!("{parent}/{}", entry.file_name().to_string_lossy()));
            }
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// Signs a copy of the built `NAME.ko` in `DIR` of the scratch tree (its
/// debug info stripped first, on a kernel built with it) and copies it to
/// `out`.
#[allow(clippy::too_many_arguments)]
fn install(
    sh: &Shell,
    log: &Log,
    chroot: &Chroot,
    kernel: &Kernel,
    inner: &str,
    dir: &str,
    name: &str,
    out: &Path,
) -> Result<PathBuf> {
    let scratch = chroot.host_path(inner);
    let built = scratch.join(format!("{dir}/{name}.ko"));
    if !built.exists() {
        bail!("the build did not produce {}", built.display());
    }
    // Signed as a copy: `make` leaves an up-to-date module alone, and
    // signing the same file twice would append a second signature.
    let signed = scratch.join(format!("{dir}/{name}.signed.ko"));
    fs::copy(&built, &signed).with_context(|| format!("copying {}", built.display()))?;
    let config = fs::read_to_string(chroot.host_path(&format!("{}/.config", kernel.inner_dir)))
        .context("reading the kernel's .config")?;
    let inner_ko = format!("{inner}/{dir}/{name}.signed.ko");
    // A kernel with BTF is built with DWARF (xtask/kconfig/btf.config), and
    // so are its modules: stripped, as `make INSTALL_MOD_STRIP=1
    // modules_install` would, they stay as small in the guest's initramfs
    // as on the other kernels. Before signing, which covers the bytes.
    if config.lines().any(|l| l == "CONFIG_DEBUG_INFO=y") {
        chroot
            .run(sh, log, &["llvm-strip", "--strip-debug", &inner_ko])
            .with_context(|| format!("stripping {name}.ko"))?;
    }
    sign(sh, log, chroot, kernel, &config, &inner_ko)?;
    let ko = out.join(format!("{name}.ko"));
    fs::copy(&signed, &ko).with_context(|| format!("copying {name}.ko to {}", ko.display()))?;
    Ok(ko)
}

/// Signs the module with the kernel build's own key when that kernel
/// checks module signatures (`CONFIG_MODULE_SIG`, which the lockdown LSM of
/// the x86_64 reference kernels selects), as a distribution signs its
/// modules: a locked-down kernel loads only signed modules, and an
/// unsigned one taints the kernel with a line in the log at its first load.
/// The build made the key (`certs/signing_key.pem`) and `sign-file`.
fn sign(
    sh: &Shell,
    log: &Log,
    chroot: &Chroot,
    kernel: &Kernel,
    config: &str,
    ko: &str,
) -> Result<()> {
    if !config.lines().any(|l| l == "CONFIG_MODULE_SIG=y") {
        return Ok(());
    }
    let hash = config
        .lines()
        .find_map(|l| l.strip_prefix("CONFIG_MODULE_SIG_HASH="))
        .map(|h| h.trim_matches('"').to_owned())
        .context("CONFIG_MODULE_SIG without CONFIG_MODULE_SIG_HASH")?;
    let tree = &kernel.inner_dir;
    let sign_file = format!("{tree}/scripts/sign-file");
    let key = format!("{tree}/certs/signing_key.pem");
    let cert = format!("{tree}/certs/signing_key.x509");
    chroot
        .run(sh, log, &[&sign_file, &hash, &key, &cert, ko])
        .with_context(|| format!("signing the driver for kernel {}", kernel.target))?;
    Ok(())
}

/// Whether a build output line is a warning (rustc, clang or modpost).
fn is_warning(line: &str) -> bool {
    let lower = line.to_ascii_lowercase();
    lower.contains("warning:") && !lower.contains(" emitted")
}

/// Mirrors the source files of `src` into `dst`: copies what differs, removes
/// what was copied before but is gone from `src`, keeps build products.
fn sync_tree(src: &Path, dst: &Path) -> Result<()> {
    let mut files = BTreeSet::new();
    collect_sources(src, Path::new(""), &mut files)?;
    fs::create_dir_all(dst)?;
    let manifest = dst.join(MANIFEST);
    let old = fs::read_to_string(&manifest).unwrap_or_default();
    for gone in old.lines().filter(|rel| !files.contains(Path::new(rel))) {
        let _ = fs::remove_file(dst.join(gone));
    }
    for rel in &files {
        let (from, to) = (src.join(rel), dst.join(rel));
        let content = fs::read(&from)?;
        if fs::read(&to).is_ok_and(|old| old == content) {
            continue;
        }
        if let Some(dir) = to.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::write(&to, content).with_context(|| format!("writing {}", to.display()))?;
    }
    let list: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    fs::write(manifest, list.join("\n"))?;
    Ok(())
}

/// Adds the source files below `dir` to `files`, as paths relative to the root.
pub(crate) fn collect_sources(
    root: &Path,
    dir: &Path,
    files: &mut BTreeSet<PathBuf>,
) -> Result<()> {
    for entry in fs::read_dir(root.join(dir))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = dir.join(&name);
        if name.starts_with('.') {
            continue;
        }
        if entry.file_type()?.is_dir() {
            if !SKIP_DIRS.contains(&name.as_str()) {
                collect_sources(root, &rel, files)?;
            }
        } else if !SKIP_SUFFIXES.iter().any(|s| name.ends_with(s)) {
            files.insert(rel);
        }
    }
    Ok(())
}
