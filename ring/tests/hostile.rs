//! Hostile peers: a producer that writes garbage into the control page and
//! data area, and a consumer that writes impossible positions. Neither may
//! make the other side panic, read or write outside the ring, or (for the
//! producer) overwrite records the consumer still holds; the consumer turns
//! every inconsistency into [`Error::Corrupt`], the producer counts it.
//!
//! The hostile values go in through a second mapping of the region
//! ([`common::Poke`]).

#![cfg(not(loom))]

mod common;

use rmemring::layout::{
    max_payload_for,
    record_stride,
    ControlPage,
    HEADER_SIZE,
    KIND_DATA,
    KIND_PAD,
    OFF_CONSUMER_POS,
    OFF_OVERWRITE_POS,
    OFF_PRODUCER_POS, //
};
use rmemring::{
    pattern,
    Access,
    Error,
    Overflow,
    ProduceError,
    Region,
    Role, //
};
use rmemring_proto::consumer_core::{
    ReadError,
    RecordDefect, //
};

use common::Poke;

const SIZE: u64 = 4096;
const MAX: u32 = max_payload_for(SIZE);

/// The `ReadError` inside a `Corrupt` error, or a panic with what it was.
fn corrupt<T: std::fmt::Debug>(result: Result<T, Error>) -> ReadError {
    match result {
        Err(Error::Corrupt(e)) => {
            // The message renders, whatever the values.
            assert!(!Error::Corrupt(e).to_string().is_empty());
            e
        }
        other => panic!("expected a corrupt ring, got {other:?}"),
    }
}

/// The first error of a batch (drop-new) or `read_copy` (overwrite) read.
fn read_error(consumer: &mut rmemring::Consumer) -> ReadError {
    if consumer.region().layout().overflow() == Overflow::DropNew {
        let mut batch = match consumer.batch() {
            Ok(batch) => batch,
            Err(e) => return corrupt::<()>(Err(e)),
        };
        for record in batch.iter() {
            if record.is_err() {
                return corrupt(record);
            }
        }
        panic!("the batch read no error");
    }
    loop {
        match consumer.read_copy() {
            Ok(Some(_)) => continue,
            other => return corrupt(other.map(|r| r.map(|r| r.seq))),
        }
    }
}

/// A ring of each mode with a producer-written header at offset 0 covered
/// by the producer position `head`.
fn with_header(overflow: Overflow, len: u32, kind: u16, head: u64) -> ReadError {
    let region = common::memfd(SIZE, overflow);
    let poke = Poke::new(&region);
    let mut consumer = region.consumer().unwrap();
    poke.header(0, len, kind, 0);
    poke.set_ctrl(OFF_PRODUCER_POS, head);
    read_error(&mut consumer)
}

fn modes() -> [Overflow; 2] {
    [Overflow::DropNew, Overflow::OverwriteOldest]
}

#[test]
fn garbage_kinds_are_corrupt() {
    for overflow in modes() {
        for kind in [0u16, 3, 0x8001, u16::MAX] {
            assert_eq!(
                with_header(overflow, 8, kind, 64),
                ReadError::BadRecord {
                    pos: 0,
                    defect: RecordDefect::Kind(kind)
                }
            );
        }
    }
}

#[test]
fn lengths_past_the_maximum_are_corrupt() {
    for overflow in modes() {
        for len in [MAX + 1, u32::MAX / 2, u32::MAX - 7, u32::MAX] {
            assert_eq!(
                with_header(overflow, len, KIND_DATA, SIZE),
                ReadError::BadRecord {
                    pos: 0,
                    defect: RecordDefect::Length(len)
                }
            );
        }
    }
}

#[test]
fn records_past_the_producer_position_are_corrupt() {
    for overflow in modes() {
        // The header says 100 bytes, the producer published 64.
        assert_eq!(
            with_header(overflow, 100, KIND_DATA, 64),
            ReadError::BadRecord {
                pos: 0,
                defect: RecordDefect::PastProducer(100)
            }
        );
        // Not even a whole header.
        assert_eq!(
            with_header(overflow, 0, KIND_DATA, 16),
            ReadError::BadRecord {
                pos: 0,
                defect: RecordDefect::PastProducer(0)
            }
        );
    }
}

