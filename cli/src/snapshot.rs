//! A ring's counters at one moment, from the device (`RMEMRING_IOC_STATS`)
//! or, for a ring file, from its control and consumer pages.

use std::path::Path;

use rmemring::uapi::RingStats;
use rmemring::{
    Access,
    Backend,
    Region,
    RingLayout, //
};

/// Opens `path` as an observer: read-only, beside any consumer.
pub(crate) fn observe(path: &Path) -> anyhow::Result<Region> {
    Ok(Region::open(path, Access::Observe)?)
}

/// Producer, consumer and driver counters.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Snapshot {
    pub(crate) producer_pos: u64,
    pub(crate) consumer_pos: u64,
    pub(crate) records_produced: u64,
    pub(crate) bytes_produced: u64,
    pub(crate) records_dropped: u64,
    pub(crate) records_overwritten: u64,
    pub(crate) wakeups: u64,
    pub(crate) consumer_errors: u64,
    pub(crate) records_consumed: u64,
    pub(crate) bytes_consumed: u64,
    pub(crate) records_lost: u64,
    pub(crate) sleeps: u64,
    /// Device only: the driver's own state and counters.
    pub(crate) driver: Option<Driver>,
}

/// What only the driver knows.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Driver {
    pub(crate) producer_running: bool,
    pub(crate) consumer_open: bool,
    pub(crate) records_read: u64,
    pub(crate) records_hooked: u64,
    /// Records in-kernel producers offered that the driver refused (NMI,
    /// a reset in progress, the device gone).
    pub(crate) records_refused: u64,
}

impl Snapshot {
    /// Reads the counters of `region` now.
    pub(crate) fn take(region: &Region) -> anyhow::Result<Self> {
        if region.backend() == Backend::Device {
            let stats = region.stats()?;
            return Ok(Self::from_stats(&stats));
        }
        let c = region.control();
        let p = region.consumer_page();
        Ok(Self {
            producer_pos: c.producer_pos,
            consumer_pos: p.consumer_pos,
            records_produced: c.records_produced,
            bytes_produced: c.bytes_produced,
            records_dropped: c.records_dropped,
            records_overwritten: c.records_overwritten,
            wakeups: c.wakeups,
            consumer_errors: c.consumer_errors,
            records_consumed: p.records_consumed,
            bytes_consumed: p.bytes_consumed,
            records_lost: p.records_lost,
            sleeps: p.sleeps,
            driver: None,
        })
    }

    pub(crate) fn from_stats(s: &RingStats) -> Self {
        Self {
            producer_pos: s.producer_pos,
            consumer_pos: s.consumer_pos,
            records_produced: s.records_produced,
            bytes_produced: s.bytes_produced,
            records_dropped: s.records_dropped,
            records_overwritten: s.records_overwritten,
            wakeups: s.wakeups,
            consumer_errors: s.consumer_errors,
            records_consumed: s.records_consumed,
            bytes_consumed: s.bytes_consumed,
            records_lost: s.records_lost,
            sleeps: s.sleeps,
            driver: Some(Driver {
                producer_running: s.producer_running != 0,
                consumer_open: s.consumer_open != 0,
                records_read: s.records_read,
                records_hooked: s.records_hooked,
                records_refused: s.records_refused,
            }),
        }
    }

    /// Bytes published and not yet released by the consumer.
    pub(crate) fn backlog(&self) -> u64 {
        self.producer_pos.wrapping_sub(self.consumer_pos)
    }
}

/// The cache mode's name.
pub(crate) fn cache_name(layout: &RingLayout) -> &'static str {
    layout.cache_mode().name()
}
