//! The device-tree board (arm64 `virt` with the overlay from `dts/`): the
//! rings the overlay describes, unbind and rebind, and broken overlays.

use std::path::{
    Path,
    PathBuf, //
};
use std::process::Command;

use anyhow::{
    bail,
    Context, //
};
use rmemring::layout::FLAG_OVERWRITE;
use rmemring::uapi::ProducerConfig;
use rmemring::{
    device,
    Access,
    Region, //
};

use crate::stream::{
    run,
    StreamOptions, //
};
use crate::{
    Env,
    Report, //
};

const DT: &str = "/sys/firmware/devicetree/base";
const DRIVER: &str = "/sys/bus/platform/drivers/rmemring";

/// A `compatible = "rmemring,ring"` node and the region it points at.
#[derive(Debug)]
struct Node {
    /// The node's directory under `/sys/firmware/devicetree/base`.
    path: PathBuf,
    /// Its `label`, if any.
    label: Option<String>,
    /// `reg` of the reserved-memory node its `memory-region` points at.
    base: u64,
    size: u64,
    overwrite: bool,
}

fn read_cells(path: &Path) -> anyhow::Result<Vec<u32>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(bytes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

fn read_string(path: &Path) -> Option<String> {
    std::fs::read(path).ok().map(|b| {
        String::from_utf8_lossy(&b)
            .trim_end_matches('\0')
            .to_string()
    })
}

/// Finds the rmemring nodes and resolves their `memory-region`s.
fn nodes() -> anyhow::Result<Vec<Node>> {
    // Phandles of the reserved-memory children, with their `reg`
    // (#address-cells = #size-cells = 2, as the overlay sets them).
    let mut regions = Vec::new();
    for entry in std::fs::read_dir(Path::new(DT).join("reserved-memory"))? {
        let dir = entry?.path();
        let (Ok(phandle), Ok(reg)) = (
            read_cells(&dir.join("phandle")),
            read_cells(&dir.join("reg")),
        ) else {
            continue;
        };
        if phandle.len() == 1 && reg.len() == 4 {
            let base = (u64::from(reg[0]) << 32) | u64::from(reg[1]);
            let size = (u64::from(reg[2]) << 32) | u64::from(reg[3]);
            regions.push((phandle[0], base, size));
        }
    }
    let mut nodes = Vec::new();
    for entry in std::fs::read_dir(DT)? {
        let path = entry?.path();
        if read_string(&path.join("compatible")).as_deref() != Some("rmemring,ring") {
            continue;
        }
        let phandle = read_cells(&path.join("memory-region"))?;
        let &(_, base, size) = regions
            .iter()
            .find(|r| phandle.first() == Some(&r.0))
            .with_context(|| format!("{}: memory-region points nowhere", path.display()))?;
        nodes.push(Node {
            label: read_string(&path.join("label")),
            overwrite: read_string(&path.join("rmemring,overflow")).as_deref() == Some("overwrite"),
            path,
            base,
            size,
        });
    }
    nodes.sort_by_key(|n| n.base);
    Ok(nodes)
}

/// The device node of the ring at `base`, found through `INFO` among the
/// `rmemring*` devices and those named by the nodes' labels (never any
/// other device: opening some, a watchdog say, has effects).
fn device_for(base: u64, nodes: &[Node]) -> anyhow::Result<String> {
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/dev")?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("rmemring"))
        })
        .collect();
    candidates.extend(
        nodes
            .iter()
            .filter_map(|n| n.label.as_ref())
            .map(|l| Path::new("/dev").join(l)),
    );
    for path in candidates {
        let Ok(region) = Region::open(&path, Access::Observe) else {
            continue;
        };
        if device::info(region.fd()).is_ok_and(|i| i.phys_base == base) {
            return Ok(path.display().to_string());
        }
    }
    bail!("no device for the ring at {base:#x}")
}

fn sysfs_write(file: &str, value: &str) -> anyhow::Result<()> {
    std::fs::write(file, value).with_context(|| format!("writing {value:?} to {file}"))
}

