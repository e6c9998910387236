//! `rmemring info`: what a ring is and what state it is in.

use std::path::Path;

use rmemring::{
    Backend,
    CacheMode,
    Overflow,
    RingLayout, //
};
use serde::Serialize;

use crate::args::bytes;
use crate::snapshot::{
    cache_name,
    observe,
    Snapshot, //
};
use crate::DeviceArg;

/// Show a ring's layout, sizes, physical base, cache and overflow modes and
/// producer state. Opens the ring read-only (as an observer), so it works
/// beside a running consumer.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    #[command(flatten)]
    ring: DeviceArg,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: &Args) -> anyhow::Result<()> {
    let region = observe(&args.ring.device)?;
    let layout = *region.layout();
    let device = region.backend() == Backend::Device;
    let info = if device { Some(region.info()?) } else { None };
    let recovery = if device {
        Some(region.recovery()?)
    } else {
        None
    };
    let snap = Snapshot::take(&region)?;
    let driver = snap.driver;
    // The driver gives the physical address to CAP_SYS_ADMIN only, and
    // only through INFO (the control page, which every opener maps, says
    // 0); a ring file has none.
    let phys_base = info.map_or(layout.phys_base, |i| i.phys_base);

    if args.json {
        crate::out::json_line(&Json {
            abi_version: info.map_or(rmemring::layout::ABI_VERSION, |i| i.abi_version),
            backend: if device { "device" } else { "file" },
            backlog: snap.backlog(),
            cache_mode: layout.cache_mode(),
            consumer_offset: layout.consumer_offset,
            consumer_open: driver.map(|d| d.consumer_open),
            consumer_pos: snap.consumer_pos,
            data_offset: layout.data_offset,
            data_size: layout.data_size,
            index: info.map(|i| i.index),
            max_payload: layout.max_payload,
            overflow: layout.overflow(),
            page_size: layout.page_size,
            path: &args.ring.device,
            phys_base,
            producer_pos: snap.producer_pos,
            producer_running: driver.map(|d| d.producer_running),
            recovery: recovery.as_ref().map(crate::recovered::Json::of),
            region_size: layout.region_size,
            state: info.map(|i| {
                if i.state == rmemring::uapi::STATE_RECOVERED {
                    "recovered"
                } else {
                    "live"
                }
            }),
        })?;
        return Ok(());
    }

    let path = args.ring.device.display();
    match info {
        Some(i) => outln!(
            "ring          {path} (device {}, ABI version {})",
            i.index,
            i.abi_version
        )?,
        None => outln!("ring          {path} (ring file)")?,
    }
    let phys = match phys_base {
        0 if device => "physical address shown to CAP_SYS_ADMIN only".to_owned(),
        0 => "no physical address".to_owned(),
        base => format!("physical {base:#x}..{:#x}", base + layout.region_size),
    };
    print_layout(&layout, &phys)?;
    if let Some(d) = driver {
        outln!(
            "producer      {}",
            if d.producer_running {
                "running"
            } else {
                "stopped"
            }
        )?;
        outln!(
            "consumer      {}",
            if d.consumer_open {
                "open (a process holds the device read-write)"
            } else {
                "none"
            }
        )?;
    }
    outln!(
        "positions     producer {:#x}, consumer {:#x}: {} bytes not yet released",
        snap.producer_pos,
        snap.consumer_pos,
        snap.backlog()
    )?;
    if let Some(found) = &recovery {
        crate::recovered::print(found)?;
    }
    Ok(())
}

/// `rmemring info --json` (fields in alphabetical order, see
/// [`json_line`](crate::out::json_line)); `null` for what only a device
/// has.
#[derive(Serialize)]
struct Json<'a> {
    abi_version: u32,
    backend: &'static str,
    backlog: u64,
    cache_mode: CacheMode,
    consumer_offset: u64,
    consumer_open: Option<bool>,
    consumer_pos: u64,
    data_offset: u64,
    data_size: u64,
    index: Option<u32>,
    max_payload: u32,
    overflow: Overflow,
    page_size: u32,
    path: &'a Path,
    phys_base: u64,
    producer_pos: u64,
    producer_running: Option<bool>,
    recovery: Option<crate::recovered::Json>,
    region_size: u64,
    state: Option<&'static str>,
}

/// The lines that describe `layout`, from `region` to `overflow`; `phys`
/// says where the region is in physical memory, if anywhere.
pub(crate) fn print_layout(layout: &RingLayout, phys: &str) -> std::io::Result<()> {
    outln!(
        "region        {} ({:#x} bytes), {phys}",
        split_size(layout.region_size),
        layout.region_size
    )?;
    outln!(
        "layout        control page at 0, consumer page at {:#x}, data area at {:#x} ({}-byte pages)",
        layout.consumer_offset, layout.data_offset, layout.page_size
    )?;
    outln!(
        "data area     {} ({} bytes); records up to {} B of payload",
        bytes(layout.data_size),
        layout.data_size,
        layout.max_payload
    )?;
    outln!("cache mode    {}", cache_name(layout))?;
    let overflow = match layout.overflow() {
        Overflow::DropNew => "drop-new (a full ring drops new records, or the producer waits)",
        Overflow::OverwriteOldest => {
            "overwrite-oldest (a flight recorder: the producer overwrites unread records)"
        }
    };
    outln!("overflow      {overflow}")
}

/// A size as whole MiB plus the rest: `16 MiB + 8 KiB`.
fn split_size(n: u64) -> String {
    let mib = n & !((1 << 20) - 1);
    match (mib, n - mib) {
        (0, _) | (_, 0) => bytes(n),
        (mib, rest) => format!("{} + {}", bytes(mib), bytes(rest)),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_split_at_mib() {
        assert_eq!(super::split_size(0x100_2000), "16 MiB + 8 KiB");
        assert_eq!(super::split_size(1 << 20), "1 MiB");
        assert_eq!(super::split_size(12 << 10), "12 KiB");
    }
}
