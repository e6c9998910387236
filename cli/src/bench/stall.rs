//! How much a spinning thread is kept off its CPU: the machine's own
//! latency floor, measured beside the latency of the paths; and the gaps
//! in a busy-polling consumer's own loop during its measurement
//! ([`LoopGaps`]).
//!
//! A thread reads the clock in a tight loop; any gap between two reads
//! longer than [`GAP`] is time it did not run (an interrupt, another
//! thread, or, in a VM, the host descheduling the vCPU, which the guest
//! cannot see otherwise: TCG reports no steal time). A busy-polling
//! consumer cannot deliver a record faster than its CPU runs, so these
//! gaps bound its latency tail from below.

use std::collections::VecDeque;
use std::time::{
    Duration,
    Instant, //
};

use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::Value;

use super::row::whole_ns;

/// Shorter gaps count as running (a clock read under TCG alone can take
/// a microsecond or two).
pub(crate) const GAP: Duration = Duration::from_micros(20);

/// The gaps in a busy-polling consumer's own loop over its measured
/// window: spans longer than [`GAP`] between two consecutive reads of
/// `CLOCK_MONOTONIC` by the loop (one per look at the ring, and one per
/// record whose latency it records), in which it did not look at the ring:
/// its thread was descheduled (in a VM, its vCPU too, which TCG does not
/// report), interrupted, or in a system call that took that long. A record
/// that arrives in such a gap waits for its end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Gaps {
    /// Gaps longer than [`GAP`].
    pub(crate) count: u64,
    /// Their sum.
    pub(crate) total: Duration,
    /// The longest.
    pub(crate) max: Duration,
}

/// Counts a loop's gaps from its clock reads, and ties records to them.
#[derive(Clone, Debug)]
struct LoopGaps {
    /// The last clock read, in nanoseconds; 0 before the first.
    last: u64,
    /// The latest gaps, `(start, end)` in nanoseconds, oldest first; at
    /// most [`RECENT_GAPS`] of them.
    recent: VecDeque<(u64, u64)>,
    gaps: Gaps,
    /// The latency of the records that gaps delayed
    /// ([`Self::record`]).
    delayed: Histogram<u64>,
}

/// How many gaps [`LoopGaps`] keeps to tie records to: a record's wait
/// spans a handful of them at most, unless it is older than the window.
const RECENT_GAPS: usize = 1024;

impl LoopGaps {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            last: 0,
            recent: VecDeque::with_capacity(RECENT_GAPS),
            gaps: Gaps::default(),
            delayed: super::latency_histogram()?,
        })
    }

    /// A record written at `timestamp_ns` reached at `now`, its latency
    /// recorded by the caller: one clock read of the loop, and the record
    /// counted as delayed by the gaps if they cover at least half of its
    /// wait (so a long wait that merely overlaps a short gap is not).
    #[inline]
    fn record(&mut self, now: u64, timestamp_ns: u64) {
        self.at(now);
        let wait = now.saturating_sub(timestamp_ns);
        let covered = self.covered(timestamp_ns, now);
        if covered > 0 && covered.saturating_mul(2) >= wait {
            self.delayed.saturating_record(wait);
        }
    }

    /// How much of `from..to` the kept gaps cover, in nanoseconds. Gaps end
    /// in clock order, so the walk stops at the first that ended before
    /// `from`.
    fn covered(&self, from: u64, to: u64) -> u64 {
        self.recent
            .iter()
            .rev()
            .take_while(|&&(_, end)| end > from)
            .map(|&(start, end)| end.min(to).saturating_sub(start.max(from)))
            .sum()
    }

    /// One clock read of the loop, `now` nanoseconds of `CLOCK_MONOTONIC`.
    #[inline]
    fn at(&mut self, now: u64) {
        let gap = now.saturating_sub(self.last);
        if self.last != 0 && gap > GAP.as_nanos() as u64 {
            if self.recent.len() == RECENT_GAPS {
                self.recent.pop_front();
            }
            self.recent.push_back((self.last, now));
            let gap = Duration::from_nanos(gap);
            self.gaps.count += 1;
            self.gaps.total += gap;
            self.gaps.max = self.gaps.max.max(gap);
        }
        self.last = now;
    }

    /// Reads the clock: one look at the ring.
    #[inline]
    fn tick(&mut self) {
        self.at(rmemring::monotonic_ns());
    }

    /// Forgets the gaps so far (the warm-up's) as the window opens at
    /// `now`: the next one counts from then, so that the gaps fall inside
    /// the window. (The caller records no latency for records written
    /// before it: their wait began where no gap was counted.)
    fn restart_at(&mut self, now: u64) {
        self.gaps = Gaps::default();
        self.last = now;
        self.recent.clear();
        self.delayed.reset();
    }

    /// The gaps since the last restart.
    fn gaps(&self) -> Gaps {
        self.gaps
    }

    /// The latency tail tied to the gaps since the last restart, given
    /// every record's latency over the same span.
    fn tail(&self, all: &Histogram<u64>) -> Option<GapTail> {
        GapTail::of(all, &self.delayed)
    }
}

