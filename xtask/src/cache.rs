//! The cache outside the repository: its location, locks, stamps and removal.
//!
//! Layout (under `$RMEMRING_CACHE`, default `~/.cache/rmemring`):
//!
//! ```text
//! sid/                 Debian sid chroot (kernel, module and arm64 builds)
//!   work/src/VERSION/  extracted linux-source-7.2
//!   work/kernel/T-KEY/ kernel build trees (T = x86_64, x86_64-debug, ...)
//!   work/kernel/T-KEY.module/  out-of-tree driver build
//!   work/guest-target/CHECKOUT/ arm64 guest binaries (a cargo target dir per checkout)
//! busybox-arm64/       busybox for the arm64 guest
//! vm/                  per-run initramfs and device trees
//! logs/                build logs of `cargo xtask test`
//! fuzz-target/         cargo target dir of the instrumented fuzz build
//! kvm-verdict          whether KVM works here
//! ```

use std::fs::{
    self,
    File, //
};
use std::path::{
    Path,
    PathBuf, //
};

use anyhow::{
    bail,
    Context,
    Result, //
};

/// The cache root; created if missing.
pub fn root() -> Result<PathBuf> {
    let dir = match std::env::var_os("RMEMRING_CACHE") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => {
            let home =
                std::env::var_os("HOME").context("neither RMEMRING_CACHE nor HOME is set")?;
            PathBuf::from(home).join(".cache/rmemring")
        }
    };
    fs::create_dir_all(&dir).with_context(|| format!("creating the cache {}", dir.display()))?;
    Ok(dir)
}

/// An exclusive lock on a cache resource, held until dropped.
pub struct Lock {
    _file: File,
}

/// Takes the lock `name`, waiting (with a message) while another xtask holds it.
pub fn lock(name: &str) -> Result<Lock> {
    let dir = root()?.join("locks");
    fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{name}.lock"));
    let file = File::create(&path).with_context(|| format!("opening {}", path.display()))?;
    if file.try_lock().is_err() {
        eprintln!("waiting for {} (another xtask is using it)", path.display());
        file.lock()
            .with_context(|| format!("locking {}", path.display()))?;
    }
    Ok(Lock { _file: file })
}

/// Whether the stamp at `path` exists and records exactly `content`.
pub fn stamp_matches(path: &Path, content: &str) -> bool {
    fs::read_to_string(path).is_ok_and(|s| s == content)
}

/// Records `content` in the stamp at `path`: the step it names is complete.
pub fn write_stamp(path: &Path, content: &str) -> Result<()> {
    fs::write(path, content).with_context(|| format!("writing {}", path.display()))
}

/// Removes `dir` recursively, refusing if anything is mounted below it.
pub fn remove_dir(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let mounts = fs::read_to_string("/proc/self/mountinfo").context("reading mountinfo")?;
    for line in mounts.lines() {
        // Field 5 is the mount point (spaces escaped as \040).
        if let Some(point) = line.split(' ').nth(4) {
            if Path::new(point).starts_with(dir) {
                bail!(
                    "refusing to remove {}: {point} is mounted below it",
                    dir.display()
                );
            }
        }
    }
    eprintln!("$ rm -rf {}", dir.display());
    fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))
}
