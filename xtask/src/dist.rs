//! `cargo xtask dist`: what a distribution packages, and the checks that
//! it is whole.
//!
//! Into `target/dist/` (or `--out DIR`):
//!
//! - `rmemring-dkms-VERSION.tar.gz`, the driver's DKMS source tarball:
//!   `rmemring-VERSION/` holding `dkms.conf` (`driver/packaging/dkms.conf`
//!   with the version filled in), `driver/` (with `packaging/`: the udev
//!   rule, the modprobe.d, modules-load.d and sysusers.d files) and
//!   `proto/src/`, which the driver compiles as its `proto` module through
//!   a `#[path]` relative to `driver/`, plus the licences and the
//!   changelog. `tar -C /usr/src -xf` it and `dkms install rmemring/VERSION`;
//! - `completions/` (bash, zsh, fish) and `man/man1/`, from
//!   `rmemring completions` and `rmemring man --dir`.
//!
//! `cargo xtask test` builds the tarball with DKMS against the reference
//! x86_64 kernel in the sid chroot ([`check_dkms`]), boots that kernel with
//! the module DKMS built (the `vm dkms-debug` suite), and checks the crates
//! with `cargo publish --dry-run` and their file lists
//! ([`check_packages`]).

use std::collections::BTreeSet;
use std::fs;
use std::path::{
    Path,
    PathBuf, //
};
use std::process::ExitCode;

use anyhow::{
    bail,
    ensure,
    Context,
    Result, //
};
use xshell::{
    cmd,
    Shell, //
};

use crate::arch::{
    Arch,
    Profile,
    Target, //
};
use crate::cache;
use crate::chroot::Chroot;
use crate::exec::Log;
use crate::flags;
use crate::kernel::Kernel;
use crate::module::collect_sources;
use crate::project_root;

/// The crates `cargo publish --workspace` publishes: every other package
/// of the workspace says `publish = false`.
pub const PUBLISHED: &[&str] = &[
    "rmemring",
    "rmemring-bench",
    "rmemring-cli",
    "rmemring-proto",
];

/// The DKMS package's name (`dkms.conf`'s `PACKAGE_NAME`).
const DKMS_NAME: &str = "rmemring";

/// The trees in the tarball, at the same paths as in the repository.
const DKMS_TREES: &[&str] = &["driver", "proto/src"];

/// Files of the repository's top directory copied to the tarball's.
const DKMS_FILES: &[&str] = &["LICENSE-GPL-2.0", "LICENSE-MIT", "CHANGELOG.md"];

/// The placeholder of the version in `driver/packaging/dkms.conf`.
const VERSION_PLACEHOLDER: &str = "@VERSION@";

/// What the DKMS check installs in the chroot, stamped apart from the
/// base packages: a kernel's cache key is the versions of
/// `chroot::TOOLCHAIN_PACKAGES` (and its fragments), which installing
/// DKMS leaves alone (`apt-get install --no-install-recommends dkms` on
/// sid adds dkms, dpkg-dev, patch, perl and their libraries, and upgrades
/// nothing), so no kernel is rebuilt for it.
pub const DKMS_PACKAGES: &[&str] = &["dkms"];

/// The kernel the DKMS check builds against: the default run's x86_64
/// kernel (the debug one, which `cargo xtask test` builds anyway).
pub const DKMS_TARGET: Target = Target {
    arch: Arch::X86_64,
    profile: Profile::Debug,
};

/// Where the DKMS check works, inside the chroot (cleared each time).
const DKMS_SCRATCH: &str = "/work/dkms";

/// The DKMS framework file the check adds to the chroot while DKMS builds
/// (and removes after): the signing key and `sign-file` (see
/// [`SigningConf`]).
const DKMS_SIGNING_CONF: &str = "/etc/dkms/framework.conf.d/rmemring-xtask.conf";

/// Where [`check_dkms`] leaves the module DKMS built, in this checkout,
/// for the `vm dkms-debug` suite to boot.
pub fn dkms_module_path(target: Target) -> PathBuf {
    project_root()
        .join("target/dkms")
        .join(target.to_string())
        .join("rmemring.ko")
}

