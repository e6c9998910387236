//! The three cache modes: the ring works in each, and the user mapping has
//! the kernel mapping's memory type (x86 PAT's list says so).

use anyhow::{
    bail,
    Context, //
};

use rmemring::{
    Access,
    Region,
    RingLayout, //
};
use rmemring_proto::modes::CacheMode;

use crate::support::verify::{
    run_whole,
    StreamOptions, //
};
use crate::support::{
    Env,
    Report, //
};

/// The name x86 PAT's list gives the memory type of `mode`.
fn pat_type(mode: CacheMode) -> &'static str {
    match mode {
        CacheMode::WriteBack => "write-back",
        CacheMode::WriteCombine => "write-combining",
        CacheMode::Uncached => "uncached",
    }
}

/// The x86 PAT memory-type entries (start, end, type) that overlap
/// `[base, base + size)`, from debugfs.
fn pat_entries(base: u64, size: u64) -> anyhow::Result<Vec<(u64, u64, String)>> {
    let list = std::fs::read_to_string("/sys/kernel/debug/x86/pat_memtype_list")
        .context("reading /sys/kernel/debug/x86/pat_memtype_list")?;
    let mut entries = Vec::new();
    // Lines look like "PAT: [mem 0x0000000010000000-0x0000000011002000] uncached".
    for line in list.lines() {
        let Some(rest) = line.strip_prefix("PAT: [mem ") else {
            continue;
        };
        let parsed = rest.split_once(']').and_then(|(range, kind)| {
            let (start, end) = range.split_once('-')?;
            let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
            Some((hex(start)?, hex(end)?, kind.trim().to_string()))
        });
        let Some((start, end, kind)) = parsed else {
            bail!("unexpected PAT line {line:?}");
        };
        if start < base + size && base < end {
            entries.push((start, end, kind));
        }
    }
    Ok(entries)
}

/// Every PAT entry of the region at `base` has type `pat`, the kernel's mapping of
/// the whole region is one of them, and with `mapped` so is the user
/// mapping of the data area; without, the kernel's is the only one.
fn check_pat(l: &RingLayout, base: u64, mapped: bool, pat: &str) -> anyhow::Result<()> {
    let size = l.region_size;
    let entries = pat_entries(base, size)?;
    if let Some(e) = entries.iter().find(|e| e.2 != pat) {
        bail!("a PAT entry of the region is {e:?}, not {pat}: {entries:?}");
    }
    let kernel = entries.iter().any(|e| e.0 == base && e.1 == base + size);
    let data = (base + l.data_offset, base + l.data_offset + l.data_size);
    let user = entries.iter().any(|e| (e.0, e.1) == data);
    match (kernel, user, mapped) {
        (false, _, _) => bail!("no PAT entry for the kernel's mapping of the region: {entries:?}"),
        (true, false, true) => {
            bail!("no PAT entry for the user mapping of the data area: {entries:?}")
        }
        (true, _, false) if entries.len() != 1 => {
            bail!("with nothing mapped, PAT still lists user mappings: {entries:?}")
        }
        _ => Ok(()),
    }
}

pub(crate) fn cachemodes(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    let kmod = &env.kmod;
    if kmod.params.is_empty() {
        report.skip("cachemodes", "needs the module-parameter path");
        return Ok(());
    }
    if !std::path::Path::new("/sys/kernel/debug/x86/pat_memtype_list").exists() {
        report.skip(
            "cachemodes",
            "needs x86 PAT's /sys/kernel/debug/x86/pat_memtype_list (debugfs)",
        );
        return Ok(());
    }
    // Write-back last: the driver stays loaded in its default mode.
    for mode in [
        CacheMode::WriteCombine,
        CacheMode::Uncached,
        CacheMode::WriteBack,
    ] {
        let pat = pat_type(mode);
        let result = (|| -> anyhow::Result<()> {
            kmod.reload_in(mode)?;
            // Mapped (as every consumer maps it: control page, consumer
            // page, data area), then unmapped.
            let observer = Region::open(&env.device, Access::Observe)?;
            let layout = *observer.layout();
            // Root's INFO has the physical base (the control page has 0).
            let base = observer.info()?.phys_base;
            check_pat(&layout, base, true, pat)?;
            drop(observer);
            check_pat(&layout, base, false, pat)?;
            let options = StreamOptions {
                count: 20_000,
                max_len: 1024,
                wait: true,
                ..Default::default()
            };
            run_whole(env, &options).map(drop)
        })();
        report.check(
            &format!(
                "cachemodes: {}: records verified, mapped {pat}",
                mode.name()
            ),
            result,
        );
    }
    kmod.reload()
}