#[test]
fn records_running_past_the_end_are_corrupt() {
    for overflow in modes() {
        // A record that starts 32 bytes before the end and claims 100 bytes.
        let region = common::memfd(SIZE, overflow);
        let poke = Poke::new(&region);
        poke.start_at(SIZE - 32);
        let mut consumer = region.consumer().unwrap();
        poke.header(SIZE - 32, 100, KIND_DATA, 0);
        poke.set_ctrl(OFF_PRODUCER_POS, SIZE - 32 + 256);
        assert_eq!(
            read_error(&mut consumer),
            ReadError::BadRecord {
                pos: SIZE - 32,
                defect: RecordDefect::Wraps(100)
            }
        );
    }
}

#[test]
fn pads_of_the_wrong_length_are_corrupt() {
    for overflow in modes() {
        for (tail, len) in [
            (64u64, 56u32),
            (64, 72),
            (64, 0),
            (8, 16),
            (8, u32::MAX),
            (SIZE, 8),
        ] {
            let region = common::memfd(SIZE, overflow);
            let poke = Poke::new(&region);
            let start = SIZE - tail;
            poke.start_at(start);
            let mut consumer = region.consumer().unwrap();
            poke.header(start, len, KIND_PAD, 0);
            poke.set_ctrl(OFF_PRODUCER_POS, start + (tail + 64).min(SIZE));
            assert_eq!(
                read_error(&mut consumer),
                ReadError::BadRecord {
                    pos: start,
                    defect: RecordDefect::PadLength(len)
                },
                "tail {tail}, pad length {len}"
            );
        }
        // A correct pad that runs past the producer position.
        let region = common::memfd(SIZE, overflow);
        let poke = Poke::new(&region);
        poke.start_at(SIZE - 64);
        let mut consumer = region.consumer().unwrap();
        poke.header(SIZE - 64, 64, KIND_PAD, 0);
        poke.set_ctrl(OFF_PRODUCER_POS, SIZE - 32);
        assert_eq!(
            read_error(&mut consumer),
            ReadError::BadRecord {
                pos: SIZE - 64,
                defect: RecordDefect::PastProducer(64)
            }
        );
    }
}

/// A ring of `overflow` mode holding `n` valid 8-byte records from 0.
fn valid_ring(overflow: Overflow, n: u64) -> (std::sync::Arc<Region>, Poke, rmemring::Consumer) {
    let region = common::memfd(SIZE, overflow);
    let poke = Poke::new(&region);
    let consumer = region.consumer().unwrap();
    {
        let mut producer = region.producer().unwrap();
        for seq in 0..n {
            let mut r = producer.reserve(8).unwrap();
            common::fill(&mut r, seq);
            r.commit();
        }
    } // publishes
    (region, poke, consumer)
}

#[test]
fn producer_positions_that_go_backwards_or_jump_are_corrupt() {
    for overflow in modes() {
        // Backwards: behind what the consumer has read.
        let (_region, poke, mut consumer) = valid_ring(overflow, 10);
        assert_eq!(consumer.read_copy().unwrap().unwrap().seq, 0);
        assert_eq!(consumer.read_copy().unwrap().unwrap().seq, 1);
        // The consumer has two records' worth of position; go back one.
        // (The cached position still covers eight records; use them up.)
        for seq in 2..10 {
            assert_eq!(consumer.read_copy().unwrap().unwrap().seq, seq);
        }
        poke.set_ctrl(OFF_PRODUCER_POS, 9 * 32);
        let e = corrupt(consumer.read_copy().map(|r| r.map(|r| r.seq)));
        assert_eq!(
            e,
            ReadError::ProducerPosition {
                consumer: 10 * 32,
                producer: 9 * 32
            }
        );
        if overflow == Overflow::DropNew {
            assert!(matches!(consumer.backlog(), Err(Error::Corrupt(_))));
        }

        // Ahead by more than the data area.
        for jump in [SIZE + 8, 2 * SIZE, 1 << 40, u64::MAX / 2, u64::MAX - 7] {
            let (_region, poke, mut consumer) = valid_ring(overflow, 0);
            poke.set_ctrl(OFF_PRODUCER_POS, jump);
            let e = read_error(&mut consumer);
            assert_eq!(
                e,
                ReadError::ProducerPosition {
                    consumer: 0,
                    producer: jump
                },
                "{overflow:?} jump to {jump:#x}"
            );
        }
    }
}

