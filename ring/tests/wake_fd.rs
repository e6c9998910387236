//! `Consumer::wake_fd` on memfd rings: a consumer that waits in epoll on the
//! descriptor gets every record a producer thread sends (a lost wake-up
//! shows as an epoll wait that times out); the adapter thread stops when
//! the last descriptor is dropped; it sleeps, using no CPU and not one
//! context switch, while the ring is idle; and a consumer that does not
//! arm costs the producer no wake-ups and gets no readiness.
//!
//! The tests look for the adapter thread by name in `/proc/self/task`, so
//! they take [`SERIAL`] to run one at a time.

#![cfg(not(loom))]

mod common;

use std::os::fd::AsFd;
use std::sync::{
    Mutex,
    MutexGuard,
    PoisonError, //
};
use std::time::{
    Duration,
    Instant, //
};

use nix::poll::{
    poll,
    PollFd,
    PollFlags,
    PollTimeout, //
};
use nix::sys::epoll::{
    Epoll,
    EpollCreateFlags,
    EpollEvent,
    EpollFlags,
    EpollTimeout, //
};
use rmemring::{
    pattern,
    Overflow,
    WakeFd,
    WAKE_THREAD_NAME, //
};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The ids of this process's threads named [`WAKE_THREAD_NAME`].
fn wake_threads() -> Vec<u32> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| {
            let task = task.ok()?;
            let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
            (comm.trim_end() == WAKE_THREAD_NAME)
                .then(|| task.file_name().to_str()?.parse().ok())
                .flatten()
        })
        .collect()
}

/// The one adapter thread (which names itself once it runs).
fn wake_thread() -> u32 {
    let started = Instant::now();
    let mut threads = wake_threads();
    while threads.is_empty() && started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(1));
        threads = wake_threads();
    }
    assert_eq!(threads.len(), 1, "adapter threads: {threads:?}");
    threads[0]
}

/// Thread `tid`'s CPU time (ns, from `schedstat`) and voluntary context
/// switches.
fn cpu_and_switches(tid: u32) -> (u64, u64) {
    let task = format!("/proc/self/task/{tid}");
    let schedstat = std::fs::read_to_string(format!("{task}/schedstat")).unwrap();
    let runtime = schedstat
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let status = std::fs::read_to_string(format!("{task}/status")).unwrap();
    let switches = status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (runtime, switches)
}

