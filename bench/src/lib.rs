//! The rules by which rmemring's benchmarks judge a figure, kept once.
//!
//! The host benchmark (`cargo bench -p rmemring --bench host`) and the
//! kernel benchmarks of the `rmemring` command (`rmemring bench`) measure
//! every series in rounds, and each round measures the series of a
//! comparison side by side, so that a drift of the machine's speed, or a
//! spell of other work, tends to fall on both. A comparison is therefore
//! taken round by round (a ratio of rates, [`paired_ratios`], or a
//! difference of costs) and judged against its target by one rule
//! ([`judge`]): **met** only if every round clears it, **missed** only if
//! none does, otherwise **not resolved**. A median alone can clear a target that half of the rounds
//! miss; this rule cannot.
//!
//! # Examples
//!
//! ```
//! use rmemring_bench::{judge, paired_ratios, Target, Verdict};
//!
//! // records/s of two rings, three rounds, measured side by side
//! let ratios = paired_ratios(&[130.0, 125.0, 140.0], &[100.0, 100.0, 110.0]);
//! let j = judge(&ratios, Target::AtLeast(1.2)).unwrap();
//! assert_eq!(j.verdict, Verdict::Met);
//! assert_eq!(format!("{:.2}..{:.2}", j.min, j.max), "1.25..1.30");
//! ```

#![forbid(unsafe_code)]

// The README's example runs as a test too.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

use core::fmt;

/// The median of `values` (the mean of the middle two of an even count),
/// or `None` if there are none.
///
/// # Examples
///
/// ```
/// assert_eq!(rmemring_bench::median(&[3.0, 1.0, 2.0]), Some(2.0));
/// assert_eq!(rmemring_bench::median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
/// assert_eq!(rmemring_bench::median(&[]), None);
/// ```
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// The smallest and largest of `values`, or `None` if there are none.
///
/// # Examples
///
/// ```
/// assert_eq!(rmemring_bench::range(&[2.0, -1.0, 5.0]), Some((-1.0, 5.0)));
/// ```
pub fn range(values: &[f64]) -> Option<(f64, f64)> {
    let first = *values.first()?;
    Some(
        values
            .iter()
            .fold((first, first), |(lo, hi), &x| (lo.min(x), hi.max(x))),
    )
}

/// `(max - min) / median` of `values`: how far apart a series' rounds
/// lie, as a share of its median; `None` if there are none or the median
/// is 0.
///
/// # Examples
///
/// ```
/// assert_eq!(rmemring_bench::spread(&[90.0, 100.0, 110.0]), Some(0.2));
/// ```
pub fn spread(values: &[f64]) -> Option<f64> {
    let (lo, hi) = range(values)?;
    let m = median(values)?;
    (m != 0.0).then(|| (hi - lo) / m)
}

/// `a[k] / b[k]` for each round `k` both measured (the shorter length).
///
/// # Examples
///
/// ```
/// assert_eq!(rmemring_bench::paired_ratios(&[2.0, 9.0], &[1.0, 3.0]), [2.0, 3.0]);
/// ```
pub fn paired_ratios(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(a, b)| a / b).collect()
}

/// What a paired figure must be, round by round.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    /// At least this (a ratio of rates: `>= 1.2` for "1.2× the peer").
    AtLeast(f64),
    /// More than this.
    Above(f64),
    /// Less than this (a difference of costs: `< 0` for "adds less than
    /// the peer").
    Below(f64),
}

impl Target {
    /// Whether one round's figure `x` clears the target.
    ///
    /// # Examples
    ///
    /// ```
    /// use rmemring_bench::Target;
    /// assert!(Target::AtLeast(2.0).clears(2.0));
    /// assert!(!Target::Above(2.0).clears(2.0));
    /// assert!(Target::Below(0.0).clears(-3.0));
    /// ```
    pub fn clears(self, x: f64) -> bool {
        match self {
            Target::AtLeast(t) => x >= t,
            Target::Above(t) => x > t,
            Target::Below(t) => x < t,
        }
    }
}

