//! Statistics of repeated measurements: medians, spreads, and ratios paired
//! by round.
//!
//! Every round runs every variant once (in a rotating order), so the runs
//! of two variants with the same index come from the same minutes of the
//! machine's load. A ratio between two peers is taken round by round and
//! reported as the median of those, with their range: when the range
//! holds values on both sides of 1 (or of a target), the run cannot tell
//! which side is right, and the report says so instead of a verdict.

use crate::peers::{
    Peer,
    Sides, //
};
use crate::workload::Shape;

/// A cell whose spread is above this (`(max - min) / median`) is flagged:
/// a difference between two such cells smaller than this says nothing
/// about the rings.
pub const NOISY: f64 = 0.5;

/// The median of `values` (not empty).
pub fn median(values: &[f64]) -> f64 {
    rmemring_bench::median(values).expect("a series measured in at least one round")
}

/// The repeated measurements of one peer at one size (and one batch size,
/// for those that batch).
#[derive(Clone)]
pub struct Summary {
    pub peer: &'static Peer,
    /// Payload bytes per record, the mean of them if `mixed`.
    pub size: usize,
    /// The workload's payload sizes.
    pub shape: Shape,
    /// Payload bytes per batch, for the peers that batch.
    pub batch: Option<usize>,
    /// Records per second of each round, in round order.
    pub runs: Vec<f64>,
    /// Each side's cost on one core, once per round.
    pub sides: Vec<Sides>,
}

impl Summary {
    pub fn median(&self) -> f64 {
        median(&self.runs)
    }

    pub fn min(&self) -> f64 {
        self.runs.iter().copied().fold(f64::INFINITY, f64::min)
    }

    pub fn max(&self) -> f64 {
        self.runs.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    }

    /// `(max - min) / median` of the rounds' records/s.
    pub fn spread(&self) -> f64 {
        // A median of 0 records/s: nothing to compare, as noisy as it gets.
        rmemring_bench::spread(&self.runs).unwrap_or(f64::INFINITY)
    }

    /// Whether the spread is above [`NOISY`].
    pub fn noisy(&self) -> bool {
        self.spread() > NOISY
    }

    /// Payload bytes per second of the median round.
    pub fn bytes_per_s(&self) -> f64 {
        self.median() * self.size as f64
    }

    /// Ring bytes per record.
    pub fn ring_bytes(&self) -> usize {
        (self.peer.ring_bytes)(self.size)
    }

    /// The median producer and consumer nanoseconds per record on one core.
    pub fn sides(&self) -> Option<(f64, f64)> {
        if self.sides.is_empty() {
            return None;
        }
        let of = |side: fn(&Sides) -> f64| median(&self.sides.iter().map(side).collect::<Vec<_>>());
        Some((of(|s| s.producer_ns), of(|s| s.consumer_ns)))
    }
}

/// A ratio of two peers' records/s, round by round.
#[derive(Clone, Debug)]
pub struct Ratio {
    /// Each round's ratio, in round order.
    pub rounds: Vec<f64>,
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Ratio {
    /// `a`'s records/s over `b`'s, paired by round; `None` unless both ran
    /// the same rounds.
    pub fn of(a: &Summary, b: &Summary) -> Option<Self> {
        if a.runs.len() != b.runs.len() || a.runs.is_empty() {
            return None;
        }
        Some(Self::from_rounds(rmemring_bench::paired_ratios(
            &a.runs, &b.runs,
        )))
    }

    /// The ratio of one peer's records/s to a fixed `bar`, each round.
    pub fn to_bar(a: &Summary, bar: f64) -> Self {
        Self::from_rounds(a.runs.iter().map(|a| a / bar).collect())
    }

    fn from_rounds(rounds: Vec<f64>) -> Self {
        let (min, max) = rmemring_bench::range(&rounds).unwrap_or((f64::NAN, f64::NAN));
        Self {
            median: median(&rounds),
            min,
            max,
            rounds,
        }
    }

    /// Judged against "at least `bar`" by the rule every rmemring
    /// benchmark uses ([`rmemring_bench::judge`]): met only if every round
    /// clears it, missed only if none does, otherwise not resolved.
    pub fn judge(&self, bar: f64) -> rmemring_bench::Judgement {
        rmemring_bench::judge(&self.rounds, rmemring_bench::Target::AtLeast(bar))
            .expect("a ratio of at least one round")
    }

    /// Whether every round falls on the same side of `bar`.
    pub fn resolves(&self, bar: f64) -> bool {
        self.judge(bar).verdict != rmemring_bench::Verdict::NotResolved
    }
}
