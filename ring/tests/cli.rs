//! The `rmemring` binary against a ring file: what it prints, and how it
//! ends when its stdout is a pipe nobody reads any more.
//!
//! A closed pipe must end a subcommand quietly with status 0, the way
//! `head` expects any stream to end (`rmemring stat -w --json | head -1`),
//! not with a panic (status 101). The pipes here are closed before the
//! child writes anything, so every write it makes fails with `EPIPE`.

#![cfg(not(loom))]

use std::os::fd::OwnedFd;
use std::path::{
    Path,
    PathBuf, //
};
use std::process::{
    Command,
    Output,
    Stdio, //
};
use std::sync::Arc;

use rmemring::{
    CreateOptions,
    Region, //
};

const BIN: &str = env!("CARGO_BIN_EXE_rmemring");

/// A temporary directory holding a ring file with `records` records of
/// 100 bytes, removed when dropped.
struct Ring {
    dir: PathBuf,
}

impl Ring {
    fn new(name: &str, records: u32) -> Self {
        let dir = std::env::temp_dir().join(format!("rmemring-cli-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let region =
            Arc::new(Region::create_file(dir.join("ring"), CreateOptions::default()).unwrap());
        let mut producer = region.producer().unwrap();
        for i in 0..records {
            producer.push(&[i as u8; 100]).unwrap();
        }
        producer.publish();
        Self { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.join("ring")
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `rmemring ARGS` with stdout on a pipe.
fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Runs `rmemring ARGS` with stdout on a pipe whose read end is already
/// closed.
fn run_closed(args: &[&str]) -> Output {
    let (read, write): (OwnedFd, OwnedFd) = nix::unistd::pipe().unwrap();
    drop(read);
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(write))
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

/// Each case once with a reader, to see that it prints (so the closed pipe
/// is really written to), and once with the pipe closed.
fn check(args: &[&str]) {
    let open = run(args);
    assert!(
        open.status.success(),
        "{args:?}: {:?}\n{}",
        open.status,
        String::from_utf8_lossy(&open.stderr)
    );
    assert!(!open.stdout.is_empty(), "{args:?} printed nothing");
    let closed = run_closed(args);
    assert_eq!(
        closed.status.code(),
        Some(0),
        "{args:?} with stdout closed: {:?}\n{}",
        closed.status,
        String::from_utf8_lossy(&closed.stderr)
    );
    assert!(
        closed.stderr.is_empty(),
        "{args:?} with stdout closed said: {}",
        String::from_utf8_lossy(&closed.stderr)
    );
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn info_and_stat_end_quietly_on_a_closed_pipe() {
    let ring = Ring::new("stat", 10);
    let path = ring.path();
    check(&["info", s(&path)]);
    check(&["info", s(&path), "--json"]);
    check(&["stat", s(&path), "--interval", "0"]);
    check(&["stat", s(&path), "--interval", "0", "--json"]);
    check(&["stat", s(&path), "--interval", "10ms"]);
    check(&[
        "stat",
        s(&path),
        "--watch",
        "--json",
        "--interval",
        "10ms",
        "--count",
        "3",
    ]);
    check(&["stat", s(&path), "-w", "-i", "10ms", "-n", "3"]);
}

#[test]
fn cat_ends_quietly_on_a_closed_pipe_and_keeps_the_records() {
    let ring = Ring::new("cat", 1000);
    let path = ring.path();
    for format in ["raw", "hex", "jsonl"] {
        let closed = run_closed(&["cat", s(&path), "--format", format, "--drain"]);
        assert_eq!(closed.status.code(), Some(0), "{format}: {closed:?}");
        assert!(closed.stderr.is_empty(), "{format}: {closed:?}");
    }
    // Nothing was written, so nothing was released: every record is still
    // there for the next reader.
    let out = run(&["cat", s(&path), "--drain"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout.len(), 1000 * 100);
}

#[test]
fn bench_input_ends_quietly_on_a_closed_pipe() {
    let ring = Ring::new("bench", 0);
    let jsonl = ring.dir.join("bench.jsonl");
    let row = |imp: &str, records: u64| {
        format!(
            "{{\"bench\":\"kernel\",\"impl\":\"{imp}\",\"mode\":\"busy-poll\",\
             \"workload\":\"headers\",\"size\":4096,\"records\":{records},\
             \"bytes\":{},\"elapsed_ns\":1000000000,\"consumer_cpu_ns\":900000000,\
             \"wakeups\":0,\"dropped\":0}}\n",
            records * 4096
        )
    };
    std::fs::write(&jsonl, row("rmemring", 3_000_000) + &row("read", 100_000)).unwrap();
    check(&["bench", "--input", s(&jsonl)]);
    check(&["bench", "--input", s(&jsonl), "--markdown"]);
    // The table itself: the closed pipe is the only difference above.
    let out = run(&["bench", "--input", s(&jsonl)]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("30.00×"), "{text}");
}
