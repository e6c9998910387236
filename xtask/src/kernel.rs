//! `cargo xtask kernel`: the reference kernel, built in the sid chroot.
//!
//! `make tinyconfig`, then the fragments in `xtask/kconfig/` (`common`, the
//! architecture, `debug` for the debug profile and `btf` for the x86_64
//! normal kernel) merged with `merge_config.sh -m`, then `olddefconfig`.
//! Kconfig drops an option silently when a dependency is unmet
//! (`CONFIG_RUST` first of all), so every fragment line is checked against
//! the final `.config` (where fragments set the same option, the last one's
//! line, as `merge_config.sh` merges them). Then
//! `make LLVM=1 all`: `all` and not just the image, because the out-of-tree
//! driver build needs `Module.symvers`.
//!
//! A build tree is keyed by a hash of the fragments, the toolchain package
//! versions (pahole's too for a kernel with BTF), the architecture, the
//! profile and [`RECIPE`]. A finished tree is
//! stamped, so a repeat run with nothing changed runs no `make` at all.

use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{
    bail,
    Context,
    Result, //
};
use sha2::{
    Digest,
    Sha256, //
};
use xshell::Shell;

use crate::arch::{
    Arch,
    Profile,
    Target, //
};
use crate::cache;
use crate::chroot::{
    self,
    Chroot, //
};
use crate::exec::Log;
use crate::flags;

/// Bump when the build steps change in a way that needs fresh build trees.
const RECIPE: &str = "1";

/// Finished build trees kept per target (the current one included).
const KEEP_BUILDS: usize = 2;

/// Where build trees live, inside the chroot.
const BUILD_ROOT: &str = "/work/kernel";

/// Stamp in a build tree: `make all` succeeded.
const BUILT: &str = ".rmemring-built";

impl flags::Kernel {
    pub fn run(self, sh: &Shell) -> Result<ExitCode> {
        let kernel = build(sh, &Log::terminal(), self.target.target())?;
        println!("{}", kernel.image().display());
        Ok(ExitCode::SUCCESS)
    }
}

/// What `PAHOLE` names for a kernel without BTF: no program
/// (`scripts/pahole-version.sh` then says 0, as for a chroot without one).
const NO_PAHOLE: &str = "pahole-unused-without-btf";

/// A built kernel tree.
#[derive(Clone)]
pub struct Kernel {
    pub target: Target,
    /// The build tree (`O=`) as the chroot sees it.
    pub inner_dir: String,
    /// The build tree on the host.
    pub dir: PathBuf,
}

impl Kernel {
    /// The bootable image on the host.
    pub fn image(&self) -> PathBuf {
        self.dir.join(self.target.arch.kernel_image())
    }

    /// The make variables of every build against this kernel: with BTF,
    /// pahole's place (off `PATH`, [`chroot::PAHOLE`]); without, a name
    /// that is no program. Kbuild records the pahole version it finds at
    /// configure time (`CONFIG_PAHOLE_VERSION`, 0 without one) and warns at
    /// every module build that finds another, so a kernel without BTF must
    /// find none whatever the shared chroot holds.
    pub fn make_vars(&self) -> Vec<String> {
        let pahole = if has_btf(self.target) {
            chroot::PAHOLE
        } else {
            NO_PAHOLE
        };
        vec![
            format!("ARCH={}", self.target.arch.kernel_arch()),
            "LLVM=1".to_owned(),
            format!("PAHOLE={pahole}"),
        ]
    }
}