pub(crate) fn board(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    let nodes = nodes()?;
    report.expect(
        "board: the overlay's rmemring nodes are in the device tree",
        nodes.len() >= 2,
        || format!("{nodes:?}"),
    );
    let iomem = std::fs::read_to_string("/proc/iomem")?;
    for node in &nodes {
        let name = node
            .path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let result = (|| -> anyhow::Result<()> {
            let dev = device_for(node.base, &nodes)?;
            if let Some(label) = &node.label {
                if dev != format!("/dev/{label}") {
                    bail!("labelled {label:?} but appears as {dev}");
                }
            }
            let region = Region::open(&dev, Access::Observe)?;
            let info = device::info(region.fd())?;
            if info.region_size != node.size {
                bail!(
                    "region size {:#x}, the overlay says {:#x}",
                    info.region_size,
                    node.size
                );
            }
            if (info.flags & FLAG_OVERWRITE != 0) != node.overwrite {
                bail!(
                    "overflow mode differs from the overlay (flags {:#x})",
                    info.flags
                );
            }
            let claim = format!(
                "{:08x}-{:08x} : rmemring",
                node.base,
                node.base + node.size - 1
            );
            if !iomem.contains(&claim) {
                bail!("{claim:?} not in /proc/iomem");
            }
            println!(
                "# {name}: {dev}, {:#x} bytes at {:#x}, data area {} KiB",
                info.region_size,
                info.phys_base,
                info.data_size / 1024
            );
            Ok(())
        })();
        report.check(
            &format!(
                "board: {name}: device, base, size and mode match the overlay and /proc/iomem"
            ),
            result,
        );
    }

    let options = StreamOptions {
        count: 1_000_000,
        min_len: 8,
        max_len: 512,
        wait: true,
        ..Default::default()
    };
    let t = run(env, &options)?;
    report.expect(
        "board: 1 M records from the kernel producer, every one verified",
        t.records == options.count && t.bad == 0 && t.gaps == 0,
        || format!("{t:?}"),
    );

    // Unbind and rebind the first ring's platform device through sysfs,
    // once while its device is open.
    let first = nodes.first().context("no rmemring node")?;
    let platform = std::fs::read_dir("/sys/bus/platform/devices")?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            std::fs::canonicalize(p.join("of_node")).ok() == std::fs::canonicalize(&first.path).ok()
        })
        .context("no platform device for the first ring")?;
    let id = platform
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let dev = device_for(first.base, &nodes)?;
    let result = (|| -> anyhow::Result<()> {
        let open = Region::open(&dev, Access::Consume)?;
        sysfs_write(&format!("{DRIVER}/unbind"), &id)?;
        if Path::new(&dev).exists() {
            bail!("{dev} still exists after unbind");
        }
        let started = device::start(
            open.fd(),
            &ProducerConfig {
                min_len: 8,
                max_len: 8,
                ..Default::default()
            },
        );
        if started.as_ref().err().and_then(|e| e.raw_os_error()) != Some(libc::ENODEV) {
            bail!("START on an unbound ring's open file: {started:?}, expected ENODEV");
        }
        drop(open);
        sysfs_write(&format!("{DRIVER}/bind"), &id)?;
        if !Path::new(&dev).exists() {
            bail!("{dev} did not come back after bind");
        }
        Ok(())
    })();
    report.check(
        "board: unbind with the device open, close, rebind through sysfs",
        result,
    );
    let t = run(
        env,
        &StreamOptions {
            count: 100_000,
            wait: true,
            ..Default::default()
        },
    )?;
    report.expect(
        "board: the rebound ring streams verified records",
        t.records == 100_000 && t.bad == 0,
        || format!("{t:?}"),
    );
    Ok(())
}

/// A board whose overlay is broken: the probe fails with `message`, the
/// system and the driver stay up, and no ring device appears.
pub(crate) fn broken(message: &str, report: &mut Report) -> anyhow::Result<()> {
    let log = Command::new("dmesg").output()?;
    let log = String::from_utf8_lossy(&log.stdout);
    let line = log
        .lines()
        .find(|l| l.contains("rmemring") && l.contains(message));
    report.expect(
        &format!("broken overlay: the probe fails saying {message:?}"),
        line.is_some(),
        || format!("no such line in:\n{log}"),
    );
    let modules = std::fs::read_to_string("/proc/modules")?;
    report.expect(
        "broken overlay: the driver stays loaded",
        modules.contains("rmemring "),
        || modules.clone(),
    );
    let devices: Vec<String> = std::fs::read_dir("/dev")?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("rmemring"))
        .collect();
    report.expect(
        "broken overlay: no ring device appears",
        devices.is_empty(),
        || format!("{devices:?}"),
    );
    Ok(())
}