/// Waits until thread `tid` sleeps (state `S`: the adapter's futex wait),
/// so that what follows starts from a sleeping thread even on a loaded
/// machine.
fn until_asleep(tid: u32) {
    let started = Instant::now();
    loop {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
        // "TID (comm) STATE ...": the comm has no ')' of its own.
        let state = stat.rsplit_once(") ").unwrap().1.chars().next();
        if state == Some('S') {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{stat}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Whether `wake` is readable within `timeout`.
fn readable(wake: &WakeFd, timeout: Duration) -> bool {
    let mut fds = [PollFd::new(wake.as_fd(), PollFlags::POLLIN)];
    let ms = PollTimeout::try_from(timeout).unwrap();
    poll(&mut fds, ms).unwrap() == 1
}

#[test]
fn an_epoll_consumer_gets_every_record_a_producer_thread_sends() {
    let _serial = serial();
    const RECORDS: u64 = 20_000;
    let region = common::memfd(1 << 14, Overflow::DropNew);
    let mut consumer = region.consumer().unwrap();
    let mut producer = region.producer().unwrap();
    let wake = consumer.wake_fd().unwrap();
    assert!(wake.is_thread_backed());
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).unwrap();
    epoll
        .add(&wake, EpollEvent::new(EpollFlags::EPOLLIN, 7))
        .unwrap();

    let writer = std::thread::spawn(move || {
        for seq in 0..RECORDS {
            common::push_waiting(
                &mut producer,
                seq,
                pattern::payload_len(seq, 1, 300) as usize,
            )
            .unwrap();
            // Batches of varying size, and pauses long enough for the
            // consumer to go to sleep in epoll.
            if pattern::mix(seq) % 16 == 0 {
                producer.publish();
            }
            if seq % 500 == 250 {
                producer.publish();
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        producer.publish();
        producer.stats()
    });

    let (mut next, mut woken, mut arms) = (0u64, 0u64, 0u64);
    let mut events = [EpollEvent::empty()];
    while next < RECORDS {
        for record in &mut consumer.batch().unwrap() {
            let len = pattern::payload_len(next, 1, 300) as usize;
            common::check_record(&record.unwrap(), next, len).unwrap();
            next += 1;
        }
        if next == RECORDS {
            break;
        }
        arms += 1;
        if consumer.arm_wakeup() {
            let n = epoll
                .wait(&mut events, EpollTimeout::try_from(10_000).unwrap())
                .unwrap();
            assert_eq!(n, 1, "no wake-up in 10 s at record {next}: lost");
            assert_eq!(events[0].data(), 7);
            consumer.disarm_wakeup();
            woken += 1;
        }
    }
    let stats = writer.join().unwrap();
    assert!(woken > 0, "the consumer never slept in epoll");
    assert!(stats.wakeups > 0, "the producer never woke the consumer");
    // One wake-up per request at most. Not per sleep: a producer may
    // publish and wake between the consumer's arming and its re-check,
    // which then finds records and does not sleep (seen once in 518).
    assert!(
        stats.wakeups <= arms,
        "{} wake-ups, {arms} requests ({woken} sleeps)",
        stats.wakeups
    );
    eprintln!(
        "{RECORDS} records: {woken} epoll sleeps, {} wake-ups",
        stats.wakeups
    );
}

#[test]
fn the_thread_stops_when_the_last_wake_fd_is_dropped() {
    let _serial = serial();
    let region = common::memfd(1 << 12, Overflow::DropNew);
    let mut consumer = region.consumer().unwrap();
    assert!(wake_threads().is_empty());
    let first = consumer.wake_fd().unwrap();
    let tid = wake_thread();
    let second = consumer.wake_fd().unwrap();
    assert_eq!(
        wake_threads(),
        [tid],
        "a second descriptor, a second thread"
    );
    drop(first);
    assert_eq!(wake_threads(), [tid], "stopped while a descriptor lives");
    // Let it fall asleep on the futex, then stop it from there.
    until_asleep(tid);
    let started = Instant::now();
    drop(second);
    assert!(
        wake_threads().is_empty(),
        "the thread outlived its descriptors"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    // Stopped at any moment of its start (the window between its look at
    // the stop flag and its futex wait included), it always leaves.
    for _ in 0..200 {
        drop(consumer.wake_fd().unwrap());
        assert!(wake_threads().is_empty());
    }
    // And the consumer still sleeps and wakes without one.
    let mut producer = region.producer().unwrap();
    producer.send(b"late").unwrap();
    assert!(consumer.wait(Some(Duration::from_secs(1))).unwrap());
}

#[test]
fn an_idle_wake_thread_sleeps_until_the_producer_wakes_it() {
    let _serial = serial();
    let region = common::memfd(1 << 12, Overflow::DropNew);
    let mut consumer = region.consumer().unwrap();
    let mut producer = region.producer().unwrap();
    let wake = consumer.wake_fd().unwrap();
    let tid = wake_thread();
    assert!(consumer.arm_wakeup());
    // Let it reach the futex, then watch it for 200 ms.
    until_asleep(tid);
    let (cpu0, switches0) = cpu_and_switches(tid);
    std::thread::sleep(Duration::from_millis(200));
    let (cpu1, switches1) = cpu_and_switches(tid);
    assert_eq!(switches1, switches0, "the idle thread woke up");
    assert!(
        cpu1 - cpu0 < 100_000,
        "the idle thread ran {} ns in 200 ms",
        cpu1 - cpu0
    );
    assert!(!readable(&wake, Duration::ZERO));

    producer.send(b"wake up").unwrap();
    assert!(readable(&wake, Duration::from_secs(5)), "not woken");
    // It counts a voluntary switch when it sleeps again, after the write.
    let started = Instant::now();
    while cpu_and_switches(tid).1 == switches1 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "woken, but not back asleep on the futex"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    consumer.disarm_wakeup();
    assert!(!readable(&wake, Duration::ZERO), "disarm left it readable");
    assert_eq!(consumer.read_copy().unwrap().unwrap().payload, b"wake up");
    eprintln!(
        "idle 200 ms: {} ns of CPU, {} switches",
        cpu1 - cpu0,
        switches1 - switches0
    );
}

#[test]
fn a_consumer_that_does_not_arm_costs_no_wake_ups() {
    let _serial = serial();
    let region = common::memfd(1 << 16, Overflow::DropNew);
    let mut consumer = region.consumer().unwrap();
    let mut producer = region.producer().unwrap();
    let wake = consumer.wake_fd().unwrap();
    let tid = wake_thread();
    until_asleep(tid);
    let (_, switches0) = cpu_and_switches(tid);
    // A busy consumer: reads, never arms.
    for i in 0u32..1000 {
        producer.send(&i.to_le_bytes()).unwrap();
        if i % 10 == 9 {
            for record in &mut consumer.batch().unwrap() {
                record.unwrap();
            }
        }
    }
    assert_eq!(producer.stats().wakeups, 0);
    assert!(!readable(&wake, Duration::from_millis(50)));
    assert_eq!(cpu_and_switches(tid).1, switches0, "the thread ran");
    // Armed, it is woken once.
    assert!(consumer.arm_wakeup());
    producer.send(b"now").unwrap();
    producer.send(b"again").unwrap();
    assert!(readable(&wake, Duration::from_secs(5)));
    assert_eq!(producer.stats().wakeups, 1);
    consumer.disarm_wakeup();
}
