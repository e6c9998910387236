//! A hostile consumer: random values in its page while the producer runs.

use std::os::fd::AsRawFd;
use std::time::{
    Duration,
    Instant, //
};

use rmemring::device;
use rmemring::layout::{
    ConsumerPage,
    MAGIC, //
};
use rmemring::uapi::ProducerConfig;

use crate::misuse::map_own_page;
use crate::stream::{
    open_fresh,
    still_works, //
};
use crate::{
    Env,
    Report, //
};

/// xorshift64*: random enough to explore, reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

pub(crate) fn hostile(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    for overwrite in [false, true] {
        let mode = if overwrite { "overwrite" } else { "drop-new" };
        let region = open_fresh(env, overwrite)?;
        let l = *region.layout();
        let fd = region.fd().as_raw_fd();
        let page = map_own_page(fd, &l)?;
        let consumer = page.ptr.cast::<ConsumerPage>();
        let config = ProducerConfig {
            min_len: 0,
            max_len: l.max_payload.min(65536),
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
        if !overwrite {
            report.expect(
                "hostile (drop-new): impossible consumer positions are counted and ignored",
                stats.consumer_errors > 0,
                || summary.clone(),
            );
        }
    }
    report.check(
        "hostile: a well-behaved consumer streams verified records afterwards",
        still_works(env),
    );
    Ok(())
}
