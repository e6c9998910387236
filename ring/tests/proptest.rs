//! Random interleavings of reserve, commit, abandon, drop, publish, consume
//! and release, with random record sizes (empty, largest, and everything in
//! between, so pads of every length happen) over many laps of a small ring
//! starting anywhere in the 64-bit position space, in both overflow modes.
//!
//! A reference model predicts every answer exactly: whether a reservation
//! fits, which record the consumer reads next, and how many it lost before
//! it. Every delivered payload is checked byte for byte with
//! [`rmemring::pattern`]; at the end, delivered + lost (+ trailing drops in
//! drop-new mode) == produced.

#![cfg(not(loom))]

mod common;

use std::collections::{
    HashMap,
    VecDeque, //
};

use proptest::prelude::*;
use rmemring::layout::{
    max_payload_for,
    record_stride,
    RecordHeader,
    KIND_DATA, //
};
use rmemring::pattern;
use rmemring::{
    Overflow,
    ProduceError, //
};
use rmemring_proto::consumer_core::{
    ConsumerCore,
    OverwriteRead, //
};
use rmemring_proto::producer_core::{
    batch_bytes,
    ReserveError, //
};
use rmemring_proto::sync::Ordering;

/// One step of a test.
#[derive(Clone, Debug)]
enum Op {
    /// Reserve a record of `len` bytes (taken modulo `max_payload + 1`),
    /// then commit it or, if `abandon`, drop the reservation.
    Produce { len: u32, abandon: bool },
    /// Reserve up to `max` records of `len` bytes at once, then commit the
    /// first `commit` (modulo the number reserved, plus one) of them.
    ProduceMany { len: u32, max: u8, commit: u8 },
    /// Reserve a span of at most `max_bytes` for a first record of
    /// `lens[0]` bytes, append records of `lens` (each modulo `max_payload
    /// + 1`) until one does not fit, the `i`-th tagged `tag + i` and
    /// stamped `timestamp`, then commit them or drop the span.
    ProduceSpan {
        lens: [u32; 4],
        max_bytes: usize,
        commit: bool,
        tag: u16,
        timestamp: u64,
    },
    /// Publish everything committed.
    Publish,
    /// Read up to `n` records.
    Consume { n: u8 },
    /// Hand what was read back to the producer.
    Release,
}

fn op() -> impl Strategy<Value = Op> {
    let len = prop_oneof![
        2 => Just(0u32),
        2 => Just(u32::MAX), // the largest payload, after the modulo
        6 => any::<u32>(),
    ];
    prop_oneof![
        10 => (len.clone(), prop::bool::weighted(0.1)).prop_map(|(len, abandon)| Op::Produce { len, abandon }),
        3 => (len.clone(), any::<u8>(), any::<u8>()).prop_map(|(len, max, commit)| {
            Op::ProduceMany { len, max: max % 9, commit }
        }),
        3 => (
            prop::array::uniform4(len.clone()),
            // Spans shorter than a record, about the batch bound, and
            // bounded by the room alone (the host benchmark's).
            prop_oneof![0usize..64, 0usize..2048, Just(usize::MAX)],
            prop::bool::weighted(0.9),
            any::<u16>(),
            any::<u64>(),
        )
            .prop_map(|(lens, max_bytes, commit, tag, timestamp)| Op::ProduceSpan {
                lens,
                max_bytes,
                commit,
                tag,
                timestamp,
            }),
        3 => Just(Op::Publish),
        4 => (1u8..12).prop_map(|n| Op::Consume { n }),
        2 => Just(Op::Release),
    ]
}

fn start() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        // Just before the 64-bit wrap, at several offsets in the data area.
        (0u64..4096).prop_map(|back| u64::MAX - back * 8 - 7),
        any::<u64>(),
    ]
    .prop_map(|pos| pos & !7)
}

/// What a read returns, as the model predicts it: a record's `(seq, len,
/// lost_before)`, or why there is none.
#[derive(Debug, PartialEq)]
enum Read {
    Record((u64, u32, u64)),
    Empty,
    Lapped,
}

