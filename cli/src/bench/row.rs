//! What one measurement found, and its JSON line.
//!
//! The lines are the benchmark's archive format: `--json` writes them and
//! `--input` reads them back to draw the table and chart again (the xtask
//! does that on the host with what the VM printed). With `--repeat N`
//! (N > 1) every round's row is a line of its own, `"bench":"kernel-round"`
//! with its `round` (1 to N) and `rounds` (N), written as the round ends;
//! the `"bench":"kernel"` line of each measurement is then its median
//! round, with the spread of all of them, as readers from before the
//! rounds were kept expect.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::Value;

use super::stall::{
    GapTail,
    Gaps, //
};

/// One implementation, mode, workload and record size.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Row {
    pub(crate) imp: String,
    pub(crate) mode: String,
    pub(crate) workload: String,
    /// Payload bytes per record.
    pub(crate) size: u32,
    /// Records delivered in the measured window.
    pub(crate) records: u64,
    /// Payload bytes delivered.
    pub(crate) bytes: u64,
    pub(crate) elapsed: Duration,
    /// CPU time (user + system) of the consuming thread.
    pub(crate) consumer_cpu: Duration,
    /// CPU time of the producing kernel thread (for the BPF peer, with the
    /// tracepoint and the BPF program, which run on it), if it was found.
    pub(crate) producer_cpu: Option<Duration>,
    /// The ring's mean fill, 0 to 1, as the consumer sampled it (see
    /// `sides.rs`); `None` where there is no ring (memcpy).
    pub(crate) fill: Option<f64>,
    /// Wake-ups of a sleeping consumer (see `docs/bench/kernel.md`).
    pub(crate) wakeups: u64,
    /// Times the consumer went to sleep, as it reports (a sleep that ends
    /// without a wake-up timed out); 0 where unknown.
    pub(crate) sleeps: u64,
    /// Records the producer dropped (or the peer lost).
    pub(crate) dropped: u64,
    /// Records that failed the consumer's checks.
    pub(crate) bad: u64,
    /// Latency from the producer's timestamp to the consumer, if measured.
    pub(crate) latency: Option<Latency>,
    /// The gaps in the consumer's own loop over the window, where counted
    /// (busy-polling in the paced workload; see `stall.rs`).
    pub(crate) gaps: Option<Gaps>,
    /// Where the gaps are counted: how much of the latency tail waited
    /// through one of them.
    pub(crate) gap_tail: Option<GapTail>,
    /// With repeated measurements: how many, and their records/s spread,
    /// `(max - min) / median`.
    pub(crate) spread: Option<(u32, f64)>,
}

/// The sample with the median records/s, with the spread of all of them.
pub(crate) fn median(mut samples: Vec<Row>) -> Option<Row> {
    samples.sort_by(|a, b| a.records_per_s().total_cmp(&b.records_per_s()));
    let n = samples.len();
    let (lo, hi) = (
        samples.first()?.records_per_s(),
        samples.last()?.records_per_s(),
    );
    let mut row = samples.swap_remove(n / 2);
    if n > 1 {
        row.spread = Some((n as u32, (hi - lo) / row.records_per_s().max(1e-9)));
    }
    Some(row)
}

/// One round of a measurement repeated with `--repeat` (its
/// `"bench":"kernel-round"` line): rounds of the same number ran in the
/// same pass over every measurement, and the two series of one ratio one
/// after the other (`plan`), so a drift of the machine's speed tends to
/// fall on both rows of a round.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Round {
    /// 1 to `rounds`.
    pub(crate) round: u32,
    pub(crate) rounds: u32,
    pub(crate) row: Row,
}

impl Round {
    /// The JSON line: the row's, `"bench":"kernel-round"`, with the round.
    pub(crate) fn to_json(&self) -> RowJson<'_> {
        RowJson {
            bench: "kernel-round",
            round: Some(self.round),
            rounds: Some(self.rounds),
            ..self.row.to_json()
        }
    }

    pub(crate) fn from_json(v: &Value) -> Option<Self> {
        Some(Self {
            round: u32::try_from(v["round"].as_u64()?).ok()?,
            rounds: u32::try_from(v["rounds"].as_u64()?).ok()?,
            row: Row::from_json(v)?,
        })
    }
}