/// [`DKMS_SIGNING_CONF`] while it exists: DKMS signs what it builds with
/// the reference kernel's own key (`certs/signing_key.pem`, which the
/// kernel trusts), as it does on a Secure Boot machine whose owner
/// enrolled the DKMS key (`mok_signing_key`, `mok_certificate`). Without
/// it DKMS finds no `sign-file` (it looks in `/lib/modules/RELEASE/build`)
/// and builds an unsigned module, which the reference kernel
/// (`CONFIG_MODULE_SIG`) loads only with a taint.
struct SigningConf(PathBuf);

impl SigningConf {
    fn write(chroot: &Chroot, kernel: &Kernel) -> Result<Self> {
        let tree = &kernel.inner_dir;
        let path = chroot.host_path(DKMS_SIGNING_CONF);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::write(
            &path,
            format!(
                "# Written by `cargo xtask test` for its DKMS check; removed after it.\n\
                 sign_file={tree}/scripts/sign-file\n\
                 mok_signing_key={tree}/certs/signing_key.pem\n\
                 mok_certificate={tree}/certs/signing_key.x509\n"
            ),
        )?;
        Ok(Self(path))
    }
}

impl Drop for SigningConf {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

impl flags::Dist {
    pub fn run(self, sh: &Shell) -> Result<ExitCode> {
        let out = self
            .out
            .unwrap_or_else(|| project_root().join("target/dist"));
        fs::create_dir_all(&out)?;
        let version = version(sh)?;
        let tarball = dkms_tarball(sh, &out, &version)?;
        println!("{}", tarball.display());

        let log = Log::terminal();
        log.run(cmd!(sh, "cargo build -p rmemring-cli"))?;
        let bin = project_root().join("target/debug/rmemring");
        let completions = out.join("completions");
        fs::create_dir_all(&completions)?;
        for (shell, file) in [
            ("bash", "rmemring"),
            ("zsh", "_rmemring"),
            ("fish", "rmemring.fish"),
        ] {
            let script = cmd!(sh, "{bin} completions {shell}").quiet().read()?;
            let path = completions.join(file);
            fs::write(&path, script + "\n")?;
            println!("{}", path.display());
        }
        let man = out.join("man/man1");
        cmd!(sh, "{bin} man --dir {man}").quiet().run()?;
        println!("{}", man.display());
        Ok(ExitCode::SUCCESS)
    }
}

/// The version of the published crates, which the driver's DKMS package
/// shares; they must agree.
pub fn version(sh: &Shell) -> Result<String> {
    let metadata = metadata(sh)?;
    let mut versions = BTreeSet::new();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        if PUBLISHED.contains(&package["name"].as_str().unwrap_or_default()) {
            versions.insert(package["version"].as_str().unwrap_or_default().to_owned());
        }
    }
    match versions.len() {
        1 => Ok(versions.pop_first().unwrap_or_default()),
        _ => bail!("the crates {PUBLISHED:?} must share one version (the driver's); they have {versions:?}"),
    }
}

/// The workspace's packages, as `cargo metadata` describes them.
fn metadata(sh: &Shell) -> Result<serde_json::Value> {
    let metadata = cmd!(sh, "cargo metadata --no-deps --format-version 1")
        .quiet()
        .read()?;
    Ok(serde_json::from_str(&metadata)?)
}

/// `driver/packaging/dkms.conf` with `version` in place of its placeholder.
fn dkms_conf(template: &str, version: &str) -> Result<String> {
    ensure!(
        template
            .lines()
            .any(|l| l == format!("PACKAGE_VERSION=\"{VERSION_PLACEHOLDER}\"")),
        "driver/packaging/dkms.conf has no PACKAGE_VERSION=\"{VERSION_PLACEHOLDER}\" line"
    );
    ensure!(
        template
            .lines()
            .any(|l| l == format!("PACKAGE_NAME=\"{DKMS_NAME}\"")),
        "driver/packaging/dkms.conf has no PACKAGE_NAME=\"{DKMS_NAME}\" line"
    );
    Ok(template.replace(VERSION_PLACEHOLDER, version))
}

