//! Host throughput: rmemring (one reservation per record, and fixed-size
//! records reserved many at a time) against `rtrb` (as a byte ring and as
//! a typed ring), crossbeam's `ArrayQueue` (boxed records passed and
//! recycled, and records by value) and `memcpy`, two threads on one
//! machine.
//!
//! ```text
//! cargo bench -p rmemring --bench host -- [--quick] [--one-core] [--json] [--no-pin] [--no-nice]
//!                                         [--reps N] [--ring BYTES] [--batch BYTES]...
//!                                         [--size BYTES]... [--rings BYTES]... [--no-rings]
//!                                         [PEER]...
//! cargo bench -p rmemring --bench host -- --list
//! cargo bench -p rmemring --bench host -- --input FILE
//! ```
//!
//! Every peer ([`peers::PEERS`]) runs the same workload for each payload
//! size (8 B, 64 B, 1 KiB, 4 KiB, 64 KiB; [`workload`]):
//!
//! - a producer thread writes `warm + timed` records, each rmemring's
//!   24-byte header and a payload of a stamp word derived from the sequence
//!   number, the middle copied from a source buffer, and a second stamp
//!   word: every payload byte is written;
//! - a consumer thread reads every record and checks its sequence number,
//!   its length and the two stamp words, not every byte;
//! - each ring holds 1 MiB (`--ring`); the peers with a batch API publish
//!   and release records in batches of 4, 16 or 64 KiB of payload, each
//!   measured, and each is reported at the batch size that suits it best;
//! - the clock starts when the consumer has seen `warm` records (two laps
//!   of the ring, so page faults and cold caches are behind it) and stops
//!   at the last one.
//!
//! Then the 64 B cell of the like-for-like and fixed-size peers again
//! with rings of 1, 4, 16 and 64 MiB (`--rings`; skipped with `--no-rings`,
//! and unless asked for when `--size` or `--mixed` chooses the
//! workloads), at the middle batch size, 16 KiB
//! ([`ring_sweep`]): whether the ratios hold once the ring no longer fits
//! a core's cache.
//!
//! Each measurement is repeated (7 rounds, 5 with `--quick`), every
//! variant once per round in a rotating order; the report shows each
//! cell's median and spread and the ratios between peers round by round
//! ([`stats`]). Each side's cost on one core is measured too, without the
//! second thread; `--one-core` measures only that, once (for counting
//! instructions under valgrind). The producer and the consumer are pinned to two CPUs of
//! different cores ([`threads::cpu_pair`]) unless `--no-pin` is given; and
//! unless `--no-nice` is given, the process runs at nice -19 in a session
//! of its own where that is allowed ([`threads::raise_priority`]).
//!
//! Output ([`report`]): a header naming the machine and its load, a
//! Markdown table, what each peer does per record, and the issue's targets,
//! met, missed or not resolved. With `--json`, stdout carries only one JSON
//! object per measurement and line,
//! `{"bench":"host","impl":"rmemring","size":64,"records_per_s":…,"bytes_per_s":…,…}`:
//! those five keys first and in that order, then the extras
//! ([`report::json_line`]); the human-readable text goes to stderr.
//! `--input FILE` renders such lines as Markdown (the tables, the targets,
//! what each peer does: [`report::markdown`]; `cargo xtask bench --host`
//! writes `docs/bench/host-latest.md` with it); `--list` prints the peers'
//! names, one a line. How each peer is used, and why:
//! `docs/bench/host.md`.

mod peers;
mod report;
mod stats;
mod threads;
mod workload;

use std::time::Instant;

use peers::{
    Peer,
    PEERS, //
};
use report::{
    human_rate,
    human_size, //
};
use stats::Summary;
use threads::{
    CpuSample,
    Placement, //
};
use workload::{
    Shape,
    Workload,
    MIXED_MAX,
    RING_BYTES,
    SIZES, //
};

/// The batch sizes, in payload bytes per publication and release, that the
/// batching peers are measured with (`--batch` chooses others).
const BATCHES: [usize; 3] = [4 << 10, 16 << 10, 64 << 10];

/// The rings of the ring-size table (`--rings` chooses others).
const SWEEP_RINGS: [usize; 4] = [1 << 20, 4 << 20, 16 << 20, 64 << 20];

