//! Unit tests of the ring protocol: empty and full, wrap-around, pad records
//! at every tail size, the largest and empty payloads, both overflow modes
//! with exact loss counts, positions near 2^64, re-attaching, and the
//! wake-up handshake.

#![cfg(not(loom))]

mod common;

use rmemring::layout::{
    max_payload_for,
    record_stride,
    HEADER_SIZE,
    KIND_DATA,
    KIND_PAD,
    OFF_OVERWRITE_POS, //
};
use rmemring::pattern;
use rmemring::{
    Access,
    Error,
    Overflow,
    ProduceError,
    Region, //
};
use rmemring_proto::producer_core::ReserveError;
use rmemring_proto::view::split_word0;

use common::Poke;
use std::time::Duration;

const SIZE: u64 = 4096;
const MAX: u32 = max_payload_for(SIZE);

/// Pushes record `seq` of `len` bytes with the test pattern.
fn push(producer: &mut rmemring::Producer, len: usize) -> Result<u64, ProduceError> {
    let mut r = producer.reserve(len)?;
    let seq = r.seq();
    common::fill(&mut r, seq);
    r.commit();
    Ok(seq)
}

/// A new ring holding `n` published records of `len` bytes, with its
/// producer and consumer.
fn ring_with(
    overflow: Overflow,
    n: u64,
    len: usize,
) -> (
    std::sync::Arc<Region>,
    rmemring::Producer,
    rmemring::Consumer,
) {
    let region = common::memfd(SIZE, overflow);
    let mut producer = region.producer().unwrap();
    let consumer = region.consumer().unwrap();
    for seq in 0..n {
        assert_eq!(push(&mut producer, len), Ok(seq));
    }
    producer.publish();
    (region, producer, consumer)
}

/// Offers record `seq`, of a pattern length up to `max` bytes: pushes it, or
/// counts it as dropped when the ring is full. Returns whether it dropped.
fn offer(producer: &mut rmemring::Producer, seq: u64, max: u32) -> bool {
    match push(producer, pattern::payload_len(seq, 0, max) as usize) {
        Ok(got) => {
            assert_eq!(got, seq);
            false
        }
        Err(ProduceError::Full) => {
            producer.drop_record();
            true
        }
        Err(e) => panic!("{e}"),
    }
}

/// Checks a record's pattern and returns `(seq, len, lost_before)`.
fn checked(r: rmemring::Record<'_>) -> (u64, usize, u64) {
    assert!(
        pattern::verify(r.seq, r.payload),
        "record {} corrupt",
        r.seq
    );
    (r.seq, r.payload.len(), r.lost_before)
}

/// Reads every available record through a zero-copy batch, checking each
/// one's pattern, and returns `(seq, len, lost_before)` of each.
fn drain(consumer: &mut rmemring::Consumer) -> Vec<(u64, usize, u64)> {
    let mut batch = consumer.batch().unwrap();
    batch.iter().map(|r| checked(r.unwrap())).collect()
}

/// Reads every available record by copying (either mode).
fn drain_copy(consumer: &mut rmemring::Consumer) -> Vec<(u64, usize, u64)> {
    let mut out = Vec::new();
    while let Some(r) = consumer.read_copy().unwrap() {
        out.push(checked(r));
    }
    out
}

#[test]
fn an_empty_ring_has_nothing() {
    for overflow in [Overflow::DropNew, Overflow::OverwriteOldest] {
        let region = common::memfd(SIZE, overflow);
        let mut consumer = region.consumer().unwrap();
        let _producer = region.producer().unwrap();
        assert_eq!(consumer.backlog().unwrap(), 0);
        assert!(consumer.read_copy().unwrap().is_none());
        assert!(!consumer
            .wait(Some(std::time::Duration::from_millis(1)))
            .unwrap());
        if overflow == Overflow::DropNew {
            assert!(drain(&mut consumer).is_empty());
        } else {
            assert!(matches!(consumer.batch(), Err(Error::OverwriteMode)));
        }
    }
}

