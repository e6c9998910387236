//! The guard page past the reference region, which no driver instance
//! owns: filled before a hostile run and compared byte for byte after it,
//! so that a kernel write past the end of the data area shows.

use std::os::fd::AsRawFd;

use anyhow::{
    bail,
    Context, //
};
use rmemring::uapi::{
    ProducerConfig,
    ResetConfig, //
};
use rmemring::{
    pattern,
    Access,
    Region, //
};
use rmemring_proto::stream::Records;

use super::env::Env;
use super::kmod::parse;
use super::mapping::map_data;
use super::report::Report;
use super::ring::produce;

/// A reserved page just past the region the driver was given (the
/// reference VM reserves one: `xtask/src/reference.rs`). No driver
/// instance owns it, so only a write out of bounds can change it.
///
/// The test fills the page through the driver itself: loaded with a
/// three-page region ending with the guard, its data area is the guard.
/// Loading initialises the first two pages (the end of the real ring's
/// data area, which holds nothing anyone reads before the next producer
/// writes it) and zeroes the third, the guard, so the driver cannot show
/// what the page held before it was loaded: the test reads it back from
/// `/dev/mem` (the page is reserved, not RAM, which `STRICT_DEVMEM` lets
/// through).
pub(crate) struct Guard {
    /// Physical address of the page.
    base: u64,
}

impl Guard {
    /// The guard page, if the `memmap=` reservation extends a page or more
    /// past the driver's region.
    fn find(env: &Env) -> anyhow::Result<Option<Self>> {
        let (Some(base), Some(size)) = (env.kmod.param("phys_base")?, env.kmod.param("phys_size")?)
        else {
            return Ok(None);
        };
        let cmdline = std::fs::read_to_string("/proc/cmdline")?;
        let reserved = cmdline
            .split_whitespace()
            .filter_map(|w| w.strip_prefix("memmap="))
            .filter_map(|m| m.split_once('$'))
            .map(|(s, b)| Ok::<_, anyhow::Error>((parse(b)?, parse(s)?)))
            .collect::<Result<Vec<_>, _>>()?;
        let page = 4096;
        let guard = base + size;
        let covered = reserved
            .iter()
            .any(|&(b, s)| b <= base && guard + page <= b + s);
        Ok(covered.then_some(Self { base: guard }))
    }

    /// The guard, filled, and its bytes; where there is none, `None` and a
    /// skipped check `GROUP: guard page`.
    pub(crate) fn set(
        env: &Env,
        group: &str,
        report: &mut Report,
    ) -> anyhow::Result<Option<(Self, Vec<u8>)>> {
        let Some(guard) = Self::find(env)? else {
            report.skip(
                &format!("{group}: guard page"),
                "no reserved page after the region",
            );
            return Ok(None);
        };
        let before = guard.fill(env)?;
        Ok(Some((guard, before)))
    }

    /// Checks that the guard holds `before` (what [`Self::fill`] left
    /// there) byte for byte, as check `GROUP: ...`.
    pub(crate) fn expect_unchanged(&self, before: &[u8], group: &str, report: &mut Report) {
        let after = self.read();
        report.expect(
            &format!(
                "{group}: the reserved page after the region ({:#x}) is unchanged, byte for byte",
                self.base
            ),
            after.as_ref().is_ok_and(|a| a == before),
            || match &after {
                Ok(a) => {
                    let first = a.iter().zip(before).position(|(x, y)| x != y);
                    format!("first difference at byte {first:?}")
                }
                Err(e) => format!("{e:#}"),
            },
        );
    }

    /// The driver's parameters for the region whose data area is the guard.
    fn params(&self) -> String {
        format!("phys_base={:#x} phys_size=0x3000", self.base - 0x2000)
    }

    /// Runs `f` with the driver loaded on the guard, then loads it back on
    /// the reference region.
    fn with_probe<T>(&self, env: &Env, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
        let kmod = &env.kmod;
        if kmod.loaded() {
            kmod.rmmod()?;
        }
        kmod.load(&self.params())?;
        let result = f();
        kmod.rmmod()?;
        kmod.ensure_loaded()?;
        result
    }

    /// The guard's 4096 bytes, through a read-only mapping.
    fn snapshot(region: &Region) -> anyhow::Result<Vec<u8>> {
        let l = region.layout();
        if l.data_size != 4096 {
            bail!(
                "the probe's data area is {:#x} bytes, not one page",
                l.data_size
            );
        }
        Ok(map_data(region.fd().as_raw_fd(), l)?.bytes())
    }

    /// Fills the guard with four records of the probe's producer, checks
    /// that they are there, and returns the page's bytes.
    fn fill(&self, env: &Env) -> anyhow::Result<Vec<u8>> {
        self.with_probe(env, || {
            let mut region = Region::open(&env.device, Access::Consume)?;
            region.reset(&ResetConfig::default())?;
            let len = region.layout().max_payload;
            let config = ProducerConfig {
                min_len: len,
                max_len: len,
                count: 4,
                ..Default::default()
            };
            produce(&region, &config).context("the probe's producer")?;
            let stats = region.stats()?;
            let page = Self::snapshot(&region)?;
            // Four records of `len` bytes, back to back, fill the page.
            let mut records = Records::new(&page);
            for (seq, record) in records.by_ref().enumerate() {
                let record = record.map_err(|e| anyhow::anyhow!("the guard did not fill: {e}"))?;
                let header = record.header;
                if header.seq != seq as u64 || !pattern::verify(header.seq, record.payload) {
                    bail!("the guard did not fill: record {seq} is {header:?}; {stats:?}");
                }
            }
            if records.offset() != page.len() {
                bail!(
                    "the guard did not fill: {} bytes of records; {stats:?}",
                    records.offset()
                );
            }
            Ok(page)
        })
        .context("filling the guard page")
    }

    /// The guard's bytes now, from `/dev/mem`.
    fn read(&self) -> anyhow::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let mem = std::fs::File::open("/dev/mem").context("opening /dev/mem (CONFIG_DEVMEM)")?;
        let mut page = vec![0u8; 4096];
        mem.read_exact_at(&mut page, self.base)
            .with_context(|| format!("reading the guard page at {:#x} from /dev/mem", self.base))?;
        Ok(page)
    }
}
