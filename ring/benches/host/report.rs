//! The report: the header, the table, the JSON lines and the targets.

use std::fmt::Write as _;

use rmemring_bench::Verdict;

use crate::peers::{
    Sides,
    PEERS, //
};
use crate::stats::{
    Ratio,
    Summary,
    NOISY, //
};
use crate::threads::{
    load_average,
    nice_value, //
};
use crate::workload::{
    Shape,
    MIXED_MAX,
    MIXED_MEAN, //
};
use crate::Config;

pub fn human_size(size: usize) -> String {
    if size >= 1 << 20 && size % (1 << 20) == 0 {
        format!("{} MiB", size >> 20)
    } else if size >= 1024 && size % 1024 == 0 {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

pub fn human_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.1} M", r / 1e6)
    } else {
        format!("{:.1} k", r / 1e3)
    }
}

/// The machine and settings, for the header.
pub fn header(config: &Config, niced: bool) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let usable = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    // The tree the benchmark was built from, for the figures' provenance.
    let source = std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or("unknown".into(), |o| {
            String::from_utf8_lossy(&o.stdout).trim().to_owned()
        });
    let mut h = String::new();
    let _ = writeln!(
        h,
        "# rmemring host benchmark: one producer and one consumer thread (source {source})"
    );
    let _ = writeln!(
        h,
        "machine: {model}, {cpus} CPUs ({usable} usable), Linux {}; load average {} at the start",
        kernel.trim(),
        load_average()
    );
    let _ = writeln!(
        h,
        "ring: {} each; the batching peers publish and release batches of {} of payload, \
         and each is shown at its best; {} rounds, every variant once per round in a rotating \
         order; median shown, spread = (max - min) / median{}",
        human_size(config.ring_bytes),
        config
            .batches
            .iter()
            .map(|&b| human_size(b))
            .collect::<Vec<_>>()
            .join(" / "),
        config.reps,
        if config.quick { "; --quick" } else { "" }
    );
    let (producer_cpu, consumer_cpu) = config.place.cpus;
    let _ = writeln!(
        h,
        "threads: {}; {} (nice {})",
        if config.place.pin {
            format!(
                "producer pinned to CPU {producer_cpu}, consumer to CPU {consumer_cpu} \
                 (sched_setaffinity) for every peer; memcpy and the one-core sides on CPU {producer_cpu}"
            )
        } else {
            "not pinned".into()
        },
        if niced {
            "a session of its own at nice -19"
        } else {
            "the priority it was started with"
        },
        nice_value()
    );
    let _ = writeln!(
        h,
        "work per record, every peer: the producer writes the 24-byte header and every payload \
         byte; the consumer checks the header's sequence number and length and the first and \
         last payload words (not every byte; crossbeam-value's `pop` copies every byte out)"
    );
    h
}

pub const TABLE_HEAD: &str = "\
| size | peer | batch | ring B/record | records/s | GB/s | spread | rmemring/peer (rounds' range) | producer ns/record, 1 core | consumer ns/record, 1 core |\n\
|-----:|------|------:|-----:|----------:|-----:|-------:|------:|-----:|-----:|";

/// The head of the ring-size table: the main table's, a ring column first.
pub const RING_TABLE_HEAD: &str = "\
| ring | size | peer | batch | ring B/record | records/s | GB/s | spread | rmemring/peer (rounds' range) | producer ns/record, 1 core | consumer ns/record, 1 core |\n\
|-----:|-----:|------|------:|-----:|----------:|-----:|-------:|------:|-----:|-----:|";

/// The ratio column: the median of the rounds' ratios and their range,
/// with `?` where the rounds disagree on which peer is faster.
fn ratio_cell(r: &Ratio) -> String {
    format!(
        "{:.2}× ({:.2}-{:.2}){}",
        r.median,
        r.min,
        r.max,
        if r.resolves(1.0) { "" } else { " ?" }
    )
}

