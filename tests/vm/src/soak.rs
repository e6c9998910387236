//! The soak (`rmemring-selftest soak --seconds S`, run by `cargo xtask
//! soak`): for S seconds, phase after phase, the kernel producer runs at
//! changing rates, sizes and batch sizes while the consumer changes how it
//! reads (busy-polling zero-copy batches, sleeping in `wait`, `read()`,
//! with and without deliberate stalls), with RESETs and overflow-mode
//! changes between phases. Every record is verified (payload pattern,
//! length, sequence, timestamp), and after every phase the losses the
//! verifier saw must be what the consumer page and the producer's counters
//! say, exactly. Not part of `all`: it runs as long as it is told.

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{
    Duration,
    Instant, //
};

use anyhow::Context;
use rmemring::uapi::{
    ProducerConfig,
    RingStats,
    PRODUCER_WAIT, //
};
use rmemring::{
    monotonic_ns,
    Access,
    Consumer,
    Region,
    Wait, //
};
use rmemring_proto::modes::Overflow;

use crate::support::fd::set_nonblocking;
use crate::support::ring::open_fresh;
use crate::support::rng::Rng;
use crate::support::verify::{
    read_each,
    StreamOptions,
    Tally, //
};
use crate::support::{
    Env,
    Report, //
};

/// How the consumer reads in one phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum How {
    /// Zero-copy batches (drop-new) or copies (overwrite), polling the
    /// producer position without ever sleeping.
    BusyPoll,
    /// The same, sleeping in `poll` whenever the ring is empty.
    Blocking,
    /// Blocking `read()`: the kernel consumes on the consumer's behalf.
    Read,
}

impl How {
    fn name(self) -> &'static str {
        match self {
            How::BusyPoll => "busy-poll",
            How::Blocking => "blocking wait",
            How::Read => "read()",
        }
    }
}

/// Payload lengths the producer picks from, `(min, max)`.
const SIZES: &[(u32, u32)] = &[
    (0, 0),
    (8, 8),
    (0, 64),
    (8, 256),
    (0, 4096),
    (1000, 1000),
    (4096, 65536),
];
/// Producer rates, records per second (0: flat out).
const RATES: &[u64] = &[0, 0, 1000, 20_000, 200_000];
/// Records per publication (0: the driver's default).
const BATCHES: &[u32] = &[0, 1, 16, 256, 4096];
/// `read()`'s buffer: room for the largest record of [`SIZES`].
const READ_BUFFER: usize = 256 << 10;

/// What the verifier knows of the ring since its last reset.
struct Generation {
    overflow: Overflow,
    /// The first sequence number and the payload lengths of each producer
    /// run since the reset.
    runs: Vec<(u64, u32, u32)>,
    /// Every record delivered since the reset; its `stats` are the
    /// producer's counters at the last reconciliation.
    tally: Tally,
    /// The consumer page's loss counter at the last reconciliation.
    page_lost: u64,
}

impl Generation {
    fn new(overflow: Overflow) -> Self {
        Self {
            overflow,
            runs: Vec::new(),
            tally: Tally {
                started_ns: monotonic_ns(),
                ..Default::default()
            },
            page_lost: 0,
        }
    }

    /// Checks record `seq` against the lengths of the run that produced it.
    fn check(&mut self, seq: u64, timestamp_ns: u64, payload: &[u8]) {
        let (min_len, max_len) = self
            .runs
            .iter()
            .rev()
            .find(|r| r.0 <= seq)
            .map_or((0, 0), |r| (r.1, r.2));
        let options = StreamOptions {
            min_len,
            max_len,
            ..Default::default()
        };
        self.tally.check(seq, timestamp_ns, payload, &options);
    }

