//! The `rmemring` binary against a ring file: what it prints, how it ends
//! when its stdout is a pipe nobody reads any more, and the tour without a
//! kernel (`create`, `produce`, `cat` on a ring file).
//!
//! A closed pipe must end a subcommand quietly with status 0, the way
//! `head` expects any stream to end (`rmemring stat -w --json | head -1`),
//! not with a panic (status 101). The pipes here are closed before the
//! child writes anything, so every write it makes fails with `EPIPE`.

#![cfg(not(loom))]

use std::io::Write;
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
    pattern,
    Access,
    CreateOptions,
    Region, //
};

mod common;

use common::{
    run_bin,
    temp_dir, //
};

const BIN: &str = env!("CARGO_BIN_EXE_rmemring");

/// A temporary directory holding a ring file with `records` records of
/// 100 bytes.
struct Ring {
    dir: tempfile::TempDir,
}

impl Ring {
    fn new(name: &str, records: u32) -> Self {
        let dir = temp_dir(name);
        let region = Arc::new(
            Region::create_file(dir.path().join("ring"), CreateOptions::default()).unwrap(),
        );
        let mut producer = region.producer().unwrap();
        for i in 0..records {
            producer.push(&[i as u8; 100]).unwrap();
        }
        producer.publish();
        Self { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("ring")
    }
}

/// Runs `rmemring ARGS` with stdout on a pipe.
fn run(args: &[&str]) -> Output {
    run_bin(BIN, args)
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
    let jsonl = ring.dir.path().join("bench.jsonl");
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

/// Runs `rmemring ARGS` with `input` on stdin.
fn run_with_input(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
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

/// Asserts that `lines` are the kernel producer's test records `first..`,
/// one after the other, with payload lengths in `min..=max`.
fn assert_pattern(lines: &[Line], first: u64, (min, max): (u32, u32)) {
    for (line, seq) in lines.iter().zip(first..) {
        assert_eq!(line.seq, seq);
        let len = pattern::payload_len(seq, min, max) as usize;
        assert_eq!(line.payload.len(), len, "seq {seq}");
        assert!(pattern::verify(seq, &line.payload), "seq {seq}");
    }
}

/// The issue's one-minute tour, to the letter: no kernel, no driver.
#[test]
fn create_produce_cat_on_a_ring_file() {
    let dir = temp_dir("tour");
    let ring = dir.path().join("r");
    let created = ok(&["create", s(&ring), "--size", "1M"]);
    assert!(created.contains("1 MiB (1048576 bytes)"), "{created}");
    assert!(created.contains("drop-new"), "{created}");
    let produced = ok(&["produce", s(&ring), "--count", "1000"]);
    assert!(
        produced.starts_with("produced 1000 records, 64000 bytes"),
        "{produced}"
    );
    assert!(produced.contains("dropped 0"), "{produced}");
    let out = run(&["cat", s(&ring), "--count", "3"]);
    assert_ok(&["cat"], &out);
    // Raw payloads, 64 bytes each by default, the kernel producer's pattern.
    let mut expected = vec![0u8; 3 * 64];
    for (seq, chunk) in (0..).zip(expected.chunks_mut(64)) {
        pattern::fill(seq, chunk);
    }
    assert_eq!(out.stdout, expected);
}

#[test]
fn every_record_produced_into_a_ring_file_verifies() {
    let dir = temp_dir("verify");
    let ring = dir.path().join("r");
    ok(&["create", s(&ring), "--size", "1M"]);
    ok(&["produce", s(&ring), "--count", "1000", "--size", "8..512"]);
    let lines = drain(&ring);
    assert_eq!(lines.len(), 1000);
    assert!(lines.iter().all(|l| l.lost_before == 0));
    assert_pattern(&lines, 0, (8, 512));

    // Twenty times what the ring holds, with `cat` reading beside the
    // producer, which waits for room: nothing lost either.
    let small = dir.path().join("small");
    ok(&["create", s(&small), "--size", "16K"]);
    // Into a file, not a pipe: nobody reads a pipe until the producer is
    // done, and `cat` would block on it, the producer on `cat`.
    let jsonl = dir.path().join("cat.jsonl");
    let cat = Command::new(BIN)
        .args(["cat", s(&small), "--format", "jsonl", "--count", "2000"])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&jsonl).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let produced = ok(&[
        "produce",
        s(&small),
        "--count",
        "2000",
        "--size",
        "8..300",
        "--wait",
    ]);
    assert!(produced.contains("dropped 0"), "{produced}");
    let out = cat.wait_with_output().unwrap();
    assert_ok(&["cat"], &out);
    let lines = parse_jsonl(&std::fs::read_to_string(&jsonl).unwrap());
    assert_eq!(lines.len(), 2000);
    assert!(lines.iter().all(|l| l.lost_before == 0));
    assert_pattern(&lines, 0, (8, 300));
}

#[test]
fn without_a_reader_a_drop_new_ring_file_drops_and_an_overwrite_one_keeps_the_newest() {
    let dir = temp_dir("overflow");
    let drop_new = dir.path().join("drop-new");
    ok(&["create", s(&drop_new), "--size", "16K"]);
    let produced = ok(&["produce", s(&drop_new), "--count", "1000", "--size", "100"]);
    // 16 KiB holds 128 records of 128 bytes; the rest are dropped.
    assert!(produced.contains("produced 128 records"), "{produced}");
    assert!(produced.contains("dropped 872"), "{produced}");
    let lines = drain(&drop_new);
    assert_eq!(lines.len(), 128);
    assert_pattern(&lines, 0, (100, 100));

    let overwrite = dir.path().join("overwrite");
    let created = ok(&["create", s(&overwrite), "--size", "16K", "--overwrite"]);
    assert!(created.contains("overwrite-oldest"), "{created}");
    let produced = ok(&["produce", s(&overwrite), "--count", "1000", "--size", "100"]);
    assert!(produced.contains("produced 1000 records"), "{produced}");
    let out = run(&["cat", s(&overwrite), "--drain", "--format", "jsonl"]);
    assert_ok(&["cat"], &out);
    let lines = parse_jsonl(&String::from_utf8(out.stdout).unwrap());
    // The newest records, up to the last, each whole and verified; the
    // older ones were overwritten, and `cat` counts them as lost.
    assert!(lines.len() > 64 && lines.len() <= 128, "{}", lines.len());
    let first = lines[0].seq;
    assert_eq!(lines[0].lost_before, first);
    assert_eq!(first + lines.len() as u64, 1000);
    assert_pattern(&lines, first, (100, 100));
    let said = String::from_utf8(out.stderr).unwrap();
    assert!(
        said.contains(&format!("{first} records were lost")),
        "{said}"
    );
    // `--wait` means nothing there, and is refused.
    assert_eq!(
        run(&["produce", s(&overwrite), "--wait"]).status.code(),
        Some(2)
    );
}

#[test]
fn create_refuses_an_existing_file_without_force() {
    let dir = temp_dir("force");
    let ring = dir.path().join("r");
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
    let out = run(&[
        "create",
        s(&dir.path().join("")),
        "--size",
        "64K",
        "--force",
    ]);
    assert_eq!(out.status.code(), Some(73), "{out:?}");
    // A size no ring can have leaves no file behind.
    let odd = dir.path().join("odd");
    assert_eq!(
        run(&["create", s(&odd), "--size", "3000"]).status.code(),
        Some(2)
    );
    assert!(!odd.exists());
}

#[test]
fn produce_stdin_writes_a_record_per_line() {
    let dir = temp_dir("stdin");
    let ring = dir.path().join("r");
    ok(&["create", s(&ring), "--size", "64K"]);
    let args = ["produce", s(&ring), "--stdin"];
    let out = run_with_input(&args, b"alpha\nbeta\n\nno newline at the end");
    assert_ok(&args, &out);
    let payloads: Vec<Vec<u8>> = drain(&ring).into_iter().map(|l| l.payload).collect();
    assert_eq!(
        payloads,
        [&b"alpha"[..], b"beta", b"", b"no newline at the end"]
    );

    // --count stops early.
    let args = ["produce", s(&ring), "--stdin", "--count", "2", "--quiet"];
    let out = run_with_input(&args, b"1\n2\n3\n4\n");
    assert_ok(&args, &out);
    assert!(out.stdout.is_empty());
    let lines = drain(&ring);
    assert_eq!(lines.iter().map(|l| l.seq).collect::<Vec<_>>(), [4, 5]);

    // A line no record can hold is an error (EX_DATAERR), after the lines
    // before it went in.
    let mut input = b"short\n".to_vec();
    input.extend(vec![b'x'; 20_000]);
    let out = run_with_input(&["produce", s(&ring), "--stdin"], &input);
    assert_eq!(out.status.code(), Some(65), "{out:?}");
    let said = String::from_utf8(out.stderr).unwrap();
    assert!(said.contains("line 2 of stdin"), "{said}");
    assert_eq!(drain(&ring).len(), 1);
}

#[test]
fn a_ring_file_has_one_producer_at_a_time() {
    let ring = Ring::new("producer-taken", 0);
    let region = Arc::new(Region::open(ring.path(), Access::Produce).unwrap());
    let _producer = region.producer().unwrap();
    let out = run(&["produce", s(&ring.path()), "--count", "1"]);
    assert_eq!(out.status.code(), Some(75), "{out:?}");
    // The device's options that have no meaning here are refused.
    for args in [&["--stop"][..], &["--hook-only", "--size", "8"]] {
        let out = run(&[&["produce", s(&ring.path())][..], args].concat());
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    }
}

#[test]
fn produce_json_prints_its_summary_as_one_line() {
    let ring = Ring::new("produce-json", 0);
    let out = ok(&[
        "produce",
        s(&ring.path()),
        "--count",
        "7",
        "--size",
        "16",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim_end()).unwrap();
    assert_eq!(v["records"], 7, "{out}");
    assert_eq!(v["bytes"], 7 * 16, "{out}");
    assert_eq!(v["dropped"], 0, "{out}");
    assert_eq!(v["stopped"], false, "{out}");
    assert!(v["elapsed_ns"].as_u64().is_some_and(|ns| ns > 0), "{out}");
    // The keys in alphabetical order, as every JSON line of the command.
    assert_eq!(out.trim_end(), v.to_string());
}

#[test]
fn the_driver_only_subcommands_refuse_a_ring_file_as_usage() {
    let ring = Ring::new("device-only", 0);
    let out = run(&["release-recovered", s(&ring.path())]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn bench_on_a_ring_file_verifies_every_record_of_each_size() {
    // Records already in the ring are skipped, not counted.
    let ring = Ring::new("bench-file", 10);
    let path = ring.path();
    let args = [
        "bench",
        s(&path),
        "--sizes",
        "64,4K",
        "--duration",
        "150ms",
        "--warmup",
        "0",
    ];
    let table = ok(&args);
    for size in ["64 B", "4 KiB"] {
        assert!(table.contains(size), "{size}: {table}");
    }
    let out = ok(&[&args[..], &["--json"]].concat());
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{out}");
    for (v, size) in lines.iter().zip([64, 4096]) {
        assert_eq!(v["bench"], "file", "{v}");
        assert_eq!(v["size"], size, "{v}");
        assert_eq!(v["overflow"], "drop-new", "{v}");
        let records = v["records"].as_u64().unwrap();
        assert!(records > 0, "{v}");
        assert_eq!(v["verified"], records, "every record verified: {v}");
        assert_eq!(v["lost"], 0, "a drop-new ring loses nothing: {v}");
        assert_eq!(v["bad"], 0, "{v}");
        assert_eq!(v["bytes"], records * size, "{v}");
        assert!(v["records_per_s"].as_f64().unwrap() > 0.0, "{v}");
        assert!(v["gb_per_s"].as_f64().unwrap() > 0.0, "{v}");
    }
    // The rate is the records over the measured time.
    let v = &lines[0];
    let rate = v["records"].as_f64().unwrap() / (v["elapsed_ns"].as_f64().unwrap() / 1e9);
    assert!(
        (rate / v["records_per_s"].as_f64().unwrap() - 1.0).abs() < 1e-9,
        "{v}"
    );
    // A consumer that holds the ring leaves the benchmark none.
    let region = Arc::new(Region::open(&path, Access::Consume).unwrap());
    let _consumer = region.consumer().unwrap();
    let out = run(&args);
    assert_eq!(out.status.code(), Some(75), "{out:?}");
}

#[test]
fn a_missing_file_shows_the_os_error_once() {
    let dir = temp_dir("missing");
    let missing = dir.path().join("no-such-ring");
    for command in ["cat", "info", "stat", "produce", "release-recovered"] {
        let out = run(&[command, s(&missing)]);
        // EX_NOINPUT, not the missing device's EX_UNAVAILABLE (69).
        assert_eq!(out.status.code(), Some(66), "{command}: {out:?}");
        let said = String::from_utf8(out.stderr).unwrap();
        assert_eq!(
            said.matches("No such file or directory").count(),
            1,
            "{command}: {said}"
        );
        assert!(said.contains(s(&missing)), "{command}: {said}");
    }
    // A directory cannot be a ring: EX_NOINPUT too.
    let out = run(&["info", s(dir.path())]);
    assert_eq!(out.status.code(), Some(66), "{out:?}");
}
/// Waits up to `secs` seconds for `child` to exit; kills it and fails if
/// it does not.
fn exit_within(child: &mut std::process::Child, secs: u64) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("still running {secs} s after the signal");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Sends `signal` to `child`.
fn send(child: &std::process::Child, signal: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(child.id().try_into().unwrap());
    nix::sys::signal::kill(pid, signal).unwrap();
}

/// Ctrl-C is how one ends `cat` on a ring nothing writes to any more: it
/// ends with status 0 (not killed by SIGINT), soon, and what it read is
/// out.
#[test]
fn sigint_ends_cat_waiting_on_an_idle_ring_with_status_0() {
    use std::io::BufRead;

    let ring = Ring::new("sigint-cat", 3);
    let mut child = Command::new(BIN)
        .args(["cat", s(&ring.path()), "--format", "jsonl"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Three lines out: the handlers are in and `cat` waits for more.
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    for _ in 0..3 {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert!(line.contains("\"seq\":"), "{line:?}");
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    send(&child, nix::sys::signal::Signal::SIGINT);
    let status = exit_within(&mut child, 5);
    assert_eq!(status.code(), Some(0), "{status:?}");
}

/// SIGTERM wakes `produce --stdin` out of its wait for input (a pipe that
/// stays open and quiet) and ends it with status 0, the lines before it
/// kept.
#[test]
fn sigterm_ends_produce_waiting_on_stdin_with_status_0() {
    let dir = temp_dir("sigterm-produce");
    let ring = dir.path().join("r");
    ok(&["create", s(&ring), "--size", "64K"]);
    let mut child = Command::new(BIN)
        .args(["produce", s(&ring), "--stdin", "--quiet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"first\n").unwrap();
    // The line is published before `produce` sleeps for the next one.
    let region = Arc::new(Region::open(&ring, Access::Consume).unwrap());
    let mut consumer = region.consumer().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while consumer.backlog().unwrap() == 0 {
        assert!(std::time::Instant::now() < deadline, "no record came");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    send(&child, nix::sys::signal::Signal::SIGTERM);
    let status = exit_within(&mut child, 5);
    assert_eq!(status.code(), Some(0), "{status:?}");
    drop(stdin);
    // Read with the consumer already held, not a `cat` of its own: a test
    // running beside this one may fork, and its child holds the lock's
    // description until it execs, so a second consumer right after this
    // one is dropped can find the role still taken.
    let mut payloads = Vec::new();
    for record in &mut consumer.batch().unwrap() {
        payloads.push(record.unwrap().payload.to_vec());
    }
    assert_eq!(payloads, [b"first"]);
}
