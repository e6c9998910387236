//! The flight recorder across a reset (issue 16): runs once per boot in a
//! multi-boot VM run and finds its stage from the driver's verdict.
//!
//! Boot 1 finds zeroed memory (QEMU starts with it): it loads the driver
//! with `retain=1` in overwrite mode (on the board, with a device-tree node
//! that has `rmemring,retain`), starts the producer flat out, and
//! resets the machine under it: `reboot(2)`, or a panic (the test module
//! `rmemring_panic_now.ko`). The driver logs the sequence number it had
//! reached as it wrote the ring back. Boot 2 finds that ring: the driver
//! serves it read-only; this reads it whole twice with the ordinary
//! consumer API, verifies every record (payload pattern and length,
//! sequence numbers contiguous, timestamps not decreasing), prints the
//! last sequence number for the host to compare with boot 1's log, then
//! releases it and checks the ring is live again.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{
    bail,
    Context, //
};
use rmemring::uapi::{
    ProducerConfig,
    RecoveryInfo,
    RingStats,
    RECOVERY_NONE,
    RECOVERY_REASON_BLANK,
    RECOVERY_REASON_CHECKSUM,
    RECOVERY_REASON_GEOMETRY,
    RECOVERY_REASON_LAYOUT,
    RECOVERY_RECOVERED,
    RECOVERY_RELEASED,
    STATE_LIVE,
    STATE_RECOVERED, //
};
use rmemring::{
    pattern,
    Access,
    Region, //
};

use crate::support::{
    Env,
    Report, //
};

/// The payload lengths boot 1 writes.
const MIN_LEN: u32 = 8;
const MAX_LEN: u32 = 512;

/// How boot 1 resets the machine.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Crash {
    Reboot,
    Panic,
}

pub(crate) fn recovery_reboot(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    recovery(env, report, Crash::Reboot)
}

pub(crate) fn recovery_panic(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    recovery(env, report, Crash::Panic)
}

/// Rings that must not be served, one boot each (x86_64: the region is
/// the module parameters'; `/dev/mem` reaches it once the driver has let
/// go of it, since it is reserved memory, not RAM):
///
/// 1. zeroed memory (a cold boot): nothing served; stream, then overwrite
///    the control page's identity with garbage and reboot;
/// 2. the garbage: nothing served; stream, then tear the header of a record
///    in the middle of the window and reboot;
/// 3. the torn header: the records before it are served, the tail from it
///    on is cut; then the driver is loaded for another region size (a
///    geometry change), which must not be served either.
pub(crate) fn recovery_corrupt(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    let base = env
        .kmod
        .param("phys_base")?
        .context("recovery-corrupt needs the reference module parameters (x86_64)")?;
    let size = env.kmod.param("phys_size")?.context("no phys_size")?;
    if env.kmod.loaded() {
        env.kmod.rmmod()?;
    }
    let params = format!("{} overflow=1 retain=1", env.kmod.params);
    env.kmod.load(&params)?;
    let region = Arc::new(Region::open(&env.device, Access::Consume)?);
    let found = region.recovery().context("RMEMRING_IOC_RECOVERY")?;
    println!(
        "rmemring-recovery: verdict {} reason {} records {} bytes_cut {}",
        found.verdict, found.reason, found.records, found.bytes_cut
    );
    match (found.verdict, found.reason) {
        (RECOVERY_NONE, RECOVERY_REASON_BLANK) => {
            println!("rmemring-recovery: boot 1: zeroed memory, not served");
            stream_for_a_while(&region)?;
            drop(region);
            env.kmod.rmmod()?;
            // Garbage over the identity line after the magic.
            let garbage: Vec<u8> = (0..56u8).map(|i| i.wrapping_mul(37) ^ 0xa5).collect();
            write_phys(base + 8, &garbage)?;
            reboot()
        }
        (RECOVERY_NONE, RECOVERY_REASON_LAYOUT | RECOVERY_REASON_CHECKSUM) => {
            report.expect(
                "recovery: a garbage control page is not served",
                region.info()?.state == STATE_LIVE,
                || "state recovered".to_owned(),
            );
            println!("rmemring-recovery: boot 2: the garbage is not served");
            stream_for_a_while(&region)?;
            // The position of a record in the middle of the window.
            let middle = {
                let mut consumer = region.consumer()?;
                let mut n = 0;
                while n < 1000 && consumer.read_copy()?.is_some() {
                    n += 1;
                }
                if n < 1000 {
                    bail!("only {n} records in the ring");
                }
                consumer.position()
            };
            let layout = *region.layout();
            drop(region);
            env.kmod.rmmod()?;
            let at =
                base + layout.geometry.data_offset + (middle & (layout.geometry.data_size - 1));
            // A sequence number that cannot follow its predecessor.
            write_phys(at + 8, &0u64.to_le_bytes())?;
            println!("rmemring-recovery: tore the header at position {middle:#x}");
            reboot()
        }
        (RECOVERY_RECOVERED, _) => {
            report.expect(
                "recovery: a torn header cuts the tail there, and what is before it is served",
                found.bytes_cut > 0 && found.records >= 1000,
                || format!("{found:?}"),
            );
            drop(region);
            let (records, last) = read_all(&env.device)?;
            report.expect(
                "recovery: the records before the torn header verify",
                records == found.records && last == Some(found.last_seq),
                || format!("{records} records up to {last:?}; recovered {found:?}"),
            );
            // Only an overwrite-mode ring is kept: retain without it is
            // refused at load, with the reason.
            env.kmod.rmmod()?;
            let refused = env.kmod.insmod(&format!("{} retain=1", env.kmod.params));
            report.expect(
                "recovery: retain=1 without overwrite mode refuses the load",
                refused
                    .as_ref()
                    .is_err_and(|log| log.contains("retain=1 needs overflow=1")),
                || format!("{refused:?}"),
            );
            if refused.is_ok() {
                env.kmod.rmmod()?;
            }
            // The same ring, for a driver that lays out another geometry.
            let smaller = format!(
                "phys_base={base:#x} phys_size={:#x} overflow=1 retain=1",
                size / 2 + 4096
            );
            env.kmod.load(&smaller)?;
            let region = Region::open(&env.device, Access::Observe)?;
            let found = region.recovery()?;
            report.expect(
                "recovery: a geometry change is not served",
                found.verdict == RECOVERY_NONE && found.reason == RECOVERY_REASON_GEOMETRY,
                || format!("{found:?}"),
            );
            drop(region);
            env.kmod.rmmod()?;
            env.kmod.load(&env.kmod.params)?;
            Ok(())
        }
        (verdict, reason) => bail!("unexpected verdict {verdict}, reason {reason}"),
    }
}