/// Builds the kernel for `target`, or finds it already built.
pub fn build(sh: &Shell, log: &Log, target: Target) -> Result<Kernel> {
    let chroot = Chroot::ensure(sh, log)?;
    let mut packages = chroot::TOOLCHAIN_PACKAGES.to_vec();
    if has_btf(target) {
        chroot.ensure_pahole(sh, log)?;
        packages.extend_from_slice(chroot::BTF_PACKAGES);
    }
    let versions = chroot.versions(sh, log, &packages)?;
    let source_version = versions
        .lines()
        .find_map(|line| line.strip_prefix(chroot::LINUX_SOURCE)?.strip_prefix(' '))
        .context("linux-source-7.2 is not installed in the chroot")?
        .to_owned();
    if !source_version.starts_with("7.2.") {
        bail!(
            "{} is version {source_version}, not 7.2.x; refusing to build",
            chroot::LINUX_SOURCE
        );
    }
    let fragments = fragments(sh, target)?;
    let key = key(target, &versions, &fragments);
    let inner_dir = format!("{BUILD_ROOT}/{target}-{key}");
    let kernel = Kernel {
        target,
        dir: chroot.host_path(&inner_dir),
        inner_dir,
    };
    let stamp = kernel.dir.join(BUILT);
    if stamp.exists() {
        log.line(&format!(
            "kernel {target}: up to date in {}",
            kernel.dir.display()
        ));
        return Ok(kernel);
    }

    let _lock = cache::lock(&format!("kernel-{target}"))?;
    if stamp.exists() {
        return Ok(kernel);
    }
    let src = source(sh, log, &chroot, &source_version)?;
    fs::create_dir_all(kernel.dir.join("fragments"))?;
    fs::write(kernel.dir.join("versions.txt"), format!("{versions}\n"))?;
    let mut inner_fragments = Vec::new();
    for (i, (name, content)) in fragments.iter().enumerate() {
        let inner = format!("{}/fragments/{i}-{name}", kernel.inner_dir);
        fs::write(chroot.host_path(&inner), content)?;
        inner_fragments.push(inner);
    }

    let make = |log: &Log, args: &[&str]| -> Result<Vec<String>> {
        let vars = kernel.make_vars();
        let out = format!("O={}", kernel.inner_dir);
        let mut argv = vec!["make", "-C", &src, &out];
        argv.extend(vars.iter().map(String::as_str));
        argv.extend_from_slice(args);
        chroot.run(sh, log, &argv)
    };
    make(log, &["tinyconfig"])?;
    let merge = format!("{src}/scripts/kconfig/merge_config.sh");
    let config = format!("{}/.config", kernel.inner_dir);
    // merge_config.sh puts its temporary files in the current directory.
    let mut argv = vec![merge.as_str(), "-m", "-O", &kernel.inner_dir, &config];
    argv.extend(inner_fragments.iter().map(String::as_str));
    chroot.run_in(sh, log, &kernel.inner_dir, &argv)?;
    make(log, &["olddefconfig"])?;
    check_config(&fs::read_to_string(chroot.host_path(&config))?, &fragments)
        .with_context(|| format!("kernel {target}: configuration check failed"))?;

    let jobs = format!("-j{}", std::thread::available_parallelism()?.get());
    make(log, &[&jobs, "all"])?;
    for product in [target.arch.kernel_image(), "Module.symvers"] {
        if !kernel.dir.join(product).exists() {
            bail!("kernel {target}: make all did not produce {product}");
        }
    }
    cache::write_stamp(&stamp, &versions)?;
    log.line(&format!(
        "kernel {target}: built {}",
        kernel.image().display()
    ));
    collect_garbage(&chroot, &kernel)?;
    Ok(kernel)
}

/// The fragments for `target`, in merge order: `(file name, content)`.
fn fragments(sh: &Shell, target: Target) -> Result<Vec<(String, String)>> {
    let mut names = vec![
        "common.config".to_owned(),
        format!("{}.config", target.arch.name()),
    ];
    if target.profile == Profile::Debug {
        names.push("debug.config".to_owned());
    }
    if has_btf(target) {
        names.push("btf.config".to_owned());
    }
    names
        .into_iter()
        .map(|name| {
            let content = sh.read_file(format!("xtask/kconfig/{name}"))?;
            Ok((name, content))
        })
        .collect()
}

/// Whether `target` is built with BTF (`xtask/kconfig/btf.config`): the
/// x86_64 normal kernel, which the benchmarks run on, for the real-event
/// benchmark's `tp_btf` peer. The others stay without debug info, which
/// would make their builds dearer for nothing their tests use.
pub fn has_btf(target: Target) -> bool {
    target.arch == Arch::X86_64 && target.profile == Profile::Normal
}