/// Writes `rmemring-dkms-VERSION.tar.gz` into `out` and returns its path.
/// The same sources give the same bytes (sorted names, root-owned, the
/// last commit's time, gzip without a name or time).
pub fn dkms_tarball(sh: &Shell, out: &Path, version: &str) -> Result<PathBuf> {
    let root = project_root();
    let top = format!("{DKMS_NAME}-{version}");
    let stage = out.join(&top);
    cache::remove_dir(&stage)?;
    for tree in DKMS_TREES {
        let mut files = BTreeSet::new();
        collect_sources(&root.join(tree), Path::new(""), &mut files)?;
        for rel in files {
            let to = stage.join(tree).join(&rel);
            if let Some(dir) = to.parent() {
                fs::create_dir_all(dir)?;
            }
            fs::copy(root.join(tree).join(&rel), &to)
                .with_context(|| format!("copying {tree}/{} into the tarball", rel.display()))?;
        }
    }
    for file in DKMS_FILES {
        fs::copy(root.join(file), stage.join(file))
            .with_context(|| format!("copying {file} into the tarball"))?;
    }
    let template = fs::read_to_string(root.join("driver/packaging/dkms.conf"))?;
    fs::write(stage.join("dkms.conf"), dkms_conf(&template, version)?)?;

    let mtime = cmd!(sh, "git log -1 --format=%ct")
        .quiet()
        .ignore_stderr()
        .read()
        .unwrap_or_else(|_| "0".to_owned());
    let tar = out.join(format!("{DKMS_NAME}-dkms-{version}.tar"));
    let gz = tar.with_extension("tar.gz");
    let _ = fs::remove_file(&gz);
    cmd!(
        sh,
        "tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@{mtime} -C {out} -cf {tar} {top}"
    )
    .quiet()
    .run()?;
    cmd!(sh, "gzip -n -9 {tar}").quiet().run()?;
    cache::remove_dir(&stage)?;
    Ok(gz)
}

/// Builds the DKMS tarball with `dkms` in the sid chroot against `kernel`'s
/// build tree, as a user's `dkms install` would against a distribution's
/// headers: `dkms add` and `dkms build` in a DKMS tree and source tree of
/// their own (nothing in the chroot's `/var/lib/dkms` or `/usr/src`), then
/// the module DKMS built must be the driver, for that kernel release,
/// signed with the kernel's key ([`SigningConf`]). Returns where it left
/// that module ([`dkms_module_path`]).
pub fn check_dkms(sh: &Shell, log: &Log, kernel: &Kernel) -> Result<PathBuf> {
    let chroot = Chroot::ensure(sh, log)?;
    chroot.ensure_packages(sh, log, "dkms", DKMS_PACKAGES)?;
    // One scratch tree for every checkout using this cache.
    let _lock = cache::lock("dkms")?;
    let scratch = chroot.host_path(DKMS_SCRATCH);
    cache::remove_dir(&scratch)?;
    for dir in ["src", "tree"] {
        fs::create_dir_all(scratch.join(dir))?;
    }
    let version = version(sh)?;
    let tarball = dkms_tarball(sh, &scratch, &version)?;
    let name = tarball
        .file_name()
        .context("the tarball has no name")?
        .to_string_lossy();
    let src = format!("{DKMS_SCRATCH}/src");
    let tree = format!("{DKMS_SCRATCH}/tree");
    chroot.run(
        sh,
        log,
        &["tar", "-C", &src, "-xzf", &format!("{DKMS_SCRATCH}/{name}")],
    )?;
    let release = fs::read_to_string(kernel.dir.join("include/config/kernel.release"))
        .context("reading the kernel's release")?
        .trim()
        .to_owned();
    let trees = ["--sourcetree", &src, "--dkmstree", &tree];
    let module = ["-m", DKMS_NAME, "-v", &version];
    chroot.run(sh, log, &[&["dkms", "add"], &module[..], &trees].concat())?;
    let build = [
        &["dkms", "build"],
        &module[..],
        &["-k", &release, "--kernelsourcedir", &kernel.inner_dir],
        &trees,
    ]
    .concat();
    let signing = SigningConf::write(&chroot, kernel)?;
    chroot
        .run(sh, log, &build)
        .with_context(|| format!("dkms build against kernel {}", kernel.target))?;
    drop(signing);

    // DKMS keeps what it built in TREE/NAME/VERSION/RELEASE/ARCH/module/.
    let built = scratch
        .join("tree")
        .join(DKMS_NAME)
        .join(&version)
        .join(&release);
    let ko = find_module(&built)?
        .with_context(|| format!("dkms build left no rmemring.ko in {}", built.display()))?;
    let inner_ko = format!(
        "{DKMS_SCRATCH}/{}",
        ko.strip_prefix(&scratch)?.to_string_lossy()
    );
    let vermagic = chroot.read(sh, log, &["modinfo", "-F", "vermagic", &inner_ko])?;
    ensure!(
        vermagic.split_whitespace().next() == Some(release.as_str()),
        "{inner_ko}: vermagic {vermagic:?}, not kernel {release}"
    );
    let name = chroot.read(sh, log, &["modinfo", "-F", "name", &inner_ko])?;
    ensure!(name == DKMS_NAME, "{inner_ko}: module name {name:?}");
    let signer = chroot.read(sh, log, &["modinfo", "-F", "signer", &inner_ko])?;
    ensure!(!signer.is_empty(), "{inner_ko}: DKMS did not sign it");
    log.line(&format!(
        "dkms built {inner_ko} for {release}, signed by {signer}"
    ));
    let kept = dkms_module_path(kernel.target);
    if let Some(dir) = kept.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::copy(&ko, &kept)
        .with_context(|| format!("copying {} to {}", ko.display(), kept.display()))?;
    cache::remove_dir(&scratch)?;
    Ok(kept)
}

