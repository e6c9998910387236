//! The `rmemring` binary against a ring file: what it prints, how it ends
//! when its stdout is a pipe nobody reads any more, and `create`.
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
    Access,
    CreateOptions,
    Region, //
};

const BIN: &str = env!("CARGO_BIN_EXE_rmemring");

/// A temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("rmemring-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A temporary directory holding a ring file with `records` records of
/// 100 bytes.
struct Ring {
    dir: TempDir,
}

impl Ring {
    fn new(name: &str, records: u32) -> Self {
        let dir = TempDir::new(name);
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

/// Asserts that `out` is a success, showing its stderr if not.
fn assert_ok(args: &[&str], out: &Output) {
    assert!(
        out.status.success(),
        "{args:?}: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `rmemring ARGS`, asserts it succeeded, and returns its stdout.
fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert_ok(args, &out);
    String::from_utf8(out.stdout).unwrap()
}

/// One record of `cat --format jsonl`.
#[derive(Debug)]
struct Line {
    seq: u64,
    lost_before: u64,
    payload: Vec<u8>,
}

/// The records `rmemring cat RING --drain --format jsonl` prints.
fn drain(ring: &Path) -> Vec<Line> {
    parse_jsonl(&ok(&["cat", s(ring), "--drain", "--format", "jsonl"]))
}

fn parse_jsonl(text: &str) -> Vec<Line> {
    text.lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let hex = v["payload"].as_str().unwrap();
            let payload = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            Line {
                seq: v["seq"].as_u64().unwrap(),
                lost_before: v["lost_before"].as_u64().unwrap(),
                payload,
            }
        })
        .collect()
}

#[test]
fn create_refuses_an_existing_file_without_force() {
    let dir = TempDir::new("force");
    let ring = dir.join("r");
    ok(&["create", s(&ring), "--size", "64K"]);
    let region = Arc::new(Region::open(&ring, Access::Produce).unwrap());
    for i in 0u8..10 {
        region.producer().unwrap().send(&[i]).unwrap();
    }
    drop(region);

    let out = run(&["create", s(&ring), "--size", "1M"]);
    assert_eq!(out.status.code(), Some(73), "{out:?}");
    let said = String::from_utf8(out.stderr).unwrap();
    assert!(said.contains("exists; --force replaces it"), "{said}");
    // Untouched: the same ring, records and all.
    let lines = drain(&ring);
    assert_eq!(lines.len(), 10);
    for (line, i) in lines.iter().zip(0u8..) {
        assert_eq!((line.seq, line.lost_before), (i.into(), 0));
        assert_eq!(line.payload, [i]);
    }

    let made = ok(&["create", s(&ring), "--size", "1M", "--force", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&made).unwrap();
    assert_eq!(v["data_size"], 1 << 20);
    assert_eq!(v["overflow"], "drop-new");
    assert_eq!(v["region_size"], std::fs::metadata(&ring).unwrap().len());
    assert!(drain(&ring).is_empty());

    // Only a regular file is replaced.
    let out = run(&["create", s(&dir.join("")), "--size", "64K", "--force"]);
    assert_eq!(out.status.code(), Some(73), "{out:?}");
    // A size no ring can have leaves no file behind.
    let odd = dir.join("odd");
    assert_eq!(
        run(&["create", s(&odd), "--size", "3000"]).status.code(),
        Some(2)
    );
    assert!(!odd.exists());
}