/// A measurement's delivery latencies, the same on every path: every
/// recorded record's from the window's opening, and, where the consumer's
/// loop gaps are counted ([`LoopGaps`]), those gaps and the records they
/// delayed.
#[derive(Clone, Debug)]
pub(crate) struct Latencies {
    all: Histogram<u64>,
    /// When the measured window opened (`CLOCK_MONOTONIC` ns; 0 in the
    /// warm-up): a record written before it waited partly in the warm-up
    /// and the window's opening, where no gap was counted, so it is not
    /// recorded.
    opened_ns: u64,
    gaps: Option<LoopGaps>,
}

impl Latencies {
    /// With `gaps`, the consumer's loop gaps counted too.
    pub(crate) fn new(gaps: bool) -> anyhow::Result<Self> {
        Ok(Self {
            all: super::latency_histogram()?,
            opened_ns: 0,
            gaps: gaps.then(LoopGaps::new).transpose()?,
        })
    }

    /// Whether a record written at `timestamp_ns` is recorded: written
    /// since the window opened (the caller reads the clock only then).
    #[inline]
    pub(crate) fn wants(&self, timestamp_ns: u64) -> bool {
        timestamp_ns >= self.opened_ns
    }

    /// A record written at `timestamp_ns` ([`Self::wants`]) reached at
    /// `now`.
    #[inline]
    pub(crate) fn record(&mut self, now: u64, timestamp_ns: u64) {
        self.all.saturating_record(now.saturating_sub(timestamp_ns));
        if let Some(gaps) = &mut self.gaps {
            gaps.record(now, timestamp_ns);
        }
    }

    /// One look at the ring by the consumer's loop.
    #[inline]
    pub(crate) fn tick(&mut self) {
        if let Some(gaps) = &mut self.gaps {
            gaps.tick();
        }
    }

    /// Whether the loop's gaps are counted.
    pub(crate) fn tracks_gaps(&self) -> bool {
        self.gaps.is_some()
    }

    /// Forgets the warm-up's latencies and gaps as the window opens at
    /// `opened_ns` (`CLOCK_MONOTONIC`).
    pub(crate) fn restart(&mut self, opened_ns: u64) {
        self.all.reset();
        self.opened_ns = opened_ns;
        if let Some(gaps) = &mut self.gaps {
            gaps.restart_at(opened_ns);
        }
    }

    /// Every recorded record's latency.
    pub(crate) fn histogram(&self) -> &Histogram<u64> {
        &self.all
    }

    /// The loop's gaps, where counted.
    pub(crate) fn gaps(&self) -> Option<Gaps> {
        self.gaps.as_ref().map(LoopGaps::gaps)
    }

    /// The latency tail tied to the gaps, where counted.
    pub(crate) fn tail(&self) -> Option<GapTail> {
        self.gaps.as_ref().and_then(|g| g.tail(&self.all))
    }
}