#[test]
fn a_drop_new_ring_fills_to_the_last_byte() {
    let region = common::memfd(SIZE, Overflow::DropNew);
    let mut producer = region.producer().unwrap();
    let mut consumer = region.consumer().unwrap();
    // 40-byte payloads make 64-byte records: exactly 64 fit, none wasted.
    let mut n = 0;
    while push(&mut producer, 40).is_ok() {
        n += 1;
    }
    assert_eq!(n, SIZE / 64);
    assert_eq!(push(&mut producer, 0), Err(ProduceError::Full));
    // At most the last batch is invisible before the publish: the producer
    // publishes on its own whenever a batch reaches a quarter of the ring
    // (here before the refused record, which found the last batch full).
    let unpublished = producer.unpublished();
    assert!(unpublished <= SIZE / 4, "{unpublished}");
    assert_eq!(consumer.backlog().unwrap(), SIZE - unpublished);
    producer.publish();
    assert_eq!(consumer.backlog().unwrap(), SIZE);

    // Reading without releasing frees nothing.
    {
        let mut batch = consumer.batch().unwrap();
        batch.iter().next().unwrap().unwrap();
        // The batch is still alive: the producer must not get room.
        assert_eq!(push(&mut producer, 40), Err(ProduceError::Full));
    } // released here
    assert_eq!(push(&mut producer, 40), Ok(n));
    assert_eq!(push(&mut producer, 0), Err(ProduceError::Full));
    producer.publish();
    let got = drain(&mut consumer);
    assert_eq!(got.len() as u64, n);
    assert_eq!(got.first().unwrap().0, 1);
    assert_eq!(got.last().unwrap().0, n);
    assert_eq!(producer.stats().dropped, 0);
}

#[test]
fn drop_new_counts_every_drop_exactly() {
    let region = common::memfd(SIZE, Overflow::DropNew);
    let mut producer = region.producer().unwrap();
    let mut consumer = region.consumer().unwrap();
    let mut produced = 0u64;
    let mut dropped = 0u64;
    let mut delivered = 0u64;
    let mut lost = 0u64;
    for round in 0..200u64 {
        // Offer more than fits; count each refusal as a drop.
        for i in 0..(round % 7 + 20) {
            dropped += u64::from(offer(&mut producer, produced, 300));
            produced += 1;
            if i % 5 == 0 {
                producer.publish();
            }
        }
        producer.publish();
        if round % 3 != 0 {
            for (seq, len, lost_before) in drain(&mut consumer) {
                assert_eq!(len as u32, pattern::payload_len(seq, 0, 300));
                lost += lost_before;
                delivered += 1;
                assert_eq!(seq + 1, delivered + lost);
            }
        }
    }
    for (_, _, lost_before) in drain(&mut consumer) {
        lost += lost_before;
        delivered += 1;
    }
    assert!(dropped > 100, "the test must actually drop ({dropped})");
    // Drops at the very end are visible to the consumer only as the
    // producer's count, since no later record shows the gap.
    let trailing = produced - (delivered + lost);
    assert_eq!(lost + trailing, dropped);
    assert_eq!(producer.stats().dropped, dropped);
    assert_eq!(producer.stats().records, produced - dropped);
    assert_eq!(consumer.stats().lost, lost);
    assert_eq!(consumer.stats().records, delivered);
    assert_eq!(region.control().records_dropped, dropped);
    assert_eq!(region.control().records_produced, produced - dropped);
    // The sequence goes on after trailing drops: the next record shows them.
    push(&mut producer, 8).unwrap();
    producer.publish();
    let got = drain(&mut consumer);
    assert_eq!(got, vec![(produced, 8, trailing)]);
    assert_eq!(consumer.stats().lost, dropped);
}

#[test]
fn records_never_wrap_a_pad_fills_every_tail_size() {
    // For each tail size the data area can end with, start a ring so that
    // exactly that many bytes are left before the end, then write a record
    // that does not fit in them, one that fits exactly, and one that leaves
    // 8 bytes.
    for start in [0u64, 1 << 40, u64::MAX - 3 * SIZE + 1] {
        let start = start & !(SIZE - 1);
        for tail in (8..=SIZE).step_by(8) {
            for overflow in [Overflow::DropNew, Overflow::OverwriteOldest] {
                check_tail(start + SIZE - tail, tail, overflow);
            }
        }
    }
}