/// A mean fill at or above this: the producer waited for room (or the
/// BPF peer's would have), so the consumer bounds the rate.
pub(crate) const BOUND_FULL: f64 = 0.5;
/// A mean fill at or below this: the consumer found the ring nearly empty,
/// so the producer bounds the rate.
pub(crate) const BOUND_EMPTY: f64 = 0.25;

/// Which side of a flat-out measurement limits its rate, from the ring's
/// mean fill ([`BOUND_FULL`], [`BOUND_EMPTY`]) and the records dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bound {
    /// The ring was mostly full, or the peer dropped records.
    Consumer,
    /// The ring was mostly empty.
    Producer,
    /// In between: each side waited for the other part of the time.
    Both,
    /// The paced workload: the producer's rate, by design.
    Paced,
}

impl Bound {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Bound::Consumer => "consumer",
            Bound::Producer => "producer",
            Bound::Both => "both",
            Bound::Paced => "rate",
        }
    }
}

/// The workload names of older runs, as they are called now: `headers`
/// (blank payloads, headers read) and `verify` (filled, every byte read).
pub(crate) fn canonical_workload(name: &str) -> &str {
    match name {
        "headers" => "blank-headers",
        "verify" => "filled-bytes",
        other => other,
    }
}

/// Percentiles of the latency histogram, in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Latency {
    pub(crate) p50: u64,
    pub(crate) p99: u64,
    pub(crate) p999: u64,
    pub(crate) max: u64,
}

impl Latency {
    pub(crate) fn of(h: &Histogram<u64>) -> Option<Self> {
        (!h.is_empty()).then(|| Self {
            p50: h.value_at_quantile(0.50),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        })
    }
}

