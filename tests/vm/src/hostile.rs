//! A hostile consumer: random values in its page while the producer runs.

use std::os::fd::AsRawFd;
use std::sync::Arc;

use anyhow::{
    bail,
    Context, //
};
use std::time::{
    Duration,
    Instant, //
};

use rmemring::layout::{
    ConsumerPage,
    MAGIC, //
};
use rmemring::uapi::ProducerConfig;
use rmemring::uapi::ResetConfig;
use rmemring::{
    device,
    pattern,
    Access,
    Region, //
};

use crate::misuse::{
    map_data,
    map_own_page,
    Mapping, //
};
use crate::stream::{
    open_fresh,
    retained,
    still_works,
    StreamOptions, //
};
use crate::{
    Env,
    Report, //
};

/// xorshift64*: random enough to explore, reproducible from the seed.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// True one time in `n`.
    pub(crate) fn one_in(&mut self, n: u64) -> bool {
        self.next().is_multiple_of(n)
    }
}

pub(crate) fn hostile(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    let guard = Guard::set(env, "hostile", report)?;
    for overwrite in [false, true] {
        let mode = if overwrite { "overwrite" } else { "drop-new" };
        let (region, page) = consumer_with_page(env, overwrite)?;
        let l = *region.layout();
        let fd = region.fd().as_raw_fd();
        let consumer = page.ptr.cast::<ConsumerPage>();
        let config = ProducerConfig {
            min_len: 0,
            max_len: l.max_payload.min(65536),
            ..Default::default()
        };
        let options = StreamOptions {
            min_len: config.min_len,
            max_len: config.max_len,
            ..Default::default()
        };
        device::start(region.fd(), &config)?;
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ overwrite as u64);
        let start = Instant::now();
        let mut writes = 0u64;
        let mut buf = vec![0u8; 1 << 16];
        // SAFETY: Plain fcntl on our descriptor.
        unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK) };
        while start.elapsed() < Duration::from_secs(3) {
            let head = region.control().producer_pos;
            let value = match rng.next() % 8 {
                0 => rng.next(),
                1 => head.wrapping_add(rng.next() % (4 * l.data_size)),
                2 => head.wrapping_sub(l.data_size + 8 + rng.next() % l.data_size),
                3 => head | 1,
                4 => head.wrapping_sub(rng.next() % l.data_size) & !7,
                5 => 0,
                6 => u64::MAX,
                _ => head,
            };
            let word = (rng.next() % (l.page_size as u64 / 8)) as usize;
            // SAFETY: `consumer` points to our writable consumer page (one
            // page, so `word` is inside it); the kernel must cope with
            // whatever we write there.
            unsafe {
                std::ptr::addr_of_mut!((*consumer).consumer_pos).write_volatile(value);
                std::ptr::addr_of_mut!((*consumer).need_wakeup).write_volatile(rng.next() as u32);
                consumer.cast::<u64>().add(word).write_volatile(rng.next());
            }
            writes += 1;
            if writes.is_multiple_of(64) {
                // Poll and read with the garbage in place.
                let mut pfd = libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: One valid pollfd, no timeout.
                unsafe { libc::poll(&mut pfd, 1, 0) };
                // SAFETY: `buf` is valid for its length.
                unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            }
        }
        device::stop(region.fd())?;
        let stats = device::stats(region.fd())?;
        let control = region.control();
        let intact = control.magic == MAGIC
            && control.data_size == l.data_size
            && control.data_offset == l.data_offset
            && control.region_size == l.region_size
            && control.phys_base == l.phys_base;
        let summary = format!(
            "{writes} scribbles; producer wrote {} records, dropped {}, overwrote {}, ignored {} bad consumer positions",
            stats.records_produced, stats.records_dropped, stats.records_overwritten, stats.consumer_errors
        );
        println!("# {mode}: {summary}");
        report.expect(
            &format!(
                "hostile ({mode}): the producer keeps going and its control page stays intact"
            ),
            intact && stats.records_produced > 0,
            || format!("{summary}; control page {control:?}"),
        );
        if overwrite {
            // Whatever the consumer writes, the producer retires records
            // oldest first and never drops one: the ring holds exactly the
            // records after the overwritten ones, intact.
            let kept = retained(&region, &options);
            report.expect(
                "hostile (overwrite): nothing dropped, and the ring holds exactly the records after the overwritten ones, intact",
                stats.records_dropped == 0
                    && stats.records_overwritten > 0
                    && kept.as_ref().is_ok_and(|&(first, count)| {
                        first == stats.records_overwritten && first + count == stats.records_produced
                    }),
                || format!("{summary}; retained (first, count): {kept:?}"),
            );
        } else {
            report.expect(
                "hostile (drop-new): impossible consumer positions are counted and ignored",
                stats.consumer_errors > 0,
                || summary.clone(),
            );
        }
    }
    if let Some((guard, before)) = &guard {
        guard.expect_unchanged(before, "hostile", report);
    }
    report.check(
        "hostile: a well-behaved consumer streams verified records afterwards",
        still_works(env),
    );
    Ok(())
}

/// A fresh ring of the given mode, opened as its consumer, and the
/// consumer page mapped writable on its own.
pub(crate) fn consumer_with_page(
    env: &Env,
    overwrite: bool,
) -> anyhow::Result<(Arc<Region>, Mapping)> {
    let region = open_fresh(env, overwrite)?;
    let page = map_own_page(region.fd().as_raw_fd(), region.layout())?;
    Ok((region, page))
}

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
        let param = |name: &str| {
            env.kmod
                .params
                .split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .map(crate::kmod::parse)
                .transpose()
        };
        let (Some(base), Some(size)) = (param("phys_base=")?, param("phys_size=")?) else {
            return Ok(None);
        };
        let cmdline = std::fs::read_to_string("/proc/cmdline")?;
        let reserved = cmdline
            .split_whitespace()
            .filter_map(|w| w.strip_prefix("memmap="))
            .filter_map(|m| m.split_once('$'))
            .map(|(s, b)| Ok::<_, anyhow::Error>((crate::kmod::parse(b)?, crate::kmod::parse(s)?)))
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
        kmod.insmod(&self.params())
            .map_err(|log| anyhow::anyhow!("insmod {}: {log}", self.params()))?;
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
        let data = map_data(region.fd().as_raw_fd(), l)?;
        // SAFETY: No producer runs on the probe while we read; the mapping
        // is `data.len` bytes.
        Ok(unsafe { std::slice::from_raw_parts(data.ptr.cast_const(), data.len) }.to_vec())
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
            device::start(region.fd(), &config)?;
            let start = Instant::now();
            while device::stats(region.fd())?.producer_running != 0 {
                if start.elapsed() > Duration::from_secs(20) {
                    bail!("the probe's producer did not finish");
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let stats = device::stats(region.fd())?;
            let page = Self::snapshot(&region)?;
            // Four records of `len` bytes, back to back, fill the page.
            let stride = page.len() / 4;
            for (seq, record) in page.chunks(stride).enumerate() {
                let header: rmemring::layout::RecordHeader =
                    bytemuck::pod_read_unaligned(&record[..24]);
                let payload = &record[24..24 + len as usize];
                if header.seq != seq as u64 || !pattern::verify(seq as u64, payload) {
                    bail!("the guard did not fill: record {seq} is {header:?}; {stats:?}");
                }
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
