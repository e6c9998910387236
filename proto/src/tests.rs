// SPDX-License-Identifier: GPL-2.0-only OR MIT

//! Unit tests of the shared core that need to see inside it: the access
//! log and the reader hook of [`trace`](super::trace).

extern crate std;

use std::vec::Vec;

use super::consumer_core::{
    ConsumerCore,
    OverwriteRead,
    ReadError,
    RecordDefect,
    LAP_RETRIES, //
};
use super::layout::{
    max_payload_for,
    record_stride,
    KIND_DATA,
    KIND_PAD, //
};
use super::producer_core::{
    Overflow,
    ProducerCore, //
};
use super::sync::Ordering;
use super::trace::{
    self,
    heap_views,
    Event, //
};
use super::view::MemoryOrdering;

/// A producer and a consumer core on a new heap ring.
fn cores(
    data_size: u64,
    overflow: Overflow,
    ordering: MemoryOrdering,
) -> (ProducerCore, ConsumerCore) {
    let (pv, cv) = heap_views(data_size, overflow, ordering);
    let max = max_payload_for(data_size);
    (
        ProducerCore::attach(pv, overflow, max),
        ConsumerCore::attach(cv, overflow, max).unwrap(),
    )
}

/// Commits one record of `len` bytes (its pattern written word by word)
/// without publishing it.
fn commit(p: &mut ProducerCore, len: u32) {
    let slot = p.reserve(len).unwrap();
    let seq = p.next_seq();
    p.write_pattern(&slot, seq, false);
    p.commit(slot, 0, seq);
}

/// Payload bytes the reader copied, per the log.
fn copied(log: &[Event]) -> u64 {
    log.iter()
        .map(|e| match e {
            Event::CopyOut { len, .. } => *len,
            _ => 0,
        })
        .sum()
}

/// A producer that laps the reader during every copy: each attempt copies
/// a record of the largest size, and before the re-check the producer
/// writes and publishes one more, retiring the record being copied. The
/// reader must say `Lapped`, not `Empty` (records are published), and stop
/// once the discarded copies exceed the data area.
#[test]
fn a_reader_lapped_on_every_attempt_is_lapped_and_copies_a_bounded_amount() {
    const SIZE: u64 = 256;
    let max = max_payload_for(SIZE);
    let (mut p, mut c) = cores(SIZE, Overflow::OverwriteOldest, MemoryOrdering::WriteBack);
    for _ in 0..SIZE / record_stride(max) {
        commit(&mut p, max);
    }
    p.publish();
    let attempts = std::rc::Rc::new(core::cell::Cell::new(0u32));
    let counter = attempts.clone();
    trace::set_after_copy(move || {
        counter.set(counter.get() + 1);
        commit(&mut p, max);
        p.publish();
    });
    trace::start();
    let mut buf = std::vec![0u8; max as usize];
    let read = c.read_overwrite(&mut buf);
    let log = trace::take();
    trace::clear_after_copy();

    assert_eq!(read, Ok(OverwriteRead::Lapped));
    let copied = copied(&log);
    assert!(
        copied <= SIZE + u64::from(max),
        "copied {copied} bytes in one call"
    );
    assert!(copied > SIZE, "gave up after only {copied} bytes");
    assert!(attempts.get() < LAP_RETRIES);
    // A lapped reader's wake-up is for the next publication: records are
    // published beyond it, so `prepare_sleep` declines, but
    // `prepare_sleep_until_published` arms.
    assert!(!c.prepare_sleep());
    assert!(c.prepare_sleep_until_published());
    c.finish_sleep();
}

/// The same with empty records: no bytes to count, so the retry bound
/// ends the call.
#[test]
fn a_reader_lapped_on_every_attempt_gives_up_after_the_retry_bound() {
    const SIZE: u64 = 256;
    let (mut p, mut c) = cores(SIZE, Overflow::OverwriteOldest, MemoryOrdering::WriteBack);
    for _ in 0..SIZE / record_stride(0) {
        commit(&mut p, 0);
    }
    p.publish();
    let attempts = std::rc::Rc::new(core::cell::Cell::new(0u32));
    let counter = attempts.clone();
    trace::set_after_copy(move || {
        counter.set(counter.get() + 1);
        commit(&mut p, 0);
        p.publish();
    });
    let read = c.read_overwrite(&mut []);
    trace::clear_after_copy();
    assert_eq!(read, Ok(OverwriteRead::Lapped));
    // Each lapped copy costs two of the bound's rounds: the copy, and the
    // jump to the oldest record.
    assert_eq!(attempts.get(), LAP_RETRIES / 2);
}

