//! `Consumer::read_copy` alone: how fast one thread copies records out of
//! a ring, in both overflow modes, with the ring in the cache; and what one
//! clock read for a record timestamp costs (`monotonic_ns`).
//!
//! ```text
//! cargo bench -p rmemring --bench copy
//! ```
//!
//! Each round pushes half a ring (512 KiB) of records and publishes them,
//! then times reading them all back with `read_copy`; about 200 MiB of
//! payload per measurement, the best of 7 measurements shown. This
//! measures the copy (word-wise atomic loads, see `RingView::copy_payload_out`)
//! and the per-record overhead, not the core-to-core transfer of
//! `benches/host/`.

use std::sync::Arc;
use std::time::{
    Duration,
    Instant, //
};

use rmemring::{
    CreateOptions,
    Overflow,
    Region, //
};

const RING: u64 = 1 << 20;
const SIZES: [usize; 5] = [8, 64, 1000, 4096, 65536];

fn measure(overflow: Overflow, size: usize) -> f64 {
    let region =
        Arc::new(Region::memfd(CreateOptions::new(RING).overflow(overflow)).expect("memfd ring"));
    let mut producer = region.producer().expect("producer");
    let mut consumer = region.consumer().expect("consumer");
    let payload = vec![7u8; size];
    let per_round = (RING as usize / 2 / (size + 24)).max(1);
    let rounds = (200 << 20) / (per_round * size);
    let mut best = 0f64;
    for _ in 0..7 {
        let (mut elapsed, mut bytes) = (Duration::ZERO, 0u64);
        for _ in 0..rounds.max(1) {
            for _ in 0..per_round {
                producer.push(&payload).expect("room for half a ring");
            }
            producer.publish();
            let start = Instant::now();
            while let Some(record) = consumer.read_copy().expect("a valid record") {
                bytes += record.payload.len() as u64;
            }
            elapsed += start.elapsed();
        }
        best = best.max(bytes as f64 / elapsed.as_secs_f64());
    }
    best
}

/// Nanoseconds per `monotonic_ns()` call, the best of 7 runs of 1 M calls.
fn clock_ns() -> f64 {
    let calls = 1_000_000u32;
    (0..7)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..calls {
                std::hint::black_box(rmemring::monotonic_ns());
            }
            start.elapsed().as_secs_f64() * 1e9 / f64::from(calls)
        })
        .fold(f64::MAX, f64::min)
}

fn main() {
    println!(
        "monotonic_ns(): {:.1} ns per call (best of 7)\n",
        clock_ns()
    );
    println!("| mode | size | GB/s (best of 7) |\n|---|---:|---:|");
    for overflow in [Overflow::DropNew, Overflow::OverwriteOldest] {
        for size in SIZES {
            let mode = match overflow {
                Overflow::DropNew => "drop-new",
                Overflow::OverwriteOldest => "overwrite",
            };
            println!(
                "| {mode} | {size} B | {:.1} |",
                measure(overflow, size) / 1e9
            );
        }
    }
}
