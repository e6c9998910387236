//! The limit: `memcpy` of the same bytes on one core.
//!
//! Each "record" is its whole stride (header, payload, padding), copied
//! from a source as large as the ring's data area into a destination as
//! large, in order, wrapping like the ring. No path that moves the records'
//! bytes once can beat this; the zero-copy consumer of the headers-only
//! workload does not move them at all, and so may.

use std::hint::black_box;
use std::time::Instant;

use rmemring::layout::record_stride;

use super::row::Row;
use super::{
    thread_cpu,
    Timing,
    Workload, //
};
use crate::fail;
use crate::signals;

pub(crate) fn run(
    workload: Workload,
    size: u32,
    area: usize,
    timing: Timing,
) -> anyhow::Result<Row> {
    let stride = record_stride(size) as usize;
    let area = area.max(stride);
    // Filled, so that every page is faulted in before the clock starts.
    let src: Vec<u8> = (0..area).map(|i| i as u8).collect();
    let mut dst = vec![0xa5u8; area];
    // Check the clock about every MiB.
    let chunk = ((1 << 20) / stride).max(1);
    let mut off = 0usize;
    let mut copy = |n: usize| {
        for _ in 0..n {
            if off + stride > area {
                off = 0;
            }
            dst[off..off + stride].copy_from_slice(&src[off..off + stride]);
            off += stride;
        }
        black_box(&mut dst);
    };
    let warm = Instant::now();
    while warm.elapsed() < timing.warmup {
        copy(chunk);
    }
    let (start, cpu) = (Instant::now(), thread_cpu());
    let mut records = 0u64;
    // At least one chunk: a thread descheduled for the whole window right
    // after reading the clock (a loaded machine) still measures something.
    loop {
        if signals::stop_requested() {
            return Err(fail::with_status(fail::INTERRUPTED, "interrupted"));
        }
        copy(chunk);
        records += chunk as u64;
        if start.elapsed() >= timing.duration {
            break;
        }
    }
    let (elapsed, cpu) = (start.elapsed(), thread_cpu().saturating_sub(cpu));
    Ok(Row {
        imp: super::peer::MEMCPY.to_owned(),
        mode: "one-core".to_owned(),
        workload: workload.name().to_owned(),
        size,
        records,
        bytes: records * u64::from(size),
        elapsed,
        consumer_cpu: cpu,
        producer_cpu: None,
        fill: None,
        wakeups: 0,
        sleeps: 0,
        dropped: 0,
        bad: 0,
        latency: None,
        gaps: None,
        gap_tail: None,
        spread: None,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn copies_something() {
        let timing = Timing {
            warmup: Duration::from_millis(1),
            duration: Duration::from_millis(20),
            ..Timing::default()
        };
        let row = run(Workload::FilledBytes, 64, 1 << 16, timing).unwrap();
        assert!(row.records > 0);
        assert_eq!(row.bytes, row.records * 64);
        assert!(row.elapsed >= Duration::from_millis(20));
    }
}