fn check_tail(pos: u64, tail: u64, overflow: Overflow) {
    let region = common::memfd(SIZE, overflow);
    let poke = Poke::new(&region);
    poke.start_at(pos);
    let mut producer = region.producer().unwrap();
    let mut consumer = region.consumer().unwrap();
    let offset = SIZE - tail;

    // Too long by 8 bytes (or the largest record): a pad, then the record at 0.
    let too_long = (tail + 8).saturating_sub(HEADER_SIZE).min(u64::from(MAX)) as usize;
    let needs_pad = record_stride(too_long as u32) > tail;
    push(&mut producer, too_long).unwrap();
    producer.publish();
    let (len, kind, _) = split_word0(poke.data(offset));
    if needs_pad {
        assert_eq!((len as u64, kind), (tail, KIND_PAD), "tail {tail}");
        let (len, kind, _) = split_word0(poke.data(0));
        assert_eq!((len as usize, kind), (too_long, KIND_DATA));
        assert_eq!(poke.data(8), 0, "sequence number of the record at 0");
    } else {
        assert_eq!((len as usize, kind), (too_long, KIND_DATA));
    }
    let got = drain_copy(&mut consumer);
    assert_eq!(got, vec![(0, too_long, 0)], "tail {tail} {overflow:?}");
    let expected_pos = pos + if needs_pad { tail } else { 0 } + record_stride(too_long as u32);
    assert_eq!(consumer.position(), expected_pos);
    assert_eq!(region.control().producer_pos, expected_pos);

    // A record that fits the tail exactly needs no pad, and the next one
    // starts the next lap at offset 0.
    if tail >= HEADER_SIZE && tail - HEADER_SIZE <= u64::from(MAX) {
        let region = common::memfd(SIZE, overflow);
        let poke = Poke::new(&region);
        poke.start_at(pos);
        let mut producer = region.producer().unwrap();
        let mut consumer = region.consumer().unwrap();
        let exact = (tail - HEADER_SIZE) as usize;
        push(&mut producer, exact).unwrap();
        push(&mut producer, 0).unwrap();
        producer.publish();
        let (len, kind, _) = split_word0(poke.data(offset));
        assert_eq!((len as usize, kind), (exact, KIND_DATA));
        let (len, kind, _) = split_word0(poke.data(0));
        assert_eq!((len, kind), (0, KIND_DATA));
        assert_eq!(drain_copy(&mut consumer), vec![(0, exact, 0), (1, 0, 0)]);
        assert_eq!(consumer.position(), pos + tail + HEADER_SIZE);
    }
}

#[test]
fn the_largest_and_the_empty_payload() {
    for overflow in [Overflow::DropNew, Overflow::OverwriteOldest] {
        let region = common::memfd(SIZE, overflow);
        let mut producer = region.producer().unwrap();
        let mut consumer = region.consumer().unwrap();
        assert_eq!(region.layout().max_payload, MAX);
        assert_eq!(
            push(&mut producer, MAX as usize + 1),
            Err(ProduceError::TooLarge {
                len: MAX as usize + 1,
                max: MAX
            })
        );
        assert!(matches!(
            producer.reserve(usize::MAX),
            Err(ProduceError::TooLarge { .. })
        ));
        // Alternate largest and empty records across many laps.
        let mut next = 0u64;
        for i in 0..2000u64 {
            let len = if i % 2 == 0 { MAX as usize } else { 0 };
            push(&mut producer, len).unwrap();
            producer.publish();
            for (seq, got_len, lost) in drain_copy(&mut consumer) {
                assert_eq!((seq, got_len, lost), (next, len, 0));
                next += 1;
            }
        }
        assert_eq!(next, 2000);
        assert_eq!(consumer.stats().bytes, 1000 * u64::from(MAX));
    }
}

#[test]
fn an_abandoned_reservation_writes_no_record() {
    let region = common::memfd(SIZE, Overflow::DropNew);
    let poke = Poke::new(&region);
    // Ten bytes before the end: the reservation pads to the end first.
    poke.start_at(SIZE - 16);
    let mut producer = region.producer().unwrap();
    let mut consumer = region.consumer().unwrap();
    let r = producer.reserve(100).unwrap();
    assert_eq!(r.seq(), 0);
    drop(r);
    assert_eq!(producer.next_seq(), 0);
    push(&mut producer, 5).unwrap();
    producer.publish();
    assert_eq!(drain(&mut consumer), vec![(0, 5, 0)]);
}

#[test]
fn overwrite_mode_counts_every_lost_record_exactly() {
    let region = common::memfd(SIZE, Overflow::OverwriteOldest);
    let mut producer = region.producer().unwrap();
    let mut consumer = region.consumer().unwrap();
    let mut produced = 0u64;
    let mut delivered = 0u64;
    let mut lost = 0u64;
    let mut last_seq = None;
    for round in 0..300u64 {
        // Bursts from far less than a lap to several laps.
        for _ in 0..(round * 7 % 150) {
            let len = pattern::payload_len(produced, 0, MAX) as usize;
            assert_eq!(push(&mut producer, len), Ok(produced));
            produced += 1;
        }
        producer.publish();
        // Read part of the backlog, or all of it.
        let mut budget = if round % 4 == 0 { usize::MAX } else { 3 };
        while budget > 0 {
            let Some(r) = consumer.read_copy().unwrap() else {
                break;
            };
            assert!(pattern::verify(r.seq, r.payload));
            assert_eq!(r.payload.len() as u32, pattern::payload_len(r.seq, 0, MAX));
            if let Some(last) = last_seq {
                assert_eq!(r.seq, last + 1 + r.lost_before);
            } else {
                assert_eq!(r.seq, r.lost_before);
            }
            last_seq = Some(r.seq);
            delivered += 1;
            lost += r.lost_before;
            budget -= 1;
        }
    }
    for (seq, _, lost_before) in drain_copy(&mut consumer) {
        delivered += 1;
        lost += lost_before;
        last_seq = Some(seq);
    }
    assert_eq!(last_seq, Some(produced - 1));
    assert_eq!(delivered + lost, produced);
    assert!(
        lost > produced / 2,
        "the producer must lap the reader ({lost})"
    );
    assert_eq!(consumer.stats().lost, lost);
    assert_eq!(consumer.stats().records, delivered);
    assert_eq!(producer.stats().records, produced);
    assert_eq!(producer.stats().dropped, 0);
}

