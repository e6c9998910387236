//! Sleeping and waking: no CPU when idle, no lost wake-ups.

use std::os::fd::AsRawFd;
use std::time::{
    Duration,
    Instant, //
};

use rmemring::uapi::ProducerConfig;
use rmemring::{
    device,
    Wait, //
};

use crate::stream::open_fresh;
use crate::{
    Env,
    Report, //
};

/// CPU time this process has used.
fn cpu_time() -> Duration {
    // SAFETY: `getrusage` fills the struct we pass.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

pub(crate) fn wakeups(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    let region = open_fresh(env, false)?;
    let mut consumer = region.consumer()?;

    // Idle: a blocked consumer costs (next to) nothing.
    let cpu = cpu_time();
    let wall = Instant::now();
    let woke = consumer.wait(Some(Duration::from_secs(3)))?;
    let (cpu, wall) = (cpu_time() - cpu, wall.elapsed());
    report.expect(
        "wakeups: an idle blocking consumer uses no CPU (3 s wait)",
        !woke && wall >= Duration::from_secs(3) && cpu < Duration::from_millis(30),
        || format!("woke {woke}, waited {wall:?}, used {cpu:?} of CPU"),
    );

    // Data wakes it.
    let producer_fd = region.clone();
    let starter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let config = ProducerConfig {
            min_len: 64,
            max_len: 64,
            count: 1,
            ..Default::default()
        };
        device::start(producer_fd.fd(), &config)
    });
    let t = Instant::now();
    let woke = consumer.wait(Some(Duration::from_secs(10)))?;
    let waited = t.elapsed();
    starter.join().expect("starter thread")?;
    report.expect(
        "wakeups: a sleeping consumer wakes when a record arrives",
        woke && waited < Duration::from_secs(5),
        || format!("woke {woke} after {waited:?}"),
    );
    for record in &mut consumer.batch()? {
        record?;
    }
    drop(consumer);
    drop(region);

    cycles(env, report)?;
    epoll(env, report)?;
    crate::sleepers::across_reset(env, report)?;
    crate::sleepers::two_readers(env, report)
}

/// At least 100 000 sleep/wake cycles, none lost.
fn cycles(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    const CYCLES: u64 = 100_000;
    const LIMIT: Duration = Duration::from_secs(240);
    let region = open_fresh(env, false)?;
    let mut consumer = region.consumer()?;
    // Sleep as soon as the ring is empty: every wait is a sleep.
    consumer.set_wait(Wait::Spin(0));
    let config = ProducerConfig {
        min_len: 8,
        max_len: 8,
        rate: 20_000,
        batch: 1,
        ..Default::default()
    };
    device::start(region.fd(), &config)?;
    let tokens = region.consumer_page().wake_token;
    let start = Instant::now();
    let mut records = 0u64;
    let mut lost_wakeups = 0u64;
    let mut next_seq = 0u64;
    let mut bad = 0u64;
    while consumer.stats().sleeps < CYCLES && start.elapsed() < LIMIT {
        if !consumer.wait(Some(Duration::from_secs(2)))? {
            // Two seconds without a wake-up while the producer publishes
            // 20 000 records a second: the wake-up was lost.
            lost_wakeups += 1;
            if lost_wakeups > 3 {
                break;
            }
        }
        for record in &mut consumer.batch()? {
            let record = record?;
            if record.seq != next_seq {
                bad += 1;
            }
            next_seq = record.seq + 1;
            records += 1;
        }
    }
    device::stop(region.fd())?;
    let stats = device::stats(region.fd())?;
    let sleeps = consumer.stats().sleeps;
    // Every attempt to sleep takes a fresh token; one that finds data
    // withdraws without sleeping, but the producer may have answered it.
    let attempts = u64::from(region.consumer_page().wake_token.wrapping_sub(tokens));
    let summary = format!(
        "{sleeps} sleeps ({attempts} attempts), {} wake-ups, {records} records in {:.1} s, {lost_wakeups} waits timed out, {bad} out of sequence",
        stats.wakeups,
        start.elapsed().as_secs_f64()
    );
    println!("# {summary}");
    report.expect(
        "wakeups: >= 100 000 sleep/wake cycles with no lost wake-up",
        sleeps >= CYCLES && lost_wakeups == 0 && bad == 0,
        || summary.clone(),
    );
    report.expect(
        "wakeups: the producer wakes at most once per sleep attempt, and every sleep",
        stats.wakeups <= attempts && stats.wakeups + 1 >= sleeps,
        || summary.clone(),
    );
    Ok(())
}

/// epoll on the device works with the `need_wakeup` protocol.
fn epoll(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    let region = open_fresh(env, false)?;
    let mut consumer = region.consumer()?;
    let epfd = crate::sleepers::epoll_with(region.fd().as_raw_fd())?;
    let config = ProducerConfig {
        min_len: 16,
        max_len: 16,
        rate: 5_000,
        batch: 1,
        count: 5_000,
        ..Default::default()
    };
    device::start(region.fd(), &config)?;
    let (mut records, mut timeouts, mut sleeps) = (0u64, 0u64, 0u64);
    let start = Instant::now();
    while records < config.count && start.elapsed() < Duration::from_secs(60) {
        if consumer.arm_wakeup() {
            sleeps += 1;
            let mut out = libc::epoll_event { events: 0, u64: 0 };
            // SAFETY: `out` has room for the one event asked for.
            let n = unsafe { libc::epoll_wait(epfd, &mut out, 1, 2000) };
            consumer.disarm_wakeup();
            if n == 0 && consumer.backlog()? != 0 {
                timeouts += 1;
            }
        }
        for record in &mut consumer.batch()? {
            record?;
            records += 1;
        }
    }
    // SAFETY: Closing our own epoll descriptor.
    unsafe { libc::close(epfd) };
    report.expect(
        "wakeups: epoll_wait on the device wakes for every record (5 000 records, one at a time)",
        records == config.count && timeouts == 0 && sleeps > 0,
        || format!("{records} records, {sleeps} sleeps, {timeouts} lost wake-ups"),
    );
    Ok(())
}