/// The reference model of a ring, in positions and sequence numbers.
struct Model {
    size: u64,
    overflow: Overflow,
    /// The producer's position, pads included.
    head: u64,
    /// Where the consumer has released up to.
    released: u64,
    /// Overwrite mode: the records and pads in `[oldest, head)`, as
    /// `(stride, seq)` with `seq` `None` for a pad.
    live: VecDeque<(u64, Option<u64>)>,
    oldest: u64,
    /// Sequence numbers below this were retired (overwrite mode).
    retired_below: u64,
    /// Every sequence number so far: its payload length, or `None` if the
    /// record was dropped.
    sent: Vec<Option<u32>>,
    /// The tag and timestamp of the records laid out in spans, by
    /// sequence number (the other ops' are not checked).
    stamped: HashMap<u64, (u16, u64)>,
    /// Sequence numbers below this are published.
    published: u64,
    /// The producer position at the last publication.
    published_pos: u64,
    /// The sequence number the consumer expects next.
    next: u64,
    delivered: u64,
    lost: u64,
}

impl Model {
    fn new(size: u64, overflow: Overflow, start: u64) -> Self {
        Self {
            size,
            overflow,
            head: start,
            released: start,
            live: VecDeque::new(),
            oldest: start,
            retired_below: 0,
            sent: Vec::new(),
            stamped: HashMap::new(),
            published: 0,
            published_pos: start,
            next: 0,
            delivered: 0,
            lost: 0,
        }
    }

    /// Whether a reservation of `len` bytes fits; if it does, the model
    /// takes it (pad included) as the producer does.
    fn reserve(&mut self, len: u32) -> bool {
        let stride = record_stride(len);
        let to_end = self.size - (self.head % self.size);
        let pad = if stride > to_end { to_end } else { 0 };
        let need = pad + stride;
        match self.overflow {
            Overflow::DropNew => {
                if need > self.size - self.head.wrapping_sub(self.released) {
                    return false;
                }
            }
            Overflow::OverwriteOldest => {
                while self.head.wrapping_add(need).wrapping_sub(self.oldest) > self.size {
                    let (stride, seq) = self.live.pop_front().expect("room to retire");
                    if let Some(seq) = seq {
                        self.retired_below = seq + 1;
                    }
                    self.oldest = self.oldest.wrapping_add(stride);
                }
            }
        }
        if pad != 0 {
            self.live.push_back((pad, None));
            self.head = self.head.wrapping_add(pad);
        }
        true
    }

    /// Whether one more record of `len` bytes fits as the next of a run:
    /// without a pad and without retiring anything.
    fn fits_plain(&self, len: u32) -> bool {
        let stride = record_stride(len);
        let to_end = self.size - (self.head % self.size);
        let behind = match self.overflow {
            Overflow::DropNew => self.released,
            Overflow::OverwriteOldest => self.oldest,
        };
        stride <= to_end && self.head.wrapping_add(stride).wrapping_sub(behind) <= self.size
    }

    fn commit(&mut self, len: u32) -> u64 {
        let seq = self.sent.len() as u64;
        self.sent.push(Some(len));
        self.live.push_back((record_stride(len), Some(seq)));
        self.head = self.head.wrapping_add(record_stride(len));
        seq
    }

    fn drop_record(&mut self) {
        self.sent.push(None);
    }

    /// Commits the records of a span, of `lens` bytes, the `i`-th tagged
    /// `tag + i` and stamped `timestamp`, checking that each after the
    /// first fits without a pad or retiring anything, as a span's room is.
    fn commit_span(&mut self, lens: &[u32], tag: u16, timestamp: u64) -> Result<(), TestCaseError> {
        for (i, &len) in lens.iter().enumerate() {
            prop_assert!(i == 0 || self.fits_plain(len), "record {} of the span", i);
            let seq = self.commit(len);
            self.stamped
                .insert(seq, (tag.wrapping_add(i as u16), timestamp));
        }
        Ok(())
    }

    /// Payload bytes committed.
    fn bytes(&self) -> u64 {
        self.sent.iter().flatten().map(|&len| u64::from(len)).sum()
    }

    /// Checks a delivered record's tag and timestamp, where a span wrote
    /// them.
    fn check_stamp(&self, seq: u64, tag: u16, timestamp_ns: u64) -> Result<(), TestCaseError> {
        if let Some(&stamp) = self.stamped.get(&seq) {
            prop_assert_eq!((tag, timestamp_ns), stamp, "record {}", seq);
        }
        Ok(())
    }

