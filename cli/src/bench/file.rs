//! `rmemring bench FILE`: the user-space rings, no kernel.
//!
//! On a ring file (`rmemring create`) the benchmark is the crate's two
//! user-space halves through the shared mapping: the [`Producer`] in one
//! thread writes the test pattern (`rmemring::pattern`), the [`Consumer`]
//! in another reads every record (in place in drop-new mode, copied in
//! overwrite mode) and verifies its sequence number and every payload
//! byte. A drop-new producer waits for room, so nothing may be lost there;
//! an overwrite-oldest one laps the reader, and the loss is counted. The
//! comparison with other user-space rings (rtrb, crossbeam) is
//! `cargo xtask bench --host`.

use std::path::Path;
use std::sync::atomic::{
    AtomicBool,
    AtomicU64,
    Ordering, //
};
use std::sync::Arc;
use std::time::{
    Duration,
    Instant, //
};

use rmemring::{
    pattern,
    Access,
    Consumer,
    Overflow,
    ProduceError,
    Producer,
    Region, //
};
use serde::Serialize;

use super::Args;
use crate::args::si;
use crate::fail;
use crate::signals;

/// One size's measurement on a ring file: one JSON line
/// (`"bench":"file"`), fields in alphabetical order.
#[derive(Clone, Copy, Debug, Serialize)]
struct FileRow {
    bench: &'static str,
    /// Records that failed the check (sequence or payload bytes).
    bad: u64,
    bytes: u64,
    elapsed_ns: u64,
    gb_per_s: f64,
    /// Records the consumer never saw (dropped or overwritten).
    lost: u64,
    overflow: &'static str,
    records: u64,
    records_per_s: f64,
    size: u32,
    /// Records read whose sequence number and payload checked out.
    verified: u64,
}

/// What one run of the two threads counted.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    records: u64,
    verified: u64,
    lost: u64,
}

pub(super) fn run(args: &Args, path: &Path) -> anyhow::Result<()> {
    let region = Arc::new(Region::open(path, Access::Full)?);
    let layout = *region.layout();
    if let Some(&size) = args.sizes.iter().find(|&&s| s > layout.max_payload) {
        return Err(fail::usage(format!(
            "--sizes: {size} exceeds the ring's largest payload, {} bytes",
            layout.max_payload
        )));
    }
    let overflow = layout.overflow();
    let mut rows = Vec::new();
    if !args.json {
        out!(
            "{}: {} data area, {}; producer and consumer threads of this process\n\
             {:>8} {:>12} {:>10} {:>12} {:>6} {:>5}\n",
            path.display(),
            crate::args::bytes(layout.data_size),
            overflow_name(overflow),
            "size",
            "records/s",
            "GB/s",
            "verified",
            "lost",
            "bad",
        )?;
    }
    for &size in &args.sizes {
        if !args.warmup.is_zero() {
            measure(&region, size, args.warmup)?;
        }
        let start = Instant::now();
        let counts = measure(&region, size, args.duration)?;
        let elapsed = start.elapsed();
        if signals::stop_requested() {
            return Err(fail::with_status(fail::INTERRUPTED, "interrupted"));
        }
        let secs = elapsed.as_secs_f64();
        let bytes = counts.records * u64::from(size);
        let row = FileRow {
            bench: "file",
            bad: counts.records - counts.verified,
            bytes,
            elapsed_ns: u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
            gb_per_s: bytes as f64 / secs / 1e9,
            lost: counts.lost,
            overflow: overflow_name(overflow),
            records: counts.records,
            records_per_s: counts.records as f64 / secs,
            size,
            verified: counts.verified,
        };
        if args.json {
            crate::out::json_line(&row)?;
        } else {
            out!(
                "{:>8} {:>12} {:>10.3} {:>12} {:>6} {:>5}\n",
                crate::args::bytes(u64::from(size)),
                si(row.records_per_s),
                row.gb_per_s,
                row.verified,
                row.lost,
                row.bad,
            )?;
        }
        rows.push(row);
    }
    let bad: u64 = rows.iter().map(|r| r.bad).sum();
    let lost: u64 = rows.iter().map(|r| r.lost).sum();
    if bad != 0 {
        return Err(fail::with_status(
            fail::DATA,
            format!("{bad} records failed verification"),
        ));
    }
    if lost != 0 && overflow == Overflow::DropNew {
        return Err(fail::with_status(
            fail::DATA,
            format!("{lost} records lost in a drop-new ring whose producer waits for room"),
        ));
    }
    Ok(())
}