/// The latency tail tied to the loop's gaps, record by record: of the
/// records at or above each of the window's percentiles, the share that
/// gaps of the consumer's own loop delayed: gaps covered at least half of
/// the record's wait ([`LoopGaps::record`]). A share near 1 says the gaps are
/// that tail; near 0, that something the loop cannot see (the producer's
/// side, the wake-up path) is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct GapTail {
    /// Records that gaps delayed.
    pub(crate) delayed: u64,
    /// The share of the records at or above p99 that did.
    pub(crate) p99: f64,
    /// ... at or above p99.9.
    pub(crate) p999: f64,
    /// ... at the maximum (its histogram bucket).
    pub(crate) max: f64,
}

impl GapTail {
    /// From the histogram of every record's latency and that of the
    /// records that waited through a gap (a subset of it, with the same
    /// bounds and precision).
    fn of(all: &Histogram<u64>, delayed: &Histogram<u64>) -> Option<Self> {
        if all.is_empty() {
            return None;
        }
        let share = |quantile: f64| {
            let from = all.value_at_quantile(quantile);
            let above = all.count_between(from, all.max());
            let waited = if delayed.is_empty() || delayed.max() < from {
                0
            } else {
                delayed.count_between(from, delayed.max())
            };
            waited as f64 / above.max(1) as f64
        };
        Some(Self {
            delayed: delayed.len(),
            p99: share(0.99),
            p999: share(0.999),
            max: share(1.0),
        })
    }
}

/// What the spinning thread saw.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Stalls {
    pub(crate) wall: Duration,
    /// Time lost in gaps longer than [`GAP`].
    pub(crate) lost: Duration,
    /// Gaps longer than 100 µs.
    pub(crate) over_100us: u64,
    /// Gaps longer than 1 ms.
    pub(crate) over_1ms: u64,
    pub(crate) max_gap: Duration,
}

impl Stalls {
    /// Spins for `d`.
    pub(crate) fn measure(d: Duration) -> Self {
        let start = Instant::now();
        let mut last = start;
        let mut stalls = Stalls {
            wall: Duration::ZERO,
            lost: Duration::ZERO,
            over_100us: 0,
            over_1ms: 0,
            max_gap: Duration::ZERO,
        };
        loop {
            let now = Instant::now();
            let gap = now - last;
            last = now;
            if gap > GAP {
                stalls.lost += gap;
                stalls.over_100us += u64::from(gap > Duration::from_micros(100));
                stalls.over_1ms += u64::from(gap > Duration::from_millis(1));
                stalls.max_gap = stalls.max_gap.max(gap);
            }
            if now - start >= d {
                stalls.wall = now - start;
                return stalls;
            }
        }
    }

    pub(crate) fn lost_percent(&self) -> f64 {
        100.0 * self.lost.as_secs_f64() / self.wall.as_secs_f64().max(1e-9)
    }

    /// The JSON line (`"bench":"kernel-stall"`), fields in alphabetical
    /// order as [`RowJson`](super::row::RowJson)'s.
    pub(crate) fn to_json(&self) -> impl Serialize {
        #[derive(Serialize)]
        struct Json {
            bench: &'static str,
            gaps_over_100us: u64,
            gaps_over_1ms: u64,
            lost_ns: u64,
            lost_percent: f64,
            max_gap_ns: u64,
            wall_ns: u64,
        }
        Json {
            bench: "kernel-stall",
            gaps_over_100us: self.over_100us,
            gaps_over_1ms: self.over_1ms,
            lost_ns: whole_ns(self.lost),
            lost_percent: self.lost_percent(),
            max_gap_ns: whole_ns(self.max_gap),
            wall_ns: whole_ns(self.wall),
        }
    }

    pub(crate) fn from_json(v: &Value) -> Option<Self> {
        let ns = |k: &str| v[k].as_u64().map(Duration::from_nanos);
        Some(Self {
            wall: ns("wall_ns")?,
            lost: ns("lost_ns")?,
            over_100us: v["gaps_over_100us"].as_u64()?,
            over_1ms: v["gaps_over_1ms"].as_u64()?,
            max_gap: ns("max_gap_ns")?,
        })
    }