    fn publish(&mut self) {
        self.published = self.sent.len() as u64;
        self.published_pos = self.head;
    }

    /// What the consumer's next read must return, for a consumer at
    /// byte position `at`: the next record, or, with none to deliver,
    /// `Lapped` if the producer retired everything published beyond `at`
    /// (records it has not published replace them), otherwise `Empty`.
    fn expect_read(&self, at: u64) -> Read {
        if let Some(next) = self.expect_next() {
            return Read::Record(next);
        }
        let ahead = |a: u64, b: u64| a != b && a.wrapping_sub(b) <= i64::MAX as u64;
        if self.overflow == Overflow::OverwriteOldest
            && at != self.published_pos
            && ahead(self.oldest, self.published_pos)
        {
            Read::Lapped
        } else {
            Read::Empty
        }
    }

    /// The record the consumer must read next: `(seq, len, lost_before)`.
    fn expect_next(&self) -> Option<(u64, u32, u64)> {
        let mut seq = self.next;
        if self.overflow == Overflow::OverwriteOldest {
            seq = seq.max(self.retired_below);
        }
        while seq < self.published {
            if let Some(len) = self.sent[seq as usize] {
                return Some((seq, len, seq - self.next));
            }
            seq += 1;
        }
        None
    }

    fn delivered(&mut self, seq: u64, lost_before: u64) {
        self.next = seq + 1;
        self.delivered += 1;
        self.lost += lost_before;
    }
}