#[test]
fn misaligned_positions_are_corrupt_not_misread() {
    for overflow in modes() {
        // A producer position that is not a multiple of 8, just past the
        // end of the area: skipping to it must not leave the consumer
        // reading at a misaligned offset.
        for head in [3u64, SIZE - 4, SIZE + 5] {
            let (_region, poke, mut consumer) = valid_ring(overflow, 0);
            poke.set_ctrl(OFF_PRODUCER_POS, head);
            assert!(matches!(
                consumer.skip_to_producer(),
                Err(Error::Corrupt(_))
            ));
            assert!(matches!(consumer.backlog(), Err(Error::Corrupt(_))));
            let e = read_error(&mut consumer);
            assert!(
                matches!(e, ReadError::ProducerPosition { .. }),
                "{head}: {e:?}"
            );
        }
    }
    // A consumer page left with a misaligned position (a crashed or buggy
    // earlier consumer): attaching refuses it.
    for pos in [1u64, SIZE - 4, u64::MAX] {
        let region = common::memfd(SIZE, Overflow::DropNew);
        let poke = Poke::new(&region);
        poke.set_ctrl(OFF_PRODUCER_POS, pos.wrapping_add(4) & !7);
        poke.set_cons(OFF_CONSUMER_POS, pos);
        let e = corrupt(region.consumer());
        assert!(
            matches!(e, ReadError::ProducerPosition { .. }),
            "{pos}: {e:?}"
        );
    }
}