/// A producer that retires records it has not published (a batch longer
/// than the ring) laps the reader too: `Lapped`, and the reader sleeps
/// until the next publication, which wakes it.
#[test]
fn retired_unpublished_records_lap_the_reader_until_the_next_publication() {
    const SIZE: u64 = 256;
    let max = max_payload_for(SIZE);
    let (mut p, mut c) = cores(SIZE, Overflow::OverwriteOldest, MemoryOrdering::WriteBack);
    commit(&mut p, max);
    p.publish();
    // One ring and a half, unpublished: the published record is retired.
    for _ in 0..6 {
        commit(&mut p, max);
    }
    let mut buf = std::vec![0u8; max as usize];
    assert_eq!(c.read_overwrite(&mut buf), Ok(OverwriteRead::Lapped));
    assert!(!c.prepare_sleep(), "declines: a record is published");
    assert!(c.prepare_sleep_until_published());
    assert!(p.publish(), "the publication wakes the lapped reader");
    c.finish_sleep();
    match c.read_overwrite(&mut buf) {
        Ok(OverwriteRead::Record(meta)) => assert_eq!(meta.lost_before, 3),
        other => panic!("{other:?}"),
    }

    // A publication between `Lapped` and the sleep is not slept through.
    for _ in 0..6 {
        commit(&mut p, max);
    }
    while let Ok(OverwriteRead::Record(_)) = c.read_overwrite(&mut buf) {}
    p.publish();
    assert!(!c.prepare_sleep_until_published());
}

/// Indexes of the events that match `f`.
fn positions(log: &[Event], f: impl Fn(&Event) -> bool) -> Vec<usize> {
    log.iter()
        .enumerate()
        .filter(|(_, e)| f(e))
        .map(|(i, _)| i)
        .collect()
}

/// Whether an `Event::Wmb` (or `Rmb`) lies strictly between `a` and `b`.
fn barrier_between(log: &[Event], barrier: Event, a: usize, b: usize) -> bool {
    log[a + 1..b].contains(&barrier)
}

/// Runs the publication sequence on a ring of `ordering`: a drop-new
/// producer writes and publishes; an overwrite producer laps its own ring
/// (retiring records and rewriting their bytes) and publishes; a consumer
/// reads each. Returns the producer's and the consumer's logs.
fn publication_logs(ordering: MemoryOrdering) -> (Vec<Event>, Vec<Event>) {
    let mut producer_log = Vec::new();
    let mut consumer_log = Vec::new();
    for overflow in [Overflow::DropNew, Overflow::OverwriteOldest] {
        let (mut p, mut c) = cores(256, overflow, ordering);
        let mut buf = [0u8; 64];
        for round in 0..3 {
            trace::start();
            for _ in 0..3 {
                commit(&mut p, 40);
            }
            p.publish();
            producer_log.extend(trace::take());
            trace::start();
            loop {
                let read = match overflow {
                    Overflow::DropNew => c.next_record().unwrap().is_some(),
                    Overflow::OverwriteOldest => matches!(
                        c.read_overwrite(&mut buf).unwrap(),
                        OverwriteRead::Record(_)
                    ),
                };
                if !read {
                    break;
                }
            }
            c.release();
            consumer_log.extend(trace::take());
            assert!(round == 0 || overflow == Overflow::DropNew || p.stats().overwritten > 0);
        }
    }
    (producer_log, consumer_log)
}