/// Runs `ops` on the shared core over a heap ring and checks it against the
/// model.
fn run_core(size: u64, overflow: Overflow, start: u64, ops: &[Op]) -> Result<(), TestCaseError> {
    let (mut p, mut c) = common::heap_ring(size, overflow, start);
    let max = max_payload_for(size);
    let mut model = Model::new(size, overflow, start);
    let mut buf = vec![0u8; max as usize];
    let mut consume = |c: &mut ConsumerCore, model: &mut Model| -> Result<bool, TestCaseError> {
        let expected = model.expect_read(c.position());
        let read = match overflow {
            Overflow::DropNew => c.next_record().map(|meta| match meta {
                Some(meta) => OverwriteRead::Record(meta),
                None => OverwriteRead::Empty,
            }),
            Overflow::OverwriteOldest => c.read_overwrite(&mut buf),
        };
        let read = read.map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        let got = match read {
            OverwriteRead::Record(m) => Read::Record((m.seq, m.len, m.lost_before)),
            OverwriteRead::Empty => Read::Empty,
            OverwriteRead::Lapped => Read::Lapped,
        };
        prop_assert_eq!(got, expected);
        let OverwriteRead::Record(meta) = read else {
            return Ok(false);
        };
        let payload = match overflow {
            Overflow::DropNew => common::payload_of(c, meta.offset, meta.len),
            Overflow::OverwriteOldest => buf[..meta.len as usize].to_vec(),
        };
        prop_assert!(
            pattern::verify(meta.seq, &payload),
            "record {} corrupt",
            meta.seq
        );
        model.check_stamp(meta.seq, meta.tag, meta.timestamp_ns)?;
        model.delivered(meta.seq, meta.lost_before);
        Ok(true)
    };

    for op in ops {
        match *op {
            Op::Produce { len, abandon } => {
                let len = len % (max + 1);
                let fits = model.reserve(len);
                match p.reserve(len) {
                    Ok(slot) => {
                        prop_assert!(fits, "reserved {len} bytes the model says do not fit");
                        if !abandon {
                            let seq = model.commit(len);
                            prop_assert_eq!(p.next_seq(), seq);
                            common::fill_slot(&p, &slot, seq);
                            p.commit(slot, seq as u16, seq);
                        }
                    }
                    Err(ReserveError::Full) => {
                        prop_assert!(!fits, "refused {len} bytes that fit");
                        p.drop_record();
                        model.drop_record();
                    }
                    Err(ReserveError::TooLarge) => prop_assert!(false, "{len} too large"),
                }
            }
            Op::ProduceMany {
                len,
                max: most,
                commit,
            } => {
                let len = len % (max + 1);
                let fits = model.reserve(len);
                match p.reserve_run(len, u32::from(most)) {
                    Ok(run) => {
                        prop_assert!(fits, "reserved {len} bytes the model says do not fit");
                        let count = run.count();
                        prop_assert!((1..=u32::from(most).max(1)).contains(&count));
                        prop_assert_eq!(run.len(), len);
                        let n = u32::from(commit) % (count + 1);
                        let first = p.run_payload_ptr(&run);
                        for i in 0..n {
                            prop_assert!(i == 0 || model.fits_plain(len), "record {i} of {count}");
                            let seq = model.commit(len);
                            // SAFETY: record `i < count` of the run: `len`
                            // writable bytes a stride per record on, which
                            // no reader looks at before they are published.
                            let payload = unsafe {
                                std::slice::from_raw_parts_mut(
                                    first.add(i as usize * run.stride() as usize),
                                    len as usize,
                                )
                            };
                            pattern::fill(seq, payload);
                        }
                        let seq = p.next_seq();
                        p.commit_run(run, n, seq as u16, seq);
                        prop_assert_eq!(p.next_seq(), seq + u64::from(n));
                    }
                    Err(ReserveError::Full) => {
                        prop_assert!(!fits, "refused {len} bytes that fit");
                        p.drop_record();
                        model.drop_record();
                    }
                    Err(ReserveError::TooLarge) => prop_assert!(false, "{len} too large"),
                }
            }
            // The core's span: its caller lays the records out, as the
            // wrappers' `Span` does, here with the view's helpers (whose
            // atomic stores overwrite mode allows too).
            Op::ProduceSpan {
                lens,
                max_bytes,
                commit,
                tag,
                timestamp,
            } => {
                let lens = lens.map(|len| len % (max + 1));
                let fits = model.reserve(lens[0]);
                match p.reserve_span(lens[0], max_bytes as u64) {
                    Ok(span) => {
                        prop_assert!(fits, "reserved {} bytes the model says do not fit", lens[0]);
                        let (bytes, first) = (span.bytes(), record_stride(lens[0]));
                        prop_assert!(bytes >= first && bytes % 8 == 0, "{bytes} bytes");
                        prop_assert!(bytes == first || bytes <= max_bytes as u64);
                        prop_assert_eq!(p.next_seq(), model.sent.len() as u64);
                        let (mut used, mut payload_bytes, mut laid) = (0, 0, Vec::new());
                        for (i, len) in lens.into_iter().enumerate() {
                            let stride = record_stride(len);
                            if stride > bytes - used {
                                break;
                            }
                            let seq = p.next_seq() + i as u64;
                            let header = RecordHeader {
                                len,
                                kind: KIND_DATA,
                                tag: tag.wrapping_add(i as u16),
                                seq,
                                timestamp_ns: timestamp,
                            };
                            let mut payload = vec![0u8; len as usize];
                            pattern::fill(seq, &mut payload);
                            let at = p.view().offset(span.offset() + used);
                            // SAFETY: the record's stride lies inside the
                            // span (`used + stride <= bytes`), which
                            // `reserve_span` handed out inside the data
                            // area to this producer; `at` is 8-aligned.
                            unsafe {
                                p.view().write_header(at, &header);
                                p.view().copy_payload_in(at, &payload);
                            }
                            used += stride;
                            payload_bytes += u64::from(len);
                            laid.push(len);
                        }
                        prop_assert!(!laid.is_empty(), "the first record did not fit its span");
                        if commit {
                            model.commit_span(&laid, tag, timestamp)?;
                            p.commit_span(span, used, laid.len() as u64, payload_bytes);
                        } else {
                            drop(span);
                        }
                        prop_assert_eq!(p.next_seq(), model.sent.len() as u64);
                    }
                    Err(ReserveError::Full) => {
                        prop_assert!(!fits, "refused {} bytes that fit", lens[0]);
                        p.drop_record();
                        model.drop_record();
                    }
                    Err(ReserveError::TooLarge) => prop_assert!(false, "{} too large", lens[0]),
                }
            }
            Op::Publish => {
                p.publish();
                model.publish();
            }
            Op::Consume { n } => {
                for _ in 0..n {
                    if !consume(&mut c, &mut model)? {
                        break;
                    }
                }
            }
            Op::Release => {
                c.release();
                model.released = c.view().consumer_pos().load(Ordering::Relaxed);
                prop_assert_eq!(model.released, c.position());
            }
        }
    }

    // Drain: publish the rest and read everything.
    p.publish();
    model.publish();
    while consume(&mut c, &mut model)? {}
    c.release();
    let produced = model.sent.len() as u64;
    let dropped = model.sent.iter().filter(|s| s.is_none()).count() as u64;
    let trailing = produced - model.next;
    prop_assert_eq!(model.delivered + model.lost + trailing, produced);
    prop_assert!(model.sent[model.next as usize..]
        .iter()
        .all(Option::is_none));
    prop_assert_eq!(c.stats().records, model.delivered);
    prop_assert_eq!(c.stats().lost, model.lost);
    prop_assert_eq!(p.stats().dropped, dropped);
    prop_assert_eq!(p.stats().bytes, model.bytes());
    prop_assert_eq!(p.stats().records, produced - dropped);
    match overflow {
        Overflow::DropNew => prop_assert_eq!(model.lost + trailing, dropped),
        Overflow::OverwriteOldest => {
            prop_assert_eq!(dropped, 0);
            prop_assert_eq!(trailing, 0);
        }
    }
    prop_assert_eq!(c.view().producer_pos().load(Ordering::Relaxed), model.head);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if cfg!(miri) {
            4
        } else if cfg!(debug_assertions) {
            256
        } else {
            2048
        },
        ..ProptestConfig::default()
    })]

    /// The core (what the kernel runs), small rings, both modes.
    #[test]
    fn core_matches_the_model(
        size_shift in 6u32..=10,
        overwrite in any::<bool>(),
        start in start(),
        ops in prop::collection::vec(op(), 1..400),
    ) {
        let overflow = if overwrite { Overflow::OverwriteOldest } else { Overflow::DropNew };
        run_core(1 << size_shift, overflow, start, &ops)?;
    }

    /// The user-space wrappers on a memfd: reservations dropped without a
    /// commit, batches iterated part way, copies, in both modes.
    #[test]
    fn region_matches_the_model(
        overwrite in any::<bool>(),
        start in start(),
        ops in prop::collection::vec(op(), 1..400),
    ) {
        let overflow = if overwrite { Overflow::OverwriteOldest } else { Overflow::DropNew };
        run_region(overflow, start, &ops)?;
    }
}