/// The build key: what decides the build tree's content.
fn key(target: Target, versions: &str, fragments: &[(String, String)]) -> String {
    let mut hash = Sha256::new();
    for part in [RECIPE, &target.to_string(), versions] {
        hash.update(part);
        hash.update([0]);
    }
    for (name, content) in fragments {
        hash.update(name);
        hash.update([0]);
        hash.update(content);
        hash.update([0]);
    }
    hash.finalize()[..8]
        .iter()
        .fold(String::new(), |mut s, byte| {
            let _ = write!(s, "{byte:02x}");
            s
        })
}

/// Extracts the kernel source once per package version; returns its inner path.
fn source(sh: &Shell, log: &Log, chroot: &Chroot, version: &str) -> Result<String> {
    let _lock = cache::lock("source")?;
    let inner = format!("/work/src/{version}");
    let tree = format!("{inner}/linux-source-7.2");
    let stamp = chroot.host_path(&format!("{inner}/.rmemring-extracted"));
    if stamp.exists() {
        return Ok(tree);
    }
    cache::remove_dir(&chroot.host_path(&inner))?;
    fs::create_dir_all(chroot.host_path(&inner))?;
    chroot.run(
        sh,
        log,
        &[
            "tar",
            "-C",
            &inner,
            "-xf",
            "/usr/src/linux-source-7.2.tar.xz",
        ],
    )?;
    if !chroot.host_path(&tree).join("Makefile").exists() {
        bail!("/usr/src/linux-source-7.2.tar.xz did not contain linux-source-7.2/");
    }
    cache::write_stamp(&stamp, version)?;
    Ok(tree)
}

/// Checks that `CONFIG_RUST=y` and every fragment line survived `olddefconfig`.
///
/// Where several fragments set one option, only the last one's line counts:
/// `merge_config.sh` lets it override the others (`btf.config` turns on
/// what `common.config` turns off).
fn check_config(config: &str, fragments: &[(String, String)]) -> Result<()> {
    let lines: Vec<&str> = config.lines().collect();
    if !lines.contains(&"CONFIG_RUST=y") {
        bail!("CONFIG_RUST=y did not survive olddefconfig: a dependency of RUST is unmet");
    }
    // (fragment, option, line), the last of each option only.
    let mut wanted: Vec<(&str, &str, &str)> = Vec::new();
    for (name, content) in fragments {
        for line in content.lines().map(str::trim) {
            let Some(option) = fragment_option(line) else {
                continue;
            };
            wanted.retain(|(_, o, _)| *o != option);
            wanted.push((name, option, line));
        }
    }
    let mut missing = Vec::new();
    for (name, option, line) in wanted {
        let landed = if line.starts_with('#') {
            let set = format!("{option}=");
            !lines.iter().any(|l| l.starts_with(&set))
        } else {
            lines.contains(&line)
        };
        if !landed {
            missing.push(format!("  {name}: {line}"));
        }
    }
    if !missing.is_empty() {
        bail!(
            "these fragment options did not land in .config (unmet dependencies?):\n{}",
            missing.join("\n")
        );
    }
    Ok(())
}

/// The option a fragment line sets (`CONFIG_X=...` or `# CONFIG_X is not
/// set`); `None` for a comment.
fn fragment_option(line: &str) -> Option<&str> {
    if let Some(option) = line
        .strip_prefix("# ")
        .and_then(|l| l.strip_suffix(" is not set"))
    {
        return Some(option);
    }
    line.split_once('=')
        .map(|(option, _)| option)
        .filter(|option| option.starts_with("CONFIG_"))
}

/// Removes this target's older build trees, keeping [`KEEP_BUILDS`] finished ones.
///
/// Runs under the target's build lock, so an unfinished tree other than ours
/// is abandoned and goes too.
fn collect_garbage(chroot: &Chroot, current: &Kernel) -> Result<()> {
    let prefix = format!("{}-", current.target);
    let mut finished = Vec::new();
    for entry in fs::read_dir(chroot.host_path(BUILD_ROOT))? {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let is_build = name
            .strip_prefix(&prefix)
            .is_some_and(|key| key.len() == 16 && key.bytes().all(|b| b.is_ascii_hexdigit()));
        if !is_build || path == current.dir {
            continue;
        }
        match fs::metadata(path.join(BUILT)).and_then(|m| m.modified()) {
            Ok(time) => finished.push((time, path)),
            Err(_) => remove_build(&path)?,
        }
    }
    finished.sort_by_key(|(time, _)| std::cmp::Reverse(*time));
    for (_, path) in finished.iter().skip(KEEP_BUILDS - 1) {
        remove_build(path)?;
    }
    Ok(())
}