/// On a write-combining ring the producer drains its stores with `io_wmb`
/// between the last data write of a batch and the `producer_pos` store,
/// and between each `overwrite_pos` store and the first rewrite of the
/// retired bytes; the consumer orders its loads with `io_rmb` after each
/// `producer_pos` load (before it reads the records) and between the copy
/// of a record and the re-check of `overwrite_pos`.
#[test]
fn a_weakly_ordered_ring_has_its_barriers_where_they_belong() {
    let (plog, clog) = publication_logs(MemoryOrdering::Weak);

    let stores = positions(&plog, |e| matches!(e, Event::ProducerPosStore(_)));
    assert_eq!(stores.len(), 6);
    for &store in &stores {
        let last_write = positions(&plog[..store], |e| matches!(e, Event::DataWrite(_)))
            .pop()
            .expect("a batch writes data");
        assert!(
            barrier_between(&plog, Event::Wmb, last_write, store),
            "no io_wmb between the data (event {last_write}) and producer_pos (event {store}): {plog:?}"
        );
    }
    let retires = positions(&plog, |e| matches!(e, Event::OverwritePosStore(_)));
    assert!(!retires.is_empty(), "the overwrite producer never retired");
    for &retire in &retires {
        let rewrite = retire
            + 1
            + plog[retire + 1..]
                .iter()
                .position(|e| matches!(e, Event::DataWrite(_)))
                .expect("retired bytes are rewritten");
        assert!(
            barrier_between(&plog, Event::Wmb, retire, rewrite),
            "no io_wmb between overwrite_pos (event {retire}) and the rewrite (event {rewrite}): {plog:?}"
        );
    }

    for load in positions(&clog, |e| *e == Event::ProducerPosLoad) {
        let next_read = clog[load + 1..]
            .iter()
            .position(|e| matches!(e, Event::DataRead(_) | Event::CopyOut { .. }))
            .map(|i| load + 1 + i);
        if let Some(read) = next_read {
            assert!(
                barrier_between(&clog, Event::Rmb, load, read),
                "no io_rmb between producer_pos (event {load}) and the records (event {read}): {clog:?}"
            );
        }
    }
    let copies = positions(&clog, |e| matches!(e, Event::CopyOut { .. }));
    assert!(!copies.is_empty());
    for copy in copies {
        let recheck = copy
            + 1
            + clog[copy + 1..]
                .iter()
                .position(|e| *e == Event::OverwritePosLoad)
                .expect("a copy is re-checked");
        assert!(
            barrier_between(&clog, Event::Rmb, copy, recheck),
            "no io_rmb between the copy (event {copy}) and its re-check (event {recheck}): {clog:?}"
        );
    }
}

/// A producer attaching to a weakly ordered overwrite ring whose
/// `overwrite_pos` it cannot keep (ahead of the published position, where
/// a producer that retired records and stopped before publishing their
/// successors leaves it) moves it back, and drains that store with
/// `io_wmb` before its first data write: without the drain, a reader could
/// see the rewritten bytes under the old `overwrite_pos` and take a torn
/// record for an intact one.
#[test]
fn an_attaching_producer_drains_its_overwrite_pos_before_writing() {
    const SIZE: u64 = 256;
    let (view, _) = heap_views(SIZE, Overflow::OverwriteOldest, MemoryOrdering::Weak);
    view.producer_pos().store(64, Ordering::Relaxed);
    view.overwrite_pos().store(128, Ordering::Relaxed);
    trace::start();
    let mut p = ProducerCore::attach(view, Overflow::OverwriteOldest, max_payload_for(SIZE));
    commit(&mut p, 40);
    let log = trace::take();
    let store = log
        .iter()
        .position(|e| *e == Event::OverwritePosStore(64))
        .expect("the stale overwrite_pos is moved back to the head");
    let write = positions(&log, |e| matches!(e, Event::DataWrite(_)))[0];
    assert!(
        store < write && barrier_between(&log, Event::Wmb, store, write),
        "no io_wmb between overwrite_pos (event {store}) and the first write (event {write}): {log:?}"
    );
}

/// A write-back ring pays for no barrier at all.
#[test]
fn a_write_back_ring_has_no_io_barriers() {
    let (plog, clog) = publication_logs(MemoryOrdering::WriteBack);
    assert!(plog
        .iter()
        .any(|e| matches!(e, Event::OverwritePosStore(_))));
    assert!(!plog.contains(&Event::Wmb) && !plog.contains(&Event::Rmb));
    assert!(!clog.contains(&Event::Wmb) && !clog.contains(&Event::Rmb));
}

/// The page writers store every word, and `zero_data` clears exactly the
/// words of its range (rounded out), clipped to the data area.
#[test]
fn pages_are_written_and_data_zeroed_word_by_word() {
    let (view, _) = heap_views(256, Overflow::DropNew, MemoryOrdering::WriteBack);
    let mut control = view.read_control_page();
    control.producer_pos = 0x1234_5678;
    control.wakeups = 7;
    control.pad3[8] = 9;
    view.write_control_page(&control);
    assert_eq!(view.read_control_page(), control);
    assert_eq!(view.producer_pos().load(Ordering::Relaxed), 0x1234_5678);
    let mut consumer = view.read_consumer_page();
    consumer.wake_token = 3;
    consumer.sleeps = 4;
    view.write_consumer_page(&consumer);
    assert_eq!(view.read_consumer_page(), consumer);
    assert_eq!(view.wake_token().load(Ordering::Relaxed), 3);

    let word = |off: u64| {
        // SAFETY: `off` is a multiple of 8 inside the 256-byte area.
        unsafe { view.read_word(off) }
    };
    for off in (0..256).step_by(8) {
        // SAFETY: As above; the test owns the ring.
        unsafe { view.write_word(off, !0) };
    }
    view.zero_data(17, 20); // words 16..40
    view.zero_data(248, 100); // the last word, clipped
    view.zero_data(1000, 8); // outside: nothing
    for off in (0..256).step_by(8) {
        let zero = (16..40).contains(&off) || off == 248;
        assert_eq!(word(off) == 0, zero, "word at {off}");
    }
}