#[test]
fn overwrite_mode_keeps_the_newest_records() {
    // 40-byte payloads, 64-byte records: the ring holds the last 64.
    let (region, _producer, mut consumer) = ring_with(Overflow::OverwriteOldest, 1000, 40);
    let got = drain_copy(&mut consumer);
    assert_eq!(got.len(), 64);
    assert_eq!(got[0], (1000 - 64, 40, 1000 - 64));
    assert!(got[1..].iter().all(|&(_, _, lost)| lost == 0));
    assert_eq!(got.last().unwrap().0, 999);
    assert_eq!(region.control().overwrite_pos, (1000 - 64) * 64);
}

/// Streams in both modes across the 2^64 wrap of the positions, which the
/// data area's wrap coincides with.
#[test]
fn positions_wrap_around_u64() {
    for overflow in [Overflow::DropNew, Overflow::OverwriteOldest] {
        for start in [
            u64::MAX - SIZE + 1,
            u64::MAX - 5 * SIZE / 2 + 1,
            u64::MAX - 7,
        ] {
            let start = start & !7;
            let region = common::memfd(SIZE, overflow);
            let poke = Poke::new(&region);
            poke.start_at(start);
            let mut producer = region.producer().unwrap();
            let mut consumer = region.consumer().unwrap();
            let mut produced = 0u64;
            let mut next = 0u64;
            let mut lost = 0u64;
            while produced < 3000 {
                for _ in 0..(produced % 13 + 1) {
                    let len = pattern::payload_len(produced, 0, MAX) as usize;
                    match push(&mut producer, len) {
                        Ok(_) => produced += 1,
                        Err(ProduceError::Full) => break,
                        Err(e) => panic!("{e}"),
                    }
                }
                producer.publish();
                for (seq, len, lost_before) in drain_copy(&mut consumer) {
                    assert_eq!(seq, next + lost_before);
                    assert_eq!(len as u32, pattern::payload_len(seq, 0, MAX));
                    lost += lost_before;
                    next = seq + 1;
                }
            }
            assert_eq!(next, produced);
            if overflow == Overflow::DropNew {
                assert_eq!(lost, 0);
            }
            let end = region.control().producer_pos;
            assert!(
                end < start,
                "the positions wrapped ({start:#x} -> {end:#x})"
            );
            assert_eq!(consumer.position(), end);
        }
    }
}

#[test]
fn reattaching_continues_positions_sequences_and_counts() {
    for overflow in [Overflow::DropNew, Overflow::OverwriteOldest] {
        let region = common::memfd(SIZE, overflow);
        let reopen = || {
            let fd = region.fd().try_clone_to_owned().unwrap();
            std::sync::Arc::new(Region::from_fd(fd, Access::Full).unwrap())
        };
        let mut produced = 0u64;
        let mut next = 0u64;
        let mut lost = 0u64;
        let mut dropped = 0u64;
        for generation in 0..6 {
            let producer_region = reopen();
            let consumer_region = reopen();
            let mut producer = producer_region.producer().unwrap();
            let mut consumer = consumer_region.consumer().unwrap();
            assert_eq!(producer.next_seq(), produced, "generation {generation}");
            for i in 0..(40 + generation * 30) {
                dropped += u64::from(offer(&mut producer, produced, 200));
                produced += 1;
                if i % 16 == 0 {
                    producer.publish();
                }
            }
            // The consumer leaves some records unread and unreleased.
            let mut budget = 25;
            while budget > 0 {
                let Some(r) = consumer.read_copy().unwrap() else {
                    break;
                };
                assert!(pattern::verify(r.seq, r.payload));
                assert_eq!(r.seq, next + r.lost_before);
                lost += r.lost_before;
                next = r.seq + 1;
                budget -= 1;
            }
            consumer.release();
            assert_eq!(consumer.stats().lost, lost);
            assert_eq!(consumer.stats().records + consumer.stats().lost, next);
            // Both detach (the producer publishes what is left).
        }
        let consumer_region = reopen();
        let mut consumer = consumer_region.consumer().unwrap();
        for (seq, _, lost_before) in drain_copy(&mut consumer) {
            assert_eq!(seq, next + lost_before);
            lost += lost_before;
            next = seq + 1;
        }
        assert_eq!(consumer.stats().lost, lost);
        let control = region.control();
        assert_eq!(control.records_produced + control.records_dropped, produced);
        assert_eq!(control.records_dropped, dropped);
        if overflow == Overflow::DropNew {
            // Trailing drops show only in the producer's count.
            assert!(next <= produced && produced - next <= dropped);
            assert_eq!(lost + (produced - next), dropped);
        } else {
            assert_eq!(dropped, 0);
            assert_eq!(next, produced);
        }
    }
}

