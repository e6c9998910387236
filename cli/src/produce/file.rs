//! `rmemring produce FILE`: the crate's user-space producer on a ring file.
//!
//! It writes what the kernel producer writes (lengths and bytes from
//! `rmemring::pattern`, tag 0, the same count, rate and batch options), so
//! consumers check the records of either alike; or, with `--stdin`, one
//! record per input line. A ring file has no producer thread to start:
//! this process is the producer, in the foreground until it is done or
//! Ctrl-C, and another `produce` on the same ring is refused (busy) while
//! it runs.

use std::io::{
    self,
    BufRead,
    BufReader, //
};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{
    Duration,
    Instant, //
};

use indicatif::ProgressBar;
use rmemring::{
    pattern,
    Access,
    Overflow,
    ProduceError,
    Producer,
    ProducerStats,
    Region,
    Reservation, //
};

use super::{
    progress,
    report,
    show,
    too_large,
    Args,
    Pattern,
    Totals,
    DEFAULT_BATCH,
    TICK, //
};
use crate::fail;
use crate::signals::{
    self,
    Woken, //
};

/// Payload bytes when `--size` is not given (a device needs it).
const DEFAULT_SIZE: u32 = 64;
/// The first and the longest sleep while waiting for room (`--wait`), as
/// the kernel producer's.
const MIN_BACKOFF: Duration = Duration::from_micros(16);
const MAX_BACKOFF: Duration = Duration::from_millis(1);
/// Bytes of stdin read at a time.
const INPUT_BUFFER: usize = 1 << 16;

pub(super) fn run(args: &Args) -> anyhow::Result<()> {
    let path = &args.ring.device;
    let shown = path.display();
    if args.stop {
        return Err(fail::usage(format!(
            "{shown}: --stop is for a device's kernel producer; on a ring file the producer is \
             `rmemring produce` itself: Ctrl-C stops it"
        )));
    }
    if args.hook_only {
        return Err(fail::usage(format!(
            "{shown}: --hook-only needs a ring device (the tracepoint is the driver's)"
        )));
    }
    let region = Arc::new(Region::open(path, Access::Produce)?);
    let layout = *region.layout();
    let overwrite = layout.overflow() == Overflow::OverwriteOldest;
    if args.wait && overwrite {
        return Err(fail::usage(format!(
            "{shown}: --wait on an overwrite-oldest ring, which never waits"
        )));
    }
    if args.pattern == Pattern::None && overwrite {
        // `Reservation::payload` is drop-new only: in overwrite mode a
        // lapped reader may be copying the bytes, so each is written.
        return Err(fail::usage(format!(
            "{shown}: --pattern none needs a drop-new ring; an overwrite-oldest ring's records \
             are written whole"
        )));
    }
    let (min_len, max_len) = args.size.unwrap_or((DEFAULT_SIZE, DEFAULT_SIZE));
    if max_len > layout.max_payload {
        return Err(too_large(max_len, layout.max_payload));
    }
    let producer = region.producer()?;
    let mut run = Run {
        before: producer.stats(),
        producer,
        pacer: Pacer {
            start: Instant::now(),
            count: args.count,
            rate: args.rate,
            batch: u64::from(if args.batch == 0 {
                DEFAULT_BATCH
            } else {
                args.batch
            }),
        },
        wait: args.wait,
        done: 0,
        bar: progress(args),
        shown: Instant::now(),
    };
    let stopped = if args.stdin {
        run.lines()?
    } else {
        run.pattern(min_len, max_len, args.pattern == Pattern::None)?
    };
    run.producer.publish();
    let elapsed = run.pacer.start.elapsed();
    run.bar.finish_and_clear();
    if !args.quiet {
        let now = run.producer.stats();
        report(
            Totals {
                records: now.records - run.before.records,
                bytes: now.bytes - run.before.bytes,
                dropped: now.dropped - run.before.dropped,
            },
            elapsed,
            stopped,
            args.json,
        )?;
    }
    Ok(())
}

/// One run of the producer.
struct Run {
    producer: Producer,
    /// The counters when the run began: the ring's may have some already.
    before: ProducerStats,
    pacer: Pacer,
    /// `--wait`: wait for room instead of dropping.
    wait: bool,
    /// Records written or dropped.
    done: u64,
    bar: ProgressBar,
    /// When the progress bar was last updated.
    shown: Instant,
}