/// A wake-up request armed after the consumer read everything published
/// is not answered by that publication, nor by one with nothing new: a
/// sleeper in `poll` or `epoll`, woken for records it has read, finds
/// nothing readable and sleeps on, so the next record must still wake it.
#[test]
fn a_request_armed_after_reading_waits_for_the_next_publication() {
    let (mut p, mut c) = cores(4096, Overflow::DropNew, MemoryOrdering::WriteBack);
    commit(&mut p, 8);
    // The record is visible (the store of `publish`), and the consumer reads
    // it and arms before the producer looks at the request.
    p.publish_quietly();
    while c.next_record().unwrap().is_some() {}
    assert!(c.prepare_sleep(), "all read: the consumer sleeps");
    assert!(!p.publish(), "the consumer has read this publication");
    assert!(!p.publish(), "nothing new to wake for");
    assert_eq!(p.stats().wakeups, 0);
    commit(&mut p, 8);
    assert!(p.publish(), "the request is still armed");
    assert_eq!(p.stats().wakeups, 1);
}

/// A consumer page left with a token one short of the last one answered
/// makes the next consumer's first request (that token) look answered;
/// forgetting the answered token when a consumer attaches (the driver does
/// on open) lets it be woken.
#[test]
fn a_new_consumer_is_not_taken_for_the_last_one_woken() {
    let (mut p, mut c) = cores(4096, Overflow::DropNew, MemoryOrdering::WriteBack);
    assert!(c.prepare_sleep());
    let answered = c.view().need_wakeup().load(Ordering::Relaxed);
    commit(&mut p, 8);
    assert!(p.publish());
    c.finish_sleep();
    // A new consumer, behind the producer, arms the token answered last.
    c.view().need_wakeup().store(answered, Ordering::Release);
    commit(&mut p, 8);
    assert!(!p.publish(), "taken for the sleep already answered");
    p.forget_woken_token();
    commit(&mut p, 8);
    assert!(p.publish(), "a new consumer's request is answered");
}

/// A quiet publication makes the record visible but leaves the sleeping
/// consumer's request armed, so the next ordinary publication wakes it
/// (and a quiet one never does).
#[test]
fn a_quiet_publication_leaves_the_wakeup_request_for_the_next() {
    let (mut p, mut c) = cores(4096, Overflow::DropNew, MemoryOrdering::WriteBack);
    assert!(c.prepare_sleep(), "an empty ring: the consumer sleeps");
    commit(&mut p, 8);
    p.publish_quietly();
    assert!(super::consumer_core::has_unreleased(c.view()));
    commit(&mut p, 8);
    p.publish_quietly();
    assert_eq!(p.stats().wakeups, 0);
    commit(&mut p, 8);
    assert!(p.publish(), "the request is still armed");
    commit(&mut p, 8);
    assert!(!p.publish(), "one wake-up per sleep");
    assert_eq!(p.stats().wakeups, 1);
}

/// One consumer's answers on a ring: the batch iterator's way (records
/// while cached, then one reload of the producer position), up to an
/// error or the end.
type Answers = (
    Vec<Result<Option<super::consumer_core::RecordMeta>, super::consumer_core::ReadError>>,
    u64,
    u64,
    super::consumer_core::ConsumerStats,
);

/// A random ring for [`a_cursor_answers_as_the_core_on_any_ring`]: every
/// word of the data area, the consumer's start, whether it resynchronises
/// (skipped to the producer first) and the producer position it finds.
struct Garbled {
    words: Vec<u64>,
    start: u64,
    skipped: u64,
    published: u64,
    resync: bool,
}

