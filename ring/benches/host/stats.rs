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
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
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
        (self.max() - self.min()) / self.median()
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
#[derive(Clone, Copy, Debug)]
pub struct Ratio {
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
        let r: Vec<f64> = a.runs.iter().zip(&b.runs).map(|(a, b)| a / b).collect();
        Some(Self::from_rounds(&r))
    }

    /// The ratio of one peer's records/s to a fixed `bar`, each round.
    pub fn to_bar(a: &Summary, bar: f64) -> Self {
        let r: Vec<f64> = a.runs.iter().map(|a| a / bar).collect();
        Self::from_rounds(&r)
    }

    fn from_rounds(r: &[f64]) -> Self {
        Self {
            median: median(r),
            min: r.iter().copied().fold(f64::INFINITY, f64::min),
            max: r.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        }
    }

    /// Whether every round falls on the same side of `bar`.
    pub fn resolves(&self, bar: f64) -> bool {
        self.min >= bar || self.max < bar
    }
}