/// Removes a build tree and its driver build.
fn remove_build(dir: &std::path::Path) -> Result<()> {
    cache::remove_dir(dir)?;
    cache::remove_dir(&dir.with_extension("module"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fragment(content: &str) -> Vec<(String, String)> {
        vec![("common.config".to_owned(), content.to_owned())]
    }

    #[test]
    fn config_check_names_what_did_not_land() {
        let config = "CONFIG_RUST=y\nCONFIG_SMP=y\n# CONFIG_MODVERSIONS is not set\n";
        let ok = fragment("# comment\nCONFIG_SMP=y\n# CONFIG_MODVERSIONS is not set\n");
        assert!(check_config(config, &ok).is_ok());

        let bad = fragment("CONFIG_SMP=y\nCONFIG_ARCH_VIRT=y\n# CONFIG_RUST is not set\n");
        let err = check_config(config, &bad).unwrap_err().to_string();
        assert!(err.contains("common.config: CONFIG_ARCH_VIRT=y"), "{err}");
        assert!(
            err.contains("common.config: # CONFIG_RUST is not set"),
            "{err}"
        );
        assert!(!err.contains("CONFIG_SMP"), "{err}");

        assert!(
            check_config("CONFIG_SMP=y\n", &ok).is_err(),
            "no CONFIG_RUST=y"
        );
    }

    #[test]
    fn a_later_fragment_overrides_an_earlier_one() {
        let fragments = vec![
            (
                "common.config".to_owned(),
                "# CONFIG_DEBUG_INFO_BTF is not set\nCONFIG_SMP=y\n".to_owned(),
            ),
            (
                "btf.config".to_owned(),
                "CONFIG_DEBUG_INFO_BTF=y\n".to_owned(),
            ),
        ];
        let with_btf = "CONFIG_RUST=y\nCONFIG_SMP=y\nCONFIG_DEBUG_INFO_BTF=y\n";
        check_config(with_btf, &fragments).unwrap();
        // The last word is btf.config's, and it did not land.
        let err = check_config("CONFIG_RUST=y\nCONFIG_SMP=y\n", &fragments)
            .unwrap_err()
            .to_string();
        assert!(err.contains("btf.config: CONFIG_DEBUG_INFO_BTF=y"), "{err}");
        assert!(!err.contains("common.config"), "{err}");
    }

    #[test]
    fn only_the_x86_64_normal_kernel_has_btf() {
        let targets = [Arch::X86_64, Arch::Aarch64].into_iter().flat_map(|arch| {
            [Profile::Normal, Profile::Debug].map(|profile| Target { arch, profile })
        });
        let with: Vec<String> = targets
            .filter(|t| has_btf(*t))
            .map(|t| t.to_string())
            .collect();
        assert_eq!(with, ["x86_64"]);
    }

    #[test]
    fn keys_follow_every_input() {
        let x86 = Target {
            arch: crate::arch::Arch::X86_64,
            profile: Profile::Normal,
        };
        let debug = Target {
            profile: Profile::Debug,
            ..x86
        };
        let base = key(x86, "rustc 1", &fragment("CONFIG_SMP=y\n"));
        assert_eq!(base.len(), 16);
        assert_eq!(base, key(x86, "rustc 1", &fragment("CONFIG_SMP=y\n")));
        assert_ne!(base, key(debug, "rustc 1", &fragment("CONFIG_SMP=y\n")));
        assert_ne!(base, key(x86, "rustc 2", &fragment("CONFIG_SMP=y\n")));
        assert_ne!(base, key(x86, "rustc 1", &fragment("CONFIG_SMP=n\n")));
    }
}
