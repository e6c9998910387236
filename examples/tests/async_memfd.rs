//! `rmemring-async --memfd`: the tokio consumer awaits a memfd ring's
//! `WakeFd` (the futex adapter's eventfd) while a producer thread writes
//! the driver's test records; every record must arrive and verify, and the
//! consumer must have awaited the reactor (not only found records ready),
//! within a minute (a lost wake-up leaves it awaiting for ever). About 1 s.

use std::process::{
    Command,
    Stdio, //
};
use std::time::{
    Duration,
    Instant, //
};

#[test]
fn the_async_example_consumes_a_memfd_ring_through_its_wake_fd() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rmemring-async"))
        .args(["--memfd", "--count", "200000", "--size", "8..512"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("rmemring-async --memfd still waiting after a minute: a lost wake-up");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // "rmemring-async: N records verified, L lost (producer dropped D), B bad, A awaits"
    let words: Vec<&str> = stdout.split_whitespace().collect();
    let number = |after: &str| -> u64 {
        let i = words
            .iter()
            .position(|w| w.trim_end_matches(',') == after)
            .unwrap();
        words[i - 1].parse().unwrap()
    };
    assert_eq!(number("records"), 200_000, "{stdout}");
    assert_eq!(number("lost"), 0, "{stdout}");
    assert_eq!(number("bad"), 0, "{stdout}");
    assert!(number("awaits") > 0, "never awaited the reactor: {stdout}");
}