    /// With the producer stopped and the ring drained: the verifier, the
    /// consumer page and the producer's counters agree. Returns what does
    /// not.
    fn reconcile(&mut self, stats: RingStats, consumed: u64, lost: u64) -> Vec<String> {
        let t = &mut self.tally;
        t.stats = stats;
        self.page_lost = lost;
        let (p, d, o) = (
            stats.records_produced,
            stats.records_dropped,
            stats.records_overwritten,
        );
        let mut wrong = Vec::new();
        if consumed != t.records {
            wrong.push(format!(
                "the consumer page counts {consumed} records consumed, the verifier saw {}",
                t.records
            ));
        }
        if lost != t.gaps {
            wrong.push(format!(
                "the consumer page counts {lost} records lost, the verifier saw {} missing",
                t.gaps
            ));
        }
        if t.bad != 0 || t.bad_ts != 0 {
            wrong.push(format!(
                "{} bad records, {} bad timestamps",
                t.bad, t.bad_ts
            ));
        }
        if self.overflow == Overflow::OverwriteOldest {
            // Nothing is dropped; the newest records survive, so a drained
            // ring ends with the last one produced; the producer retires
            // records oldest first, so every missing one is below the
            // overwritten count.
            if d != 0 || (p > 0 && t.next_seq != p) || t.records + t.gaps != p {
                wrong.push(format!(
                    "{}: produced {p}, dropped {d}; delivered {} + missing {}, next seq {}",
                    self.overflow.name(),
                    t.records,
                    t.gaps,
                    t.next_seq
                ));
            }
            if !t.all_gaps_below(o) {
                wrong.push(format!(
                    "{}: records missing that were not overwritten (only the first {o} were): {:?}",
                    self.overflow.name(),
                    t.gap_runs.iter().rev().take(4).collect::<Vec<_>>()
                ));
            }
        } else {
            // Every published record is delivered; every dropped one is a
            // gap, or after the last record delivered.
            let trailing = (p + d).checked_sub(t.next_seq);
            if t.records != p || trailing.is_none_or(|trailing| t.gaps + trailing != d) {
                wrong.push(format!(
                    "{}: produced {p} + dropped {d}; delivered {}, missing {}, next seq {}",
                    self.overflow.name(),
                    t.records,
                    t.gaps,
                    t.next_seq
                ));
            }
        }
        wrong
    }
}

/// The soak's totals.
#[derive(Default)]
struct Totals {
    phases: u64,
    by_how: [u64; 3],
    stalling: u64,
    phases_overwrite: u64,
    resets: u64,
    mode_changes: u64,
    records: u64,
    bytes: u64,
    bad: u64,
    bad_ts: u64,
    page_lost: u64,
    /// Drop-new: missing in the sequence, dropped after the last record
    /// delivered, and what the producer counted dropped.
    gaps_dropped: u64,
    trailing: u64,
    dropped: u64,
    /// Overwrite mode: missing in the sequence, and what the producer
    /// counted overwritten (read in time or not).
    gaps_overwritten: u64,
    overwritten: u64,
    produced: u64,
    mismatches: Vec<String>,
}

impl Totals {
    /// Adds a generation that ends (at a reset or the end).
    fn close(&mut self, g: &Generation) {
        let t = &g.tally;
        self.records += t.records;
        self.bytes += t.bytes;
        self.bad += t.bad;
        self.bad_ts += t.bad_ts;
        self.page_lost += g.page_lost;
        if g.overflow == Overflow::OverwriteOldest {
            self.gaps_overwritten += t.gaps;
        } else {
            self.gaps_dropped += t.gaps;
            self.trailing += t.trailing();
        }
        self.dropped += t.stats.records_dropped;
        self.overwritten += t.stats.records_overwritten;
        self.produced += t.stats.records_produced;
    }
}

