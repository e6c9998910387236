//! An async consumer: waits for records with tokio, reads them in place.
//!
//! The device's descriptor goes into tokio's reactor (`AsyncFd`, epoll
//! underneath), as aya's `RingBuf` does for the BPF ring buffer: the task
//! drains a batch, arms the `need_wakeup` request ([`Consumer::arm_wakeup`])
//! and awaits readability, so an idle consumer costs no CPU and a busy one
//! costs the producer no wake-ups. Any other future can run on the same
//! thread meanwhile.
//!
//! ```text
//! rmemring-async [--device /dev/rmemring0] [--count N] [--size MIN..MAX]
//! ```
//!
//! It starts the driver's test producer for `--count` records, verifies
//! every record it receives (sequence order, length, payload pattern),
//! accounts for every record lost, and exits non-zero on any mismatch.
//! Device rings only: file and memfd rings wake through a futex, which no
//! event loop can watch (see docs/protocol.md).

use std::sync::Arc;

use anyhow::{
    bail,
    Context, //
};
use clap::Parser;
use rmemring::uapi::{
    ProducerConfig,
    ResetConfig, //
};
use rmemring::{
    ioctl,
    pattern,
    Access,
    Consumer,
    Region, //
};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

#[derive(Parser, Debug)]
#[command(version, about = "Consume a ring from an async task (tokio)")]
struct Args {
    /// The ring device.
    #[arg(long, default_value = "/dev/rmemring0")]
    device: String,
    /// Records to produce and account for (delivered plus lost).
    #[arg(long, default_value_t = 100_000)]
    count: u64,
    /// Payload size in bytes, MIN..MAX.
    #[arg(long, default_value = "8..256")]
    size: String,
}

/// Waits until the ring has records: returns at once if it has, else arms
/// the wake-up request and awaits the descriptor's readability.
async fn readable(consumer: &mut Consumer, fd: &AsyncFd<Arc<Region>>) -> anyhow::Result<()> {
    if !consumer.arm_wakeup() {
        // Records arrived between the last batch and the request.
        return Ok(());
    }
    let mut guard = fd.readable().await?;
    // The driver's `poll` reports readable while records are unreleased:
    // clear tokio's cached readiness, the next batch decides.
    guard.clear_ready();
    consumer.disarm_wakeup();
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (min_len, max_len) = match args.size.split_once("..") {
        Some((a, b)) => (a.parse::<u32>()?, b.parse::<u32>()?),
        None => {
            let n = args.size.parse()?;
            (n, n)
        }
    };
    let mut region = Region::open(&args.device, Access::Consume)?;
    // An empty ring in drop-new mode, whatever the last user left: this
    // reader reads in place, which overwrite mode does not allow.
    region.reset(&ResetConfig::default())?;
    let region = Arc::new(region);
    let mut consumer = region.consumer()?;
    // SAFETY: The descriptor is the region's, which closes it only when
    // dropped; the `AsyncFd` owns a reference to the region, so the
    // descriptor stays open, and the same, for the `AsyncFd`'s life.
    let fd = unsafe { AsyncFd::register_with_interest(region.clone(), Interest::READABLE) }
        .map_err(std::io::Error::from)
        .context("registering the device with tokio")?;
    let config = ProducerConfig {
        min_len,
        max_len,
        count: args.count,
        ..Default::default()
    };
    ioctl::start(region.fd(), &config).context("starting the producer")?;

    let (mut records, mut bad, mut awaits) = (0u64, 0u64, 0u64);
    let mut next_seq = 0u64;
    while records + consumer.stats().lost < args.count {
        let mut batch = consumer.batch()?;
        let mut got = 0;
        for record in &mut batch {
            let record = record?;
            let len = pattern::payload_len(record.seq, min_len, max_len) as usize;
            if record.seq < next_seq
                || record.payload.len() != len
                || !pattern::verify(record.seq, record.payload)
            {
                bad += 1;
            }
            next_seq = record.seq + 1;
            got += 1;
        }
        // Dropping the batch releases it with one store.
        drop(batch);
        records += got;
        if got == 0 {
            readable(&mut consumer, &fd).await?;
            awaits += 1;
        }
    }
    let lost = consumer.stats().lost;
    let stats = ioctl::stats(region.fd())?;
    println!(
        "rmemring-async: {records} records verified, {lost} lost (producer dropped {}), \
         {bad} bad, {awaits} awaits",
        stats.records_dropped
    );
    if bad != 0 {
        bail!("{bad} records did not verify");
    }
    if records + lost != args.count || lost != stats.records_dropped {
        bail!(
            "delivered {records} + lost {lost} is not the {} produced (dropped {})",
            args.count,
            stats.records_dropped
        );
    }
    Ok(())
}
