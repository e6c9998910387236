//! How much a spinning thread is kept off its CPU: the machine's own
//! latency floor, measured beside the latency of the paths.
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

use serde_json::{
    json,
    Value, //
};

/// Shorter gaps count as running (a clock read under TCG alone can take
/// a microsecond or two).
const GAP: Duration = Duration::from_micros(20);

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

    pub(crate) fn to_json(&self) -> Value {
        json!({
            "bench": "kernel-stall",
            "wall_ns": self.wall.as_nanos() as u64,
            "lost_ns": self.lost.as_nanos() as u64,
            "lost_percent": self.lost_percent(),
            "gaps_over_100us": self.over_100us,
            "gaps_over_1ms": self.over_1ms,
            "max_gap_ns": self.max_gap.as_nanos() as u64,
        })
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
        assert_eq!(Stalls::from_json(&s.to_json()), Some(s));
    }
}