/// Runs the soak for `seconds`.
pub(crate) fn soak(env: &Env, report: &mut Report, seconds: u64) -> anyhow::Result<()> {
    env.kmod.ensure_loaded()?;
    let seed = match std::env::var("RMEMRING_SOAK_SEED") {
        Ok(s) => s.parse().context("RMEMRING_SOAK_SEED")?,
        Err(_) => monotonic_ns() | 1,
    };
    println!("# soak: {seconds} s, seed {seed} (RMEMRING_SOAK_SEED={seed} repeats the choices)");
    let mut rng = Rng(seed);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut totals = Totals::default();
    let mut overflow = Overflow::DropNew;
    let mut generation = reset(env, overflow)?;
    totals.resets += 1;
    while Instant::now() < deadline {
        // Between phases, now and then, a reset, half of them changing
        // the overflow mode.
        if totals.phases > 0 && rng.one_in(3) {
            totals.close(&generation);
            let change = rng.one_in(2);
            if change {
                overflow = match overflow {
                    Overflow::DropNew => Overflow::OverwriteOldest,
                    Overflow::OverwriteOldest => Overflow::DropNew,
                };
            }
            generation = reset(env, overflow)?;
            totals.resets += 1;
            totals.mode_changes += u64::from(change);
        }
        let (min_len, max_len) = SIZES[(rng.next() % SIZES.len() as u64) as usize];
        let how = [How::BusyPoll, How::Blocking, How::Read][(rng.next() % 3) as usize];
        let stall = rng.one_in(4);
        let config = ProducerConfig {
            min_len,
            max_len,
            rate: RATES[(rng.next() % RATES.len() as u64) as usize],
            batch: BATCHES[(rng.next() % BATCHES.len() as u64) as usize],
            // Back-pressure is for drop-new mode only.
            flags: if overflow == Overflow::DropNew && rng.one_in(3) {
                PRODUCER_WAIT
            } else {
                0
            },
            // A blocking read() needs the producer to go on until the
            // phase stops it; other phases sometimes run out of records.
            count: if how != How::Read && rng.one_in(4) {
                1 + rng.next() % 200_000
            } else {
                0
            },
            ..Default::default()
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let length = Duration::from_millis(500 + rng.next() % 3000).min(left);
        let seed = rng.next();
        let phase_start = Instant::now();
        let before = (generation.tally.records, generation.tally.gaps);
        let wrong = phase(env, &mut generation, &config, how, stall, length, seed)
            .with_context(|| format!("phase {}", totals.phases))?;
        totals.phases += 1;
        totals.by_how[how as usize] += 1;
        totals.stalling += u64::from(stall);
        totals.phases_overwrite += u64::from(overflow == Overflow::OverwriteOldest);
        let mode = overflow.name();
        let stalls = if stall { ", stalling" } else { "" };
        let wait = if config.flags & PRODUCER_WAIT != 0 {
            ", waiting for room"
        } else {
            ""
        };
        println!(
            "# soak phase {} ({mode}, {}{stalls}; {min_len}..{max_len} B at {} records/s{wait}, batch {}, count {}): \
             {} records verified, {} missing in {:.1} s",
            totals.phases,
            how.name(),
            config.rate,
            config.batch,
            config.count,
            generation.tally.records - before.0,
            generation.tally.gaps - before.1,
            phase_start.elapsed().as_secs_f64(),
        );
        for w in wrong {
            println!("# soak phase {}: MISMATCH: {w}", totals.phases);
            totals
                .mismatches
                .push(format!("phase {}: {w}", totals.phases));
        }
    }
    totals.close(&generation);
    let t = &totals;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "# soak: {secs:.0} s, {} phases ({} busy-poll, {} blocking wait, {} read(); {} with stalls; {} in overwrite mode), \
         {} RESETs ({} changing the overflow mode)",
        t.phases, t.by_how[0], t.by_how[1], t.by_how[2], t.stalling, t.phases_overwrite, t.resets, t.mode_changes
    );
    println!(
        "# soak: records verified: {} ({:.2} GiB of payload; {} bad, {} bad timestamps) of {} produced",
        t.records,
        t.bytes as f64 / (1u64 << 30) as f64,
        t.bad,
        t.bad_ts,
        t.produced
    );
    let gaps = t.gaps_dropped + t.gaps_overwritten;
    println!(
        "# soak: records lost: {gaps} missing in the sequence, {} on the consumer pages (records_lost)",
        t.page_lost
    );
    println!(
        "# soak: {}: {} missing + {} dropped after the last delivered = {} (STATS records_dropped {})",
        Overflow::DropNew.name(),
        t.gaps_dropped,
        t.trailing,
        t.gaps_dropped + t.trailing,
        t.dropped
    );
    println!(
        "# soak: {}: {} missing of {} overwritten (STATS records_overwritten; the rest were read before the producer reached them)",
        Overflow::OverwriteOldest.name(),
        t.gaps_overwritten,
        t.overwritten
    );
    println!("# soak: mismatches: {}", t.mismatches.len());
    report.expect(
        &format!(
            "soak: {} phases in both overflow modes, every record verified, every loss accounted",
            t.phases
        ),
        t.mismatches.is_empty()
            && t.records > 0
            && t.bad == 0
            && t.bad_ts == 0
            && gaps == t.page_lost
            && t.gaps_dropped + t.trailing == t.dropped
            && t.gaps_overwritten <= t.overwritten,
        || t.mismatches.join("; "),
    );
    Ok(())
}

