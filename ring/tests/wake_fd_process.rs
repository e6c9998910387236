//! `Consumer::wake_fd` across processes: a consumer waits in `poll(2)` on
//! the `WakeFd` of a file ring while another process, which opened the
//! ring by path (nothing passed between the two but the file's name),
//! produces into it in bursts. Every record must arrive intact, and no
//! `poll` may time out (a lost wake-up).

#![cfg(not(loom))]

mod common;

use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use nix::poll::{
    poll,
    PollFd,
    PollFlags,
    PollTimeout, //
};
use nix::sys::wait::{
    waitpid,
    WaitStatus, //
};
use rmemring::{
    pattern,
    Access,
    CreateOptions,
    Overflow,
    Region, //
};

const RECORDS: u64 = 50_000;

fn produce(path: &std::path::Path) -> Result<(), String> {
    // Start once the consumer sleeps.
    std::thread::sleep(Duration::from_millis(50));
    let region = Arc::new(Region::open(path, Access::Produce).map_err(|e| e.to_string())?);
    let mut producer = region.producer().map_err(|e| e.to_string())?;
    for seq in 0..RECORDS {
        common::push_waiting(
            &mut producer,
            seq,
            pattern::payload_len(seq, 0, 200) as usize,
        )?;
        if pattern::mix(seq) % 32 == 0 {
            producer.publish();
        }
        if seq % 1000 == 500 {
            producer.publish();
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    producer.publish();
    Ok(())
}

#[test]
fn a_poll_consumer_gets_every_record_of_a_producer_process_that_opened_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ring");
    let options = CreateOptions::new(1 << 15).overflow(Overflow::DropNew);
    drop(Region::create_file(&path, options).unwrap());
    // Fork before the consumer's adapter thread exists.
    // SAFETY: The test binary has this one test.
    let child = unsafe { common::fork_child(|| produce(&path)) };

    let region = Arc::new(Region::open(&path, Access::Consume).unwrap());
    let mut consumer = region.consumer().unwrap();
    let wake = consumer.wake_fd().unwrap();
    let (mut next, mut sleeps) = (0u64, 0u64);
    while next < RECORDS {
        for record in &mut consumer.batch().unwrap() {
            let len = pattern::payload_len(next, 0, 200) as usize;
            common::check_record(&record.unwrap(), next, len).unwrap();
            next += 1;
        }
        if next < RECORDS && consumer.arm_wakeup() {
            let mut fds = [PollFd::new(wake.as_fd(), PollFlags::POLLIN)];
            let ready = poll(&mut fds, PollTimeout::try_from(10_000).unwrap()).unwrap();
            if ready == 0 {
                let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                panic!("no wake-up in 10 s at record {next}: lost");
            }
            consumer.disarm_wakeup();
            sleeps += 1;
        }
    }
    assert_eq!(waitpid(child, None).unwrap(), WaitStatus::Exited(child, 0));
    let control = region.control();
    assert_eq!(control.records_produced, RECORDS);
    assert!(sleeps > 0 && control.wakeups > 0, "never slept");
    eprintln!(
        "{RECORDS} records from another process: {sleeps} poll sleeps, {} wake-ups",
        control.wakeups
    );
}