/// The payload size and batch of the ring-size table: the 64 B cell of
/// the like-for-like target (`rmemring`, `rmemring-many` against
/// `rtrb-bytes`) and of the fixed-size one (`rtrb-typed`), the peers with
/// [`Peer::sweep`], at the middle batch size.
const SWEEP_SIZE: usize = 64;
const SWEEP_BATCH: usize = 16 << 10;

/// How often the peers without batches read the clock for their records'
/// timestamps: once per this many payload bytes, as the batching peers do
/// with their middle batch size.
const STAMP_BYTES: usize = 16 << 10;

/// Command-line settings.
pub struct Config {
    quick: bool,
    /// Only each side's cost on one core, once per peer and size.
    one_core: bool,
    json: bool,
    place: Placement,
    nice: bool,
    reps: usize,
    ring_bytes: usize,
    /// The workloads: the payload sizes, then the mixed one.
    shapes: Vec<Shape>,
    /// The rings of the ring-size table (empty: no table).
    rings: Vec<usize>,
    peers: Vec<&'static Peer>,
    batches: Vec<usize>,
    /// `--list`: print the peers' names and run nothing.
    list: bool,
    /// `--input FILE`: render the JSON lines of an earlier `--json` run as
    /// Markdown and run nothing.
    input: Option<String>,
}

impl Config {
    fn from_args() -> Result<Self, String> {
        let mut config = Config {
            quick: false,
            one_core: false,
            json: false,
            place: Placement {
                pin: true,
                cpus: threads::cpu_pair(),
            },
            nice: true,
            reps: 0,
            ring_bytes: RING_BYTES,
            shapes: Vec::new(),
            rings: Vec::new(),
            peers: Vec::new(),
            batches: Vec::new(),
            list: false,
            input: None,
        };
        let mut args = std::env::args().skip(1);
        let (mut sizes, mut mixed, mut no_rings) = (Vec::new(), false, false);
        while let Some(arg) = args.next() {
            if arg == "--input" {
                config.input = Some(args.next().ok_or("--input needs a file")?);
                continue;
            }
            let mut value = |name: &str| -> Result<usize, String> {
                let value = args.next().ok_or(format!("{name} needs a value"))?;
                value
                    .parse()
                    .map_err(|_| format!("{name} {value}: not a number"))
            };
            match arg.as_str() {
                "--list" => config.list = true,
                "--quick" => config.quick = true,
                "--one-core" => config.one_core = true,
                "--json" => config.json = true,
                "--no-pin" => config.place.pin = false,
                "--no-nice" => config.nice = false,
                // `cargo bench` passes `--bench` to every bench binary.
                "--bench" => {}
                "--size" => sizes.push(value("--size")?),
                "--mixed" => mixed = true,
                "--batch" => config.batches.push(value("--batch")?),
                "--ring" => config.ring_bytes = value("--ring")?,
                "--rings" => config.rings.push(value("--rings")?),
                "--no-rings" => no_rings = true,
                "--reps" => config.reps = value("--reps")?,
                "-h" | "--help" => {
                    return Err(format!(
                        "usage: host [--quick] [--one-core] [--json] [--no-pin] [--no-nice] [--reps N] \
                         [--ring BYTES] [--batch BYTES]... [--size BYTES]... [--mixed] \
                         [--rings BYTES]... [--no-rings] [{}]...\n       \
                         host --list | --input FILE",
                        PEERS.iter().map(|p| p.name).collect::<Vec<_>>().join("|")
                    ))
                }
                name => match PEERS.iter().find(|p| p.name == name) {
                    Some(peer) => config.peers.push(peer),
                    None => return Err(format!("unknown argument {name:?} (try --help)")),
                },
            }
        }
        let ring = config.ring_bytes;
        let bad_ring =
            |ring: usize| !ring.is_power_of_two() || !(64 << 10..=1 << 30).contains(&ring);
        if let Some(ring) = std::iter::once(ring)
            .chain(config.rings.iter().copied())
            .find(|&r| bad_ring(r))
        {
            return Err(format!(
                "--ring/--rings {ring}: need a power of two from 65536 to 2^30"
            ));
        }
        if let Some(size) = sizes.iter().find(|&&s| s < 8 || s % 8 != 0 || s > ring / 8) {
            return Err(format!(
                "--size {size}: need a multiple of 8 from 8 to {} (an eighth of the ring)",
                ring / 8
            ));
        }
        // rmemring's producer publishes on its own once a batch reaches a
        // quarter of the ring.
        if let Some(batch) = config.batches.iter().find(|&&b| b == 0 || b > ring / 4) {
            return Err(format!("--batch {batch}: need 1 to {} bytes", ring / 4));
        }
        if config.reps == 0 {
            config.reps = if config.quick { 5 } else { 7 };
        }
        // Neither `--size` nor `--mixed`: every size, then the mixed one,
        // then the ring-size table.
        if sizes.is_empty() && !mixed {
            (sizes, mixed) = (SIZES.to_vec(), true);
            if config.rings.is_empty() {
                config.rings = SWEEP_RINGS.to_vec();
            }
        }
        if no_rings {
            config.rings.clear();
        }
        config.shapes = sizes
            .into_iter()
            .map(|size| Shape { size, mixed: false })
            .collect();
        if mixed {
            config.shapes.push(Shape {
                size: MIXED_MAX,
                mixed: true,
            });
        }
        if config.peers.is_empty() {
            config.peers = PEERS.iter().collect();
        }
        if config.batches.is_empty() {
            config.batches = BATCHES.to_vec();
        }
        Ok(config)
    }
}