/// Resets the ring to the given mode; a fresh generation.
fn reset(env: &Env, overflow: Overflow) -> anyhow::Result<Generation> {
    drop(open_fresh(env, overflow)?);
    Ok(Generation::new(overflow))
}

/// One phase: a consumer opens the ring, starts the producer with
/// `config`, consumes `how` for `length`, stops the producer, drains the
/// ring and reconciles the counters. Returns the disagreements.
fn phase(
    env: &Env,
    g: &mut Generation,
    config: &ProducerConfig,
    how: How,
    stall: bool,
    length: Duration,
    seed: u64,
) -> anyhow::Result<Vec<String>> {
    // A new open file for each phase: the kernel's read() consumer and the
    // library's both attach to the consumer page the last phase left.
    let region = Arc::new(Region::open(&env.device, Access::Consume)?);
    let s = region.stats()?;
    g.runs.push((
        s.records_produced + s.records_dropped,
        config.min_len,
        config.max_len,
    ));
    let mut rng = Rng(seed | 1);
    let mut buf = Vec::new();
    let mut consumer = None;
    match how {
        How::Read => buf = vec![0u8; READ_BUFFER],
        How::BusyPoll | How::Blocking => {
            let mut c = region.consumer()?;
            c.set_wait(if how == How::BusyPoll {
                Wait::BusyPoll
            } else {
                Wait::Spin(0)
            });
            consumer = Some(c);
        }
    }
    region.start(config).context("RMEMRING_IOC_START")?;
    let start = Instant::now();
    while start.elapsed() < length {
        // A stalling consumer takes a few thousand records at a time and
        // then sleeps for long enough that the ring overflows. Any other
        // stops now and then too: in overwrite mode a producer of small
        // records flat out never lets the consumer find the ring empty.
        let most = if stall { 2000 } else { 1 << 16 };
        match consumer.as_mut() {
            Some(c) => {
                if c.wait(Some(Duration::from_millis(100)))? {
                    take(c, g, most)?;
                }
            }
            None => {
                read_once(&region, &mut buf, g)?;
            }
        }
        if stall {
            std::thread::sleep(Duration::from_millis(20 + rng.next() % 200));
        }
    }
    region.stop()?;
    // Drain what was published before the stop.
    match consumer.as_mut() {
        Some(c) => loop {
            if c.backlog()? == 0 {
                c.release();
                break;
            }
            take(c, g, usize::MAX)?;
        },
        None => {
            set_nonblocking(region.fd().as_raw_fd(), true);
            while read_once(&region, &mut buf, g)? {}
        }
    }
    drop(consumer);
    let stats = region.stats()?;
    let page = region.consumer_page();
    Ok(g.reconcile(stats, page.records_consumed, page.records_lost))
}

/// Takes up to `most` records from the mapping and verifies them.
fn take(c: &mut Consumer, g: &mut Generation, most: usize) -> anyhow::Result<()> {
    if g.overflow == Overflow::OverwriteOldest {
        for _ in 0..most {
            let Some(r) = c.read_copy()? else {
                break;
            };
            g.check(r.seq, r.timestamp_ns, r.payload);
        }
        c.release();
    } else {
        for r in c.batch()?.iter().take(most) {
            let r = r?;
            g.check(r.seq, r.timestamp_ns, r.payload);
        }
    }
    g.tally.end_batch();
    Ok(())
}

/// One `read()` (blocking unless the descriptor is non-blocking): verifies
/// the records; whether it returned any.
fn read_once(region: &Region, buf: &mut [u8], g: &mut Generation) -> anyhow::Result<bool> {
    let n = read_each(region.fd().as_raw_fd(), buf, |seq, ts, payload| {
        g.check(seq, ts, payload)
    })?;
    g.tally.end_batch();
    Ok(n.is_some_and(|n| n > 0))
}