/// The first `rmemring.ko` (compressed or not) below `dir`.
fn find_module(dir: &Path) -> Result<Option<PathBuf>> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(None);
    };
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            if let Some(found) = find_module(&path)? {
                return Ok(Some(found));
            }
        } else if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("rmemring.ko"))
        {
            return Ok(Some(path));
        }
    }
    Ok(None)
}

/// Where the dry run builds: a target directory of its own, so that what
/// it leaves can be forgotten without touching the workspace's builds.
const PUBLISH_TARGET: &str = "target/publish";

/// Removes what earlier dry runs left of [`PUBLISHED`]. `cargo publish
/// --workspace` serves the packages it just made to one another from a
/// local registry, and Cargo takes a registry crate of a given name and
/// version to be immutable: it unpacks it into
/// `$CARGO_HOME/registry/src/<that registry>/` only if no earlier run did,
/// and reuses its build if one exists. A changed `rmemring-proto` at an
/// unchanged version would be verified against the stale copy. So both go:
/// the unpacked sources of the local registries (crates.io's directory is
/// named after its host, a local registry's is only `-HASH`) and the
/// builds of our crates in [`PUBLISH_TARGET`] (their dependencies' stay).
fn forget_earlier_packages() -> Result<()> {
    let is_ours = |name: &str, sep: char| {
        PUBLISHED.iter().any(|p| {
            let p = p.replace('-', &sep.to_string());
            name.strip_prefix(&p)
                .and_then(|v| v.strip_prefix(sep))
                .is_some_and(|v| v.starts_with(|c: char| c.is_ascii_hexdigit()))
        })
    };
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .context("neither CARGO_HOME nor HOME is set")?;
    let mut stale = Vec::new();
    if let Ok(registries) = fs::read_dir(home.join("registry/src")) {
        for registry in registries.flatten() {
            if registry.file_name().to_string_lossy().starts_with('-') {
                stale.extend(fs::read_dir(registry.path())?.flatten().map(|e| e.path()));
            }
        }
    }
    let builds = project_root().join(PUBLISH_TARGET).join("debug");
    for dir in [
        builds.join(".fingerprint"),
        builds.join("deps"),
        builds.join("build"),
    ] {
        if let Ok(entries) = fs::read_dir(&dir) {
            stale.extend(entries.flatten().map(|e| e.path()));
        }
    }
    for path in stale {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // `rmemring-proto-0.1.0` (sources), `rmemring-proto-HASH`
        // (fingerprints, build scripts), `librmemring_proto-HASH.rlib`.
        let file = name.strip_prefix("lib").unwrap_or(&name);
        if is_ours(&name, '-') || is_ours(file, '_') {
            if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            }
            .with_context(|| format!("removing {}", path.display()))?;
        }
    }
    Ok(())
}

