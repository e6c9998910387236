//! Setting a ring up for a check: opened fresh, with the consumer page
//! mapped, filled by a producer run; and whether its control page is
//! still what it was.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{
    Duration,
    Instant, //
};

use anyhow::Context;
use rmemring::layout::MAGIC;
use rmemring::uapi::{
    ProducerConfig,
    ResetConfig, //
};
use rmemring::{
    Access,
    Region, //
};
use rmemring_proto::modes::Overflow;

use super::env::Env;
use super::fd::io_error;
use super::mapping::{
    map_own_page,
    Mapping, //
};

/// A few records, now.
pub(crate) const FEW: ProducerConfig = ProducerConfig {
    min_len: 100,
    max_len: 100,
    count: 5,
    rate: 0,
    pattern: 0,
    flags: 0,
    batch: 0,
    reserved: [0; 7],
};

/// Opens the device as its consumer, in a fresh ring of the given mode.
pub(crate) fn open_fresh(env: &Env, overflow: Overflow) -> anyhow::Result<Arc<Region>> {
    env.kmod.ensure_loaded()?;
    let mut region = Region::open(&env.device, Access::Consume)?;
    let reset = ResetConfig {
        flags: overflow.flag(),
        ..Default::default()
    };
    region.reset(&reset)?;
    Ok(Arc::new(region))
}

/// A fresh ring of the given mode, opened as its consumer, and the
/// consumer page mapped writable on its own.
pub(crate) fn consumer_with_page(
    env: &Env,
    overflow: Overflow,
) -> anyhow::Result<(Arc<Region>, Mapping)> {
    let region = open_fresh(env, overflow)?;
    let page = map_own_page(region.fd().as_raw_fd(), region.layout())?;
    Ok((region, page))
}

/// Waits up to `limit` until the producer thread has finished its run
/// (`ETIMEDOUT` if it has not).
pub(crate) fn wait_stopped(region: &Region, limit: Duration) -> io::Result<()> {
    let start = Instant::now();
    while region.stats().map_err(io_error)?.producer_running != 0 {
        if start.elapsed() > limit {
            return Err(io::Error::from_raw_os_error(libc::ETIMEDOUT));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// Starts the producer for a run of `config.count` records (not 0) and
/// waits until it has finished.
pub(crate) fn produce(region: &Region, config: &ProducerConfig) -> anyhow::Result<()> {
    region.start(config)?;
    wait_stopped(region, Duration::from_secs(60)).with_context(|| {
        format!(
            "the producer did not write {} records in 60 s",
            config.count
        )
    })
}

/// Whether the control page still describes the ring it was laid out as.
pub(crate) fn control_intact(region: &Region) -> bool {
    let l = region.layout();
    let c = region.control();
    c.magic == MAGIC
        && c.data_size == l.data_size
        && c.data_offset == l.data_offset
        && c.consumer_offset == l.consumer_offset
        && c.region_size == l.region_size
        && c.max_payload == l.max_payload
        && c.phys_base == l.phys_base
}
