//! One consumer and one producer per ring across processes: forked
//! children cannot take a role their parent holds, even through the region
//! and descriptors they inherited, and a role a child holds is the
//! parent's again once the child is gone.
//!
//! One test in this binary, because it forks (see `fork.rs`).

#![cfg(not(loom))]

mod common;

use std::io::{
    Read,
    Write, //
};
use std::sync::Arc;

use nix::sys::wait::{
    waitpid,
    WaitStatus, //
};
use nix::unistd::Pid;
use rmemring::{
    Access,
    Error,
    Overflow,
    Region,
    Role, //
};

/// [`common::fork_child`], for this binary's one test.
fn spawn(body: impl FnOnce() -> Result<(), String>) -> Pid {
    // SAFETY: The test binary has this one test.
    unsafe { common::fork_child(body) }
}

fn exited_cleanly(pid: Pid) -> bool {
    matches!(waitpid(pid, None), Ok(WaitStatus::Exited(_, 0)))
}

fn expect_taken<T>(what: &str, result: Result<T, Error>) -> Result<(), String> {
    match result {
        Err(Error::Taken(_)) => Ok(()),
        Err(e) => Err(format!("{what}: expected Error::Taken, got {e}")),
        Ok(_) => Err(format!("{what}: a second holder of the role")),
    }
}

#[test]
fn roles_are_exclusive_across_processes() {
    let region = common::memfd(1 << 16, Overflow::DropNew);
    let consumer = region.consumer().unwrap();

    // The child inherits the region, the parent's consumer and every
    // descriptor; none of them makes it a second consumer.
    let child = spawn(|| {
        expect_taken("the inherited region", region.consumer())?;
        let dup = region
            .fd()
            .try_clone_to_owned()
            .map_err(|e| e.to_string())?;
        let again = Arc::new(Region::from_fd(dup, Access::Full).map_err(|e| e.to_string())?);
        expect_taken("a region of a duplicated descriptor", again.consumer())?;
        // The producer role is free, and then held.
        let mut producer = again.producer().map_err(|e| e.to_string())?;
        expect_taken("a second producer", region.producer())?;
        producer
            .send(b"from the child")
            .map_err(|e| e.to_string())?;
        Ok(())
    });
    assert!(exited_cleanly(child), "the first child failed");

    // The child's producer died with it: the role is free again.
    let mut producer = region.producer().unwrap();
    producer.send(b"from the parent").unwrap();
    drop(producer);
    drop(consumer);

    // A child that holds the consumer role keeps the parent out until it
    // exits.
    let (mut ready_rx, ready_tx) = pipe();
    let (done_rx, mut done_tx) = pipe();
    let in_child = region.clone();
    let child = spawn(move || {
        let (mut ready_tx, mut done_rx) = (ready_tx, done_rx);
        let _consumer = in_child.consumer().map_err(|e| e.to_string())?;
        ready_tx.write_all(b"!").map_err(|e| e.to_string())?;
        // Hold the role until the parent says so (or goes away).
        let _ = done_rx.read(&mut [0]);
        Ok(())
    });
    let mut byte = [0];
    ready_rx
        .read_exact(&mut byte)
        .expect("the child took the consumer");
    assert!(matches!(
        region.consumer(),
        Err(Error::Taken(Role::Consumer))
    ));
    done_tx.write_all(b"!").unwrap();
    assert!(exited_cleanly(child), "the second child failed");

    let mut consumer = region.consumer().unwrap();
    let mut payloads = Vec::new();
    while let Some(record) = consumer.read_copy().unwrap() {
        payloads.push(record.payload.to_vec());
    }
    assert_eq!(
        payloads,
        [b"from the child".to_vec(), b"from the parent".to_vec()]
    );
}

/// A pipe as two files.
fn pipe() -> (std::fs::File, std::fs::File) {
    let (rx, tx) = nix::unistd::pipe().expect("pipe");
    (rx.into(), tx.into())
}