impl Run {
    /// The test pattern, until `--count` records or a stop signal (then
    /// `true`).
    fn pattern(
        &mut self,
        min_len: u32,
        max_len: u32,
        first_word_only: bool,
    ) -> anyhow::Result<bool> {
        // Overwrite mode writes from a copy (see `fill`).
        let mut scratch = Vec::new();
        loop {
            let quota = match self.pacer.quota(self.done) {
                Quota::Done => return Ok(false),
                Quota::Wait(d) => {
                    if self.pause(d)? {
                        return Ok(true);
                    }
                    continue;
                }
                Quota::Go(n) => n,
            };
            for _ in 0..quota {
                let len = pattern::payload_len(self.producer.next_seq(), min_len, max_len);
                let written = self.record(len as usize, |record| {
                    fill(record, first_word_only, &mut scratch);
                })?;
                if !written {
                    return Ok(true);
                }
            }
            self.producer.publish();
            self.show();
            if signals::stop_requested() {
                return Ok(true);
            }
        }
    }

    /// A record per line of stdin, until the input ends, `--count` records
    /// or a stop signal (then `true`).
    fn lines(&mut self) -> anyhow::Result<bool> {
        let max = self.producer.region().layout().max_payload as usize;
        let stdin = io::stdin();
        let mut input = BufReader::with_capacity(INPUT_BUFFER, stdin.lock());
        // A line that spans reads.
        let mut line = Vec::new();
        let mut number = 1u64;
        loop {
            match self.pacer.quota(self.done) {
                Quota::Done => return Ok(false),
                Quota::Wait(d) => {
                    if self.pause(d)? {
                        return Ok(true);
                    }
                    continue;
                }
                Quota::Go(_) => {}
            }
            if input.buffer().is_empty() {
                // The next read may block for ever (a terminal, a quiet
                // pipe): what came so far goes out first, and a stop
                // signal wakes the wait, which a blocked `read` would
                // retry through.
                self.producer.publish();
                self.show();
                if signals::sleep_until(Some(stdin.as_fd()), None)? == Woken::Stop {
                    return Ok(true);
                }
            }
            let chunk = match input.fill_buf() {
                Ok(chunk) => chunk,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(anyhow::Error::new(e).context("reading stdin")),
            };
            if chunk.is_empty() {
                // The input ended; an unterminated last line is a line too.
                if !line.is_empty() && !self.record(line.len(), |r| r.write(&line))? {
                    return Ok(true);
                }
                return Ok(false);
            }
            let newline = chunk.iter().position(|&b| b == b'\n');
            let end = newline.unwrap_or(chunk.len());
            line.extend_from_slice(&chunk[..end]);
            input.consume(newline.map_or(end, |i| i + 1));
            if line.len() > max {
                return Err(fail::with_status(
                    fail::DATA,
                    format!(
                        "line {number} of stdin is longer than the ring's largest payload, \
                         {max} bytes"
                    ),
                ));
            }
            if newline.is_some() {
                if !self.record(line.len(), |r| r.write(&line))? {
                    return Ok(true);
                }
                line.clear();
                number += 1;
            }
        }
    }

    /// Writes a record of `len` payload bytes that `fill` fills, or, in a
    /// full drop-new ring, drops it (and counts it: the sequence shows the
    /// gap), or with `--wait` waits for room; `false` if a stop signal
    /// came while waiting.
    fn record(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut Reservation<'_>),
    ) -> anyhow::Result<bool> {
        let mut backoff = Duration::ZERO;
        let reserved = loop {
            match self.producer.reserve(len) {
                Ok(record) => break Some(record),
                Err(ProduceError::Full) if self.wait => {}
                Err(ProduceError::Full) => break None,
                Err(e) => return Err(e.into()),
            }
            // `reserve` borrows the producer until the match ends, so the
            // waiting is out here.
            backoff = (backoff * 2).clamp(MIN_BACKOFF, MAX_BACKOFF);
            if self.pause(backoff)? {
                return Ok(false);
            }
        };
        match reserved {
            Some(mut record) => {
                fill(&mut record);
                record.commit();
            }
            None => self.producer.drop_record(),
        }
        self.done += 1;
        Ok(true)
    }

    /// Publishes, then sleeps for `d` (at most a progress tick) or until a
    /// stop signal; says whether to stop.
    fn pause(&mut self, d: Duration) -> io::Result<bool> {
        self.producer.publish();
        self.show();
        signals::pause(d.min(TICK))
    }