#[test]
fn the_consumer_page_reports_what_was_released() {
    let (region, _producer, mut consumer) = ring_with(Overflow::DropNew, 10, 10);
    {
        let mut batch = consumer.batch().unwrap();
        let mut iter = batch.iter();
        for _ in 0..4 {
            iter.next().unwrap().unwrap();
        }
        assert_eq!(region.consumer_page().consumer_pos, 0);
    }
    let page = region.consumer_page();
    assert_eq!(page.consumer_pos, 4 * record_stride(10));
    assert_eq!((page.records_consumed, page.bytes_consumed), (4, 40));
    let control = region.control();
    assert_eq!(
        (control.records_produced, control.bytes_produced),
        (10, 100)
    );
}

mod core {
    //! The index logic without the user-space wrappers.

    use super::*;
    use common::{
        heap_ring,
        HeapRing, //
    };
    use rmemring_proto::consumer_core::{
        ConsumerCore,
        OverwriteRead, //
    };
    use rmemring_proto::producer_core::ProducerCore;
    use rmemring_proto::sync::Ordering;

    #[test]
    fn reserve_refuses_oversized_and_full() {
        let (mut p, mut c) = heap_ring(256, Overflow::DropNew, 0);
        let max = max_payload_for(256);
        assert_eq!(max, 40);
        assert_eq!(p.reserve(max + 1), Err(ReserveError::TooLarge));
        assert_eq!(p.reserve(u32::MAX), Err(ReserveError::TooLarge));
        for seq in 0..4 {
            let slot = p.reserve(max).unwrap();
            common::fill_slot(&p, &slot, seq);
            p.commit(slot, 0, 0);
        }
        assert_eq!(p.reserve(0), Err(ReserveError::Full));
        p.publish();
        assert_eq!(p.reserve(0), Err(ReserveError::Full));
        let meta = c.next_record().unwrap().unwrap();
        assert_eq!((meta.seq, meta.len), (0, max));
        // Read but not released: still full.
        assert_eq!(p.reserve(0), Err(ReserveError::Full));
        c.release();
        assert!(p.reserve(max).is_ok());
    }

    #[test]
    fn publish_wakes_once_per_sleep() {
        let (mut p, mut c) = heap_ring(256, Overflow::DropNew, 0);
        // No sleeper: no wake-up.
        assert!(!p.publish());
        for round in 0..5u64 {
            assert!(c.next_record().unwrap().is_none());
            assert!(c.prepare_sleep());
            let slot = p.reserve(0).unwrap();
            p.commit(slot, 0, 0);
            assert!(p.publish(), "round {round}");
            // The consumer has not woken yet: no second wake-up.
            assert!(!p.publish());
            c.finish_sleep();
            assert_eq!(c.next_record().unwrap().unwrap().seq, round);
            c.release();
            // Awake: publications wake nobody.
            assert!(!p.publish());
        }
        assert_eq!(p.stats().wakeups, 5);
        assert_eq!(c.stats().sleeps, 5);
    }

    #[test]
    fn prepare_sleep_declines_when_data_is_there() {
        let (mut p, mut c) = heap_ring(256, Overflow::DropNew, 0);
        let slot = p.reserve(0).unwrap();
        p.commit(slot, 0, 0);
        p.publish();
        assert!(!c.prepare_sleep());
        // The request was withdrawn: the producer does not wake anyone.
        let slot = p.reserve(0).unwrap();
        p.commit(slot, 0, 0);
        assert!(!p.publish());
        assert_eq!(p.stats().wakeups, 0);
    }