/// The data area of [`run_region`]'s ring.
const SIZE: u64 = 4096;

/// Checks whether the producer published on its own before reserving a
/// record of `len` bytes, with `unpublished` bytes unpublished, on the
/// ring of [`run_region`]: before a record that would take its batch
/// past the bound (counting a pad the record may need, of less than its
/// stride), never with nothing unpublished, and never while the batch and
/// the record, pad and all, fit in the bound.
fn check_own_publication(unpublished: u64, published: bool, len: u32) -> Result<(), TestCaseError> {
    let (bound, stride) = (batch_bytes(SIZE), record_stride(len));
    if unpublished == 0 || unpublished + 2 * stride <= bound {
        prop_assert!(!published, "published {unpublished} bytes early");
    } else if unpublished + stride > bound {
        prop_assert!(published, "kept {unpublished} bytes past the bound");
    }
    Ok(())
}

/// Runs `ops` through `Producer` and `Consumer` on a memfd ring.
fn run_region(overflow: Overflow, start: u64, ops: &[Op]) -> Result<(), TestCaseError> {
    let region = common::memfd(SIZE, overflow);
    common::Poke::new(&region).start_at(start);
    let mut producer = region.producer().unwrap();
    let mut consumer = region.consumer().unwrap();
    let max = region.layout().max_payload;
    let mut model = Model::new(SIZE, overflow, start);

    // Reads up to `n` records, through a batch (drop-new, every other call)
    // or by copying; returns how many.
    let mut batch_turn = false;
    let mut consume = |consumer: &mut rmemring::Consumer,
                       model: &mut Model,
                       n: usize|
     -> Result<usize, TestCaseError> {
        batch_turn = !batch_turn;
        let mut read = 0;
        let check = |r: rmemring::Record<'_>, model: &mut Model| {
            prop_assert_eq!(
                Some((r.seq, r.payload.len() as u32, r.lost_before)),
                model.expect_next()
            );
            prop_assert!(
                pattern::verify(r.seq, r.payload),
                "record {} corrupt",
                r.seq
            );
            model.check_stamp(r.seq, r.tag, r.timestamp_ns)?;
            model.delivered(r.seq, r.lost_before);
            Ok(())
        };
        if overflow == Overflow::DropNew && batch_turn {
            let mut batch = consumer.batch().unwrap();
            for r in batch.iter().take(n) {
                check(r.map_err(|e| TestCaseError::fail(e.to_string()))?, model)?;
                read += 1;
            }
            // Dropping the batch releases what it read.
        } else {
            while read < n {
                match consumer
                    .read_copy()
                    .map_err(|e| TestCaseError::fail(e.to_string()))?
                {
                    Some(r) => check(r, model)?,
                    None => break,
                }
                read += 1;
            }
        }
        if read < n {
            prop_assert_eq!(model.expect_next(), None);
        }
        Ok(read)
    };

    for op in ops {
        match *op {
            Op::Produce { len, abandon } => {
                let len = len % (max + 1);
                let unpublished = producer.unpublished();
                let published_before = region.control().producer_pos;
                let reserved = producer.reserve(len as usize);
                let published = region.control().producer_pos != published_before;
                check_own_publication(unpublished, published, len)?;
                if published {
                    model.publish();
                }
                let fits = model.reserve(len);
                match reserved {
                    Ok(mut r) => {
                        prop_assert!(fits, "reserved {len} bytes the model says do not fit");
                        if !abandon {
                            let seq = model.commit(len);
                            prop_assert_eq!(r.seq(), seq);
                            common::fill(&mut r, seq);
                            r.commit();
                        }
                    }
                    Err(ProduceError::Full) => {
                        prop_assert!(!fits, "refused {len} bytes that fit");
                        producer.drop_record();
                        model.drop_record();
                    }
                    Err(e) => prop_assert!(false, "{e}"),
                }
            }
            Op::ProduceMany {
                len,
                max: most,
                commit,
            } => {
                let len = len % (max + 1);
                let unpublished = producer.unpublished();
                let published_before = region.control().producer_pos;
                let reserved = producer.reserve_many(len as usize, usize::from(most));
                let published = region.control().producer_pos != published_before;
                check_own_publication(unpublished, published, len)?;
                if published {
                    model.publish();
                }
                let unpublished = if published { 0 } else { unpublished };
                let fits = model.reserve(len);
                match reserved {
                    Ok(mut records) => {
                        prop_assert!(fits, "reserved {len} bytes the model says do not fit");
                        let count = records.len();
                        prop_assert!((1..=usize::from(most).max(1)).contains(&count));
                        prop_assert_eq!(records.record_len(), len as usize);
                        // A run of several stays within the batch bound.
                        let (bound, stride) = (batch_bytes(SIZE), record_stride(len));
                        prop_assert!(
                            count == 1 || unpublished + count as u64 * stride <= bound,
                            "{count} records past the bound"
                        );
                        let n = usize::from(commit) % (count + 1);
                        let first = records.first_seq();
                        prop_assert_eq!(first, model.sent.len() as u64);
                        for i in 0..n {
                            prop_assert!(i == 0 || model.fits_plain(len), "record {i} of {count}");
                            let seq = model.commit(len);
                            let mut payload = vec![0u8; len as usize];
                            pattern::fill(seq, &mut payload);
                            if i % 2 == 0 {
                                records.write(i, &payload);
                            } else if let Some(mut payloads) = records.payloads() {
                                prop_assert_eq!(payloads.len(), count);
                                payloads.nth(i).unwrap().copy_from_slice(&payload);
                            } else {
                                records.write(i, &payload);
                            }
                        }
                        records.commit_first(n);
                    }
                    Err(ProduceError::Full) => {
                        prop_assert!(!fits, "refused {len} bytes that fit");
                        producer.drop_record();
                        model.drop_record();
                    }
                    Err(e) => prop_assert!(false, "{e}"),
                }
            }
            Op::ProduceSpan {
                lens,
                max_bytes,
                commit,
                tag,
                timestamp,
            } => {
                let lens = lens.map(|len| len % (max + 1));
                let unpublished = producer.unpublished();
                let published_before = region.control().producer_pos;
                let reserved = producer.reserve_span(lens[0] as usize, max_bytes);
                if overflow == Overflow::OverwriteOldest {
                    prop_assert!(matches!(reserved, Err(ProduceError::NeedsDropNew)));
                    prop_assert_eq!(region.control().producer_pos, published_before);
                    continue;
                }
                let published = region.control().producer_pos != published_before;
                check_own_publication(unpublished, published, lens[0])?;
                if published {
                    model.publish();
                }
                let unpublished = if published { 0 } else { unpublished };
                let fits = model.reserve(lens[0]);
                match reserved {
                    Ok(mut span) => {
                        prop_assert!(fits, "reserved {} bytes the model says do not fit", lens[0]);
                        let bytes = span.remaining() as u64;
                        let first = record_stride(lens[0]);
                        // At least the first record, at most what was asked
                        // (or the first record alone), within the batch
                        // bound unless the first record alone exceeds it.
                        prop_assert!(bytes >= first);
                        prop_assert!(bytes == first || bytes <= max_bytes as u64);
                        prop_assert!(bytes == first || unpublished + bytes <= batch_bytes(SIZE));
                        // The consumer checks each record's sequence
                        // number, tag and timestamp, which `append` wrote,
                        // against the model's.
                        prop_assert_eq!(span.next_seq(), model.sent.len() as u64);
                        span.set_timestamp(timestamp);
                        let mut appended = Vec::new();
                        for (i, len) in lens.into_iter().enumerate() {
                            let (before, seq) = (span.remaining() as u64, span.next_seq());
                            span.set_tag(tag.wrapping_add(i as u16));
                            match span.append(len as usize) {
                                Ok(payload) => {
                                    prop_assert_eq!(payload.len(), len as usize);
                                    pattern::fill(seq, payload);
                                    appended.push(len);
                                }
                                Err(ProduceError::Full) => {
                                    prop_assert!(
                                        record_stride(len) > before,
                                        "{len} refused with {before} left"
                                    );
                                    break;
                                }
                                Err(e) => prop_assert!(false, "{e}"),
                            }
                        }
                        prop_assert!(
                            !appended.is_empty(),
                            "the first record did not fit its span"
                        );
                        prop_assert_eq!(span.len(), appended.len());
                        if commit {
                            model.commit_span(&appended, tag, timestamp)?;
                            span.commit();
                        } else {
                            drop(span);
                        }
                        prop_assert_eq!(producer.next_seq(), model.sent.len() as u64);
                    }
                    Err(ProduceError::Full) => {
                        prop_assert!(!fits, "refused {} bytes that fit", lens[0]);
                        producer.drop_record();
                        model.drop_record();
                    }
                    Err(e) => prop_assert!(false, "{e}"),
                }
            }
            Op::Publish => {
                producer.publish();
                model.publish();
            }
            Op::Consume { n } => {
                consume(&mut consumer, &mut model, usize::from(n))?;
            }
            Op::Release => consumer.release(),
        }
        // The wrappers release on their own (batches, empty reads, a
        // backlog of a quarter ring); the model follows the consumer page.
        model.released = region.consumer_page().consumer_pos;
        // The producer never retires records it has not published.
        let control = region.control();
        let retired_unpublished = control.overwrite_pos != control.producer_pos
            && control.overwrite_pos.wrapping_sub(control.producer_pos) <= i64::MAX as u64;
        prop_assert!(!retired_unpublished, "{control:?}");
    }
    producer.publish();
    model.publish();
    while consume(&mut consumer, &mut model, 64)? > 0 {}
    let produced = model.sent.len() as u64;
    let dropped = model.sent.iter().filter(|s| s.is_none()).count() as u64;
    prop_assert_eq!(
        model.delivered + model.lost + (produced - model.next),
        produced
    );
    prop_assert_eq!(consumer.stats().lost, model.lost);
    prop_assert_eq!(producer.stats().dropped, dropped);
    prop_assert_eq!(producer.stats().bytes, model.bytes());
    Ok(())
}