impl Row {
    pub(crate) fn records_per_s(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub(crate) fn bytes_per_s(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub(crate) fn cpu_ns_per_record(&self) -> f64 {
        self.consumer_cpu.as_nanos() as f64 / self.records.max(1) as f64
    }

    /// The producer's CPU time per record delivered.
    pub(crate) fn producer_ns_per_record(&self) -> Option<f64> {
        self.producer_cpu
            .map(|cpu| cpu.as_nanos() as f64 / self.records.max(1) as f64)
    }

    /// Producer CPU time over wall time, in percent.
    pub(crate) fn producer_percent(&self) -> Option<f64> {
        self.producer_cpu
            .map(|cpu| 100.0 * cpu.as_secs_f64() / self.elapsed.as_secs_f64().max(1e-9))
    }

    /// Which side bounds the rate: [`Bound`].
    pub(crate) fn bound(&self) -> Option<Bound> {
        if self.workload == "paced" {
            return Some(Bound::Paced);
        }
        if self.dropped > 0 {
            return Some(Bound::Consumer);
        }
        let fill = self.fill?;
        Some(if fill >= BOUND_FULL {
            Bound::Consumer
        } else if fill <= BOUND_EMPTY {
            Bound::Producer
        } else {
            Bound::Both
        })
    }

    pub(crate) fn wakeups_per_record(&self) -> f64 {
        self.wakeups as f64 / self.records.max(1) as f64
    }

    /// The share of the window the consumer's loop spent in gaps, 0 to 1.
    pub(crate) fn gap_share(&self) -> Option<f64> {
        self.gaps
            .map(|g| g.total.as_secs_f64() / self.elapsed.as_secs_f64().max(1e-9))
    }

    /// Consumer CPU time over wall time, in percent.
    pub(crate) fn cpu_percent(&self) -> f64 {
        100.0 * self.consumer_cpu.as_secs_f64() / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The row's JSON line, with the rates and shares it implies.
    pub(crate) fn to_json(&self) -> RowJson<'_> {
        let lat = |f: fn(&Latency) -> u64| self.latency.as_ref().map(f);
        RowJson {
            bad: self.bad,
            bench: "kernel",
            bound: self.bound().map(Bound::name),
            bytes: self.bytes,
            bytes_per_s: self.bytes_per_s(),
            consumer_cpu_ns: whole_ns(self.consumer_cpu),
            cpu_ns_per_record: self.cpu_ns_per_record(),
            cpu_percent: self.cpu_percent(),
            dropped: self.dropped,
            elapsed_ns: whole_ns(self.elapsed),
            gap_delayed: self.gap_tail.map(|t| t.delayed),
            gap_share_max: self.gap_tail.map(|t| t.max),
            gap_share_p99: self.gap_tail.map(|t| t.p99),
            gap_share_p999: self.gap_tail.map(|t| t.p999),
            imp: &self.imp,
            loop_gap_max_ns: self.gaps.map(|g| whole_ns(g.max)),
            loop_gap_ns: self.gaps.map(|g| whole_ns(g.total)),
            loop_gaps: self.gaps.map(|g| g.count),
            max_ns: lat(|l| l.max),
            mode: &self.mode,
            p50_ns: lat(|l| l.p50),
            p999_ns: lat(|l| l.p999),
            p99_ns: lat(|l| l.p99),
            producer_cpu_ns: self.producer_cpu.map(whole_ns),
            producer_ns_per_record: self.producer_ns_per_record(),
            records: self.records,
            records_per_s: self.records_per_s(),
            ring_fill: self.fill,
            round: None,
            rounds: None,
            samples: self.spread.map_or(1, |s| s.0),
            size: self.size,
            sleeps: self.sleeps,
            spread: self.spread.map(|s| s.1),
            wakeups: self.wakeups,
            wakeups_per_record: self.wakeups_per_record(),
            workload: &self.workload,
        }
    }

    pub(crate) fn from_json(v: &Value) -> Option<Self> {
        let u = |k: &str| v[k].as_u64();
        let s = |k: &str| v[k].as_str().map(str::to_owned);
        let latency = match (u("p50_ns"), u("p99_ns"), u("p999_ns"), u("max_ns")) {
            (Some(p50), Some(p99), Some(p999), Some(max)) => Some(Latency {
                p50,
                p99,
                p999,
                max,
            }),
            _ => None,
        };
        Some(Self {
            imp: s("impl")?,
            mode: s("mode")?,
            workload: canonical_workload(&s("workload")?).to_owned(),
            size: u32::try_from(u("size")?).ok()?,
            records: u("records")?,
            bytes: u("bytes")?,
            elapsed: Duration::from_nanos(u("elapsed_ns")?),
            consumer_cpu: Duration::from_nanos(u("consumer_cpu_ns")?),
            producer_cpu: u("producer_cpu_ns").map(Duration::from_nanos),
            fill: v["ring_fill"].as_f64(),
            wakeups: u("wakeups")?,
            sleeps: u("sleeps").unwrap_or(0),
            dropped: u("dropped")?,
            bad: u("bad").unwrap_or(0),
            latency,
            gaps: match (u("loop_gaps"), u("loop_gap_ns"), u("loop_gap_max_ns")) {
                (Some(count), Some(total), Some(max)) => Some(Gaps {
                    count,
                    total: Duration::from_nanos(total),
                    max: Duration::from_nanos(max),
                }),
                _ => None,
            },
            gap_tail: match (
                u("gap_delayed"),
                v["gap_share_p99"].as_f64(),
                v["gap_share_p999"].as_f64(),
                v["gap_share_max"].as_f64(),
            ) {
                (Some(delayed), Some(p99), Some(p999), Some(max)) => Some(GapTail {
                    delayed,
                    p99,
                    p999,
                    max,
                }),
                _ => None,
            },
            spread: match (u("samples"), v["spread"].as_f64()) {
                (Some(n), Some(s)) if n > 1 => Some((u32::try_from(n).ok()?, s)),
                _ => None,
            },
        })
    }
}

/// A duration in whole nanoseconds, as the JSON lines have them.
pub(crate) fn whole_ns(d: Duration) -> u64 {
    d.as_nanos() as u64
}

/// The JSON line of a [`Row`] (`"bench":"kernel"`) or a [`Round`]
/// (`"bench":"kernel-round"`). The fields of these
/// lines are in alphabetical order: the order they had when they were
/// `serde_json` maps.
#[derive(Serialize)]
pub(crate) struct RowJson<'a> {
    bad: u64,
    bench: &'static str,
    bound: Option<&'static str>,
    bytes: u64,
    bytes_per_s: f64,
    consumer_cpu_ns: u64,
    cpu_ns_per_record: f64,
    cpu_percent: f64,
    dropped: u64,
    elapsed_ns: u64,
    gap_delayed: Option<u64>,
    gap_share_max: Option<f64>,
    gap_share_p99: Option<f64>,
    gap_share_p999: Option<f64>,
    #[serde(rename = "impl")]
    imp: &'a str,
    loop_gap_max_ns: Option<u64>,
    loop_gap_ns: Option<u64>,
    loop_gaps: Option<u64>,
    max_ns: Option<u64>,
    mode: &'a str,
    p50_ns: Option<u64>,
    p999_ns: Option<u64>,
    p99_ns: Option<u64>,
    producer_cpu_ns: Option<u64>,
    producer_ns_per_record: Option<f64>,
    records: u64,
    records_per_s: f64,
    ring_fill: Option<f64>,
    /// A `kernel-round` line's round, 1 to `rounds`; not in `kernel` lines.
    #[serde(skip_serializing_if = "Option::is_none")]
    round: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rounds: Option<u32>,
    samples: u32,
    size: u32,
    sleeps: u64,
    spread: Option<f64>,
    wakeups: u64,
    wakeups_per_record: f64,
    workload: &'a str,
}

/// A consumer waiting with nothing to read.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct IdleRow {
    pub(crate) imp: String,
    pub(crate) mode: String,
    pub(crate) wall: Duration,
    pub(crate) cpu: Duration,
}