/// Starts the producer flat out and waits until it has lapped the ring (a
/// second or so; longer on a debug kernel on a loaded host), so that the
/// oldest record is not the first; fails after 30 s. Returns the stats then.
fn start_and_lap(region: &Region) -> anyhow::Result<RingStats> {
    let config = ProducerConfig {
        min_len: MIN_LEN,
        max_len: MAX_LEN,
        ..Default::default()
    };
    region.start(&config).context("starting the producer")?;
    for _ in 0..300 {
        let stats = region.stats()?;
        if stats.records_overwritten != 0 {
            return Ok(stats);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!(
        "the producer did not lap the ring in 30 s: {:?}",
        region.stats()?
    )
}

/// Runs the producer flat out until it has lapped the ring, and stops it.
fn stream_for_a_while(region: &Region) -> anyhow::Result<()> {
    start_and_lap(region)?;
    region.stop()?;
    Ok(())
}

/// Writes `bytes` at physical address `at` through `/dev/mem`.
fn write_phys(at: u64, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::FileExt;
    let mem = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/mem")
        .context("opening /dev/mem (CONFIG_DEVMEM)")?;
    mem.write_all_at(bytes, at)
        .with_context(|| format!("writing {} bytes at {at:#x} through /dev/mem", bytes.len()))
}

/// `reboot -f`: `reboot(2)` at once.
fn reboot() -> anyhow::Result<()> {
    // SAFETY: Plain system calls on no memory of this process; the machine
    // resets (the call returns only on failure).
    let ret = unsafe {
        libc::sync();
        libc::reboot(libc::RB_AUTOBOOT)
    };
    bail!(
        "reboot(2) returned {ret}: {}",
        std::io::Error::last_os_error()
    )
}

fn recovery(env: &Env, report: &mut Report, crash: Crash) -> anyhow::Result<()> {
    // The driver kept for the next boot, in overwrite mode: with module
    // parameters (x86_64), or, on the board (no parameters), by the
    // device-tree node of dts/tests/retain.dtso.
    if env.kmod.loaded() {
        env.kmod.rmmod()?;
    }
    if env.kmod.params.is_empty() {
        env.kmod.load("")?;
    } else {
        env.kmod
            .load(&format!("{} overflow=1 retain=1", env.kmod.params))?;
    }
    let region = Arc::new(Region::open(&env.device, Access::Consume)?);
    let found = region.recovery().context("RMEMRING_IOC_RECOVERY")?;
    match (found.verdict, found.reason) {
        (RECOVERY_NONE, RECOVERY_REASON_BLANK) => first_boot(&region, crash),
        (RECOVERY_RECOVERED, _) => {
            drop(region);
            second_boot(env, report, &found)
        }
        (verdict, reason) => bail!(
            "neither zeroed memory nor a recovered ring: verdict {verdict}, reason {reason} \
             (see the driver's log line)"
        ),
    }
}

/// Streams flat out, then resets the machine under the producer.
fn first_boot(region: &Arc<Region>, crash: Crash) -> anyhow::Result<()> {
    let stats = start_and_lap(region)?;
    if stats.producer_running == 0 {
        bail!("the producer should still be running: {stats:?}");
    }
    println!(
        "rmemring-recovery: boot 1: {} records produced, {} overwritten; resetting with the \
         producer running",
        stats.records_produced, stats.records_overwritten
    );
    match crash {
        Crash::Reboot => {
            // What busybox `reboot -f` does: no process killed, nothing
            // unmounted.
            reboot()
        }
        Crash::Panic => {
            let status = std::process::Command::new("insmod")
                .arg("/lib/modules/rmemring_panic_now.ko")
                .status()?;
            bail!("loading the panic module returned ({status}) instead of panicking");
        }
    }
}

/// Reads, verifies and releases the ring boot 1 left.
fn second_boot(env: &Env, report: &mut Report, found: &RecoveryInfo) -> anyhow::Result<()> {
    println!(
        "rmemring-recovery: boot 2: recovered last_seq={} first_seq={} records={} bytes_cut={} \
         published_pos={:#x}",
        found.last_seq, found.first_seq, found.records, found.bytes_cut, found.published_pos
    );
    report.expect(
        "recovery: the whole window verifies (no tail cut)",
        found.bytes_cut == 0,
        || format!("{found:?}"),
    );
    let info = {
        let region = Region::open(&env.device, Access::Observe)?;
        region.info()?
    };
    report.expect(
        "recovery: INFO says the ring is recovered",
        info.state == STATE_RECOVERED,
        || format!("state {}", info.state),
    );
    // What a user sees (the bar: the recovered span).
    let shown = std::process::Command::new("rmemring")
        .args(["info", &env.device])
        .output()
        .context("running rmemring info")?;
    let shown = String::from_utf8_lossy(&shown.stdout);
    print!("{shown}");
    let records = format!(
        "records     {} (sequence numbers {}..={}",
        found.records, found.first_seq, found.last_seq
    );
    report.expect(
        "recovery: rmemring info shows the recovered records and their span",
        shown.contains("recovered from a previous boot")
            && shown.contains(&records)
            && shown.contains("  span "),
        || format!("looked for {records:?}"),
    );
    // Read twice: a reader of a recovered ring reads it whole.
    for pass in ["first", "second"] {
        let (records, last) = read_all(&env.device)?;
        report.expect(
            &format!("recovery: the {pass} reader gets every recovered record, verified"),
            records == found.records && last == Some(found.last_seq),
            || format!("{records} records up to {last:?}; recovered {found:?}"),
        );
    }
    let region = Arc::new(Region::open(&env.device, Access::Consume)?);
    let start = region.start(&ProducerConfig {
        min_len: 8,
        max_len: 8,
        count: 10,
        ..Default::default()
    });
    report.expect(
        "recovery: no producer starts on a recovered ring",
        start
            .as_ref()
            .is_err_and(|e| e.raw_os_error() == Some(libc::EBUSY)),
        || format!("{start:?}"),
    );
    region
        .release_recovered()
        .context("RMEMRING_IOC_RELEASE_RECOVERED")?;
    let after = region.recovery()?;
    let info = region.info()?;
    report.expect(
        "recovery: released, the ring is live and empty",
        after.verdict == RECOVERY_RELEASED
            && info.state == STATE_LIVE
            && region.consumer()?.backlog()? == 0,
        || format!("{after:?}, state {}", info.state),
    );
    drop(region);
    let region = Region::open(&env.device, Access::Consume)?;
    crate::support::ring::produce(
        &region,
        &ProducerConfig {
            min_len: 8,
            max_len: 8,
            count: 1000,
            ..Default::default()
        },
    )?;
    let produced = region.stats()?.records_produced;
    report.expect(
        "recovery: the live ring takes records again",
        produced == 1000,
        || format!("{produced} produced"),
    );
    Ok(())
}

/// Reads every record of the recovered ring with the ordinary consumer
/// API and verifies it; returns how many and the last sequence number.
fn read_all(device: &str) -> anyhow::Result<(u64, Option<u64>)> {
    let region = Arc::new(Region::open(device, Access::Consume)?);
    let mut consumer = region.consumer()?;
    let mut records = 0u64;
    let mut last: Option<(u64, u64)> = None;
    while let Some(record) = consumer.read_copy()? {
        let len = pattern::payload_len(record.seq, MIN_LEN, MAX_LEN);
        if record.payload.len() != len as usize || !pattern::verify(record.seq, record.payload) {
            bail!(
                "record {} does not verify ({} bytes)",
                record.seq,
                record.payload.len()
            );
        }
        if let Some((seq, ts)) = last {
            if record.seq != seq + 1 || record.timestamp_ns < ts {
                bail!(
                    "record {} (at {} ns) follows {seq} (at {ts} ns)",
                    record.seq,
                    record.timestamp_ns
                );
            }
        }
        last = Some((record.seq, record.timestamp_ns));
        records += 1;
    }
    consumer.release();
    Ok((records, last.map(|l| l.0)))
}
