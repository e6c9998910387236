//! Repository policy checks, run by `cargo test`: every Rust file has a `//!`
//! header, and every `unsafe` block or impl has a safety comment (`// SAFETY`
//! and a colon) right above it.
//!
//! The SAFETY rule matters most for the driver: the kernel build runs no
//! clippy, so `clippy::undocumented_unsafe_blocks` never sees `driver/`.

use std::fs;
use std::path::{
    Path,
    PathBuf, //
};

use crate::project_root;

/// Directories that hold no sources of ours.
const SKIP_DIRS: &[&str] = &["target", ".git", "node_modules"];

#[test]
fn every_rust_file_has_a_module_header() {
    let missing: Vec<String> = rust_files()
        .into_iter()
        .filter(|(_, text)| !has_module_header(text))
        .map(|(path, _)| path.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files without a `//!` header (say what the module is for):\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn every_unsafe_has_a_safety_comment() {
    let mut missing = Vec::new();
    for (path, text) in rust_files() {
        // This file's own tests quote `unsafe` blocks.
        if path.ends_with("xtask/src/tidy.rs") {
            continue;
        }
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if opens_unsafe(line) && !has_safety_comment(&lines, i) {
                missing.push(format!("{}:{}: {}", path.display(), i + 1, line.trim()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "`unsafe` without a safety comment right above:\n  {}",
        missing.join("\n  ")
    );
}

/// The repository's `.rs` files (relative path, content).
fn rust_files() -> Vec<(PathBuf, String)> {
    let root = project_root();
    let mut files = Vec::new();
    collect(&root, &root, &mut files);
    files.sort();
    files
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<(PathBuf, String)>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if path.is_dir() {
            if !SKIP_DIRS.contains(&name.as_ref()) {
                collect(root, &path, files);
            }
        } else if name.ends_with(".rs") {
            if let Ok(text) = fs::read_to_string(&path) {
                let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
                files.push((rel, text));
            }
        }
    }
}

/// A `//!` comment before the first item (after any `//` and blank lines).
fn has_module_header(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && (!line.starts_with("//") || line.starts_with("//!")))
        .is_some_and(|line| line.starts_with("//!"))
}

/// Whether `line` opens an `unsafe` block or impl (not an `unsafe fn`,
/// whose contract is its `# Safety` section).
fn opens_unsafe(line: &str) -> bool {
    let code = line.split("//").next().unwrap_or("");
    code.contains("unsafe {") || code.contains("unsafe impl")
}

/// Whether the comment lines right above line `i` (attributes skipped), or
/// line `i` itself, justify the `unsafe` with a safety comment.
fn has_safety_comment(lines: &[&str], i: usize) -> bool {
    if lines[i].contains("SAFETY:") {
        return true;
    }
    // Go up to the start of the statement (`let x =` on the line before).
    let mut start = i;
    while start > 0 && continues(lines[start - 1]) {
        start -= 1;
    }
    lines[..start]
        .iter()
        .rev()
        .map(|line| line.trim())
        .take_while(|line| line.starts_with("//") || line.starts_with("#["))
        .any(|line| line.contains("SAFETY:"))
}

/// Whether a line of code continues on the next line.
fn continues(line: &str) -> bool {
    let line = line.trim_end();
    !line.trim_start().starts_with("//")
        && ["=", "(", "&&", "||", "=>"]
            .iter()
            .any(|end| line.ends_with(end))
}

#[test]
fn the_checks_see_what_they_should() {
    assert!(has_module_header(
        "// SPDX-License-Identifier: GPL-2.0\n\n//! Doc.\nuse x;"
    ));
    assert!(!has_module_header("use x;\n//! Late."));
    assert!(opens_unsafe("    let x = unsafe { f() };"));
    assert!(!opens_unsafe("    // unsafe { f() } in a comment"));
    assert!(!opens_unsafe("unsafe fn f() {"));
    let lines = [
        "    // SAFETY: f has no preconditions.",
        "    unsafe { f() };",
    ];
    assert!(has_safety_comment(&lines, 1));
    assert!(!has_safety_comment(&["let y = 1;", "unsafe { f() };"], 1));
    let lines = ["// SAFETY: As above.", "let data =", "    unsafe { f() };"];
    assert!(has_safety_comment(&lines, 2));
}