fn overflow_name(overflow: Overflow) -> &'static str {
    match overflow {
        Overflow::DropNew => "drop-new",
        Overflow::OverwriteOldest => "overwrite-oldest",
    }
}

/// Runs the producer for `duration` with records of `size` bytes, and the
/// consumer until it has seen every record the producer wrote.
fn measure(region: &Arc<Region>, size: u32, duration: Duration) -> anyhow::Result<Counts> {
    let mut consumer = region.consumer()?;
    // Records already in the ring are not the benchmark's.
    consumer.skip_to_producer()?;
    let mut producer = region.producer()?;
    let first = producer.next_seq();
    let done = AtomicBool::new(false);
    let end = AtomicU64::new(0);
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let end_seq = produce(&mut producer, size as usize, duration);
            end.store(end_seq, Ordering::Relaxed);
            done.store(true, Ordering::Release);
        });
        let counts = consume(&mut consumer, first, size as usize, &done, &end);
        writer
            .join()
            .map_err(|_| anyhow::anyhow!("the producer thread panicked"))?;
        counts
    })
}

/// Writes the test pattern flat out for `duration` (or until Ctrl-C),
/// waiting (yielding) for room in a drop-new ring; returns the next
/// sequence number.
fn produce(producer: &mut Producer, size: usize, duration: Duration) -> u64 {
    const BATCH: usize = 64;
    let deadline = Instant::now() + duration;
    // Overwrite mode writes from a copy (see `fill`).
    let mut scratch = Vec::new();
    while Instant::now() < deadline && !signals::stop_requested() {
        let mut written = 0;
        for _ in 0..BATCH {
            match producer.reserve(size) {
                Ok(mut record) => {
                    crate::produce::file::fill(&mut record, false, &mut scratch);
                    record.commit();
                    written += 1;
                }
                Err(ProduceError::Full) => break,
                Err(e) => panic!("reserve: {e}"),
            }
        }
        producer.publish();
        if written == 0 {
            std::thread::yield_now();
        }
    }
    producer.publish();
    producer.next_seq()
}

/// Reads and verifies every record from `first` until the producer is done
/// and its last record is read.
fn consume(
    consumer: &mut Consumer,
    first: u64,
    size: usize,
    done: &AtomicBool,
    end: &AtomicU64,
) -> anyhow::Result<Counts> {
    let mut counts = Counts::default();
    let mut next = first;
    // The loss is the gaps in the sequence: a record's `lost_before`
    // counts from the last record this consumer read, and the first one
    // after `skip_to_producer` in a lapped overwrite ring has none.
    let mut check = |seq: u64, payload: &[u8], counts: &mut Counts| {
        counts.records += 1;
        if seq >= next && payload.len() == size && pattern::verify(seq, payload) {
            counts.verified += 1;
            counts.lost += seq - next;
        }
        next = next.max(seq + 1);
    };
    let overwrite = consumer.layout().overflow() == Overflow::OverwriteOldest;
    loop {
        // Whether the producer had finished before this look: then an
        // empty ring means everything was read.
        let finished = done.load(Ordering::Acquire);
        let before = counts.records;
        if overwrite {
            while let Some(r) = consumer.read_copy()? {
                check(r.seq, r.payload, &mut counts);
            }
        } else {
            let mut batch = consumer.batch()?;
            for r in batch.iter() {
                let r = r?;
                check(r.seq, r.payload, &mut counts);
            }
        }
        if finished && counts.records == before {
            // Records retired after the last one read never show as gaps.
            counts.lost += end.load(Ordering::Relaxed).saturating_sub(next);
            return Ok(counts);
        }
        if counts.records == before {
            std::thread::yield_now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_consumer_counts_a_wrong_record_and_a_gap() {
        let region = Arc::new(Region::memfd(rmemring::CreateOptions::new(1 << 16)).unwrap());
        let mut consumer = region.consumer().unwrap();
        let mut producer = region.producer().unwrap();
        let mut payload = [0; 64];
        for seq in 0..4 {
            pattern::fill(seq, &mut payload);
            match seq {
                1 => payload[63] ^= 1,
                2 => {
                    producer.drop_record();
                    continue;
                }
                _ => {}
            }
            producer.push(&payload).unwrap();
        }
        producer.publish();
        let (done, end) = (AtomicBool::new(true), AtomicU64::new(5));
        let counts = consume(&mut consumer, 0, 64, &done, &end).unwrap();
        // Records 0, 1 and 3 read, 1 wrong; 2 dropped, and 4 never read.
        assert_eq!(counts.records, 3);
        assert_eq!(counts.verified, 2);
        assert_eq!(counts.lost, 2);
    }
}