/// Measures every variant of one size (each peer, at each batch size for
/// those that batch), round after round; returns them with their runs in
/// round order.
fn measure(config: &Config, w: &Workload) -> Vec<Summary> {
    let mut variants: Vec<Summary> = Vec::new();
    for &peer in &config.peers {
        let batches: Vec<Option<usize>> = if peer.batches {
            config.batches.iter().copied().map(Some).collect()
        } else {
            vec![None]
        };
        for batch in batches {
            variants.push(Summary {
                peer,
                size: w.size,
                shape: w.shape,
                batch,
                runs: Vec::new(),
                sides: Vec::new(),
            });
        }
    }
    for round in 0..config.reps {
        // Rotate the order so no variant always runs first.
        let n = variants.len();
        for k in 0..n {
            let v = &mut variants[(k + round) % n];
            let batch = w.records_per_batch(v.batch.unwrap_or(STAMP_BYTES));
            if let Some(t) = (v.peer.run)(config.place, w, batch) {
                v.runs.push(t.records_per_s());
            }
            if let Some(sides) = (v.peer.sides)(w, batch) {
                v.sides.push(sides);
            }
        }
    }
    variants.retain(|s| s.runs.len() == config.reps);
    variants
}

/// The ring-size table: the 64 B cell of the peers with [`Peer::sweep`]
/// (those of them the command line chose) in each of `config.rings`, at batches of
/// [`SWEEP_BATCH`], as many rounds as the main table; its rows, JSON lines
/// and target lines.
fn ring_sweep(config: &Config) -> (String, Vec<String>, String) {
    let peers: Vec<&'static Peer> = config.peers.iter().copied().filter(|p| p.sweep).collect();
    let sweep = Config {
        peers,
        batches: vec![SWEEP_BATCH],
        shapes: Vec::new(),
        rings: Vec::new(),
        input: None,
        ..*config
    };
    let shape = Shape {
        size: SWEEP_SIZE,
        mixed: false,
    };
    let (mut rows, mut json, mut targets) = (String::new(), Vec::new(), String::new());
    for &ring in &config.rings {
        let w = Workload::new(shape, ring, config.quick);
        let cell = measure(&sweep, &w);
        rows.push_str(&report::ring_rows(ring, &cell));
        json.extend(cell.iter().map(|s| report::json_line(s, ring, true)));
        targets.push_str(&report::ring_targets(&cell, &human_size(ring)));
    }
    (rows, json, targets)
}

/// `--one-core`: each side's cost alone, once per peer and size at the
/// first batch size, on this thread, with the number of records it covers:
/// for counting instructions per record, say under
/// `valgrind --tool=callgrind`, where two spinning threads would measure
/// the spinning.
fn one_core(config: &Config) {
    for &shape in &config.shapes {
        let w = Workload::new(shape, config.ring_bytes, config.quick);
        let records = w.warm + w.timed / 4;
        for peer in &config.peers {
            let batch = w.records_per_batch(config.batches[0]);
            if let Some(s) = (peer.sides)(&w, batch) {
                println!(
                    "{} {}: producer {:.1} ns, consumer {:.1} ns per record; {records} records \
                     each side, batches of {batch}",
                    shape.label(),
                    peer.name,
                    s.producer_ns,
                    s.consumer_ns
                );
            }
        }
    }
}

