//! The `tsan` check: the multi-threaded ring tests under ThreadSanitizer.
//!
//! The host toolchain has no nightly, so no `-Zsanitizer`; the sid chroot's
//! rustc does, with `RUSTC_BOOTSTRAP=1` and clang's TSan runtime
//! (`libclang-rt-21-dev`, linked with `-Zexternal-clangrt`, since Debian's
//! rustc ships no runtime of its own). `std` is rebuilt instrumented
//! (`-Zbuild-std`): with the prebuilt, uninstrumented one TSan reports
//! races inside `std`'s own channels and locks (the test harness's, for
//! one) that are none. Building `std` needs its dependencies from
//! crates.io, so cargo in the chroot trusts the host's certificate
//! authorities.
//!
//! Everything it builds stays in the chroot (its cargo home and
//! `/work/tsan-target`), so a second run on the machine, in any checkout,
//! only rebuilds what changed. Any TSan report fails the run
//! (`halt_on_error`, exit status 66).

use std::fs;

use anyhow::{
    Context,
    Result, //
};
use xshell::Shell;

use crate::chroot::{
    Bind,
    Chroot, //
};
use crate::exec::Log;

/// What the chroot needs on top of its base packages: Debian's cargo and
/// clang's sanitizer runtimes.
pub const TSAN_PACKAGES: &[&str] = &["cargo", "libclang-rt-21-dev"];

/// The tests it runs: every ring test with threads racing on one ring
/// (overwrite mode's lapped reader and the wake-ups, in `ring`), and the
/// unit tests of both crates (the protocol crate's cores among them).
const TESTS: &[&str] = &["--lib", "--test", "overwrite", "--test", "ring"];

/// Where the checkout is mounted in the chroot.
const SOURCE: &str = "/work/tsan-source";

/// The host's certificate authorities, inside the chroot.
const CA_FILE: &str = "/etc/rmemring/host-ca.crt";

/// Runs the check; `log` gets the build and the test output.
pub fn check(sh: &Shell, log: &Log) -> Result<()> {
    let chroot = Chroot::ensure(sh, log)?;
    chroot.ensure_packages(sh, log, "tsan", TSAN_PACKAGES)?;
    let ca = chroot.host_path(CA_FILE);
    fs::create_dir_all(ca.parent().unwrap_or(&ca))?;
    fs::copy("/etc/ssl/certs/ca-certificates.crt", &ca)
        .context("copying the host's certificate authorities into the chroot")?;
    let root = crate::project_root();
    let binds = [Bind {
        host: &root,
        inner: SOURCE,
        read_only: false,
    }];
    let flags = "RUSTFLAGS=-Zsanitizer=thread -Zexternal-clangrt -Clinker=clang \
                 -Clink-arg=-fsanitize=thread";
    let mut argv = vec![
        "sh",
        "-c",
        r#"cd "$0" && exec "$@""#,
        SOURCE,
        "env",
        "RUSTC_BOOTSTRAP=1",
        flags,
        "TSAN_OPTIONS=halt_on_error=1 second_deadlock_stack=1",
        "CARGO_HTTP_CAINFO=/etc/rmemring/host-ca.crt",
        "CARGO_TERM_COLOR=never",
        "cargo",
        "-Zbuild-std",
        "test",
        "--target",
        "x86_64-unknown-linux-gnu",
        "--target-dir",
        "/work/tsan-target",
        "-p",
        "rmemring",
        "-p",
        "rmemring-proto",
    ];
    argv.extend_from_slice(TESTS);
    chroot
        .run_with(sh, log, &binds, &argv)
        .context("the ring tests under ThreadSanitizer failed (a report fails the run)")?;
    Ok(())
}
