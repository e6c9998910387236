//! A hostile consumer: random values in its page while the producer runs.

use std::os::fd::AsRawFd;
use std::time::{
    Duration,
    Instant, //
};

use rmemring::layout::{
    ConsumerPage,
    RECORD_ALIGN, //
};
use rmemring::uapi::ProducerConfig;
use rmemring_proto::modes::Overflow;

use crate::support::fd::{
    poll_in,
    read_into,
    set_nonblocking, //
};
use crate::support::guard::Guard;
use crate::support::ring::{
    consumer_with_page,
    control_intact, //
};
use crate::support::rng::Rng;
use crate::support::verify::{
    retained,
    still_works,
    StreamOptions, //
};
use crate::support::{
    Env,
    Report, //
};

pub(crate) fn hostile(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    let guard = Guard::set(env, "hostile", report)?;
    for overflow in Overflow::ALL {
        let mode = overflow.name();
        let (region, page) = consumer_with_page(env, overflow)?;
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
        region.start(&config)?;
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ u64::from(overflow.flag()));
        let start = Instant::now();
        let mut writes = 0u64;
        let mut buf = vec![0u8; 1 << 16];
        set_nonblocking(fd, true);
        while start.elapsed() < Duration::from_secs(3) {
            let head = region.control().producer_pos;
            let value = match rng.next() % 8 {
                0 => rng.next(),
                1 => head.wrapping_add(rng.next() % (4 * l.data_size)),
                2 => head.wrapping_sub(l.data_size + 8 + rng.next() % l.data_size),
                3 => head | 1,
                4 => head.wrapping_sub(rng.next() % l.data_size) & !(RECORD_ALIGN - 1),
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
                // Poll and read with the garbage in place: any outcome
                // will do, as long as there is one.
                let _ = poll_in(fd, Duration::ZERO);
                let _ = read_into(fd, &mut buf);
            }
        }
        region.stop()?;
        let stats = region.stats()?;
        let control = region.control();
        let intact = control_intact(&region);
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
        if overflow == Overflow::OverwriteOldest {
            // Whatever the consumer writes, the producer retires records
            // oldest first and never drops one: the ring holds exactly the
            // records after the overwritten ones, intact.
            let kept = retained(&region, &options);
            report.expect(
                &format!("hostile ({mode}): nothing dropped, and the ring holds exactly the records after the overwritten ones, intact"),
                stats.records_dropped == 0
                    && stats.records_overwritten > 0
                    && kept.as_ref().is_ok_and(|&(first, count)| {
                        first == stats.records_overwritten && first + count == stats.records_produced
                    }),
                || format!("{summary}; retained (first, count): {kept:?}"),
            );
        } else {
            report.expect(
                &format!("hostile ({mode}): impossible consumer positions are counted and ignored"),
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