fn main() {
    let config = match Config::from_args() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    // Human-readable text goes to stdout, or to stderr when stdout is JSON.
    let say = |text: &str| {
        if config.json {
            eprint!("{text}");
        } else {
            print!("{text}");
        }
    };
    if config.list {
        for peer in PEERS {
            println!("{}", peer.name);
        }
        return;
    }
    if let Some(file) = &config.input {
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| {
            eprintln!("{file}: {e}");
            std::process::exit(1);
        });
        match report::parse(&text) {
            Ok(lines) => print!("{}", report::markdown(&lines)),
            Err(e) => {
                eprintln!("{file}: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    if config.one_core {
        one_core(&config);
        return;
    }
    let niced = config.nice && threads::raise_priority();
    say(&report::header(&config, niced));
    // `memcpy` and the one-core sides run on this thread: on the producer's
    // CPU, as the producer of every two-thread run.
    if config.place.pin {
        threads::pin(config.place.cpus.0);
    }
    say(&format!("\n{}\n", report::TABLE_HEAD));
    let began = Instant::now();
    let mut all = Vec::new();
    let mut load = Vec::new();
    let mut sweep = Vec::new();
    for &shape in &config.shapes {
        let w = Workload::new(shape, config.ring_bytes, config.quick);
        let before = CpuSample::now();
        let variants = measure(&config, &w);
        for v in variants.iter().filter(|v| v.batch.is_some()) {
            sweep.push(format!(
                "{} {} batch {}: {} (spread {:.0}%)",
                shape.label(),
                v.peer.name,
                human_size(v.batch.unwrap_or(0)),
                human_rate(v.median()),
                v.spread() * 100.0
            ));
        }
        // Each peer at the batch size that suits it best.
        let mut cell: Vec<Summary> = Vec::new();
        for v in variants {
            match cell.iter_mut().find(|c| c.peer.name == v.peer.name) {
                Some(c) if c.median() >= v.median() => {}
                Some(c) => *c = v,
                None => cell.push(v),
            }
        }
        if let (Some(before), Some(after)) = (before, CpuSample::now()) {
            let (others, steal) = after.others_since(&before);
            load.push(format!(
                "{}: {others:.0}% others, {steal:.0}% steal",
                shape.label()
            ));
        }
        say(&report::table_rows(&cell));
        if config.json {
            for s in &cell {
                println!("{}", report::json_line(s, config.ring_bytes, false));
            }
        }
        all.extend(cell);
    }
    if !config.rings.is_empty() {
        let (rows, json, targets) = ring_sweep(&config);
        say(&format!(
            "\nring sizes: the {} cell at batches of {}, the same rounds as above\n\n{}\n{rows}\n\
             targets by ring size (median of the rounds' ratios; met only if every round clears \
             the bar, missed only if none does, otherwise not resolved):\n{targets}",
            human_size(SWEEP_SIZE),
            human_size(SWEEP_BATCH),
            report::RING_TABLE_HEAD
        ));
        if config.json {
            for line in json {
                println!("{line}");
            }
        }
    }
    say(&format!(
        "\n{}\n{}\nrecords per cell: {} timed after a warm-up of two ring laps (a quarter of \
         them for the one-core sides); total time {:.1} s; load average {} at the end\n\
         CPU time not ours during each size (of all CPUs): {}\n\
         medians of every batch size (records/s):\n  {}\n",
        report::legend(),
        report::targets(&all),
        config
            .shapes
            .iter()
            .map(|&s| format!(
                "{}: {}",
                s.label(),
                human_rate(Workload::new(s, config.ring_bytes, config.quick).timed as f64)
            ))
            .collect::<Vec<_>>()
            .join(", "),
        began.elapsed().as_secs_f64(),
        threads::load_average(),
        load.join("; "),
        sweep.join("\n  ")
    ));
}