/// The rows of one size's cell, with the ratios to its rmemring row.
pub fn table_rows(cell: &[Summary]) -> String {
    let ours = cell.iter().find(|s| s.peer.name == "rmemring");
    let mut out = String::new();
    for s in cell {
        let ratio = match ours {
            Some(ours) if s.peer.name != "rmemring" => {
                Ratio::of(ours, s).map_or(String::new(), |r| ratio_cell(&r))
            }
            _ => String::new(),
        };
        let (producer, consumer) = s.sides().map_or(("-".into(), "-".into()), |(p, c)| {
            (format!("{p:.1}"), format!("{c:.1}"))
        });
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {:.2} | {:.1}%{} | {} | {} | {} |",
            s.shape.label(),
            s.peer.name,
            s.batch.map_or("-".into(), human_size),
            s.ring_bytes(),
            human_rate(s.median()),
            s.bytes_per_s() / 1e9,
            s.spread() * 100.0,
            if s.noisy() { " ⚠" } else { "" },
            ratio,
            producer,
            consumer,
        );
    }
    out
}

/// What the marks and columns of the table mean, a paragraph a line.
fn notes() -> String {
    format!(
        "mixed: payload sizes drawn from the multiples of 8 from 8 to {MIXED_MAX} B, equally \
         likely (a pseudo-random function of the sequence number, which the consumer checks \
         too); size in the JSON lines and GB/s from their mean, {MIXED_MEAN} B. The fixed-size \
         peers do not run it: their records would all be as large as the largest.\n\
         ⚠: spread above {:.0}%, too noisy to carry a difference smaller than that; \
         ?: the rounds disagree on which of the two peers is faster (the ratio is not resolved).\n\
         ring B/record: ring bytes each record moves through the ring (header and payload; \
         crossbeam's queue slots too: a stamp word each, and the boxed peer's buffer pointer \
         in each of its two queues; its buffers rounded up to 128 B). \
         batch: the batching peers (rmemring, rmemring-many, rmemring-span, rtrb) are each shown at the \
         best of three batch sizes; crossbeam and memcpy have no batch to choose, a choice \
         that favours the batching peers in their ratios over them. \
         1 core: each side alone on one CPU, the ring in its cache (fill it, then drain it), \
         so the cost of each side's code without the cache-line transfers between cores.\n",
        NOISY * 100.0
    )
}

/// What the marks of the table mean, and what every peer does.
pub fn legend() -> String {
    let mut out = notes();
    for peer in PEERS {
        let _ = writeln!(out, "  {}: {}", peer.name, peer.per_record);
    }
    out
}

/// The rows of the ring-size table for one ring's cell: the main table's,
/// the ring first.
pub fn ring_rows(ring: usize, cell: &[Summary]) -> String {
    let label = human_size(ring);
    table_rows(cell)
        .lines()
        .map(|row| format!("| {label} {row}\n"))
        .collect()
}

/// One JSON line of a `--json` run, read back ([`parse`]).
pub struct Line {
    pub summary: Summary,
    /// The ring's bytes.
    pub ring_bytes: usize,
    /// Whether it belongs to the ring-size table.
    pub ring_sweep: bool,
}

/// Reads back the JSON lines of a `--json` run (lines of other benches and
/// blank lines are skipped): every round's records/s, each side's cost.
pub fn parse(text: &str) -> Result<Vec<Line>, String> {
    let mut lines = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("not JSON ({e}): {line}"))?;
        if v["bench"] != "host" {
            continue;
        }
        let bad = |key: &str| format!("no valid {key:?}: {line}");
        let name = v["impl"].as_str().ok_or_else(|| bad("impl"))?;
        let peer = PEERS
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| format!("unknown peer {name:?}: {line}"))?;
        let number = |key: &str| v[key].as_u64().map(|n| n as usize).ok_or_else(|| bad(key));
        let size = number("size")?;
        let mixed = v["mixed"].as_bool().ok_or_else(|| bad("mixed"))?;
        let runs: Vec<f64> = v["rounds"]
            .as_array()
            .and_then(|r| r.iter().map(serde_json::Value::as_f64).collect())
            .filter(|r: &Vec<f64>| !r.is_empty())
            .ok_or_else(|| bad("rounds"))?;
        let side = |key: &str| v[key].as_f64();
        let sides = side("producer_ns_one_core")
            .zip(side("consumer_ns_one_core"))
            .map(|(producer_ns, consumer_ns)| Sides {
                producer_ns,
                consumer_ns,
            });
        lines.push(Line {
            summary: Summary {
                peer,
                size,
                shape: Shape {
                    size: if mixed { MIXED_MAX } else { size },
                    mixed,
                },
                batch: v["batch_bytes"].as_u64().map(|b| b as usize),
                runs,
                sides: sides.into_iter().collect(),
            },
            ring_bytes: number("ring_bytes")?,
            ring_sweep: v["ring_sweep"].as_bool().ok_or_else(|| bad("ring_sweep"))?,
        });
    }
    if lines.is_empty() {
        return Err("no host benchmark lines".into());
    }
    Ok(lines)
}

