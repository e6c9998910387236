//! Helpers shared by the CLI's integration tests.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

/// A temporary directory of this test process's own, removed when
/// dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    /// `rmemring-test-NAME-PID` in the system's temporary directory, empty.
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("rmemring-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// The path of `name` in the directory.
    pub fn join(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
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