impl IdleRow {
    pub(crate) fn cpu_percent(&self) -> f64 {
        100.0 * self.cpu.as_secs_f64() / self.wall.as_secs_f64().max(1e-9)
    }

    /// The JSON line (`"bench":"kernel-idle"`), fields in alphabetical
    /// order as [`RowJson`]'s.
    pub(crate) fn to_json(&self) -> impl Serialize + '_ {
        #[derive(Serialize)]
        struct Json<'a> {
            bench: &'static str,
            cpu_ns: u64,
            cpu_percent: f64,
            #[serde(rename = "impl")]
            imp: &'a str,
            mode: &'a str,
            wall_ns: u64,
        }
        Json {
            bench: "kernel-idle",
            cpu_ns: whole_ns(self.cpu),
            cpu_percent: self.cpu_percent(),
            imp: &self.imp,
            mode: &self.mode,
            wall_ns: whole_ns(self.wall),
        }
    }

    pub(crate) fn from_json(v: &Value) -> Option<Self> {
        Some(Self {
            imp: v["impl"].as_str()?.to_owned(),
            mode: v["mode"].as_str()?.to_owned(),
            wall: Duration::from_nanos(v["wall_ns"].as_u64()?),
            cpu: Duration::from_nanos(v["cpu_ns"].as_u64()?),
        })
    }
}

/// An implementation, or one of its measurements, that could not run, and
/// why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Skip {
    pub(crate) imp: String,
    /// The measurement that failed; `None` when none of the
    /// implementation's could run.
    pub(crate) cell: Option<Cell>,
    pub(crate) reason: String,
}

/// One measurement of one round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Cell {
    pub(crate) mode: String,
    pub(crate) workload: String,
    pub(crate) size: u32,
    pub(crate) round: u32,
    pub(crate) rounds: u32,
}

impl Skip {
    /// `bpf busy-poll, headers, 4096 B (round 1 of 3): REASON`.
    pub(crate) fn describe(&self) -> String {
        match &self.cell {
            None => format!("{}: {}", self.imp, self.reason),
            Some(c) => format!(
                "{} {}, {}, {} B (round {} of {}): {}",
                self.imp, c.mode, c.workload, c.size, c.round, c.rounds, self.reason
            ),
        }
    }

