//! Overwrite mode under real concurrency: a producer thread laps a slow
//! consumer thread on a small ring thousands of times. The test asks for
//! batches from one record to several rings' worth; the producer bounds
//! them itself (it publishes whenever a batch reaches a quarter of the
//! ring), so the long ones go out as runs of quarter-ring publications,
//! and the test checks that bound from both threads: the producer never
//! holds more than a batch unpublished, and the consumer never sees
//! `overwrite_pos` ahead of `producer_pos` (records retired before they
//! were published). The consumer copies records out while the producer
//! may be overwriting them, and must hand out only intact ones: every
//! delivered record's header (length, tag, timestamp) and payload match
//! what the producer wrote for its sequence number, sequence numbers only
//! grow, and delivered + lost == produced exactly.

#![cfg(not(loom))]

mod common;

use std::sync::atomic::{
    AtomicBool,
    Ordering, //
};
use std::sync::Arc;
use std::time::{
    Duration,
    Instant, //
};

use rmemring::layout::{
    OFF_OVERWRITE_POS,
    OFF_PRODUCER_POS, //
};
use rmemring::{
    pattern,
    Overflow, //
};
use rmemring_proto::producer_core::batch_bytes;

const RECORDS: u64 = if cfg!(debug_assertions) {
    400_000
} else {
    4_000_000
};

/// The payload length of record `seq` for a ring whose largest is `max`.
fn len_of(seq: u64, max: u32) -> usize {
    if seq % 61 == 0 {
        pattern::payload_len(seq, 0, max) as usize
    } else {
        pattern::payload_len(seq, 0, 160) as usize
    }
}

/// Whether the test publishes after record `seq`: mostly after a few
/// records, sometimes not for more than the ring holds (the producer then
/// publishes on its own, every quarter of the ring).
fn batch_ends_at(seq: u64) -> bool {
    let mix = pattern::mix(seq);
    match mix % 100 {
        0 => false, // keep going: a long batch
        1..=9 => seq % 97 == 0,
        _ => mix % 4 == 0,
    }
}

#[test]
fn a_lapped_reader_gets_intact_records_and_exact_loss_counts() {
    for data_size in [4096u64, 1 << 16] {
        run(data_size);
    }
}

fn run(data_size: u64) {
    let region = common::memfd(data_size, Overflow::OverwriteOldest);
    let max = region.layout().max_payload;
    let done = Arc::new(AtomicBool::new(false));
    let mut consumer = region.consumer().unwrap();
    let producer = {
        let mut producer = region.producer().unwrap();
        let done = done.clone();
        std::thread::spawn(move || {
            for seq in 0..RECORDS {
                let mut r = producer.reserve(len_of(seq, max)).unwrap();
                assert_eq!(r.seq(), seq);
                common::fill(&mut r, seq);
                r.set_tag(seq as u16);
                r.set_timestamp(pattern::mix(seq));
                r.commit();
                // A batch is at most the bound plus one record and its pad.
                assert!(producer.unpublished() <= batch_bytes(data_size) + 2 * u64::from(max) + 48);
                if batch_ends_at(seq) {
                    producer.publish();
                }
            }
            producer.publish();
            done.store(true, Ordering::Release);
            producer.stats()
        })
    };

    let poke = common::Poke::new(&region);
    let started = Instant::now();
    let mut next = 0u64;
    let (mut delivered, mut lost, mut slow, mut empty) = (0u64, 0u64, 0u64, 0u64);
    loop {
        // Whether the producer had finished before this read started: then
        // an empty read means everything has been seen.
        let finished = done.load(Ordering::Acquire);
        // Loaded in this order, an `overwrite_pos` ahead of the later
        // `producer_pos` was ahead of it all along: retired unpublished.
        let oldest = poke.ctrl(OFF_OVERWRITE_POS);
        let published = poke.ctrl(OFF_PRODUCER_POS);
        let ahead = oldest.wrapping_sub(published);
        assert!(
            ahead == 0 || ahead > i64::MAX as u64,
            "records retired before they were published: {oldest:#x} > {published:#x}"
        );
        match consumer.read_copy().unwrap() {
            Some(r) => {
                assert!(r.seq >= next, "record {} after {}", r.seq, next);
                assert_eq!(r.lost_before, r.seq - next, "record {}", r.seq);
                assert_eq!(r.payload.len(), len_of(r.seq, max), "record {}", r.seq);
                assert_eq!(r.tag, r.seq as u16, "record {}", r.seq);
                assert_eq!(r.timestamp_ns, pattern::mix(r.seq), "record {}", r.seq);
                assert!(pattern::verify(r.seq, r.payload), "record {} torn", r.seq);
                lost += r.lost_before;
                delivered += 1;
                next = r.seq + 1;
                // A slow reader: now and then it dawdles, and the producer
                // laps it.
                if pattern::mix(r.seq) % 64 == 0 {
                    slow += 1;
                    let until = Instant::now() + Duration::from_micros(20);
                    while Instant::now() < until {
                        std::hint::spin_loop();
                    }
                }
                // Halfway through and never lapped (a reader that kept up,
                // as one may under ThreadSanitizer's slow producer): dawdle
                // until the producer has published two rings' worth, which
                // retires records this reader has not read.
                if lost == 0 && next == RECORDS / 2 {
                    let from = poke.ctrl(OFF_PRODUCER_POS);
                    while poke.ctrl(OFF_PRODUCER_POS).wrapping_sub(from) < 2 * data_size
                        && !done.load(Ordering::Acquire)
                    {
                        std::thread::yield_now();
                    }
                }
            }
            None if finished => break,
            None => {
                empty += 1;
                std::thread::yield_now()
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "stuck at {next}"
        );
    }
    let stats = producer.join().unwrap();

    assert_eq!(next, RECORDS, "the last record is never overwritten");
    assert_eq!(delivered + lost, RECORDS);
    assert_eq!(consumer.stats().records, delivered);
    assert_eq!(consumer.stats().lost, lost);
    assert_eq!(stats.records, RECORDS);
    // How much the reader gets depends on scheduling (on a loaded machine
    // it may get little more than the last records); that the producer
    // lapped it does not.
    assert!(lost > 0, "the producer never lapped the reader");
    eprintln!("{data_size}-byte ring: {delivered} delivered, {lost} lost, {slow} slow reads, {empty} empty reads");
    // Every record the consumer lost was overwritten by the producer.
    assert!(stats.overwritten >= lost);
}
