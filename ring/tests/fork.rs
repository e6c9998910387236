//! Two processes, one ring: a forked producer streams records of mixed sizes
//! into a memfd ring that a forked consumer reads in place, sleeping on the
//! futex (`Consumer::wait`) whenever the ring is empty. Every record's
//! sequence number, length and payload are checked, and both children must
//! exit cleanly within a deadline (a lost wake-up shows as a consumer that
//! never finishes).
//!
//! 10 million records, in debug and release builds alike.

#![cfg(not(loom))]

mod common;

use std::io::Write;
use std::sync::Arc;
use std::time::{
    Duration,
    Instant, //
};

use nix::sys::signal::{
    kill,
    Signal, //
};
use nix::sys::wait::{
    waitpid,
    WaitPidFlag,
    WaitStatus, //
};
use nix::unistd::Pid;
use rmemring::{
    pattern,
    Overflow,
    Region,
    Wait, //
};

/// The 10 million, in every build: `cargo test` builds this crate
/// optimised even in the test profile (the workspace's
/// `[profile.test.package.rmemring]`), so this takes seconds there too.
const RECORDS: u64 = 10_000_000;

/// A 64 KiB data area: the producer laps it thousands of times and often
/// finds it full, and the consumer often finds it empty.
const DATA_SIZE: u64 = 1 << 16;

/// How long both may take, and how long the two positions may stand still
/// while they run (a consumer asleep on a full ring missed a wake-up).
const DEADLINE: Duration = Duration::from_secs(600);
const STALL: Duration = Duration::from_secs(20);

/// The payload length of record `seq`: mostly small, every 251st up to the
/// largest the ring takes, every 97th empty.
fn len_of(seq: u64, max: u32) -> usize {
    let len = if seq % 251 == 0 {
        pattern::payload_len(seq, 0, max)
    } else if seq % 97 == 0 {
        0
    } else {
        pattern::payload_len(seq, 1, 200)
    };
    len as usize
}

fn produce(region: &Arc<Region>) -> Result<(), String> {
    let mut producer = region.producer().map_err(|e| e.to_string())?;
    let max = region.layout().max_payload;
    for seq in 0..RECORDS {
        common::push_waiting(&mut producer, seq, len_of(seq, max))?;
        // Publish in batches of varying size, and now and then pause long
        // enough for the consumer to drain the ring and go to sleep.
        if pattern::mix(seq) % 32 == 0 {
            producer.publish();
        }
        if seq % 200_000 == 100_000 {
            producer.publish();
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    producer.publish();
    Ok(())
}

fn consume(region: &Arc<Region>) -> Result<(), String> {
    let mut consumer = region.consumer().map_err(|e| e.to_string())?;
    // Spin only briefly before sleeping, so the futex path runs often.
    consumer.set_wait(Wait::Spin(64));
    let max = region.layout().max_payload;
    let mut next = 0u64;
    while next < RECORDS {
        consumer.wait(None).map_err(|e| e.to_string())?;
        let mut batch = consumer.batch().map_err(|e| e.to_string())?;
        for record in batch.iter() {
            let r = record.map_err(|e| format!("at record {next}: {e}"))?;
            common::check_record(&r, next, len_of(next, max))?;
            next += 1;
        }
    }
    consumer.release();
    Ok(())
}

/// [`common::fork_child`], for this binary's one test.
fn spawn(body: impl FnOnce() -> Result<(), String>) -> Pid {
    // SAFETY: The test binary has this one test.
    unsafe { common::fork_child(body) }
}

#[test]
fn two_processes_stream_every_record_intact() {
    let region = common::memfd(DATA_SIZE, Overflow::DropNew);
    let started = Instant::now();
    // The consumer first, so it starts on an empty ring and sleeps.
    let consumer = spawn(|| consume(&region));
    std::thread::sleep(Duration::from_millis(20));
    let producer = spawn(|| produce(&region));

    let mut pending = vec![("consumer", consumer), ("producer", producer)];
    let mut failures = Vec::new();
    let positions = || {
        (
            region.control().producer_pos,
            region.consumer_page().consumer_pos,
        )
    };
    let mut last = (positions(), Instant::now());
    while !pending.is_empty() {
        if positions() != last.0 {
            last = (positions(), Instant::now());
        }
        if started.elapsed() > DEADLINE || last.1.elapsed() > STALL {
            let page = region.consumer_page();
            for (name, pid) in &pending {
                let _ = kill(*pid, Signal::SIGKILL);
                let _ = waitpid(*pid, None);
                failures.push(format!(
                    "{name} still running after {:?}",
                    started.elapsed()
                ));
            }
            failures.push(format!(
                "the consumer had released {} of {RECORDS} records; producer at {:#x}, consumer at {:#x}, need_wakeup {}",
                page.records_consumed,
                region.control().producer_pos,
                page.consumer_pos,
                page.need_wakeup
            ));
            break;
        }
        pending.retain(
            |&(name, pid)| match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => true,
                Ok(WaitStatus::Exited(_, 0)) => false,
                other => {
                    failures.push(format!("{name}: {other:?}"));
                    false
                }
            },
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(failures.is_empty(), "{failures:#?}");

    let control = region.control();
    let page = region.consumer_page();
    assert_eq!(control.records_produced, RECORDS);
    assert_eq!(control.records_dropped, 0);
    assert_eq!(page.records_consumed, RECORDS);
    assert_eq!(page.records_lost, 0);
    assert_eq!(page.bytes_consumed, control.bytes_produced);
    assert_eq!(page.consumer_pos, control.producer_pos);
    // The consumer really slept on the futex, and was woken.
    assert!(page.sleeps > 0, "the consumer never slept");
    assert!(control.wakeups > 0, "the producer never woke the consumer");
    let _ = writeln!(
        std::io::stderr(),
        "{RECORDS} records in {:?}: {} sleeps, {} wake-ups",
        started.elapsed(),
        page.sleeps,
        control.wakeups
    );
}