    /// Updates the progress bar, at most once a tick.
    fn show(&mut self) {
        if self.shown.elapsed() < TICK {
            return;
        }
        self.shown = Instant::now();
        let dropped = self.producer.stats().dropped - self.before.dropped;
        show(&self.bar, self.done, dropped, self.pacer.start);
    }
}

/// Fills `record` with the test pattern of its sequence number, as the
/// kernel producer does: every byte, or with `first_word_only` (`--pattern
/// none`, drop-new only) the first word.
pub(crate) fn fill(record: &mut Reservation<'_>, first_word_only: bool, scratch: &mut Vec<u8>) {
    let seq = record.seq();
    if let Some(payload) = record.payload() {
        if first_word_only {
            let word = pattern::word(seq, 0).to_le_bytes();
            let n = payload.len().min(word.len());
            payload[..n].copy_from_slice(&word[..n]);
        } else {
            pattern::fill(seq, payload);
        }
        return;
    }
    // Overwrite mode: a reader the producer laps may be copying these very
    // bytes, so they go in through `write`'s atomic stores, from a copy.
    scratch.resize(record.len(), 0);
    pattern::fill(seq, scratch);
    record.write(scratch);
}

/// How many records may go when: `--batch`, `--count` and `--rate`, as the
/// kernel producer paces them.
struct Pacer {
    start: Instant,
    /// 0: no end.
    count: u64,
    /// Records per second; 0: flat out.
    rate: u64,
    batch: u64,
}

/// What [`Pacer::quota`] allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Quota {
    /// `count` records are done.
    Done,
    /// None yet: the next is due in this long.
    Wait(Duration),
    /// This many now (at least one).
    Go(u64),
}

impl Pacer {
    /// What may go after `done` records.
    fn quota(&self, done: u64) -> Quota {
        let mut quota = self.batch;
        if self.count != 0 {
            if done >= self.count {
                return Quota::Done;
            }
            quota = quota.min(self.count - done);
        }
        if self.rate != 0 {
            const NANOS: u128 = 1_000_000_000;
            let elapsed = self.start.elapsed();
            let due = elapsed.as_nanos() * u128::from(self.rate) / NANOS;
            let due = u64::try_from(due).unwrap_or(u64::MAX);
            if due <= done {
                let next = (u128::from(done) + 1) * NANOS / u128::from(self.rate);
                let next = Duration::from_nanos(u64::try_from(next).unwrap_or(u64::MAX));
                return Quota::Wait(next.saturating_sub(elapsed));
            }
            quota = quota.min(due - done);
        }
        Quota::Go(quota)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pacer(count: u64, rate: u64, batch: u64, started: Duration) -> Pacer {
        Pacer {
            start: Instant::now() - started,
            count,
            rate,
            batch,
        }
    }

    #[test]
    fn the_pacer_keeps_to_batch_count_and_rate() {
        assert_eq!(
            pacer(0, 0, 64, Duration::ZERO).quota(1 << 40),
            Quota::Go(64)
        );
        assert_eq!(pacer(100, 0, 64, Duration::ZERO).quota(90), Quota::Go(10));
        assert_eq!(pacer(100, 0, 64, Duration::ZERO).quota(100), Quota::Done);
        // 1000/s for a second: about 1000 due.
        assert_eq!(
            pacer(0, 1000, 64, Duration::from_secs(1)).quota(990),
            Quota::Go(10)
        );
        match pacer(0, 1000, 64, Duration::from_secs(1)).quota(1500) {
            Quota::Wait(d) => assert!(
                d > Duration::from_millis(400) && d <= Duration::from_millis(501),
                "{d:?}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_pattern_verifies_in_either_mode() {
        for overflow in [Overflow::DropNew, Overflow::OverwriteOldest] {
            let region = Arc::new(
                Region::memfd(rmemring::CreateOptions::new(1 << 16).overflow(overflow)).unwrap(),
            );
            let mut producer = region.producer().unwrap();
            let mut scratch = Vec::new();
            for len in [0, 5, 8, 100] {
                let mut record = producer.reserve(len).unwrap();
                fill(&mut record, false, &mut scratch);
                record.commit();
            }
            producer.publish();
            let mut consumer = region.consumer().unwrap();
            while let Some(record) = consumer.read_copy().unwrap() {
                assert!(pattern::verify(record.seq, record.payload), "{overflow:?}");
            }
            assert_eq!(consumer.stats().records, 4);
        }
    }
}
