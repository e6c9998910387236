//! An async consumer: waits for records with tokio, reads them in place.
//!
//! The consumer's [`WakeFd`] goes into tokio's reactor (`AsyncFd`, epoll
//! underneath), as aya's `RingBuf` does for the BPF ring buffer: the task
//! drains a batch, arms the `need_wakeup` request ([`Consumer::arm_wakeup`])
//! and awaits readability, so an idle consumer costs no CPU and a busy one
//! costs the producer no wake-ups. Any other future can run on the same
//! thread meanwhile. On the device the `WakeFd` is the device's descriptor;
//! on a memfd (or file) ring, whose producer wakes a futex, an eventfd that
//! the `WakeFd`'s thread signals: the loop is the same.
//!
//! ```text
//! rmemring-async [--device /dev/rmemring0 | --memfd] [--count N] [--size MIN..MAX]
//! ```
//!
//! It starts the driver's test producer (or, with `--memfd`, the crate's
//! user-space producer on a thread, writing the same records into a memfd
//! ring) for `--count` records, verifies every record it receives
//! (sequence order, length, payload pattern), accounts for every record
//! lost, and exits non-zero on any mismatch.

use std::sync::Arc;
use std::time::Duration;

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
    pattern,
    Access,
    Consumer,
    CreateOptions,
    ProduceError,
    Region,
    WakeFd, //
};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

#[derive(Parser, Debug)]
#[command(version, about = "Consume a ring from an async task (tokio)")]
struct Args {
    /// The ring device.
    #[arg(long, default_value = "/dev/rmemring0")]
    device: String,
    /// A memfd ring and a producer thread instead of the device (no
    /// driver needed).
    #[arg(long, conflicts_with = "device")]
    memfd: bool,
    /// Records to produce and account for (delivered plus lost).
    #[arg(long, default_value_t = 100_000)]
    count: u64,
    /// Payload size in bytes, MIN..MAX.
    #[arg(long, default_value = "8..256")]
    size: String,
}

/// Waits until the ring has records: returns at once if it has, else arms
/// the wake-up request and awaits the descriptor's readability.
async fn readable(consumer: &mut Consumer, fd: &AsyncFd<WakeFd>) -> anyhow::Result<()> {
    if !consumer.arm_wakeup() {
        // Records arrived between the last batch and the request.
        return Ok(());
    }
    let mut guard = fd.readable().await?;
    // The driver's `poll` reports readable while records are unreleased,
    // and an eventfd until it is read: clear tokio's cached readiness (and
    // `disarm_wakeup` the eventfd), the next batch decides.
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
    let region = if args.memfd {
        Region::memfd(CreateOptions::new(1 << 16))?
    } else {
        let mut region = Region::open(&args.device, Access::Consume)?;
        // An empty ring in drop-new mode, whatever the last user left: this
        // reader reads in place, which overwrite mode does not allow.
        region.reset(&ResetConfig::default())?;
        region
    };
    let region = Arc::new(region);
    let mut consumer = region.consumer()?;
    // SAFETY: The `WakeFd` owns what its descriptor belongs to (the
    // region, or its eventfd), and the `AsyncFd` owns the `WakeFd`: the
    // descriptor stays open, and the same, for the `AsyncFd`'s life.
    let fd = unsafe { AsyncFd::register_with_interest(consumer.wake_fd()?, Interest::READABLE) }
        .map_err(std::io::Error::from)
        .context("registering the ring's wake-up descriptor with tokio")?;
    let producer = if args.memfd {
        Some(spawn_producer(&region, args.count, min_len, max_len)?)
    } else {
        let config = ProducerConfig {
            min_len,
            max_len,
            count: args.count,
            ..Default::default()
        };
        region.start(&config).context("starting the producer")?;
        None
    };

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
    let dropped = match producer {
        Some(thread) => {
            let stats = thread.join().expect("the producer thread panicked")?;
            stats.dropped
        }
        None => region.stats()?.records_dropped,
    };
    println!(
        "rmemring-async: {records} records verified, {lost} lost (producer dropped {dropped}), \
         {bad} bad, {awaits} awaits"
    );
    if bad != 0 {
        bail!("{bad} records did not verify");
    }
    if records + lost != args.count || lost != dropped {
        bail!(
            "delivered {records} + lost {lost} is not the {} produced (dropped {dropped})",
            args.count,
        );
    }
    Ok(())
}

/// The driver's test records from the crate's producer on a thread: each
/// record `seq` of `pattern::payload_len` bytes filled with the pattern,
/// waiting for room when the ring is full (so nothing is lost), published
/// in batches of 32 with a pause now and then, so that the consumer goes
/// to sleep and is woken through its `WakeFd`.
fn spawn_producer(
    region: &Arc<Region>,
    count: u64,
    min_len: u32,
    max_len: u32,
) -> anyhow::Result<std::thread::JoinHandle<anyhow::Result<rmemring::ProducerStats>>> {
    let mut producer = region.producer()?;
    Ok(std::thread::spawn(move || {
        for seq in 0..count {
            let len = pattern::payload_len(seq, min_len, max_len) as usize;
            loop {
                match producer.reserve(len) {
                    Ok(mut record) => {
                        // Drop-new mode: the payload is writable in place.
                        let payload = record.payload().expect("a drop-new ring");
                        pattern::fill(seq, payload);
                        record.commit();
                        break;
                    }
                    Err(ProduceError::Full) => {
                        producer.publish();
                        std::thread::yield_now();
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            if seq % 32 == 31 {
                producer.publish();
            }
            if seq % 4096 == 2048 {
                producer.publish();
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        producer.publish();
        Ok(producer.stats())
    }))
}
