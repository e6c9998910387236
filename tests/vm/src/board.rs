//! The device-tree board (arm64 `virt` with an overlay from `dts/`): the
//! rings the overlay describes, unbind and rebind, unload and reload, the
//! module-parameter path beside the device tree, and broken overlays.
//!
//! What each ring must look like comes from the host, not from the guest's
//! own device tree: `cargo xtask` parses the overlay it built and writes
//! `/add/board-rings.json` (`dt::expectations` in `xtask/src/dt/board.rs`,
//! the type `rmemring_board_expect::Expectations`): each ring with its
//! node, region, base, size, data size, overflow and cache modes and device
//! name, plus the spare region for the parameters and the nodes the driver
//! must refuse.

use std::mem::offset_of;
use std::os::fd::AsRawFd;
use std::path::Path;

use anyhow::{
    bail,
    ensure,
    Context, //
};
use rmemring::layout::{
    ControlPage,
    MAGIC, //
};
use rmemring::uapi::ProducerConfig;
use rmemring::{
    Access,
    Region, //
};
use rmemring_board_expect::{
    DeviceTreeValue as _,
    Expectations as Expected,
    FILE_NAME, //
};
use rmemring_proto::modes::{
    CacheMode,
    Overflow, //
};
use rmemring_proto::roles::Role;

use crate::support::env::board_expectations;
use crate::support::fd::open_owned_as;
use crate::support::kernel_log::{
    self,
    mark,
    since,
    LogLine, //
};
use crate::support::mapping::{
    map,
    Mapping, //
};
use crate::support::unbind::{
    self,
    bind, //
};
use crate::support::verify::{
    run,
    StreamOptions,
    Tally, //
};
use crate::support::{
    Env,
    Report, //
};

const DT: &str = "/sys/firmware/devicetree/base";

/// The driver's complaints in `log`: its error lines (level 3 or worse)
/// and the driver core's failed probes.
fn driver_errors(log: &[LogLine]) -> Vec<String> {
    log.iter()
        .filter(|l| {
            (l.level <= 3 && l.text.contains("rmemring"))
                || l.text.contains("probe with driver rmemring failed")
        })
        .map(|l| format!("<{}> {}", l.level, l.text))
        .collect()
}

/// The kernel's line for a `no-map` reserved-memory region (Linux 7.2,
/// `fdt_init_reserved_mem_node()`).
fn reserved_mem_line(base: u64, size: u64, region: &str) -> String {
    format!(
        "OF: reserved mem: {base:#018x}..{:#018x} ({} KiB) nomap non-reusable {region}",
        base + size - 1,
        size / 1024
    )
}

/// The driver's claim on `[base, base + size)`, nested (indented) in
/// `/proc/iomem` under the kernel's `reserved` entry for the region.
fn claim_line(base: u64, size: u64) -> String {
    format!("{base:08x}-{:08x} : rmemring", base + size - 1)
}

fn iomem_claims(base: u64, size: u64) -> anyhow::Result<Vec<String>> {
    let iomem = std::fs::read_to_string("/proc/iomem")?;
    let claim = claim_line(base, size);
    Ok(iomem
        .lines()
        .filter(|l| l.trim_start() == claim)
        .map(str::to_string)
        .collect())
}

/// What one device must show.
struct Want<'a> {
    dev: &'a str,
    base: u64,
    size: u64,
    data: u64,
    overwrite: bool,
    cache: u32,
}