    /// One sleep of `c`, and the publication that should end it: whether
    /// the producer says to wake the consumer.
    fn sleep_once(p: &mut ProducerCore, c: &mut ConsumerCore) -> bool {
        assert!(c.prepare_sleep());
        let slot = p.reserve(0).unwrap();
        p.commit(slot, 0, 0);
        let woken = p.publish();
        c.finish_sleep();
        assert!(c.next_record().unwrap().is_some());
        c.release();
        woken
    }

    /// Every sleep must get its wake-up, across the 32-bit wrap of the
    /// wake-up token too.
    #[test]
    fn wake_tokens_stay_fresh_across_the_u32_wrap() {
        for first in [0, u32::MAX - 3] {
            let ring = HeapRing::new(256, Overflow::DropNew, 0);
            ring.view().wake_token().store(first, Ordering::Relaxed);
            let mut p = ProducerCore::attach(ring.view(), Overflow::DropNew, 40);
            let mut c = ConsumerCore::attach(ring.view(), Overflow::DropNew, 40).unwrap();
            for round in 0..8u64 {
                assert!(
                    sleep_once(&mut p, &mut c),
                    "tokens from {first:#x}, round {round}: wake-up lost"
                );
            }
        }
    }

    /// A consumer that attaches where another left off must get its
    /// wake-ups too: its tokens must not repeat the ones the producer has
    /// already answered.
    #[test]
    fn a_reattached_consumer_is_woken() {
        let ring = HeapRing::new(256, Overflow::DropNew, 0);
        let mut p = ProducerCore::attach(ring.view(), Overflow::DropNew, 40);
        let mut c = ConsumerCore::attach(ring.view(), Overflow::DropNew, 40).unwrap();
        for (generation, sleeps) in [1u64, 1, 2, 3, 1, 1].into_iter().enumerate() {
            for round in 0..sleeps {
                assert!(
                    sleep_once(&mut p, &mut c),
                    "consumer {generation}, sleep {round}: wake-up lost"
                );
            }
            // Detach and attach a new consumer to the same pages.
            c = ConsumerCore::attach(ring.view(), Overflow::DropNew, 40).unwrap();
        }
    }

    /// A producer that retired records and stopped before publishing their
    /// successors leaves `overwrite_pos` ahead of `producer_pos`. The next
    /// producer lays records out anew from the published position, so the
    /// stale position falls inside one of its records: readers must never
    /// follow it there. (Found by the fuzzer: `fuzz/corpus/producer/
    /// seed-stale-overwrite-pos`.)
    #[test]
    fn a_new_producer_replaces_a_stale_overwrite_pos() {
        let overflow = Overflow::OverwriteOldest;
        let ring = HeapRing::new(4096, overflow, 0);
        let max = max_payload_for(4096);
        let commit = |p: &mut ProducerCore, len: u32| {
            let slot = p.reserve(len).unwrap();
            common::fill_slot(p, &slot, p.next_seq());
            p.commit(slot, 0, 0);
        };
        let mut p = ProducerCore::attach(ring.view(), overflow, max);
        commit(&mut p, 8);
        commit(&mut p, 8);
        p.publish();
        for _ in 0..4 {
            commit(&mut p, max);
        }
        let (view, load) = (ring.view(), Ordering::Relaxed);
        let (published, stale) = (
            view.producer_pos().load(load),
            view.overwrite_pos().load(load),
        );
        assert!(
            stale > published,
            "overwrite_pos {stale:#x}, published {published:#x}"
        );

        let mut p = ProducerCore::attach(ring.view(), overflow, max);
        let mut c = ConsumerCore::attach(ring.view(), overflow, max).unwrap();
        let first = p.next_seq();
        // 72-byte strides: the stale position is not a record boundary.
        for _ in 0..20 {
            commit(&mut p, 48);
        }
        p.publish();
        let mut buf = vec![0u8; max as usize];
        let mut seqs = Vec::new();
        while let OverwriteRead::Record(meta) = c.read_overwrite(&mut buf).unwrap() {
            assert!(pattern::verify(meta.seq, &buf[..meta.len as usize]));
            seqs.push(meta.seq);
        }
        assert_eq!(seqs, (first..first + 20).collect::<Vec<_>>());
    }
}

#[test]
fn copies_are_byte_exact_at_every_length() {
    // `read_copy` copies word by word; a partial last word must deliver its
    // payload bytes only, in both modes, around the end of the data area.
    for overflow in [Overflow::DropNew, Overflow::OverwriteOldest] {
        let region = common::memfd(SIZE, overflow);
        let mut producer = region.producer().unwrap();
        let mut consumer = region.consumer().unwrap();
        for round in 0..4u64 {
            for len in 0..=41usize {
                let seq = push(&mut producer, len).unwrap();
                producer.publish();
                let record = consumer.read_copy().unwrap().unwrap();
                assert_eq!(record.seq, seq, "{overflow:?} round {round}");
                assert_eq!(record.payload.len(), len);
                assert!(
                    pattern::verify(seq, record.payload),
                    "{overflow:?} len {len}"
                );
                assert!(consumer.read_copy().unwrap().is_none());
            }
        }
    }
}