    /// The JSON line (`"bench":"kernel-skip"`), with the measurement's
    /// fields only if it is one measurement that failed; fields in
    /// alphabetical order as [`RowJson`]'s.
    pub(crate) fn to_json(&self) -> impl Serialize + '_ {
        #[derive(Serialize)]
        struct Json<'a> {
            bench: &'static str,
            #[serde(rename = "impl")]
            imp: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            mode: Option<&'a str>,
            reason: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            round: Option<u32>,
            #[serde(skip_serializing_if = "Option::is_none")]
            rounds: Option<u32>,
            #[serde(skip_serializing_if = "Option::is_none")]
            size: Option<u32>,
            #[serde(skip_serializing_if = "Option::is_none")]
            workload: Option<&'a str>,
        }
        let cell = self.cell.as_ref();
        Json {
            bench: "kernel-skip",
            imp: &self.imp,
            mode: cell.map(|c| c.mode.as_str()),
            reason: &self.reason,
            round: cell.map(|c| c.round),
            rounds: cell.map(|c| c.rounds),
            size: cell.map(|c| c.size),
            workload: cell.map(|c| c.workload.as_str()),
        }
    }

    pub(crate) fn from_json(v: &Value) -> Option<Self> {
        let cell = (|| {
            Some(Cell {
                mode: v["mode"].as_str()?.to_owned(),
                workload: v["workload"].as_str()?.to_owned(),
                size: u32::try_from(v["size"].as_u64()?).ok()?,
                round: u32::try_from(v["round"].as_u64()?).ok()?,
                rounds: u32::try_from(v["rounds"].as_u64()?).ok()?,
            })
        })();
        Some(Self {
            imp: v["impl"].as_str()?.to_owned(),
            cell,
            reason: v["reason"].as_str()?.to_owned(),
        })
    }
}

/// What a JSON line reads back as, after checking that its text is what
/// the `serde_json` map it replaces printed (a `Value`'s keys are sorted).
/// The map is built from the line itself, not parsed from its text:
/// without serde_json's `float_roundtrip` a parsed float may differ in its
/// last digit (41.361005366793556 read back as 41.36100536679355), which
/// made the check fail now and then on measured values.
#[cfg(test)]
pub(crate) fn json(line: impl Serialize) -> Value {
    let text = serde_json::to_string(&line).unwrap();
    let map = serde_json::to_value(&line).unwrap();
    assert_eq!(text, map.to_string(), "keys out of alphabetical order");
    serde_json::from_str(&text).unwrap()
}