/// Checks `/dev/<dev>` against `want` through `INFO`, and its claim in
/// `/proc/iomem`; returns a one-line description.
fn check_device(want: &Want<'_>, page: u64) -> anyhow::Result<String> {
    let path = format!("/dev/{}", want.dev);
    let region = Region::open(&path, Access::Observe)?;
    let info = region.info()?;
    ensure!(
        info.phys_base == want.base,
        "{path}: base {:#x}, expected {:#x}",
        info.phys_base,
        want.base
    );
    ensure!(
        info.region_size == want.size,
        "{path}: region size {:#x}, expected {:#x}",
        info.region_size,
        want.size
    );
    ensure!(
        info.data_size == want.data,
        "{path}: data size {:#x}, expected {:#x}",
        info.data_size,
        want.data
    );
    ensure!(
        u64::from(info.page_size) == page,
        "{path}: page size {}, expected {page}",
        info.page_size
    );
    let overflow = Overflow::from_flags(info.flags);
    ensure!(
        (overflow == Overflow::OverwriteOldest) == want.overwrite,
        "{path}: {}, expected overwrite {} (flags {:#x})",
        overflow.name(),
        want.overwrite,
        info.flags
    );
    let cache = CacheMode::from_flags(info.flags);
    ensure!(
        cache.map(CacheMode::abi) == Some(want.cache),
        "{path}: cache mode {cache:?}, expected {:?} (flags {:#x})",
        CacheMode::from_abi(want.cache),
        info.flags
    );
    if let Some(n) = want.dev.strip_prefix("rmemring") {
        if let Ok(n) = n.parse::<u32>() {
            ensure!(info.index == n, "{path}: INFO index {}", info.index);
        }
    }
    let claims = iomem_claims(want.base, want.size)?;
    ensure!(
        claims.len() == 1 && claims[0].starts_with(' '),
        "{:?} is not in /proc/iomem once, nested under its reserved entry: {claims:?}",
        claim_line(want.base, want.size)
    );
    Ok(format!(
        "{path}: {:#x} bytes at {:#x}, data area {} KiB, flags {:#x}",
        info.region_size,
        info.phys_base,
        info.data_size / 1024,
        info.flags
    ))
}

/// The devices of the overlay's rings (`with_params`: named as when the
/// driver was loaded with the spare region's parameters).
fn ring_wants(expected: &Expected, with_params: bool) -> Vec<(String, Want<'_>)> {
    expected
        .rings
        .iter()
        .map(|r| {
            let dev = if with_params {
                &r.dev_with_params
            } else {
                &r.dev
            };
            (
                r.node.clone(),
                Want {
                    dev,
                    base: r.base,
                    size: r.size,
                    data: r.data,
                    overwrite: r.overflow == Overflow::OverwriteOldest,
                    cache: r.cache.abi(),
                },
            )
        })
        .collect()
}

/// Exactly the expected ring devices exist, no other `rmemring*` one.
fn check_device_set(names: &[&str], report: &mut Report, what: &str) -> anyhow::Result<()> {
    let mut present: Vec<String> = std::fs::read_dir("/dev")?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("rmemring") || names.contains(&n.as_str()))
        .collect();
    present.sort();
    let mut want: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    want.sort();
    report.expect(
        &format!(
            "{what}: exactly the expected devices exist: {}",
            want.join(" ")
        ),
        present == want,
        || format!("/dev has {present:?}"),
    );
    Ok(())
}

