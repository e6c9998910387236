//! Model checks of the ring's memory ordering with loom, on the very
//! `ProducerCore` and `ConsumerCore` the kernel runs: under `--cfg loom`
//! their atomics are loom's and the data area is loom cells
//! (`RingView::new_model`), so loom explores every interleaving and every
//! value the C++ memory model lets each load return, and reports a data race
//! on the data area as a failure.
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test --release -p rmemring --test loom
//! ```
//!
//! `LOOM_MAX_PREEMPTIONS` and the like apply to the checks that do not set
//! their own bound.

#![cfg(loom)]

use loom::sync::{
    Arc,
    Condvar,
    Mutex, //
};
use loom::thread;
use rmemring_proto::consumer_core::{
    has_unreleased,
    ConsumerCore,
    OverwriteRead,
    RecordMeta, //
};
use rmemring_proto::layout::HEADER_SIZE;
use rmemring_proto::producer_core::{
    Overflow,
    ProducerCore,
    ReserveError, //
};
use rmemring_proto::sync::{
    omit_seqcst_fences,
    Ordering, //
};
use rmemring_proto::view::RingView;

/// The payload word `i` of record `seq`.
fn word(seq: u64, i: u64) -> u64 {
    (seq << 8) | i | 0xa5a5_0000_0000_0000
}

/// A producer and a consumer on a model ring of `data_size` bytes.
fn ring(data_size: u64, overflow: Overflow, max_payload: u32) -> (ProducerCore, ConsumerCore) {
    let (pv, cv) = RingView::new_model(data_size);
    (
        ProducerCore::attach(pv, overflow, max_payload),
        ConsumerCore::attach(cv, overflow, max_payload).unwrap(),
    )
}

/// Writes record `seq` with `words` payload words, retrying (with a yield)
/// while the ring is full.
fn produce(p: &mut ProducerCore, seq: u64, words: u64) {
    let slot = loop {
        match p.reserve(8 * words as u32) {
            Ok(slot) => break slot,
            Err(ReserveError::Full) => {
                p.publish();
                thread::yield_now();
            }
            Err(ReserveError::TooLarge) => unreachable!(),
        }
    };
    let payload: Vec<u64> = (0..words).map(|i| word(seq, i)).collect();
    p.write_payload_words(&slot, &payload);
    p.commit(slot, seq as u16, 1000 + seq);
}

/// Checks a record the consumer found: header fields and every payload
/// word, read through the model data area (so loom checks the reads too).
fn check(c: &ConsumerCore, meta: &RecordMeta, seq: u64, words: u64) {
    assert_eq!(meta.seq, seq);
    assert_eq!(u64::from(meta.len), 8 * words);
    assert_eq!((meta.tag, meta.timestamp_ns), (seq as u16, 1000 + seq));
    for i in 0..words {
        // SAFETY: `next_record` validated the payload inside the data area.
        let got = unsafe { c.view().read_word(meta.offset + HEADER_SIZE + 8 * i) };
        assert_eq!(got, word(seq, i), "record {seq} word {i}");
    }
}

/// What the producer writes before `publish` is what a consumer that
/// acquires the new producer position reads: header and payload.
#[test]
fn publish_makes_the_record_visible() {
    loom::model(|| {
        let (mut p, mut c) = ring(128, Overflow::DropNew, 32);
        let producer = thread::spawn(move || {
            produce(&mut p, 0, 2);
            p.publish();
        });
        loop {
            match c.next_record().unwrap() {
                Some(meta) => {
                    check(&c, &meta, 0, 2);
                    break;
                }
                None => thread::yield_now(),
            }
        }
        producer.join().unwrap();
    });
}

/// Drop-new mode over a 64-byte data area that holds two records at most,
/// with payload sizes that make the producer write a pad record: the
/// producer must never write bytes the consumer has not released. Loom
/// reports any producer write to a cell the consumer reads without the
/// release/acquire pair on `consumer_pos` ordering them.
#[test]
fn drop_new_never_overwrites_unreleased_records() {
    // Records: 8 bytes (stride 32), 0 bytes (24), then 8 bytes again, which
    // does not fit the 8 bytes left before the end: a pad, then offset 0.
    const WORDS: [u64; 4] = [1, 0, 1, 1];
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(|| {
        let (mut p, mut c) = ring(64, Overflow::DropNew, 16);
        let producer = thread::spawn(move || {
            for (seq, words) in WORDS.into_iter().enumerate() {
                produce(&mut p, seq as u64, words);
                p.publish();
            }
        });
        let mut seq = 0;
        while seq < WORDS.len() {
            match c.next_record().unwrap() {
                Some(meta) => {
                    check(&c, &meta, seq as u64, WORDS[seq]);
                    assert_eq!(meta.lost_before, 0);
                    c.release();
                    seq += 1;
                }
                None => thread::yield_now(),
            }
        }
        producer.join().unwrap();
        assert_eq!(c.stats().lost, 0);
    });
}

/// Overwrite mode while the producer does not lap the reader: the copy
/// path (`read_overwrite`) sees what was published, and its seqlock
/// re-check does not misfire.
///
/// Lapping itself is not model-checked: a lapped reader copies bytes the
/// producer is writing, by design (a seqlock), and loom would report that
/// copy as the data race it formally is. `tests/overwrite.rs` checks
/// lapping with real threads instead.
#[test]
fn overwrite_mode_reads_what_was_published() {
    loom::model(|| {
        let (mut p, mut c) = ring(128, Overflow::OverwriteOldest, 32);
        let producer = thread::spawn(move || {
            for seq in 0..2 {
                produce(&mut p, seq, 1);
                p.publish();
            }
        });
        let mut buf = [0u8; 32];
        let mut seq = 0;
        while seq < 2 {
            match c.read_overwrite(&mut buf).unwrap() {
                OverwriteRead::Record(meta) => {
                    assert_eq!((meta.seq, meta.len, meta.lost_before), (seq, 8, 0));
                    assert_eq!(buf[..8], word(seq, 0).to_le_bytes());
                    seq += 1;
                }
                OverwriteRead::Empty => thread::yield_now(),
                // Two records of 32 bytes in a 128-byte ring: nothing is
                // ever retired, so nothing laps the reader.
                OverwriteRead::Lapped => panic!("lapped without a lap"),
            }
        }
        producer.join().unwrap();
    });
}