/// The report of a `--json` run's lines ([`parse`]) in Markdown: the main
/// table, the ring-size table, the targets, and what the columns mean and
/// each peer does.
pub fn markdown(lines: &[Line]) -> String {
    let mut md = String::new();
    let (sweep, main): (Vec<&Line>, Vec<&Line>) = lines.iter().partition(|l| l.ring_sweep);
    // Consecutive lines of one workload (and ring) form a cell.
    let cells = |lines: &[&Line]| -> Vec<(usize, Vec<Summary>)> {
        let mut cells: Vec<(usize, Vec<Summary>)> = Vec::new();
        for l in lines {
            let s = l.summary.clone();
            match cells.last_mut() {
                Some((ring, cell)) if *ring == l.ring_bytes && cell[0].shape == s.shape => {
                    cell.push(s)
                }
                _ => cells.push((l.ring_bytes, vec![s])),
            }
        }
        cells
    };
    let mut all = Vec::new();
    let mut targets = String::new();
    if !main.is_empty() {
        let rings: Vec<String> = main.iter().map(|l| human_size(l.ring_bytes)).collect();
        let _ = writeln!(
            md,
            "## Each peer at its best batch size\n\nRing: {}; {} rounds.\n\n{TABLE_HEAD}",
            rings[0],
            main[0].summary.runs.len()
        );
        for (_, cell) in cells(&main) {
            md += &table_rows(&cell);
            all.extend(cell);
        }
        targets += &self::targets(&all);
    }
    if let Some(first) = sweep.first() {
        let _ = writeln!(
            md,
            "\n## Ring sizes\n\nThe {} cell at batches of {}, {} rounds.\n\n{RING_TABLE_HEAD}",
            first.summary.shape.label(),
            first.summary.batch.map_or("-".into(), human_size),
            first.summary.runs.len()
        );
        targets += "targets by ring size (median of the rounds' ratios; met only if every round \
                    clears the bar, missed only if none does, otherwise not resolved):\n";
        for (ring, cell) in cells(&sweep) {
            md += &ring_rows(ring, &cell);
            targets += &ring_targets(&cell, &human_size(ring));
        }
    }
    let _ = writeln!(md, "\n## Targets\n\n```text\n{targets}```\n");
    let _ = writeln!(md, "## What the columns mean and what each peer does\n");
    for note in notes().lines() {
        let _ = writeln!(md, "{note}\n");
    }
    for peer in PEERS {
        let _ = writeln!(md, "- `{}`: {}", peer.name, peer.per_record);
    }
    md
}

/// One measurement as a JSON object: the issue's five keys first, in the
/// issue's order, then the extras (`serde_json`'s maps would sort the keys).
///
/// `ring_sweep` says whether the line is one of the ring-size table's.
pub fn json_line(s: &Summary, ring_bytes: usize, ring_sweep: bool) -> String {
    let sides = s.sides();
    let fields: [(&str, serde_json::Value); 17] = [
        ("bench", "host".into()),
        ("impl", s.peer.name.into()),
        ("size", s.size.into()),
        ("records_per_s", s.median().into()),
        ("bytes_per_s", s.bytes_per_s().into()),
        ("batch_bytes", s.batch.into()),
        ("runs", s.runs.len().into()),
        ("spread", s.spread().into()),
        ("min_records_per_s", s.min().into()),
        ("max_records_per_s", s.max().into()),
        ("mixed", s.shape.mixed.into()),
        ("ring_bytes", ring_bytes.into()),
        ("ring_bytes_per_record", s.ring_bytes().into()),
        ("producer_ns_one_core", sides.map(|s| s.0).into()),
        ("consumer_ns_one_core", sides.map(|s| s.1).into()),
        ("ring_sweep", ring_sweep.into()),
        ("rounds", s.runs.clone().into()),
    ];
    let body: Vec<String> = fields
        .iter()
        .map(|(key, value)| format!("{}:{value}", serde_json::Value::from(*key)))
        .collect();
    format!("{{{}}}", body.join(","))
}

