//! Helpers shared by the CLI's integration tests.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

/// A temporary directory of this test's own, `rmemring-test-NAME-*` in the
/// system's temporary directory, removed when dropped.
pub fn temp_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("rmemring-test-{name}-"))
        .tempdir()
        .unwrap()
}

/// Runs the program `bin` (a binary of this package, say
/// `env!("CARGO_BIN_EXE_rmemring")`) with `args` and no stdin.
pub fn run_bin(bin: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(bin)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}