#[test]
fn a_batch_ends_where_the_producer_was_when_it_started() {
    let region = common::memfd(SIZE, Overflow::DropNew);
    let mut consumer = region.consumer().unwrap();
    let mut producer = region.producer().unwrap();
    for _ in 0..2 {
        push(&mut producer, 16).unwrap();
    }
    producer.publish();

    let mut batch = consumer.batch().unwrap();
    let mut records = batch.iter();
    assert_eq!(records.next().unwrap().unwrap().seq, 0);
    // Published while the batch runs: the next batch's, so that this one
    // (and the space it holds back) is bounded under a busy producer.
    for _ in 0..3 {
        push(&mut producer, 16).unwrap();
    }
    producer.publish();
    assert_eq!(records.next().unwrap().unwrap().seq, 1);
    assert!(records.next().is_none());
    drop(records);
    drop(batch);

    let seqs: Vec<u64> = drain(&mut consumer).iter().map(|r| r.0).collect();
    assert_eq!(seqs, [2, 3, 4]);
}

/// A batch's iterators read on a copy of the consumer's state and hand it
/// back when dropped and at their end: iterators made in turn go on where
/// the last stopped, one leaked after its end loses nothing, and one leaked
/// part way leaves its records to be read again (as `Batch` says), with the
/// counters the consumer's own.
#[test]
fn a_batch_s_iterators_hand_the_consumer_s_state_back() {
    let region = common::memfd(SIZE, Overflow::DropNew);
    let mut consumer = region.consumer().unwrap();
    let mut producer = region.producer().unwrap();
    for _ in 0..6 {
        push(&mut producer, 16).unwrap();
    }
    producer.publish();
    let mut seqs = Vec::new();
    {
        let mut batch = consumer.batch().unwrap();
        for _ in 0..3 {
            let mut records = batch.iter();
            seqs.push(records.next().unwrap().unwrap().seq);
        }
        let mut records = batch.iter();
        seqs.extend(records.by_ref().map(|r| r.unwrap().seq));
        std::mem::forget(records);
    }
    assert_eq!(seqs, [0, 1, 2, 3, 4, 5]);
    assert_eq!(consumer.stats().records, 6);
    assert!(
        drain(&mut consumer).is_empty(),
        "a leaked iterator's end was lost"
    );

    for _ in 0..3 {
        push(&mut producer, 16).unwrap();
    }
    producer.publish();
    {
        let mut batch = consumer.batch().unwrap();
        let mut records = batch.iter();
        assert_eq!(records.next().unwrap().unwrap().seq, 6);
        assert_eq!(records.next().unwrap().unwrap().seq, 7);
        std::mem::forget(records);
    }
    // 6 came through the consumer core (the batch's one reload of the
    // producer position), which has the state from then on; 7, read on
    // the copy since, comes again.
    let again: Vec<u64> = drain(&mut consumer).iter().map(|r| r.0).collect();
    assert_eq!(again, [7, 8]);
    assert_eq!(consumer.stats().records, 9);
}

/// A reader the producer lapped (here: everything published beyond it is
/// retired, as by a producer retiring records it has not published yet)
/// is not told "empty" by `wait`, which would return at once and make a
/// `read_copy`/`wait` loop spin: `read_copy` says `None` with `is_lapped`,
/// and `wait` waits for the producer's next publication.
#[test]
fn a_lapped_reader_waits_for_the_next_publication() {
    let region = common::memfd(SIZE, Overflow::OverwriteOldest);
    let poke = Poke::new(&region);
    let mut producer = region.producer().unwrap();
    let mut consumer = region.consumer().unwrap();
    for _ in 0..10 {
        push(&mut producer, 40).unwrap();
    }
    producer.publish();
    let published = region.control().producer_pos;
    assert_eq!(published, 10 * 64);
    // Retired beyond what is published.
    poke.set_ctrl(OFF_OVERWRITE_POS, published + 64);

    assert!(consumer.read_copy().unwrap().is_none());
    assert!(consumer.is_lapped());
    let started = std::time::Instant::now();
    assert!(!consumer.wait(Some(Duration::from_millis(50))).unwrap());
    assert!(started.elapsed() >= Duration::from_millis(50));

    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        push(&mut producer, 40).unwrap();
        push(&mut producer, 40).unwrap();
        producer.publish();
    });
    assert!(consumer.wait(Some(Duration::from_secs(10))).unwrap());
    writer.join().unwrap();
    let r = consumer.read_copy().unwrap().unwrap();
    assert_eq!((r.seq, r.lost_before), (11, 11));
    assert!(!consumer.is_lapped());
}