impl Garbled {
    /// Case `n`, from a xorshift stream: records laid out from the start
    /// (data records with sequence numbers mostly in order, some ahead,
    /// some behind; pads where the producer would put them, or anywhere),
    /// then some words overwritten with headers of every kind and length
    /// around the ring's bounds, or with noise.
    fn new(n: u64, size: u64, max: u32) -> Self {
        let mut state = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let r = next();
        let start = match r % 3 {
            0 => 0,
            1 => (u64::MAX - size + 1).wrapping_add((r >> 8) % size / 8 * 8),
            _ => (r >> 8) / 8 * 8,
        };
        let resync = (r >> 2) % 4 == 0;
        let mut words = vec![0u64; (size / 8) as usize];
        let (mut pos, mut seq) = (start, 0u64);
        // Where the records start, as bytes from `start`.
        let mut starts = Vec::new();
        while pos.wrapping_sub(start) < size {
            starts.push(pos.wrapping_sub(start));
            let r = next();
            let offset = pos & (size - 1);
            let to_end = size - offset;
            let len = (r >> 8) as u32 % (max + 1);
            let stride = record_stride(len);
            let at = (offset / 8) as usize;
            if stride > to_end || r % 16 == 0 {
                words[at] = to_end | u64::from(KIND_PAD) << 32;
                pos = pos.wrapping_add(to_end);
                continue;
            }
            seq = match r % 32 {
                1 => seq.wrapping_add((r >> 40 & 3) + 1), // lost records
                2 => seq.wrapping_sub(1),                 // behind
                _ => seq.wrapping_add(1),
            };
            words[at] = u64::from(len) | u64::from(KIND_DATA) << 32 | (r >> 48) << 48;
            words[at + 1] = seq;
            words[at + 2] = r;
            pos = pos.wrapping_add(stride);
        }
        // A record that runs past the end of the data area, at a record's
        // start (the producer would have put a pad there).
        let r = next();
        if r % 4 == 0 {
            let from = starts[(r >> 8) as usize % starts.len()];
            let offset = start.wrapping_add(from) & (size - 1);
            let len = (size - offset + 8 * (r >> 16 & 3)).saturating_sub(16) as u32;
            words[(offset / 8) as usize] = u64::from(len.min(max)) | u64::from(KIND_DATA) << 32;
        }
        // Resynchronising at a record's start, mostly.
        let skipped = match r >> 20 & 3 {
            _ if !resync => 0,
            0 => (r >> 24) % size / 8 * 8,
            _ => starts[(r >> 24) as usize % starts.len()],
        };
        for _ in 0..next() % 3 {
            let r = next();
            let at = (r >> 8) as usize % words.len();
            let kind = [KIND_DATA, KIND_PAD, 0, 3][(r >> 16) as usize % 4];
            let len = match (r >> 20) % 3 {
                0 => max.wrapping_add((r >> 24) as u32 % 9).wrapping_sub(4),
                1 => (r >> 24) as u32 % (size as u32 + 16),
                _ => (r >> 24) as u32,
            };
            words[at] = match r % 3 {
                0 => r,
                _ => u64::from(len) | u64::from(kind) << 32,
            };
        }
        let r = next();
        let mut published = (r >> 8) % (size + 16);
        if r % 8 != 0 {
            published &= !7; // mostly aligned
        }
        Self {
            words,
            start,
            skipped,
            published,
            resync,
        }
    }

    /// A consumer on a new ring holding this one's bytes and positions.
    fn consumer(&self, size: u64) -> ConsumerCore {
        let (_, view) = heap_views(size, Overflow::DropNew, MemoryOrdering::WriteBack);
        for (i, word) in self.words.iter().enumerate() {
            // SAFETY: `i * 8` is inside the data area, and no one else
            // uses the ring.
            unsafe { view.write_word(i as u64 * 8, *word) };
        }
        view.consumer_pos().store(self.start, Ordering::Relaxed);
        view.producer_pos().store(self.start, Ordering::Relaxed);
        let mut c = ConsumerCore::attach(view, Overflow::DropNew, max_payload_for(size)).unwrap();
        let mut from = self.start;
        if self.resync {
            from = from.wrapping_add(self.skipped);
            c.view().producer_pos().store(from, Ordering::Relaxed);
            c.skip_to_producer().unwrap();
        }
        let head = from.wrapping_add(self.published);
        c.view().producer_pos().store(head, Ordering::Relaxed);
        if self.resync {
            // With records cached, the first one read is the cursor's to
            // hand to the core (its count starts afresh); an error here
            // is the readers' to find again.
            let _ = c.refresh_head();
        }
        c
    }
}