/// A target's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every round cleared the target.
    Met,
    /// No round cleared it.
    Missed,
    /// Some rounds cleared it and some did not: the run cannot tell.
    NotResolved,
}

impl fmt::Display for Verdict {
    /// `met`, `MISSED` (capitals, to stand out in a report) or `not
    /// resolved`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Met => "met",
            Verdict::Missed => "MISSED",
            Verdict::NotResolved => "not resolved",
        })
    }
}

/// A paired figure judged against its target: the verdict, the median
/// and range of the rounds, and how many rounds cleared it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Judgement {
    /// Met, missed or not resolved.
    pub verdict: Verdict,
    /// The median of the rounds' figures.
    pub median: f64,
    /// The smallest round's figure.
    pub min: f64,
    /// The largest round's figure.
    pub max: f64,
    /// Rounds that cleared the target.
    pub clear: usize,
    /// Rounds judged.
    pub rounds: usize,
}

/// Judges the rounds' paired figures against `target`: met only if every
/// round clears it, missed only if none does, otherwise not resolved.
/// `None` if there are no rounds.
///
/// # Examples
///
/// ```
/// use rmemring_bench::{judge, Target, Verdict};
///
/// // rmemring's added cost per event minus a peer's, three rounds
/// let j = judge(&[-20.0, -8.0, 3.0], Target::Below(0.0)).unwrap();
/// assert_eq!(j.verdict, Verdict::NotResolved);
/// assert_eq!((j.clear, j.rounds, j.median), (2, 3, -8.0));
///
/// let j = judge(&[0.9, 1.1], Target::AtLeast(1.2)).unwrap();
/// assert_eq!(j.verdict, Verdict::Missed);
/// ```
pub fn judge(rounds: &[f64], target: Target) -> Option<Judgement> {
    let median = median(rounds)?;
    let (min, max) = range(rounds)?;
    let clear = rounds.iter().filter(|&&x| target.clears(x)).count();
    let verdict = if clear == rounds.len() {
        Verdict::Met
    } else if clear == 0 {
        Verdict::Missed
    } else {
        Verdict::NotResolved
    };
    Some(Judgement {
        verdict,
        median,
        min,
        max,
        clear,
        rounds: rounds.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_median_that_clears_the_target_is_not_enough() {
        // Median 1.25, but two of five rounds below 1.2.
        let j = judge(&[1.25, 1.3, 1.1, 1.4, 1.15], Target::AtLeast(1.2)).unwrap();
        assert_eq!(j.median, 1.25);
        assert_eq!(j.verdict, Verdict::NotResolved);
        assert_eq!((j.clear, j.rounds), (3, 5));
    }

    #[test]
    fn every_round_or_none_decides() {
        let met = judge(&[1.2, 1.5], Target::AtLeast(1.2)).unwrap();
        assert_eq!(met.verdict, Verdict::Met);
        let missed = judge(&[1.2, 1.5], Target::Above(1.5)).unwrap();
        assert_eq!(missed.verdict, Verdict::Missed);
        assert_eq!(judge(&[], Target::Below(0.0)), None);
    }

    #[test]
    fn a_nan_round_clears_nothing() {
        // A round whose peer measured 0 records/s: 0/0 is no evidence.
        let j = judge(&[f64::NAN, 2.0], Target::AtLeast(1.0)).unwrap();
        assert_eq!(j.verdict, Verdict::NotResolved);
    }

    #[test]
    fn rounds_pair_by_index() {
        assert_eq!(paired_ratios(&[4.0, 6.0, 8.0], &[2.0, 3.0]), [2.0, 2.0]);
    }

    #[test]
    fn spread_is_relative_to_the_median() {
        assert_eq!(spread(&[50.0, 100.0, 150.0]), Some(1.0));
        assert_eq!(spread(&[0.0, 0.0]), None);
    }
}