/// `cargo publish --dry-run --workspace`: each publishable crate packages
/// and builds from its package alone (the unpublished `rmemring-proto`
/// served to `rmemring` from the packages just made); exactly
/// [`PUBLISHED`] are publishable; and each package ships what it needs
/// and no junk (see [`check_list`]).
pub fn check_packages(sh: &Shell) -> Result<()> {
    forget_earlier_packages()?;
    let target = project_root().join(PUBLISH_TARGET);
    let publish = cmd!(
        sh,
        "cargo publish --dry-run --workspace --allow-dirty --target-dir {target}"
    );
    eprintln!("$ {publish}");
    let output = publish.quiet().ignore_status().output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        output.status.success(),
        "cargo publish --dry-run failed:\n{stderr}"
    );
    let mut packaged: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("Packaging "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    packaged.sort_unstable();
    ensure!(
        packaged == PUBLISHED,
        "cargo publish would publish {packaged:?}, not {PUBLISHED:?}: mark the others \
         `publish = false`"
    );
    for name in PUBLISHED {
        let list = cmd!(sh, "cargo package --list --allow-dirty -p {name}")
            .quiet()
            .ignore_stderr()
            .read()?;
        let dir = package_dir(sh, name)?;
        let needed = build_script_inputs(&dir)?;
        check_list(&list, &needed).with_context(|| format!("the package of {name}"))?;
        let readme = fs::read_to_string(dir.join("README.md"))?;
        let mut bad = relative_links(&readme, false);
        for file in list
            .lines()
            .filter(|f| f.ends_with(".rs") && f.starts_with("src/"))
        {
            bad.extend(relative_links(&fs::read_to_string(dir.join(file))?, true));
        }
        ensure!(
            bad.is_empty(),
            "{name}: links that crates.io and docs.rs cannot follow (there is no repository \
             to resolve them against): {bad:?}"
        );
    }
    Ok(())
}

/// The directory of the workspace package `name`.
fn package_dir(sh: &Shell, name: &str) -> Result<PathBuf> {
    let metadata = metadata(sh)?;
    let manifest = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == name)
        .and_then(|p| p["manifest_path"].as_str())
        .with_context(|| format!("no package {name} in the workspace"))?;
    Ok(Path::new(manifest)
        .parent()
        .context("a manifest in no directory")?
        .to_path_buf())
}

