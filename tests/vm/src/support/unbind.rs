//! Revoking a ring under its writers: the unbind of the ring's platform
//! device (a device-tree node's on the arm64 board, the parameter ring's
//! `rmemring.0` on x86-64) through sysfs, while kernel code writes into
//! the ring flat out and its consumer is killed with SIGKILL.

use std::path::Path;
use std::time::Duration;

use anyhow::{
    ensure,
    Context, //
};
use rmemring::uapi::ProducerConfig;
use rmemring::{
    Access,
    Device,
    Region, //
};
use rmemring_proto::roles::Role;

use super::clients::{
    tracer_count_reaches,
    Client,
    SwitchLoad, //
};
use super::fd::open_owned_as;
use super::process::{
    fork_consumer,
    kill,
    kill_and_reap,
    reap_within, //
};

/// The platform driver's sysfs directory (`bind`, `unbind`).
pub(crate) const DRIVER: &str = "/sys/bus/platform/drivers/rmemring";

/// The parameter ring's platform device, which the module registers for
/// the ring its parameters describe, `/dev/rmemring0`.
pub(crate) const PARAM_DEVICE: &str = "rmemring.0";

pub(crate) fn sysfs_write(file: &str, value: &str) -> std::io::Result<()> {
    std::fs::write(file, value)
}

/// Unbinds the platform device `id` from the driver.
pub(crate) fn unbind(id: &str) -> anyhow::Result<()> {
    sysfs_write(&format!("{DRIVER}/unbind"), id).with_context(|| format!("unbind {id}"))
}

/// Binds `id` to the driver; on failure, the errno.
pub(crate) fn bind(id: &str) -> Result<(), i32> {
    sysfs_write(&format!("{DRIVER}/bind"), id).map_err(|e| e.raw_os_error().unwrap_or(0))
}

/// Whether the parameter ring's platform device is bound to the driver.
pub(crate) fn param_device_bound() -> bool {
    Path::new(DRIVER).join(PARAM_DEVICE).exists()
}

/// The sampler's rate on each CPU during the unbind, samples a second.
const SAMPLER_RATE: u32 = 1000;

/// How long the tracer may take to be called a thousand more times.
const TRACER_WAIT: Duration = Duration::from_secs(20);

/// Unbinds the platform device `id`, whose ring is `/dev/<ring>`, while
/// kernel code writes into the ring flat out: the `sched_switch` tracer
/// (under the runqueue lock, on both CPUs), the hard-IRQ timer sampler (on
/// both CPUs) and the producer thread, with a consumer reading that is
/// killed with SIGKILL as the unbind begins. The device must shut its
/// producers out (the clients' writes then fail with `-ENODEV`, which each
/// counts as `gone`) without a warning, and nothing may be written into
/// the ring after it; the ring's memory stays claimed while either client
/// holds the ring, so a rebind fails with `EBUSY` until both are
/// unloaded, and works after. The device is bound again whatever happens.
pub(crate) fn under_clients(ring: &str, id: &str) -> anyhow::Result<()> {
    let dev = format!("/dev/{ring}");
    // A read-only mapping of the ring, which its file keeps alive through
    // the unbind.
    let region = Region::open(&dev, Access::Observe)?;
    // Forked first, while this process has one thread.
    let consumer = fork_consumer(&dev, &region)?;
    let result = with_consumer(ring, &dev, id, region, consumer);
    kill_and_reap(consumer);
    // Bound again whatever happened, for the checks that follow.
    let bound = bind(id);
    result?;
    ensure!(
        bound.is_ok(),
        "bind after the clients let go gave {bound:?}"
    );
    ensure!(
        Path::new(&dev).exists(),
        "{dev} is missing after the rebind"
    );
    Ok(())
}

fn with_consumer(
    ring: &str,
    dev: &str,
    id: &str,
    region: Region,
    consumer: libc::pid_t,
) -> anyhow::Result<()> {
    let controller = Device::from_fd(open_owned_as(dev, Role::Controller)?)?;
    controller.start(&ProducerConfig {
        min_len: 8,
        max_len: 512,
        ..Default::default()
    })?;
    let load = SwitchLoad::start()?;
    let clients = Client::sampler(ring, SAMPLER_RATE)
        .and_then(|sampler| Ok((sampler, Client::tracer_with(&[format!("ring={ring}")])?)));
    let result = clients.and_then(|(sampler, tracer)| {
        // Unbind only once the tracer writes.
        let calls = tracer_count_reaches("calls", 1000, TRACER_WAIT)?;
        println!("# the tracer made its first {calls} calls before the unbind");
        // The consumer dies as the unbind runs: its file's release and
        // unmapping race the device's removal.
        kill(consumer);
        unbind(id)?;
        ensure!(!Path::new(dev).exists(), "{dev} still exists after unbind");
        ensure!(
            reap_within(consumer, Duration::from_secs(5)),
            "the killed consumer did not die"
        );
        // The tracer keeps being called, and refused: nothing is written
        // into the ring's memory after the revocation, which this mapping
        // of it would show.
        let at_unbind = region.control();
        tracer_count_reaches("calls", calls + 1000, TRACER_WAIT)?;
        let later = region.control();
        ensure!(
            later.producer_pos == at_unbind.producer_pos
                && later.records_produced == at_unbind.records_produced
                && later.records_dropped == at_unbind.records_dropped,
            "the ring moved after the unbind: producer_pos {} -> {}, records {} -> {}, \
             dropped {} -> {}",
            at_unbind.producer_pos,
            later.producer_pos,
            at_unbind.records_produced,
            later.records_produced,
            at_unbind.records_dropped,
            later.records_dropped
        );
        drop(region);
        drop(controller);
        let bound = bind(id);
        ensure!(
            bound == Err(libc::EBUSY),
            "bind with the tracer holding the ring gave {bound:?}, expected EBUSY"
        );
        let tracer = tracer.unload()?;
        // The sampler still holds the ring, and with it the region.
        let bound = bind(id);
        ensure!(
            bound == Err(libc::EBUSY),
            "bind with the sampler holding the ring gave {bound:?}, expected EBUSY"
        );
        let sampler = sampler.unload()?;
        println!("# unbind under the tracer: {tracer:?}; under the sampler: {sampler:?}");
        for counts in [&tracer, &sampler] {
            ensure!(
                // Before the unbind their records went in or, the ring
                // full, were dropped; after it, every one was refused as
                // gone (the sampler fired through the tracer's thousand
                // calls after it, a few hundred times on each CPU).
                counts.failed == 0
                    && counts.refused == 0
                    && counts.gone > 0
                    && counts.written + counts.dropped > 0
                    && counts.written + counts.dropped + counts.gone == counts.calls,
                "tracer {tracer:?}, sampler {sampler:?}"
            );
        }
        Ok(())
    });
    load.stop();
    result
}