    /// One line for the report.
    pub(crate) fn describe(&self) -> String {
        format!(
            "a thread spinning for {:.1} s was off its CPU {:.2}% of the time: {} gaps over 100 µs, \
             {} over 1 ms, the longest {:.2} ms",
            self.wall.as_secs_f64(),
            self.lost_percent(),
            self.over_100us,
            self.over_1ms,
            self.max_gap.as_secs_f64() * 1e3
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spins_and_survives_json() {
        let s = Stalls::measure(Duration::from_millis(20));
        assert!(s.wall >= Duration::from_millis(20));
        assert!(s.lost <= s.wall);
        let line = super::super::row::json(s.to_json());
        assert_eq!(Stalls::from_json(&line), Some(s));
    }

    #[test]
    fn loop_gaps_count_only_spans_over_the_threshold() {
        let mut g = LoopGaps::new().unwrap();
        let us = 1_000;
        // The first read only starts the count.
        g.at(1_000 * us);
        g.at(1_010 * us);
        g.at(1_040 * us);
        g.at(1_041 * us);
        g.at(1_541 * us);
        assert_eq!(
            g.gaps(),
            Gaps {
                count: 2,
                total: Duration::from_micros(530),
                max: Duration::from_micros(500)
            }
        );
        // After a restart, a gap counts from the restart, not from the last
        // read before it.
        g.restart_at(1_590 * us);
        assert_eq!(g.gaps(), Gaps::default());
        g.at(1_600 * us);
        assert_eq!(g.gaps(), Gaps::default());
        g.at(1_700 * us);
        assert_eq!(g.gaps().total, Duration::from_micros(100));
        let mut live = LoopGaps::new().unwrap();
        live.tick();
        std::thread::sleep(Duration::from_millis(2));
        live.tick();
        assert!(live.gaps().max >= Duration::from_millis(2));
    }

    #[test]
    fn a_record_is_delayed_by_gaps_only_if_they_cover_half_its_wait() {
        let us = 1_000;
        let mut g = LoopGaps::new().unwrap();
        let mut all = crate::bench::latency_histogram().unwrap();
        let mut reach = |g: &mut LoopGaps, now: u64, written: u64| {
            all.record(now - written).unwrap();
            g.record(now, written);
        };
        g.at(1_000 * us);
        // Written and reached with no gap between: 1 µs each.
        for i in 1..=97 {
            reach(&mut g, (1_000 + i) * us, (1_000 + i) * us - us);
        }
        // A 500 µs gap; the record written during it waits for its end,
        // and so does one written before it began: both delayed by it.
        reach(&mut g, 1_597 * us, 1_300 * us);
        reach(&mut g, 1_598 * us, 1_096 * us);
        // A 300 µs wait that a 25 µs gap merely overlaps: not delayed by
        // it (the loop did not see why it waited).
        for t in (1_600..=1_700).step_by(10) {
            g.at(t * us);
        }
        for t in (1_725..=1_895).step_by(10) {
            g.at(t * us);
        }
        reach(&mut g, 1_900 * us, 1_600 * us);
        let t = g.tail(&all).unwrap();
        assert_eq!(t.delayed, 2);
        assert_eq!(g.gaps().count, 2);
        // p99 is the 99th of 100, the 300 µs wait: of it and the 502 µs one
        // above it, one was delayed by a gap.
        assert!((t.p99 - 0.5).abs() < 1e-9, "{t:?}");
        // p99.9 and the max are the 502 µs wait.
        assert_eq!(t.p999, 1.0);
        assert_eq!(t.max, 1.0);
        // The restart forgets them, and a record written before it is not
        // tied to gaps that came before.
        g.restart_at(2_000 * us);
        assert_eq!(g.tail(&crate::bench::latency_histogram().unwrap()), None);
        g.record(2_001 * us, 1_650 * us);
        assert_eq!(g.delayed.len(), 0);
    }
}