/// The files the build script of the package in `dir` reads: every file
/// in its own directory (the BPF programs and their header, for
/// `rmemring`), relative to `dir`.
fn build_script_inputs(dir: &Path) -> Result<Vec<String>> {
    let manifest = fs::read_to_string(dir.join("Cargo.toml"))?;
    let Some(script) = manifest.lines().find_map(|l| {
        l.strip_prefix("build = \"")
            .and_then(|rest| rest.strip_suffix('"'))
    }) else {
        return Ok(Vec::new());
    };
    let script_dir = Path::new(script).parent().unwrap_or(Path::new(""));
    let mut inputs = Vec::new();
    for entry in fs::read_dir(dir.join(script_dir))? {
        let entry = entry?;
        // Following links: a linked file is packaged as the file.
        if fs::metadata(entry.path())?.is_file() {
            inputs.push(
                script_dir
                    .join(entry.file_name())
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    inputs.sort();
    Ok(inputs)
}

/// What every published package must hold.
const REQUIRED: &[&str] = &[
    "Cargo.toml",
    "README.md",
    "CHANGELOG.md",
    "LICENSE-GPL-2.0",
    "LICENSE-MIT",
];

/// A package's crate roots: a library, a binary, or both.
const ROOTS: &[&str] = &["src/lib.rs", "src/main.rs"];

/// Endings of files that are build products, patches' leftovers or editor
/// droppings, never sources.
const JUNK_SUFFIXES: &[&str] = &[
    ".o", ".ko", ".a", ".so", ".rlib", ".rmeta", ".orig", ".rej", ".swp", "~", ".profraw", ".tar",
    ".gz", ".crate",
];

/// Checks `cargo package --list`'s `list`: the files every package needs,
/// those in `needed` (the build script's), and nothing of a build tree or
/// an editor.
fn check_list(list: &str, needed: &[String]) -> Result<()> {
    let files: BTreeSet<&str> = list.lines().map(str::trim).collect();
    let missing: Vec<&str> = REQUIRED
        .iter()
        .copied()
        .chain(needed.iter().map(String::as_str))
        .filter(|f| !files.contains(f))
        .collect();
    ensure!(missing.is_empty(), "it lacks {missing:?}");
    ensure!(
        ROOTS.iter().any(|root| files.contains(root)),
        "it has none of the crate roots {ROOTS:?}"
    );
    let junk: Vec<&str> = files
        .iter()
        .copied()
        .filter(|f| *f != "Cargo.toml.orig" && *f != ".cargo_vcs_info.json")
        .filter(|f| {
            f.starts_with("target/")
                || f.split('/').any(|part| part.starts_with('.'))
                || JUNK_SUFFIXES.iter().any(|s| f.ends_with(s))
        })
        .collect();
    ensure!(junk.is_empty(), "it ships {junk:?}");
    Ok(())
}

/// Markdown links in `text` whose target is a path relative to the
/// repository (`[x](docs/a.md)`, `[x](../y)`, `[x](LICENSE-MIT)`), which
/// neither crates.io nor docs.rs can resolve without a repository. Web
/// links and anchors are fine. With `doc_comments_only`, `text` is Rust:
/// only its `//!` and `///` lines are looked at, and rustdoc's intra-doc
/// links (`[x](crate::y)`, `[x](Self::z)`, `[x](Region)`) are fine too.
fn relative_links(text: &str, doc_comments_only: bool) -> Vec<String> {
    let mut bad = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if doc_comments_only && !(trimmed.starts_with("//!") || trimmed.starts_with("///")) {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            let target = rest.split([')', ' ']).next().unwrap_or_default();
            let web = target.starts_with("https://") || target.starts_with("http://");
            let anchor = target.starts_with('#');
            // In rustdoc, `[x](Name)` and `[x](crate::y)` are intra-doc links.
            let path_like = target.contains('/') || target.contains(".md");
            let relative = if doc_comments_only {
                path_like && !target.contains("::")
            } else {
                !target.is_empty()
            };
            if !web && !anchor && relative {
                bad.push(target.to_owned());
            }
        }
    }
    bad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good_list() -> String {
        [
            ".cargo_vcs_info.json",
            "CHANGELOG.md",
            "Cargo.lock",
            "Cargo.toml",
            "Cargo.toml.orig",
            "LICENSE-GPL-2.0",
            "LICENSE-MIT",
            "README.md",
            "src/lib.rs",
            "src/bin/tool/bpf/build.rs",
            "src/bin/tool/bpf/prog.bpf.c",
        ]
        .join("\n")
    }

    #[test]
    fn package_lists_are_checked() {
        let needed = vec![
            "src/bin/tool/bpf/build.rs".to_owned(),
            "src/bin/tool/bpf/prog.bpf.c".to_owned(),
        ];
        check_list(&good_list(), &needed).unwrap();
        let missing_licence = good_list().replace("LICENSE-MIT\n", "");
        assert!(check_list(&missing_licence, &needed).is_err());
        let missing_input = good_list().replace("\nsrc/bin/tool/bpf/prog.bpf.c", "");
        assert!(check_list(&missing_input, &needed).is_err());
        let binary = good_list().replace("src/lib.rs", "src/main.rs");
        check_list(&binary, &needed).unwrap();
        let no_root = good_list().replace("src/lib.rs", "src/other.rs");
        assert!(check_list(&no_root, &needed).is_err());
        for junk in [
            "target/debug/x",
            "src/lib.rs.orig",
            "src/.lib.rs.swp",
            "src/bin/tool/bpf/prog.bpf.o",
            "driver/rmemring.ko",
            ".git/config",
        ] {
            let list = format!("{}\n{junk}", good_list());
            let err = check_list(&list, &needed).unwrap_err().to_string();
            assert!(err.contains(junk), "{junk}: {err}");
        }
    }

    #[test]
    fn relative_links_are_found() {
        let readme = "See [the spec](docs/protocol.md), [up](../README.md), \
                      [crates.io](https://crates.io/crates/rmemring), [MIT](LICENSE-MIT) \
                      and [below](#license).";
        assert_eq!(
            relative_links(readme, false),
            ["docs/protocol.md", "../README.md", "LICENSE-MIT"]
        );
        let source = "//! [`Region`](crate::Region), [spec](../docs/protocol.md), [r](Region)\n\
                      /// [`x`](Self::x) [web](https://docs.rs/rmemring)\n\
                      let s = \"[not a doc](a/b.md)\";";
        assert_eq!(relative_links(source, true), ["../docs/protocol.md"]);
    }

    #[test]
    fn dkms_conf_gets_the_version() {
        let template = fs::read_to_string(project_root().join("driver/packaging/dkms.conf"))
            .expect("driver/packaging/dkms.conf");
        let conf = dkms_conf(&template, "1.2.3").unwrap();
        assert!(conf.lines().any(|l| l == "PACKAGE_VERSION=\"1.2.3\""));
        assert!(!conf.contains(VERSION_PLACEHOLDER));
        // The module DKMS looks for is where the driver's Makefile builds it.
        assert!(conf
            .lines()
            .any(|l| l == "BUILT_MODULE_NAME[0]=\"rmemring\""));
        assert!(conf
            .lines()
            .any(|l| l == "BUILT_MODULE_LOCATION[0]=\"driver/\""));
        assert!(dkms_conf("PACKAGE_VERSION=\"0.1\"\n", "1.2.3").is_err());
    }

    #[test]
    fn the_packaging_files_make_install_installs_are_in_the_repository() {
        // `*.d` (the kernel build's dependency files) once kept the
        // modprobe.d, modules-load.d and sysusers.d directories out of git:
        // they existed in one checkout only, and `make install` failed in
        // every other one.
        let root = project_root();
        let makefile = fs::read_to_string(root.join("driver/Makefile")).unwrap();
        let files: BTreeSet<&str> = makefile
            .split_whitespace()
            .filter(|w| w.strip_prefix("packaging/").is_some_and(|f| !f.is_empty()))
            .collect();
        assert!(files.len() >= 4, "{files:?}");
        for file in files {
            let path = root.join("driver").join(file);
            assert!(path.is_file(), "{}: missing", path.display());
            let ignored = std::process::Command::new("git")
                .arg("-C")
                .arg(&root)
                .args(["check-ignore", "-q", "--no-index"])
                .arg(&path)
                .status()
                .unwrap();
            assert_eq!(
                ignored.code(),
                Some(1),
                "{}: ignored by git",
                path.display()
            );
        }
    }

    #[test]
    fn the_tarball_holds_what_the_driver_compiles() {
        // The driver's one path outside driver/ is the protocol's source.
        let main = fs::read_to_string(project_root().join("driver/rmemring_main.rs")).unwrap();
        let paths: Vec<&str> = main
            .lines()
            .filter_map(|l| l.trim().strip_prefix("#[path = \"../"))
            .filter_map(|l| l.split('"').next())
            .collect();
        assert_eq!(paths, ["proto/src/lib.rs"]);
        assert!(paths
            .iter()
            .all(|p| DKMS_TREES.iter().any(|tree| p.starts_with(tree))));
    }
}