/// The producer publishes on its own before its batch would exceed a
/// quarter of the ring (at most 1 MiB), as the kernel's does; in overwrite
/// mode it therefore never retires a record it has not published.
#[test]
fn batches_are_bounded_and_never_retire_their_own_records() {
    use rmemring_proto::producer_core::batch_bytes;
    for overflow in [Overflow::DropNew, Overflow::OverwriteOldest] {
        let region = common::memfd(SIZE, overflow);
        let mut producer = region.producer().unwrap();
        let mut consumer = region.consumer().unwrap();
        let mut publications = 0;
        let mut last = region.control().producer_pos;
        for seq in 0..2000u64 {
            let len = pattern::payload_len(seq, 0, MAX) as usize;
            if push(&mut producer, len).is_err() {
                // Drop-new and full: the consumer makes room.
                assert_eq!(overflow, Overflow::DropNew);
                while consumer.read_copy().unwrap().is_some() {}
                push(&mut producer, len).unwrap();
            }
            // A batch is at most the bound plus one record and its pad.
            assert!(
                producer.unpublished() <= batch_bytes(SIZE) + 2 * u64::from(MAX) + 48,
                "{} bytes unpublished",
                producer.unpublished()
            );
            let control = region.control();
            let ahead = control.overwrite_pos.wrapping_sub(control.producer_pos);
            assert!(
                control.overwrite_pos == control.producer_pos || ahead > i64::MAX as u64,
                "retired unpublished records: {control:?}"
            );
            if control.producer_pos != last {
                publications += 1;
                last = control.producer_pos;
            }
        }
        assert!(publications > 100, "{publications} publications");
    }
}

/// A span's records take the producer's sequence numbers, wrapping past
/// 2^64 - 1 as `reserve`'s do (they continue from the ring's counters,
/// which a file or an earlier producer may have taken anywhere).
#[test]
fn a_span_s_sequence_numbers_wrap_as_the_producer_s() {
    let region = common::memfd(SIZE, Overflow::DropNew);
    // Both sides' counts, as a ring that carried 2^64 - 2 records leaves
    // them.
    let poke = Poke::new(&region);
    let produced = std::mem::offset_of!(rmemring::layout::ControlPage, records_produced);
    let consumed = std::mem::offset_of!(rmemring::layout::ConsumerPage, records_consumed);
    poke.set_ctrl(produced, u64::MAX - 1);
    poke.set_cons(consumed, u64::MAX - 1);
    let mut producer = region.producer().unwrap();
    let mut consumer = region.consumer().unwrap();
    assert_eq!(push(&mut producer, 8), Ok(u64::MAX - 1));
    let mut span = producer.reserve_span(8, usize::MAX).unwrap();
    for _ in 0..3 {
        let seq = span.next_seq();
        pattern::fill(seq, span.append(8).unwrap());
    }
    assert_eq!(span.next_seq(), 2);
    span.commit();
    producer.publish();
    assert_eq!(producer.next_seq(), 2);
    let got: Vec<u64> = drain(&mut consumer).iter().map(|r| r.0).collect();
    assert_eq!(got, [u64::MAX - 1, u64::MAX, 0, 1]);
}

/// A span holds its first record and no more than asked; a record that
/// does not fit the rest of it, or the ring, is refused without being
/// appended; an uncommitted span writes no record.
#[test]
fn a_span_refuses_what_it_cannot_hold() {
    let (_region, mut producer, mut consumer) = ring_with(Overflow::DropNew, 0, 0);
    let mut span = producer.reserve_span(64, 0).unwrap();
    assert_eq!(span.remaining() as u64, record_stride(64));
    assert!(matches!(
        span.append(MAX as usize + 1),
        Err(ProduceError::TooLarge { .. })
    ));
    assert_eq!(span.append(65).err(), Some(ProduceError::Full));
    assert!(span.is_empty());
    pattern::fill(0, span.append(64).unwrap());
    assert_eq!(span.append(0).err(), Some(ProduceError::Full));
    drop(span);
    producer.publish();
    assert!(drain(&mut consumer).is_empty());
    assert_eq!(producer.next_seq(), 0);

    let overwrite = common::memfd(SIZE, Overflow::OverwriteOldest);
    let mut producer = overwrite.producer().unwrap();
    assert_eq!(
        producer.reserve_span(8, 4096).err(),
        Some(ProduceError::NeedsDropNew)
    );
}
