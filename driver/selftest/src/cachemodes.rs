//! The three cache modes: the ring works in each, and the user mapping has
//! the kernel mapping's memory type (x86 PAT's list says so).

use std::time::Duration;

use anyhow::{
    bail,
    Context, //
};

use crate::stream::{
    run,
    StreamOptions, //
};
use crate::{
    Env,
    Report, //
};

/// The PAT memory type of the range starting at `base`, from debugfs.
fn pat_type(base: u64) -> anyhow::Result<String> {
    let list = std::fs::read_to_string("/sys/kernel/debug/x86/pat_memtype_list")
        .context("reading /sys/kernel/debug/x86/pat_memtype_list")?;
    let start = format!("PAT: [mem 0x{base:016x}-");
    list.lines()
        .find(|l| l.starts_with(&start))
        .and_then(|l| l.rsplit(' ').next())
        .map(str::to_string)
        .with_context(|| format!("no PAT entry for {base:#x} in:\n{list}"))
}

pub(crate) fn cachemodes(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    let kmod = &env.kmod;
    if kmod.params.is_empty() || !std::path::Path::new("/sys/kernel/debug/x86").exists() {
        println!("ok - cachemodes # SKIP: needs the x86_64 module-parameter path");
        return Ok(());
    }
    let base = kmod
        .params
        .split_whitespace()
        .find_map(|w| w.strip_prefix("phys_base="))
        .map(crate::kmod::parse)
        .transpose()?
        .unwrap_or(0);
    for (mode, name, pat) in [
        (1, "write-combine", "write-combining"),
        (2, "uncached", "uncached"),
        (0, "write-back", "write-back"),
    ] {
        let result = (|| -> anyhow::Result<()> {
            if kmod.loaded() {
                kmod.rmmod()?;
            }
            kmod.insmod(&format!("{} cache_mode={mode}", kmod.params))
                .map_err(|log| anyhow::anyhow!("insmod: {log}"))?;
            let options = StreamOptions {
                count: 20_000,
                max_len: 1024,
                wait: true,
                ..Default::default()
            };
            // The stream maps the ring; check the memory type while it runs.
            let stream = std::thread::scope(|s| {
                let handle = s.spawn(|| run(env, &options));
                std::thread::sleep(Duration::from_millis(300));
                let kernel = pat_type(base);
                (handle.join().expect("stream thread"), kernel)
            });
            let (tally, kernel) = stream;
            let tally = tally?;
            if tally.records != options.count || tally.bad != 0 {
                bail!("{} records, {} bad", tally.records, tally.bad);
            }
            let kernel = kernel?;
            if kernel != pat {
                bail!("PAT lists the region as {kernel}, expected {pat}");
            }
            Ok(())
        })();
        report.check(
            &format!("cachemodes: {name}: records verified, mapped {pat}"),
            result,
        );
    }
    if kmod.loaded() {
        kmod.rmmod()?;
    }
    kmod.ensure_loaded()
}