/// Every ring of `wants` matches, one check each.
fn check_rings(wants: &[(String, Want<'_>)], page: u64, report: &mut Report, what: &str) {
    for (node, want) in wants {
        let result = check_device(want, page).map(|line| println!("# {node}: {line}"));
        report.check(
            &format!(
                "{what}: {node} is /dev/{} with the overlay's base, size, data size and modes",
                want.dev
            ),
            result,
        );
    }
}

/// Streams `count` records from `/dev/<dev>` with back-pressure: every one
/// must arrive, verified, none missing.
fn stream_all(env: &Env, dev: &str, count: u64) -> anyhow::Result<Tally> {
    let options = StreamOptions {
        count,
        min_len: 8,
        max_len: 512,
        wait: true,
        ..Default::default()
    };
    let t = run(&env.with_device(dev), &options)?;
    ensure!(
        t.records == count && t.bad == 0 && t.gaps == 0,
        "/dev/{dev}: {t:?}"
    );
    Ok(t)
}

/// The platform device of the node `node` (its name under
/// `/sys/bus/platform/devices`).
fn platform_device(node: &str) -> anyhow::Result<String> {
    let want = std::fs::canonicalize(Path::new(DT).join(node))?;
    std::fs::read_dir("/sys/bus/platform/devices")?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| std::fs::canonicalize(p.join("of_node")).ok().as_ref() == Some(&want))
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .with_context(|| format!("no platform device for {node}"))
}

/// A read-only shared mapping of a ring's control page whose file is
/// closed: the mapping alone keeps the file, and so the ring, alive.
fn control_mapping(path: &str, page: u64) -> anyhow::Result<Mapping> {
    let file = open_owned_as(path, Role::Observer).with_context(|| format!("opening {path}"))?;
    map(
        file.as_raw_fd(),
        0,
        page as usize,
        libc::PROT_READ,
        libc::MAP_SHARED,
    )
    .context("mmap of the control page")
}

/// The kernel log must be clean of the driver's complaints, and have the
/// reserved-memory line of every region.
fn check_boot_log(expected: &Expected, report: &mut Report, what: &str) -> anyhow::Result<()> {
    let log = kernel_log::records()?;
    let errors = driver_errors(&log);
    report.expect(
        &format!("{what}: the driver logged no error and no probe failed"),
        errors.is_empty(),
        || errors.join("\n"),
    );
    let regions = expected
        .rings
        .iter()
        .map(|r| (r.base, r.size, r.region.as_str()))
        .chain(
            expected
                .spare
                .iter()
                .map(|s| (s.base, s.size, s.region.as_str())),
        );
    for (base, size, region) in regions {
        let line = reserved_mem_line(base, size, region);
        report.expect(
            &format!("{what}: the kernel reserved {region} no-map"),
            log.iter().any(|l| l.text == line),
            || format!("no {line:?} in the kernel log"),
        );
    }
    Ok(())
}

pub(crate) fn board(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    let expected = board_expectations()?;
    let page = u64::from(expected.page_size);
    report.expect(
        "board: the host's expectations name at least four rings",
        expected.rings.len() >= 4 && expected.refused.is_empty(),
        || format!("{expected:?}"),
    );
    check_boot_log(&expected, report, "board")?;
    let wants = ring_wants(&expected, false);
    let names: Vec<&str> = wants.iter().map(|(_, w)| w.dev).collect();
    check_device_set(&names, report, "board")?;
    check_rings(&wants, page, report, "board");

    // The reference ring: 1 M records. Every other ring, in its own cache
    // and overflow mode: 100 k.
    let first = expected.rings.first().context("no ring")?;
    let result = stream_all(env, &first.dev, 1_000_000).map(|t| {
        println!(
            "# /dev/{}: {} records, {} bytes",
            first.dev, t.records, t.bytes
        )
    });
    report.check(
        &format!(
            "board: /dev/{}: 1 M records from the kernel producer, every one verified, none lost",
            first.dev
        ),
        result,
    );
    for ring in &expected.rings[1..] {
        let overflow = ring.overflow;
        let result = if overflow == Overflow::OverwriteOldest {
            // Overwrite mode loses the oldest records when the consumer
            // lags, by design: every delivered record must be intact.
            let options = StreamOptions {
                overflow,
                count: 100_000,
                max_len: 512,
                ..Default::default()
            };
            run(&env.with_device(&ring.dev), &options).and_then(|t| {
                ensure!(t.records > 0 && t.bad == 0, "/dev/{}: {t:?}", ring.dev);
                println!(
                    "# /dev/{}: {} records delivered, {} overwritten",
                    ring.dev, t.records, t.stats.records_overwritten
                );
                Ok(())
            })
        } else {
            stream_all(env, &ring.dev, 100_000).map(|_| ())
        };
        let cache = ring.cache.devicetree_value();
        report.check(
            &format!(
                "board: /dev/{} ({cache}, {}): 100 k records, every delivered one verified",
                ring.dev,
                overflow.name()
            ),
            result,
        );
    }

    report.check(
        "board: unbind while the sched_switch tracer, the hard-IRQ timer sampler and the \
         built-in producer write, its consumer killed with SIGKILL: the ring moves no more, \
         the clients' later writes are refused as gone and counted, the rebind waits for \
         both to let go",
        expected
            .rings
            .first()
            .context("no ring")
            .and_then(|first| unbind::under_clients(&first.dev, &platform_device(&first.node)?)),
    );
    rebind(env, &expected, report)?;
    reload(env, &expected, report)
}

/// Unbind and rebind the first ring's node through sysfs: while a file of
/// the old device is open or mapped the region is still claimed, so the
/// rebind fails and says why; once it is closed, the rebind works.
fn rebind(env: &Env, expected: &Expected, report: &mut Report) -> anyhow::Result<()> {
    let page = u64::from(expected.page_size);
    let first = expected.rings.first().context("no ring")?;
    let other = expected.rings.get(1).context("a second ring")?;
    let dev = format!("/dev/{}", first.dev);
    let id = platform_device(&first.node)?;
    let stale = format!(
        "rmemring {id}: memory-region {:#x}+{:#x} is still held by the ring of an earlier \
         binding ({dev}): a process still has that device open or mapped, or a kernel module \
         holds the ring (rmemring_get); close it or unload that module, then bind again",
        first.base, first.size
    );

    let mut open = Some(Region::open(&dev, Access::Consume)?);
    let mapping = control_mapping(&dev, page)?;
    let result = (|| -> anyhow::Result<()> {
        unbind::unbind(&id)?;
        ensure!(!Path::new(&dev).exists(), "{dev} still exists after unbind");
        let open = open.as_ref().context("the open ring")?;
        let started = open.start(&ProducerConfig {
            min_len: 8,
            max_len: 8,
            ..Default::default()
        });
        ensure!(
            started.as_ref().err().and_then(|e| e.raw_os_error()) == Some(libc::ENODEV),
            "START on an unbound ring's open file: {started:?}, expected ENODEV"
        );
        Ok(())
    })();
    report.check(
        "board: unbind with the device open and mapped: the device goes, its file refuses work",
        result,
    );

    // Open and mapped, then only mapped: each time the rebind must fail
    // with the reason, and break nothing.
    for (state, keep_open) in [("open and mapped", true), ("only mapped", false)] {
        if !keep_open {
            // Closes the file and unmaps the ring; `mapping` remains.
            drop(open.take());
        }
        let result = (|| -> anyhow::Result<()> {
            let m = mark();
            let bound = bind(&id);
            let log = since(kernel_log::records()?, &m);
            ensure!(
                bound == Err(libc::EBUSY),
                "bind gave {bound:?}, expected EBUSY"
            );
            ensure!(
                log.iter().any(|l| l.level <= 3 && l.text == stale),
                "no {stale:?} in:\n{}",
                log.iter()
                    .map(|l| l.text.as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            // Nothing else: the driver's own line and the core's.
            let errors: Vec<String> = driver_errors(&log)
                .into_iter()
                .filter(|e| !e.ends_with(&stale) && !e.contains("failed with error -16"))
                .collect();
            ensure!(errors.is_empty(), "unexpected: {errors:?}");
            ensure!(!Path::new(&dev).exists(), "{dev} appeared");
            ensure!(
                mapping.word(offset_of!(ControlPage, magic)) == MAGIC,
                "the stale mapping no longer reads the ring's magic"
            );
            let claims = iomem_claims(first.base, first.size)?;
            ensure!(
                claims.len() == 1,
                "the old ring's claim: {claims:?}, expected one"
            );
            // The other rings carry on.
            stream_all(env, &other.dev, 20_000).context("another ring")?;
            Ok(())
        })();
        report.check(
            &format!(
                "board: rebind while the old device is {state} fails with EBUSY saying why; \
                 the other rings stream"
            ),
            result,
        );
    }
    drop(open);
    drop(mapping);

    let result = (|| -> anyhow::Result<()> {
        bind(&id).map_err(|e| anyhow::anyhow!("bind failed with errno {e}"))?;
        ensure!(
            Path::new(&dev).exists(),
            "{dev} did not come back after bind"
        );
        let wants = ring_wants(expected, false);
        let want = &wants.first().context("a ring")?.1;
        check_device(want, page)?;
        let t = stream_all(env, &first.dev, 100_000)?;
        println!("# rebound {dev}: {} records, {} bytes", t.records, t.bytes);
        Ok(())
    })();
    report.check(
        "board: once closed and unmapped, rebind works: same device, base, size and modes, \
         100 k records verified, none lost",
        result,
    );
    Ok(())
}

/// `rmmod` and `insmod` on the board: the devices and claims go, and come
/// back from the device tree alone.
fn reload(env: &Env, expected: &Expected, report: &mut Report) -> anyhow::Result<()> {
    let page = u64::from(expected.page_size);
    let kmod = &env.kmod;
    let result = (|| -> anyhow::Result<()> {
        kmod.rmmod()?;
        for ring in &expected.rings {
            ensure!(
                !Path::new(&format!("/dev/{}", ring.dev)).exists(),
                "/dev/{} after rmmod",
                ring.dev
            );
            let claims = iomem_claims(ring.base, ring.size)?;
            ensure!(claims.is_empty(), "claims after rmmod: {claims:?}");
        }
        let m = mark();
        kmod.load(&kmod.params)?;
        let errors = driver_errors(&since(kernel_log::records()?, &m));
        ensure!(errors.is_empty(), "after insmod: {errors:?}");
        Ok(())
    })();
    report.check(
        "board: rmmod removes every device and claim; insmod brings them back cleanly",
        result,
    );
    let wants = ring_wants(expected, false);
    check_rings(&wants, page, report, "board after insmod");
    let first = expected.rings.first().context("no ring")?;
    let result = stream_all(env, &first.dev, 100_000).map(|_| ());
    report.check(
        &format!(
            "board after insmod: /dev/{}: 100 k records verified, none lost",
            first.dev
        ),
        result,
    );
    Ok(())
}

/// The module-parameter path beside the device tree: loaded with the spare
/// region as `phys_base`/`phys_size`, the parameters' device is
/// `/dev/rmemring0` and the device-tree rings follow, each with its own
/// region.
pub(crate) fn board_params(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    let expected = board_expectations()?;
    let page = u64::from(expected.page_size);
    let [spare] = expected.spare.as_slice() else {
        bail!(
            "{FILE_NAME}: expected one spare region, got {:?}",
            expected.spare
        );
    };
    let kmod = &env.kmod;
    if kmod.loaded() {
        kmod.rmmod()?;
    }
    let params = format!("phys_base={:#x} phys_size={:#x}", spare.base, spare.size);
    let m = mark();
    let loaded = kmod.insmod(&params);
    report.check(
        &format!("board-params: insmod {params}"),
        loaded.map_err(|log| anyhow::anyhow!("{log}")),
    );
    let log = since(kernel_log::records()?, &m);
    let errors = driver_errors(&log);
    report.expect(
        "board-params: insmod with parameters: the driver logged no error",
        errors.is_empty(),
        || errors.join("\n"),
    );
    check_boot_log(&expected, report, "board-params")?;

    let mut wants = vec![(
        format!("parameters ({})", spare.region),
        Want {
            dev: &spare.dev,
            base: spare.base,
            size: spare.size,
            data: spare.data,
            overwrite: false,
            cache: CacheMode::WriteBack.abi(),
        },
    )];
    wants.extend(ring_wants(&expected, true));
    let names: Vec<&str> = wants.iter().map(|(_, w)| w.dev).collect();
    check_device_set(&names, report, "board-params")?;
    check_rings(&wants, page, report, "board-params");

    for (what, dev) in [
        ("the parameters' ring", spare.dev.as_str()),
        (
            "the first device-tree ring",
            expected.rings[0].dev_with_params.as_str(),
        ),
    ] {
        let result = stream_all(env, dev, 100_000).map(|_| ());
        report.check(
            &format!("board-params: {what}, /dev/{dev}: 100 k records verified, none lost"),
            result,
        );
    }
    let result = (|| -> anyhow::Result<()> {
        kmod.rmmod()?;
        for (_, want) in &wants {
            let claims = iomem_claims(want.base, want.size)?;
            ensure!(claims.is_empty(), "claims after rmmod: {claims:?}");
        }
        Ok(())
    })();
    report.check(
        "board-params: rmmod releases every region, parameters' and device tree's",
        result,
    );
    Ok(())
}

/// A board whose overlay is broken: the broken node's probe fails with
/// `message`, the system and the driver stay up, and the sound rings next
/// to it probe and stream.
pub(crate) fn broken(env: &Env, message: &str, report: &mut Report) -> anyhow::Result<()> {
    let expected = board_expectations()?;
    let page = u64::from(expected.page_size);
    let log = kernel_log::records()?;
    // Without a refused node the checks below would hold vacuously.
    report.expect(
        "broken overlay: the expectations name the node it breaks",
        !expected.refused.is_empty(),
        || format!("no refused node in {FILE_NAME}"),
    );
    for node in &expected.refused {
        let id = platform_device(node)?;
        let prefix = format!("rmemring {id}: ");
        let line = log
            .iter()
            .find(|l| l.level <= 3 && l.text.starts_with(&prefix) && l.text.contains(message));
        report.expect(
            &format!("broken overlay: {node}'s probe fails saying {message:?}"),
            line.is_some(),
            || {
                let driver: Vec<&str> = log
                    .iter()
                    .filter(|l| l.text.contains("rmemring"))
                    .map(|l| l.text.as_str())
                    .collect();
                format!(
                    "no such error line; the driver's lines:\n{}",
                    driver.join("\n")
                )
            },
        );
        report.expect(
            &format!("broken overlay: {node} stays unbound"),
            !Path::new(&format!("/sys/bus/platform/devices/{id}/driver")).exists(),
            || format!("{id} has a driver"),
        );
    }
    // No complaint other than the refused nodes'.
    let others: Vec<String> = driver_errors(&log)
        .into_iter()
        .filter(|e| {
            !expected
                .refused
                .iter()
                .any(|node| platform_device(node).is_ok_and(|id| e.contains(&format!(" {id}: "))))
        })
        .collect();
    report.expect(
        "broken overlay: no other error from the driver",
        others.is_empty(),
        || others.join("\n"),
    );
    let modules = std::fs::read_to_string("/proc/modules")?;
    report.expect(
        "broken overlay: the driver stays loaded",
        modules.lines().any(|l| l.starts_with("rmemring ")),
        || modules.clone(),
    );
    let wants = ring_wants(&expected, false);
    report.expect(
        "broken overlay: a sound ring sits next to the broken one",
        !wants.is_empty(),
        || format!("{expected:?}"),
    );
    let names: Vec<&str> = wants.iter().map(|(_, w)| w.dev).collect();
    check_device_set(&names, report, "broken overlay")?;
    check_rings(&wants, page, report, "broken overlay");
    for (node, want) in &wants {
        let result = stream_all(env, want.dev, 100_000).map(|_| ());
        report.check(
            &format!(
                "broken overlay: {node} (/dev/{}): 100 k records verified, none lost",
                want.dev
            ),
            result,
        );
    }
    Ok(())
}
