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

use std::time::{
    Duration,
    Instant, //
};

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

/// Counts a loop's gaps from its clock reads.
#[derive(Clone, Debug, Default)]
pub(crate) struct LoopGaps {
    /// The last clock read, in nanoseconds; 0 before the first.
    last: u64,
    gaps: Gaps,
}

impl LoopGaps {
    /// One clock read of the loop, `now` nanoseconds of `CLOCK_MONOTONIC`.
    #[inline]
    pub(crate) fn at(&mut self, now: u64) {
        let gap = now.saturating_sub(self.last);
        if self.last != 0 && gap > GAP.as_nanos() as u64 {
            let gap = Duration::from_nanos(gap);
            self.gaps.count += 1;
            self.gaps.total += gap;
            self.gaps.max = self.gaps.max.max(gap);
        }
        self.last = now;
    }

    /// Reads the clock: one look at the ring.
    #[inline]
    pub(crate) fn tick(&mut self) {
        self.at(rmemring::monotonic_ns());
    }

    /// Forgets the gaps so far (the warm-up's) as the window opens: the
    /// next one counts from now, so that the gaps fall inside the window.
    pub(crate) fn restart(&mut self) {
        self.restart_at(rmemring::monotonic_ns());
    }

    /// [`Self::restart`] at `now`.
    fn restart_at(&mut self, now: u64) {
        self.gaps = Gaps::default();
        self.last = now;
    }

    /// The gaps since the last restart.
    pub(crate) fn gaps(&self) -> Gaps {
        self.gaps
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
        let mut g = LoopGaps::default();
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
        let mut live = LoopGaps::default();
        live.tick();
        std::thread::sleep(Duration::from_millis(2));
        live.tick();
        assert!(live.gaps().max >= Duration::from_millis(2));
    }
}
