//! Streams records from the kernel producer and verifies every one.
//!
//! Starts the driver's producer on `/dev/rmemring0`, consumes zero-copy,
//! checks each record's sequence number, length and payload, and prints
//! records/s and GB/s:
//!
//! ```text
//! rmemring-consume --seconds 5 --size 8..4096
//! rmemring-consume --count 10000000 --size 64 --wait
//! ```

use std::sync::Arc;
use std::time::{
    Duration,
    Instant, //
};

use anyhow::{
    bail,
    Context, //
};
use clap::Parser;
use rmemring::layout::FLAG_OVERWRITE;
use rmemring::uapi::{
    ProducerConfig,
    ResetConfig,
    PRODUCER_WAIT, //
};
use rmemring::{
    pattern,
    Access,
    Region,
    Wait, //
};

/// Stream verified records from the rmemring kernel producer.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The ring device.
    #[arg(long, default_value = "/dev/rmemring0")]
    device: String,
    /// Stop after this many seconds.
    #[arg(long, conflicts_with = "count")]
    seconds: Option<f64>,
    /// Stop after this many records (delivered plus lost).
    #[arg(long)]
    count: Option<u64>,
    /// Payload size in bytes, or a range MIN..MAX.
    #[arg(long, default_value = "64", value_parser = parse_size)]
    size: (u32, u32),
    /// Records per second, 0 for as fast as possible.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Make the producer wait for room instead of dropping records.
    #[arg(long)]
    wait: bool,
    /// Busy-poll instead of sleeping when the ring is empty.
    #[arg(long)]
    busy_poll: bool,
    /// Fail unless every record arrives (no drops).
    #[arg(long)]
    no_loss: bool,
    /// Put the ring in overwrite-oldest mode (a flight recorder) first.
    #[arg(long)]
    overwrite: bool,
    /// Be a slow consumer: sleep this many microseconds after every batch.
    #[arg(long, default_value_t = 0)]
    slow_us: u64,
}

/// What the consumer saw.
#[derive(Default)]
struct Tally {
    records: u64,
    bytes: u64,
    bad: u64,
    /// The sequence number after the last record delivered.
    next_seq: u64,
}

impl Tally {
    fn check(&mut self, record: &rmemring::Record<'_>, (min_len, max_len): (u32, u32)) {
        let want_len = pattern::payload_len(record.seq, min_len, max_len);
        if record.seq < self.next_seq
            || record.payload.len() != want_len as usize
            || !pattern::verify(record.seq, record.payload)
        {
            if self.bad < 5 {
                eprintln!(
                    "bad record: seq {} (expected >= {}), len {} (expected {want_len})",
                    record.seq,
                    self.next_seq,
                    record.payload.len()
                );
            }
            self.bad += 1;
        }
        self.next_seq = record.seq + 1;
        self.records += 1;
        self.bytes += record.payload.len() as u64;
    }
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let parse = |t: &str| t.trim().parse::<u32>().map_err(|e| format!("{t:?}: {e}"));
    match s.split_once("..") {
        Some((a, b)) => Ok((parse(a)?, parse(b)?)),
        None => {
            let n = parse(s)?;
            Ok((n, n))
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut region = Region::open(&args.device, Access::Consume)?;
    let reset = ResetConfig {
        flags: if args.overwrite { FLAG_OVERWRITE } else { 0 },
        ..Default::default()
    };
    region.reset(&reset)?;
    let region = Arc::new(region);
    let layout = *region.layout();
    let (min_len, max_len) = args.size;
    if max_len > layout.max_payload {
        bail!(
            "--size {max_len} exceeds the ring's maximum payload of {}",
            layout.max_payload
        );
    }
    let mut consumer = region.consumer()?;
    if args.busy_poll {
        consumer.set_wait(Wait::BusyPoll);
    }
    let count = args.count.unwrap_or(0);
    let config = ProducerConfig {
        min_len,
        max_len,
        count,
        rate: args.rate,
        flags: if args.wait { PRODUCER_WAIT } else { 0 },
        ..Default::default()
    };
    println!(
        "rmemring-consume: {} ({:#x} bytes at {:#x}, data area {} KiB), payloads {}..={} B{}",
        args.device,
        layout.region_size,
        layout.phys_base,
        layout.data_size / 1024,
        min_len,
        max_len,
        if args.wait {
            ", producer waits for room"
        } else {
            ""
        }
    );
    let deadline = args.seconds.map(Duration::from_secs_f64);
    let start = Instant::now();
    region.start(&config).context("starting the producer")?;

    let mut tally = Tally::default();
    let mut stopped = false;
    loop {
        let done = count != 0 && tally.records + consumer.stats().lost >= count;
        let timed_out = deadline.is_some_and(|d| start.elapsed() >= d);
        if (done || timed_out) && !stopped {
            region.stop()?;
            stopped = true;
        }
        if stopped && consumer.backlog()? == 0 {
            break;
        }
        if !consumer.wait(Some(Duration::from_millis(100)))? {
            continue;
        }
        if args.overwrite {
            while let Some(record) = consumer.read_copy()? {
                tally.check(&record, args.size);
            }
        } else {
            for record in &mut consumer.batch()? {
                tally.check(&record?, args.size);
            }
        }
        if args.slow_us != 0 {
            std::thread::sleep(Duration::from_micros(args.slow_us));
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let stats = region.stats()?;
    let Tally {
        records,
        bytes,
        bad,
        next_seq,
    } = tally;
    let lost = consumer.stats().lost;
    // Records dropped or overwritten after the last one delivered leave no
    // gap before a delivered record; count them from the producer's total.
    let attempted = stats.records_produced + stats.records_dropped;
    let trailing = attempted.saturating_sub(next_seq);
    println!(
        "{records} records, {:.1} MiB in {elapsed:.2} s: {:.3} M records/s, {:.3} GB/s",
        bytes as f64 / (1 << 20) as f64,
        records as f64 / elapsed / 1e6,
        bytes as f64 / elapsed / 1e9
    );
    println!(
        "lost {} ({lost} in gaps, {trailing} after the last record; producer dropped {}, overwrote {}), \
         wake-ups {} ({:.4} per record), sleeps {}",
        lost + trailing,
        stats.records_dropped,
        stats.records_overwritten,
        stats.wakeups,
        stats.wakeups as f64 / records.max(1) as f64,
        consumer.stats().sleeps
    );
    if bad != 0 {
        bail!("{bad} records failed verification");
    }
    if records + lost + trailing != attempted {
        bail!(
            "accounting: {records} delivered + {lost} + {trailing} lost != {attempted} attempted"
        );
    }
    if !args.overwrite
        && (records != stats.records_produced || lost + trailing != stats.records_dropped)
    {
        bail!(
            "drop-new accounting: delivered {records} of {} published, lost {} vs {} dropped",
            stats.records_produced,
            lost + trailing,
            stats.records_dropped
        );
    }
    if args.overwrite && lost + trailing > stats.records_overwritten {
        bail!(
            "overwrite accounting: lost {} but only {} were overwritten",
            lost + trailing,
            stats.records_overwritten
        );
    }
    if args.no_loss && lost + trailing != 0 {
        bail!("{} records lost with --no-loss", lost + trailing);
    }
    println!("verified: every record's sequence, length and payload");
    Ok(())
}