/// Reads `c` to the end the batch iterator's way, with `next(c, refresh)`.
fn answers(
    c: &mut ConsumerCore,
    next: impl Fn(
        &mut ConsumerCore,
        bool,
    )
        -> Result<Option<super::consumer_core::RecordMeta>, super::consumer_core::ReadError>,
) -> Answers {
    let mut got = Vec::new();
    let mut refreshed = false;
    loop {
        let mut answer = next(c, false);
        if answer == Ok(None) && !refreshed {
            refreshed = true;
            answer = next(c, true);
        }
        let end = !matches!(answer, Ok(Some(_)));
        got.push(answer);
        if end {
            return (got, c.position(), c.expected_seq(), c.stats());
        }
    }
}

/// The cursor's fast path takes only records the core would take, with
/// the same answers: on rings of random bytes (every header defect, pads,
/// sequence gaps and reversals, misaligned and impossible producer
/// positions, a consumer resynchronising), a cursor gives the core's
/// answers, leaves the core where reading it directly would, and takes the
/// fast path for some records (so this compares something).
#[test]
fn a_cursor_answers_as_the_core_on_any_ring() {
    const SIZE: u64 = 256;
    let max = max_payload_for(SIZE);
    let cases = if cfg!(miri) { 50 } else { 20_000 };
    let (mut records, mut errors, mut fast, mut resynced) = (0, 0, 0, 0);
    let mut defects = std::collections::BTreeMap::new();
    for n in 0..cases {
        let ring = Garbled::new(n, SIZE, max);
        let by_core = answers(&mut ring.consumer(SIZE), |c, refresh| {
            if refresh {
                c.next_record()
            } else {
                c.next_cached_record()
            }
        });
        let by_cursor = answers(&mut ring.consumer(SIZE), |c, refresh| {
            let mut cursor = c.cursor();
            if refresh {
                cursor.next_record()
            } else {
                cursor.next_cached_record()
            }
        });
        assert_eq!(by_cursor, by_core, "case {n}");
        // And one cursor for the whole run, as the batch iterator holds it.
        let mut c = ring.consumer(SIZE);
        let mut got = Vec::new();
        {
            let mut cursor = c.cursor();
            let mut refreshed = false;
            loop {
                let mut answer = match cursor.next_common() {
                    Some(meta) => {
                        fast += 1;
                        Ok(Some(meta))
                    }
                    None => cursor.next_by_core(false),
                };
                if answer == Ok(None) && !refreshed {
                    refreshed = true;
                    answer = cursor.next_by_core(true);
                }
                let end = !matches!(answer, Ok(Some(_)));
                got.push(answer);
                if end {
                    break;
                }
            }
        }
        let held = (got, c.position(), c.expected_seq(), c.stats());
        assert_eq!(held, by_core, "case {n}, one cursor");
        records += by_core
            .0
            .iter()
            .filter(|a| matches!(a, Ok(Some(_))))
            .count();
        errors += by_core.0.iter().filter(|a| a.is_err()).count();
        for answer in &by_core.0 {
            if let Err(e) = answer {
                let name = match e {
                    ReadError::BadRecord { defect, .. } => match defect {
                        RecordDefect::Kind(_) => "kind",
                        RecordDefect::Length(_) => "length",
                        RecordDefect::Wraps(_) => "wraps",
                        RecordDefect::PadLength(_) => "pad length",
                        RecordDefect::PastProducer(_) => "past producer",
                    },
                    ReadError::Sequence { .. } => "sequence",
                    ReadError::ProducerPosition { .. } => "producer position",
                    ReadError::BufferTooSmall { .. } => "buffer",
                };
                *defects.entry(name).or_insert(0) += 1;
            }
        }
        if ring.resync && by_core.3.records > 1 {
            resynced += 1;
        }
    }
    // Every defect is reached, and resynchronising consumers read on.
    std::println!("{defects:?}, {resynced} resynchronised and read on");
    let floor = if cfg!(miri) { 0 } else { 100 };
    for name in [
        "kind",
        "length",
        "wraps",
        "pad length",
        "past producer",
        "sequence",
        "producer position",
    ] {
        assert!(
            defects.get(name).copied().unwrap_or(0) >= floor,
            "{name}: {defects:?}"
        );
    }
    assert!(
        resynced >= cases / 20,
        "{resynced} resynchronised and read on"
    );
    assert!(
        fast > records / 4 && errors > cases as usize / 4,
        "{records} records ({fast} on the fast path), {errors} errors"
    );
}