#[test]
fn hostile_overwrite_positions_are_corrupt_not_misread() {
    // In overwrite mode the consumer follows `overwrite_pos` when it is
    // ahead; a misaligned one would have it read a header straddling the
    // end of the data area.
    for oldest in [4u64, SIZE - 4, 2 * SIZE - 4, 8 * SIZE + 3] {
        let (_region, poke, mut consumer) = valid_ring(Overflow::OverwriteOldest, 0);
        poke.set_ctrl(OFF_PRODUCER_POS, oldest.next_multiple_of(8) + 64);
        poke.set_ctrl(OFF_OVERWRITE_POS, oldest);
        let e = read_error(&mut consumer);
        assert!(
            matches!(e, ReadError::ProducerPosition { .. }),
            "{oldest}: {e:?}"
        );
    }
    // An overwrite position far ahead of everything published cannot be
    // followed; the consumer waits (or errs), it does not read there.
    let (_region, poke, mut consumer) = valid_ring(Overflow::OverwriteOldest, 4);
    poke.set_ctrl(OFF_OVERWRITE_POS, 1 << 40);
    for _ in 0..3 {
        match consumer.read_copy() {
            Ok(None) | Err(Error::Corrupt(_)) => {}
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn sequence_numbers_going_backwards_are_corrupt() {
    for overflow in modes() {
        for (first, second) in [(5u64, 5u64), (5, 4), (5, 0), (1 << 62, (1 << 62) - 1)] {
            let region = common::memfd(SIZE, overflow);
            let poke = Poke::new(&region);
            let mut consumer = region.consumer().unwrap();
            poke.header(0, 8, KIND_DATA, first);
            poke.header(32, 8, KIND_DATA, second);
            poke.set_ctrl(OFF_PRODUCER_POS, 64);
            let got = consumer.read_copy().unwrap().unwrap();
            assert_eq!((got.seq, got.lost_before), (first, first));
            let e = corrupt(consumer.read_copy().map(|r| r.map(|r| r.seq)));
            assert_eq!(
                e,
                ReadError::Sequence {
                    pos: 32,
                    expected: first.wrapping_add(1),
                    found: second
                }
            );
        }
    }
}

#[test]
fn random_garbage_never_panics() {
    // Fill the data area and positions with pseudo-random garbage, in many
    // variations, and read until an error or the end. Whatever happens must
    // be a typed result.
    let mut state = 0x1234_5678_9abc_def0u64;
    let mut next = move || {
        state = pattern::mix(state);
        state
    };
    for overflow in modes() {
        for round in 0..300 {
            let region = common::memfd(SIZE, overflow);
            let poke = Poke::new(&region);
            let mut consumer = region.consumer().unwrap();
            for off in (0..SIZE).step_by(8) {
                let word = match next() % 4 {
                    // Plausible headers, to get past the first checks.
                    0 => rmemring_proto::view::header_word0(
                        (next() % u64::from(MAX + 64)) as u32,
                        [KIND_DATA, KIND_PAD][(next() % 2) as usize],
                        0,
                    ),
                    1 => next() % 64,
                    _ => next(),
                };
                poke.set_data(off, word);
            }
            let heads = [next() % (2 * SIZE), next(), SIZE, (next() % SIZE) & !7];
            poke.set_ctrl(OFF_PRODUCER_POS, heads[round % 4]);
            if overflow == Overflow::OverwriteOldest && round % 3 == 0 {
                poke.set_ctrl(OFF_OVERWRITE_POS, next() % (2 * SIZE));
            }
            for _ in 0..100 {
                let step = if overflow == Overflow::DropNew && round % 2 == 0 {
                    let mut batch = consumer.batch().unwrap();
                    let r = batch.iter().next();
                    match r {
                        None => None,
                        Some(Ok(r)) => Some(Ok(r.seq)),
                        Some(Err(e)) => Some(Err(e)),
                    }
                } else {
                    consumer.read_copy().map(|r| r.map(|r| r.seq)).transpose()
                };
                match step {
                    None => break,
                    Some(Ok(_)) => {}
                    Some(Err(Error::Corrupt(_))) => break,
                    Some(Err(e)) => panic!("unexpected error {e}"),
                }
            }
        }
    }
}

/// Checks that the producer honoured the released position: the records
/// the consumer still holds are intact, and nothing outside the data area
/// changed.
#[test]
fn impossible_consumer_positions_are_counted_and_ignored() {
    let region = common::memfd(SIZE, Overflow::DropNew);
    let poke = Poke::new(&region);
    let mut producer = region.producer().unwrap();
    let mut consumer = region.consumer().unwrap();
    let push = |producer: &mut rmemring::Producer, seq: u64| {
        let mut r = producer.reserve(40).map_err(|e| (e, seq))?;
        common::fill(&mut r, seq);
        r.commit();
        Ok::<(), (ProduceError, u64)>(())
    };

    // Fill the ring: 64 records of 64 bytes.
    for seq in 0..64 {
        push(&mut producer, seq).unwrap();
    }
    producer.publish();
    // The consumer reads and releases 16 of them.
    {
        let mut batch = consumer.batch().unwrap();
        let mut iter = batch.iter();
        for seq in 0..16 {
            assert_eq!(iter.next().unwrap().unwrap().seq, seq);
        }
    }
    let released = 16 * 64;
    assert_eq!(poke.cons(OFF_CONSUMER_POS), released);
    // The producer takes the 16 records of room, and no more.
    let mut seq = 64;
    while push(&mut producer, seq).is_ok() {
        seq += 1;
    }
    producer.publish();
    assert_eq!(seq, 64 + 16);
    let outside = poke.outside_data();
    let consumer_errors = |region: &Region| region.control().consumer_errors;
    assert_eq!(consumer_errors(&region), 0);

    let head = region.control().producer_pos;
    assert_eq!(head, 80 * 64);
    let hostile = [
        // Ahead of the producer.
        head + 8,
        head + SIZE,
        u64::MAX / 2,
        // Behind the position it already released.
        released - 64,
        0,
        // More than a data area behind the producer.
        head - SIZE - 8,
        u64::MAX - 7,
    ];
    for (i, bad) in hostile.into_iter().enumerate() {
        poke.set_cons(OFF_CONSUMER_POS, bad);
        assert_eq!(
            push(&mut producer, seq),
            Err((ProduceError::Full, seq)),
            "{bad:#x}"
        );
        producer.publish();
        assert_eq!(
            consumer_errors(&region),
            i as u64 + 1,
            "{bad:#x} was not counted"
        );
    }
    // Nothing outside the data area changed except the consumer position we
    // wrote ourselves and the statistics in the control page.
    let mut now = poke.outside_data();
    let mut before = outside;
    let page = region.layout().page_size as usize;
    for bytes in [&mut now, &mut before] {
        bytes[page + OFF_CONSUMER_POS..page + OFF_CONSUMER_POS + 8].fill(0);
        // Producer statistics: records_produced .. consumer_errors.
        let stats = std::mem::offset_of!(ControlPage, records_produced);
        let end = std::mem::offset_of!(ControlPage, pad3);
        bytes[stats..end].fill(0);
    }
    assert!(now == before, "the producer wrote outside the data area");

    // Restore the real released position: the 48 records the consumer still
    // held are intact, followed by the 16 new ones.
    poke.set_cons(OFF_CONSUMER_POS, released);
    let mut batch = consumer.batch().unwrap();
    let mut expect = 16;
    for r in batch.iter() {
        let r = r.unwrap();
        assert_eq!(r.seq, expect);
        assert!(
            pattern::verify(r.seq, r.payload),
            "record {} was overwritten",
            r.seq
        );
        expect += 1;
    }
    assert_eq!(expect, 64 + 16);
}

#[test]
fn a_hostile_consumer_cannot_steer_producer_writes() {
    // Random consumer positions between every reservation: whatever they
    // are, every producer write lands inside the data area (the pages around
    // it stay as they were) and the producer never blocks forever once the
    // real position is restored.
    let mut state = 42u64;
    let mut next = move || {
        state = pattern::mix(state);
        state
    };
    for overflow in modes() {
        let region = common::memfd(SIZE, overflow);
        let poke = Poke::new(&region);
        let mut producer = region.producer().unwrap();
        let before = poke.outside_data();
        for i in 0..5000u64 {
            let pos = match next() % 4 {
                0 => next(),
                1 => next() & !7,
                2 => region
                    .control()
                    .producer_pos
                    .wrapping_sub(next() % (2 * SIZE)),
                _ => region.control().producer_pos,
            };
            poke.set_cons(OFF_CONSUMER_POS, pos);
            let len = (next() % u64::from(MAX + 1)) as usize;
            match producer.reserve(len) {
                Ok(mut r) => {
                    common::fill(&mut r, i);
                    r.commit();
                }
                Err(ProduceError::Full) => producer.drop_record(),
                Err(e) => panic!("{e}"),
            }
            producer.publish();
        }
        let mut after = poke.outside_data();
        let mut before = before.clone();
        let page = region.layout().page_size as usize;
        for bytes in [&mut after, &mut before] {
            bytes[page + OFF_CONSUMER_POS..page + OFF_CONSUMER_POS + 8].fill(0);
            let stats = std::mem::offset_of!(ControlPage, producer_pos);
            bytes[stats..stats + 8].fill(0);
            let ow = std::mem::offset_of!(ControlPage, overwrite_pos);
            bytes[ow..ow + 8].fill(0);
            let stats = std::mem::offset_of!(ControlPage, wake_seq);
            let end = std::mem::offset_of!(ControlPage, pad3);
            bytes[stats..end].fill(0);
        }
        assert!(
            after == before,
            "{overflow:?}: the producer wrote outside the data area"
        );
        if overflow == Overflow::DropNew {
            assert!(producer.stats().consumer_errors > 1000);
        }
    }
}

#[test]
fn a_corrupt_ring_file_opens_but_does_not_read() {
    // A ring file whose positions are garbage opens (the layout is fine),
    // but its consumer refuses to attach or read, with a typed error.
    let path = std::env::temp_dir().join(format!("rmemring-hostile-{}", std::process::id()));
    {
        let region = Region::create_file(&path, Default::default()).unwrap();
        let poke = Poke::new(&region);
        poke.set_ctrl(OFF_PRODUCER_POS, 5 << 40);
    }
    let region = std::sync::Arc::new(Region::open(&path, Access::Consume).unwrap());
    let _ = std::fs::remove_file(&path);
    assert!(matches!(
        corrupt(region.consumer()),
        ReadError::ProducerPosition { consumer: 0, producer } if producer == 5 << 40
    ));
    // A failed attach hands nothing out: once the ring is sane again, the
    // ring's one consumer is still there to take.
    Poke::new(&region).set_ctrl(OFF_PRODUCER_POS, 0);
    let _consumer = region.consumer().unwrap();
    assert!(matches!(
        region.consumer(),
        Err(Error::Taken(Role::Consumer))
    ));
}

#[test]
fn a_pad_at_the_very_end_reads_only_its_first_word() {
    // An 8-byte tail holds a pad whose header cannot fit whole; the
    // consumer must read only the first word (anything else would run past
    // the data area).
    for overflow in modes() {
        let region = common::memfd(SIZE, overflow);
        let poke = Poke::new(&region);
        poke.start_at(SIZE - 8);
        let mut consumer = region.consumer().unwrap();
        poke.set_data(SIZE - 8, rmemring_proto::view::header_word0(8, KIND_PAD, 0));
        poke.header(0, 3, KIND_DATA, 0);
        poke.set_data(HEADER_SIZE, u64::from_le_bytes([1, 2, 3, 0, 0, 0, 0, 0]));
        poke.set_ctrl(OFF_PRODUCER_POS, SIZE - 8 + 8 + record_stride(3));
        let r = consumer.read_copy().unwrap().unwrap();
        assert_eq!((r.seq, r.payload), (0, &[1u8, 2, 3][..]));
    }
}

#[test]
fn a_producer_attaching_to_garbage_stays_inside_the_data_area() {
    // Positions and records a producer finds when it attaches are its own
    // (or a previous producer's), but a corrupt ring must still not steer
    // its writes out of the data area or its reads off record boundaries.
    let cases = [
        // A misaligned producer position, near the end of the data area.
        (Overflow::DropNew, SIZE - 5, 0, None),
        (Overflow::OverwriteOldest, SIZE - 5, SIZE - 5, None),
        (Overflow::DropNew, u64::MAX, 0, None),
        // A misaligned overwrite position.
        (Overflow::OverwriteOldest, 64, 3, None),
        (Overflow::OverwriteOldest, SIZE + 64, SIZE - 4, None),
        // A pad whose length does not reach the end, where the producer
        // will retire records.
        (
            Overflow::OverwriteOldest,
            2 * SIZE - 64,
            SIZE - 64,
            Some((SIZE - 64, 13)),
        ),
    ];
    for (overflow, head, oldest, pad) in cases {
        let region = common::memfd(SIZE, overflow);
        let poke = Poke::new(&region);
        poke.set_ctrl(OFF_PRODUCER_POS, head);
        poke.set_ctrl(OFF_OVERWRITE_POS, oldest);
        poke.set_cons(OFF_CONSUMER_POS, head & !7);
        if let Some((offset, len)) = pad {
            poke.set_data(
                offset,
                rmemring_proto::view::header_word0(len as u32, KIND_PAD, 0),
            );
        }
        let before = poke.outside_data();
        let mut producer = region.producer().unwrap();
        // The consumer refuses the misaligned position until the producer
        // has published over it.
        let mut consumer = None;
        for seq in 0..200 {
            let len = pattern::payload_len(seq, 0, MAX) as usize;
            match producer.reserve(len) {
                Ok(mut r) => {
                    common::fill(&mut r, seq);
                    r.commit();
                }
                Err(ProduceError::Full) => producer.drop_record(),
                Err(e) => panic!("{e}"),
            }
            producer.publish();
            // Whatever the consumer makes of it is a typed result.
            let consumer = match &mut consumer {
                Some(consumer) => consumer,
                None => consumer.insert(region.consumer().unwrap()),
            };
            while let Ok(Some(_)) = consumer.read_copy() {}
        }
        let mut after = poke.outside_data();
        let mut before = before;
        let page = region.layout().page_size as usize;
        for bytes in [&mut after, &mut before] {
            // Everything the producer and consumer legitimately write.
            let from = std::mem::offset_of!(ControlPage, producer_pos);
            bytes[from..from + 8].fill(0);
            let from = std::mem::offset_of!(ControlPage, overwrite_pos);
            bytes[from..from + 8].fill(0);
            let from = std::mem::offset_of!(ControlPage, wake_seq);
            let to = std::mem::offset_of!(ControlPage, pad3);
            bytes[from..to].fill(0);
            bytes[page..page + 3 * 128].fill(0);
        }
        assert!(
            after == before,
            "{overflow:?} from {head:#x}: wrote outside the data area"
        );
    }
}

/// A consumer can release only what it could see: a consumer position
/// past the *published* position, in the middle of the producer's batch
/// (between `published` and `head`), is counted and ignored, and the
/// unpublished records of the batch are not overwritten (the check the BPF
/// ring buffer once made against its write position, CVE-2024-41009).
#[test]
fn consumer_positions_past_the_published_one_are_counted_and_ignored() {
    use rmemring_proto::sync::Ordering;

    let (mut p, mut c) = common::heap_ring(SIZE, Overflow::DropNew, 0);
    let commit = |p: &mut rmemring_proto::producer_core::ProducerCore| {
        let slot = p.reserve(40)?;
        let seq = p.next_seq();
        p.write_pattern(&slot, seq, false);
        p.commit(slot, 0, seq);
        Ok::<(), rmemring_proto::producer_core::ReserveError>(())
    };
    // 32 records of 64 bytes, published, read and released.
    for _ in 0..32 {
        commit(&mut p).unwrap();
    }
    p.publish();
    while c.next_record().unwrap().is_some() {}
    c.release();
    let published = 32 * 64;
    // Mid-batch: 48 more committed and not published, 3 KiB of the ring.
    for _ in 0..48 {
        commit(&mut p).unwrap();
    }
    let head = published + 48 * 64;
    assert_eq!(p.unpublished(), head - published);

    let errors = |p: &rmemring_proto::producer_core::ProducerCore| p.stats().consumer_errors;
    for (i, lie) in [published + 64, published + 8, head - 64, head]
        .into_iter()
        .enumerate()
    {
        c.view().consumer_pos().store(lie, Ordering::Release);
        assert!(!p.refresh_consumer(), "{lie:#x} accepted");
        assert_eq!(errors(&p), i as u64 + 1, "{lie:#x} was not counted");
    }
    // With the lie still there, the producer fills what is really free (16
    // records) and not one byte of its batch.
    let mut more = 0;
    while commit(&mut p).is_ok() {
        more += 1;
    }
    assert_eq!(more, 16);
    assert!(errors(&p) > 4);

    // Published: every record of the batch is intact, none lost.
    c.view().consumer_pos().store(published, Ordering::Release);
    p.publish();
    let mut seq = 32;
    while let Some(meta) = c.next_record().unwrap() {
        assert_eq!((meta.seq, meta.lost_before), (seq, 0));
        let payload = common::payload_of(&c, meta.offset, meta.len);
        assert!(
            pattern::verify(seq, &payload),
            "record {seq} was overwritten"
        );
        seq += 1;
    }
    assert_eq!(seq, 32 + 48 + 16);
}