/// Which side runs without its `SeqCst` fence in [`wake_up`].
#[derive(Clone, Copy, PartialEq)]
enum Omit {
    Neither,
    Producer,
    Consumer,
}

/// How the consumer sleeps in [`wake_up`].
#[derive(Clone, Copy)]
enum Sleeper {
    /// As on a memfd or file ring: it reads `wake_seq`, calls
    /// `prepare_sleep`, and sleeps while `wake_seq` still holds that value
    /// (a loom `Mutex` + `Condvar` checked under the lock, as `FUTEX_WAIT`
    /// compares under its bucket lock); the producer bumps `wake_seq`
    /// before it wakes.
    Futex,
    /// As in `poll`/`epoll` on the device: woken, the kernel re-checks
    /// readiness (anything published beyond the released position,
    /// `has_unreleased`) and, finding nothing, sleeps on without returning
    /// to the consumer, which so does not ask again.
    Poll,
}

/// The wake-up handshake: the producer publishes `records` records one at
/// a time (with `empty`, also a publication of nothing new before each, as
/// a batch that produced nothing makes) and wakes the sleeper whenever
/// `publish` says so. Loom fails the check with "deadlock" if any
/// execution leaves the consumer asleep with a record it was not woken
/// for.
fn wake_up_with(
    sleeper: Sleeper,
    records: u64,
    empty: bool,
    omit: Omit,
    preemption_bound: Option<usize>,
) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = preemption_bound;
    builder.check(move || {
        let (mut p, mut c) = ring(256, Overflow::DropNew, 16);
        let queue = Arc::new((Mutex::new(()), Condvar::new()));
        let waker = queue.clone();
        let producer = thread::spawn(move || {
            if omit == Omit::Producer {
                omit_seqcst_fences();
            }
            let publish = |p: &mut ProducerCore| {
                if p.publish() {
                    if let Sleeper::Futex = sleeper {
                        p.bump_wake_seq();
                    }
                    let _bucket = waker.0.lock().unwrap();
                    waker.1.notify_all();
                }
            };
            for seq in 0..records {
                if empty {
                    publish(&mut p);
                }
                produce(&mut p, seq, 1);
                publish(&mut p);
            }
        });
        if omit == Omit::Consumer {
            omit_seqcst_fences();
        }
        let mut seq = 0;
        while seq < records {
            if let Some(meta) = c.next_record().unwrap() {
                check(&c, &meta, seq, 1);
                seq += 1;
                continue;
            }
            let expected = c.wake_seq();
            if !c.prepare_sleep() {
                continue;
            }
            let asleep = |c: &ConsumerCore| match sleeper {
                Sleeper::Futex => c.view().wake_seq().load(Ordering::Relaxed) == expected,
                Sleeper::Poll => !has_unreleased(c.view()),
            };
            let mut bucket = queue.0.lock().unwrap();
            while asleep(&c) {
                bucket = queue.1.wait(bucket).unwrap();
            }
            drop(bucket);
            c.finish_sleep();
        }
        producer.join().unwrap();
    });
}

/// [`wake_up_with`] a futex sleeper and no empty publications.
fn wake_up(records: u64, omit: Omit, preemption_bound: Option<usize>) {
    wake_up_with(Sleeper::Futex, records, false, omit, preemption_bound);
}

/// The consumer always gets its record: the two `SeqCst` fences make at
/// least one side see the other's store.
#[test]
fn no_lost_wake_up_for_one_record() {
    wake_up(1, Omit::Neither, None);
}

/// Several sleeps in a row, where a sleep attempt the producer answered
/// may find data and not sleep: each sleep still gets its own wake-up (the
/// bug fixed in 97f116b).
#[test]
fn no_lost_wake_up_across_sleeps() {
    wake_up(3, Omit::Neither, Some(3));
}

/// The check can fail: without the producer's fence, loom finds the
/// execution where the producer reads a stale `need_wakeup` and the
/// consumer a stale `producer_pos`, and the consumer sleeps forever.
#[test]
#[should_panic(expected = "deadlock")]
fn without_the_producer_fence_a_wake_up_is_lost() {
    wake_up(1, Omit::Producer, None);
}

/// The same without the consumer's fence.
#[test]
#[should_panic(expected = "deadlock")]
fn without_the_consumer_fence_a_wake_up_is_lost() {
    wake_up(1, Omit::Consumer, None);
}

/// A `poll` sleeper gets every record: a wake-up request armed after the
/// consumer read a publication is not spent on it (before 2026-12-05 it
/// was, and loom found this deadlock; so did the `wakeups` epoll check on
/// the x86_64 debug kernel, about once in 500 runs).
#[test]
fn no_lost_wake_up_for_a_poll_sleeper() {
    wake_up_with(Sleeper::Poll, 2, false, Omit::Neither, Some(3));
}

/// The same with a publication of nothing new before each record.
#[test]
fn no_lost_wake_up_for_a_poll_sleeper_with_empty_publications() {
    wake_up_with(Sleeper::Poll, 2, true, Omit::Neither, Some(3));
}