/// One target's line: met, missed (and by how much) or not resolved, by
/// the rule every rmemring benchmark judges a paired figure by
/// ([`rmemring_bench::judge`]: met only if every round clears the bar,
/// missed only if none does).
fn verdict_line(out: &mut String, what: &str, r: &Ratio, bar: f64, unit: &dyn Fn(f64) -> String) {
    let j = r.judge(bar);
    // How far the median falls short: by a factor, as the bar is one.
    let short = format!("{:.2}x", bar / r.median);
    let verdict = match j.verdict {
        Verdict::Met => "met".to_owned(),
        Verdict::Missed => format!("MISSED by {short}"),
        Verdict::NotResolved => format!(
            "not resolved: {} of {} rounds clear it, {} to {}{}",
            j.clear,
            j.rounds,
            unit(r.min),
            unit(r.max),
            if r.median < bar {
                format!("; the median short by {short}")
            } else {
                String::new()
            }
        ),
    };
    let _ = writeln!(out, "  {what:<52} {:<10} {verdict}", unit(r.median));
}

fn times(r: f64) -> String {
    format!("{r:.2}x")
}

/// The 64 B targets against the `rtrb` peers: rmemring with one
/// reservation per record (any sizes), with records of any sizes laid out
/// in spans (`reserve_span`), and with fixed-size records reserved many at
/// a time (`reserve_many`), each line saying which.
const PAIRS: [(&str, &str, f64, &str); 5] = [
    ("rmemring", "rtrb-bytes", 1.2, "like-for-like, same header"),
    (
        "rmemring-span",
        "rtrb-bytes",
        1.2,
        "same, any sizes, reserve_span",
    ),
    (
        "rmemring-many",
        "rtrb-bytes",
        1.2,
        "same, fixed size, reserve_many",
    ),
    (
        "rmemring",
        "rtrb-typed",
        0.5,
        "fixed-size records, within 2x",
    ),
    ("rmemring-many", "rtrb-typed", 0.5, "same, reserve_many"),
];

/// The 64 B targets against the `rtrb` peers in one ring of the ring-size
/// table (`cell`, labelled `ring`).
pub fn ring_targets(cell: &[Summary], ring: &str) -> String {
    let get = |name: &str| cell.iter().find(|s| s.peer.name == name);
    let mut out = String::new();
    for (ours, peer, bar, why) in PAIRS {
        if let Some(r) = get(ours)
            .zip(get(peer))
            .and_then(|(ours, p)| Ratio::of(ours, p))
        {
            let what = format!("{ring}: {ours} / {peer} >= {bar}x ({why})");
            verdict_line(&mut out, &what, &r, bar, &times);
        }
    }
    out
}

pub fn targets(all: &[Summary]) -> String {
    let get = |name: &str, size: usize| {
        let shape = Shape { size, mixed: false };
        all.iter().find(|s| s.peer.name == name && s.shape == shape)
    };
    let mut out = String::from(
        "targets (median of the rounds' ratios; met only if every round clears the bar, \
         missed only if none does, otherwise not resolved):\n",
    );
    let mut line = |what: String, r: Ratio, bar: f64, unit: &dyn Fn(f64) -> String| {
        verdict_line(&mut out, &what, &r, bar, unit);
    };
    let percent = |r: f64| format!("{:.0}%", r * 100.0);
    let pairs = PAIRS.into_iter().chain([
        ("rmemring", "crossbeam", 3.0, "boxed records, recycled"),
        ("rmemring", "crossbeam-value", 3.0, "popped by value"),
    ]);
    for (ours, peer, bar, why) in pairs {
        if let Some(r) = get(ours, 64)
            .zip(get(peer, 64))
            .and_then(|(ours, p)| Ratio::of(ours, p))
        {
            line(
                format!("64 B: {ours} / {peer} >= {bar}x ({why})"),
                r,
                bar,
                &times,
            );
        }
    }
    if let Some(ours) = get("rmemring", 8) {
        let r = Ratio::to_bar(ours, 100e6);
        line("8 B: rmemring >= 100 M records/s".into(), r, 1.0, &|r| {
            format!("{:.1} M/s", r * 100.0)
        });
    }
    for size in [4096, 65536] {
        if let (Some(ours), Some(limit)) = (get("rmemring", size), get("memcpy", size)) {
            if let Some(r) = Ratio::of(ours, limit) {
                line(
                    format!("{}: rmemring >= 80% of memcpy", human_size(size)),
                    r,
                    0.8,
                    &percent,
                );
            }
        }
    }
    out
}