/// A row for tests: `records` in one second, half of it on the CPU.
#[cfg(test)]
pub(crate) fn sample(imp: &str, mode: &str, workload: &str, size: u32, records: u64) -> Row {
    Row {
        imp: imp.into(),
        mode: mode.into(),
        workload: workload.into(),
        size,
        records,
        bytes: records * u64::from(size),
        elapsed: Duration::from_secs(1),
        consumer_cpu: Duration::from_millis(500),
        producer_cpu: Some(Duration::from_millis(900)),
        fill: Some(0.9),
        wakeups: records / 1000,
        sleeps: records / 1000,
        dropped: 0,
        bad: 0,
        latency: Some(Latency {
            p50: 1000,
            p99: 1500,
            p999: 2000,
            max: 5000,
        }),
        gaps: None,
        gap_tail: None,
        spread: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_fill_names_the_bounding_side() {
        let at = |fill: Option<f64>, dropped: u64, workload: &str| Row {
            fill,
            dropped,
            workload: workload.into(),
            ..sample("rmemring", "busy-poll", "filled-bytes", 64, 1000)
        };
        let bound = |r: Row| r.bound().map(Bound::name);
        assert_eq!(bound(at(Some(0.9), 0, "filled-bytes")), Some("consumer"));
        assert_eq!(
            bound(at(Some(BOUND_FULL), 0, "filled-bytes")),
            Some("consumer")
        );
        assert_eq!(bound(at(Some(0.01), 0, "filled-bytes")), Some("producer"));
        assert_eq!(bound(at(Some(0.4), 0, "filled-bytes")), Some("both"));
        // Drops mean the consumer could not keep up, however full.
        assert_eq!(bound(at(Some(0.01), 5, "blank-headers")), Some("consumer"));
        assert_eq!(bound(at(None, 0, "blank-headers")), None);
        assert_eq!(bound(at(Some(0.0), 0, "paced")), Some("rate"));
    }

    #[test]
    fn rows_survive_json() {
        let row = Row {
            imp: "rmemring".into(),
            mode: "busy-poll".into(),
            workload: "blank-headers".into(),
            size: 4096,
            records: 1_000_000,
            bytes: 4_096_000_000,
            elapsed: Duration::from_millis(1500),
            consumer_cpu: Duration::from_millis(1499),
            producer_cpu: Some(Duration::from_millis(700)),
            fill: Some(0.5),
            wakeups: 3,
            sleeps: 4,
            dropped: 0,
            bad: 0,
            latency: Some(Latency {
                p50: 1000,
                p99: 1500,
                p999: 3000,
                max: 90_000,
            }),
            gaps: Some(Gaps {
                count: 7,
                total: Duration::from_micros(900),
                max: Duration::from_micros(400),
            }),
            gap_tail: Some(GapTail {
                delayed: 12,
                p99: 0.75,
                p999: 1.0,
                max: 1.0,
            }),
            spread: Some((3, 0.125)),
        };
        assert_eq!(Row::from_json(&json(row.to_json())), Some(row.clone()));
        // Older runs' workload names are read as today's.
        let mut old = json(row.to_json());
        old["workload"] = "verify".into();
        assert_eq!(Row::from_json(&old).unwrap().workload, "filled-bytes");
        let no_latency = Row {
            latency: None,
            gaps: None,
            gap_tail: None,
            producer_cpu: None,
            fill: None,
            ..row
        };
        assert_eq!(
            Row::from_json(&json(no_latency.to_json())),
            Some(no_latency.clone())
        );
        let samples = [3u64, 1, 2].map(|r| Row {
            records: r * 1000,
            spread: None,
            ..no_latency.clone()
        });
        let median = median(samples.to_vec()).unwrap();
        assert_eq!(median.records, 2000);
        assert_eq!(median.spread.map(|s| s.0), Some(3));
        assert!((median.spread.unwrap().1 - 1.0).abs() < 1e-9);
        let idle = IdleRow {
            imp: "read".into(),
            mode: "blocking".into(),
            wall: Duration::from_secs(1),
            cpu: Duration::from_micros(40),
        };
        assert_eq!(IdleRow::from_json(&json(idle.to_json())), Some(idle));
    }

    #[test]
    fn rounds_survive_json_and_median_lines_have_no_round() {
        let round = Round {
            round: 2,
            rounds: 3,
            row: sample("bpf", "poll", "filled-bytes", 4096, 12_345),
        };
        let line = json(round.to_json());
        assert_eq!(line["bench"], "kernel-round");
        assert_eq!(Round::from_json(&line), Some(round.clone()));
        // The median row's line is as it was before rounds were kept.
        let median = json(round.row.to_json());
        assert_eq!(median["bench"], "kernel");
        assert!(median.get("round").is_none() && median.get("rounds").is_none());
        assert_eq!(Round::from_json(&median), None);
    }

    #[test]
    fn skips_survive_json() {
        let whole = Skip {
            imp: "bpf".into(),
            cell: None,
            reason: "not built in".into(),
        };
        assert_eq!(Skip::from_json(&json(whole.to_json())), Some(whole.clone()));
        // Without a measurement, no measurement's fields (not nulls).
        assert_eq!(
            serde_json::to_string(&whole.to_json()).unwrap(),
            r#"{"bench":"kernel-skip","impl":"bpf","reason":"not built in"}"#
        );
        assert_eq!(whole.describe(), "bpf: not built in");
        let one = Skip {
            cell: Some(Cell {
                mode: "busy-poll".into(),
                workload: "headers".into(),
                size: 4096,
                round: 2,
                rounds: 3,
            }),
            ..whole
        };
        assert_eq!(Skip::from_json(&json(one.to_json())), Some(one.clone()));
        assert_eq!(
            one.describe(),
            "bpf busy-poll, headers, 4096 B (round 2 of 3): not built in"
        );
    }
}
