//! Sleeping and waking: no CPU when idle, no lost wake-ups, not across a
//! RESET or a STOP either, and two threads in `read()` on one descriptor.

use std::os::fd::AsRawFd;
use std::time::{
    Duration,
    Instant, //
};

use rmemring::uapi::{
    ProducerConfig,
    ResetConfig, //
};
use rmemring::{
    Region,
    Wait, //
};
use rmemring_proto::modes::Overflow;

use crate::support::fd::{
    epoll_wait_one,
    epoll_with,
    poll_in,
    read, //
};
use crate::support::ring::{
    open_fresh,
    FEW, //
};
use crate::support::threads::{
    Sleeper,
    IN_POLL,
    IN_READ, //
};
use crate::support::verify::seqs;
use crate::support::{
    Env,
    Report, //
};

/// CPU time this process has used, and how often its threads gave up the
/// CPU of their own accord (each sleep or wake-up is one).
fn cpu_time() -> (Duration, i64) {
    // SAFETY: `getrusage` fills the struct we pass.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (tv(usage.ru_utime) + tv(usage.ru_stime), usage.ru_nvcsw)
}

pub(crate) fn wakeups(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    let region = open_fresh(env, Overflow::DropNew)?;
    let mut consumer = region.consumer()?;

    // Idle: a blocked consumer costs (next to) nothing. A first short wait
    // takes the one-time costs (faulting the pages in), which on the debug
    // kernel under TCG alone come near the limit; then the consumer must
    // sleep through 3 s without spinning (CPU time within a few scheduler
    // ticks) and without waking now and then (a handful of switches; a
    // timer-driven loop would make hundreds).
    consumer.wait(Some(Duration::from_millis(50)))?;
    let (cpu, switches) = cpu_time();
    let wall = Instant::now();
    let woke = consumer.wait(Some(Duration::from_secs(3)))?;
    let wall = wall.elapsed();
    let (cpu, switches) = {
        let (now, now_switches) = cpu_time();
        (now - cpu, now_switches - switches)
    };
    report.expect(
        "wakeups: an idle blocking consumer uses no CPU (3 s wait)",
        !woke
            && wall >= Duration::from_secs(3)
            && cpu < Duration::from_millis(30)
            && switches <= 10,
        || {
            format!(
                "woke {woke}, waited {wall:?}, used {cpu:?} of CPU, gave it up {switches} times"
            )
        },
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
        producer_fd.start(&config)
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
    across_reset(env, report)?;
    two_readers(env, report)
}

/// How long a sleep may last while a producer publishes before its
/// wake-up counts as lost.
const WAIT_LIMIT: Duration = Duration::from_secs(2);

/// At least 100 000 sleep/wake cycles, none lost (10 000 on the debug
/// kernel).
fn cycles(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    let cycles = env.scaled(100_000);
    const LIMIT: Duration = Duration::from_secs(240);
    let region = open_fresh(env, Overflow::DropNew)?;
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
    region.start(&config)?;
    let tokens = region.consumer_page().wake_token;
    let start = Instant::now();
    let mut records = 0u64;
    let mut lost_wakeups = 0u64;
    let mut next_seq = 0u64;
    let mut bad = 0u64;
    while consumer.stats().sleeps < cycles && start.elapsed() < LIMIT {
        let waited = Instant::now();
        // A wait that lasts its whole 2 s while the producer publishes
        // 20 000 records a second lost its wake-up. (`wait` says true then
        // too: at the deadline it finds the records that came meanwhile.)
        if !consumer.wait(Some(WAIT_LIMIT))? || waited.elapsed() >= WAIT_LIMIT {
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
    region.stop()?;
    let stats = region.stats()?;
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
        &format!("wakeups: >= {cycles} sleep/wake cycles with no lost wake-up"),
        sleeps >= cycles && lost_wakeups == 0 && bad == 0,
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
    let region = open_fresh(env, Overflow::DropNew)?;
    let mut consumer = region.consumer()?;
    let epfd = epoll_with(region.fd().as_raw_fd())?;
    let config = ProducerConfig {
        min_len: 16,
        max_len: 16,
        rate: 5_000,
        batch: 1,
        count: 5_000,
        ..Default::default()
    };
    region.start(&config)?;
    let (mut records, mut timeouts, mut sleeps) = (0u64, 0u64, 0u64);
    let start = Instant::now();
    while records < config.count && start.elapsed() < Duration::from_secs(60) {
        if consumer.arm_wakeup() {
            sleeps += 1;
            let before = region.stats()?;
            let slept = Instant::now();
            // The 2 s wait in slices, the producer's position and wake-ups
            // sampled after each: a timeout then shows whether the producer
            // published during the wait without waking (a lost wake-up) or
            // published nothing until the end (a stall).
            let mut samples = Vec::new();
            let mut events = Ok(0);
            while matches!(events, Ok(0)) && slept.elapsed() < Duration::from_secs(2) {
                events = epoll_wait_one(epfd.as_raw_fd(), Duration::from_millis(200));
                let s = region.stats()?;
                samples.push((slept.elapsed().as_millis(), s.producer_pos, s.wakeups));
            }
            let page = region.consumer_page();
            let after = region.stats()?;
            consumer.disarm_wakeup();
            if matches!(events, Ok(0)) && consumer.backlog()? != 0 {
                timeouts += 1;
                // Which side failed: the producer publishing nothing for
                // the whole wait (a stall, not a lost wake-up), publishing
                // without counting a wake-up (it did not see the request),
                // or counting one that did not reach epoll.
                println!(
                    "# epoll timed out after {:?}: records_produced {} -> {}, wakeups {} -> {}, \
                     producer_pos {} -> {}, consumer_pos {}, sleeps {} -> {}, \
                     need_wakeup {} (wake_token {}); (ms, producer_pos, wakeups) during the wait: {:?}",
                    slept.elapsed(),
                    before.records_produced,
                    after.records_produced,
                    before.wakeups,
                    after.wakeups,
                    before.producer_pos,
                    after.producer_pos,
                    after.consumer_pos,
                    before.sleeps,
                    after.sleeps,
                    page.need_wakeup,
                    page.wake_token,
                    samples,
                );
            }
        }
        for record in &mut consumer.batch()? {
            record?;
            records += 1;
        }
    }
    drop(epfd);
    report.expect(
        "wakeups: epoll_wait on the device wakes for every record (5 000 records, one at a time)",
        records == config.count && timeouts == 0 && sleeps > 0,
        || format!("{records} records, {sleeps} sleeps, {timeouts} lost wake-ups"),
    );
    Ok(())
}

/// How long a woken sleeper may take to return; far more than a wake-up
/// takes even on the debug kernel, far less than the sleeps' own limits.
const WAKE: Duration = Duration::from_secs(5);

/// A reset wakes sleepers and does not lose their wake-up: the records of
/// the next run reach a consumer that went to sleep before the reset.
fn across_reset(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    // poll(): the consumer asks for a wake-up and sleeps; the reset wipes
    // the consumer page, request included.
    let region = open_fresh(env, Overflow::DropNew)?;
    let mut consumer = region.consumer()?;
    consumer.set_wait(Wait::Spin(0));
    let fd = region.fd().as_raw_fd();
    let armed = consumer.arm_wakeup();
    let sleeper = Sleeper::spawn(IN_POLL, move || poll_in(fd, Duration::from_secs(20)))?;
    let requested = region.consumer_page().need_wakeup;
    let (slept_through_reset, events, interrupted, after_start) =
        reset_then_start(&region, sleeper)?;
    consumer.disarm_wakeup();
    let events = events?;
    report.expect(
        "sleepers: a consumer asleep in poll before RESET wakes for the records of the next START",
        armed
            && requested != 0
            && slept_through_reset
            && !interrupted
            && events & libc::POLLIN != 0
            && after_start < WAKE,
        || {
            format!(
                "armed {armed}, need_wakeup {requested}, still asleep after the reset \
                 {slept_through_reset}, poll returned {events:#x} {after_start:?} after START"
            )
        },
    );
    drop(consumer);
    drop(region);

    // read(): the kernel's own consumer sleeps in the driver.
    let region = open_fresh(env, Overflow::DropNew)?;
    let fd = region.fd().as_raw_fd();
    let sleeper = Sleeper::spawn(IN_READ, move || read(fd, 1 << 16))?;
    let requested = region.consumer_page().need_wakeup;
    let (slept_through_reset, data, interrupted, after_start) = reset_then_start(&region, sleeper)?;
    let got = data.as_ref().map(|d| seqs(d));
    report.expect(
        "sleepers: a reader asleep in read() before RESET gets the records of the next START",
        requested != 0
            && slept_through_reset
            && !interrupted
            && after_start < WAKE
            && got.as_ref().is_ok_and(|s| !s.is_empty() && s[0] == 0),
        || {
            format!(
                "need_wakeup {requested}, still asleep after the reset {slept_through_reset}, \
                 read {got:?} {after_start:?} after START"
            )
        },
    );

    // STOP with nobody producing leaves a reader asleep, and the next run
    // still wakes it.
    let sleeper = Sleeper::spawn(IN_READ, move || read(fd, 1 << 16))?;
    region.stop()?;
    let slept_through_stop = matches!(sleeper.still_blocked(Duration::from_millis(300)), Ok(true));
    region.start(&FEW)?;
    let (data, took, interrupted) = sleeper.finish(Duration::from_secs(20));
    let got = data.as_ref().map(|d| seqs(d));
    report.expect(
        "sleepers: STOP leaves a reader asleep, and the next START wakes it",
        slept_through_stop && !interrupted && got.as_ref().is_ok_and(|s| !s.is_empty()),
        || format!("still asleep after STOP {slept_through_stop}; read {got:?} after {took:?}"),
    );
    Ok(())
}

/// RESETs the ring under `sleeper`, then STARTs [`FEW`] records: whether
/// it slept through the reset, what its call returned, whether it had to
/// be interrupted, and how long after the START it returned.
fn reset_then_start<T: Send + 'static>(
    region: &Region,
    sleeper: Sleeper<T>,
) -> anyhow::Result<(bool, T, bool, Duration)> {
    region.device()?.reset(&ResetConfig::default())?;
    std::thread::sleep(Duration::from_millis(200));
    let slept_through_reset = matches!(sleeper.still_blocked(Duration::ZERO), Ok(true));
    let woken_at = Instant::now();
    region.start(&FEW)?;
    let (result, _, interrupted) = sleeper.finish(Duration::from_secs(20));
    Ok((slept_through_reset, result, interrupted, woken_at.elapsed()))
}

/// Two threads in `read()` on one descriptor: the second waits for the
/// first, which sleeps until records come, and a signal ends its wait (an
/// uninterruptible one would be a hung task after two minutes); both get
/// records, one run each.
fn two_readers(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    let region = open_fresh(env, Overflow::DropNew)?;
    let fd = region.fd().as_raw_fd();
    let first = Sleeper::spawn(IN_READ, move || read(fd, 1 << 16))?;
    let second = Sleeper::spawn(IN_READ, move || read(fd, 1 << 16))?;
    second.interrupt();
    let (interrupted, stuck) = match second.still_blocked(Duration::from_secs(2)) {
        Err(result) => (result.map_err(|e| e.raw_os_error()), None),
        // Still in the driver: the records below release it too, so the
        // group goes on either way.
        Ok(_) => (Ok(Vec::new()), Some(second)),
    };
    let first_asleep = matches!(first.still_blocked(Duration::ZERO), Ok(true));
    report.expect(
        "sleepers: a second read() on the descriptor, waiting for the first, ends on a signal with EINTR",
        interrupted == Err(Some(libc::EINTR)) && first_asleep,
        || {
            format!(
                "the second read returned {interrupted:?} (Ok([]): still blocked 2 s after the \
                 signal); the first still asleep {first_asleep}"
            )
        },
    );

    let second = match stuck {
        Some(second) => second,
        None => Sleeper::spawn(IN_READ, move || read(fd, 1 << 16))?,
    };
    for _ in 0..2 {
        region.start(&FEW)?;
        std::thread::sleep(Duration::from_millis(300));
        region.stop()?;
    }
    let mut runs = Vec::new();
    let woken_at = Instant::now();
    for sleeper in [first, second] {
        let (data, _, interrupted) = sleeper.finish(WAKE);
        runs.push((
            data.map(|d| seqs(&d)).map_err(|e| e.to_string()),
            interrupted,
        ));
    }
    let mut seqs_read: Vec<u64> = runs
        .iter()
        .filter_map(|(data, _)| data.as_ref().ok())
        .flatten()
        .copied()
        .collect();
    seqs_read.sort_unstable();
    report.expect(
        "sleepers: two threads in read() on one descriptor both get records, every record once",
        runs.iter()
            .all(|(data, interrupted)| !interrupted && data.as_ref().is_ok_and(|s| !s.is_empty()))
            && seqs_read == (0..2 * FEW.count).collect::<Vec<_>>(),
        || {
            format!(
                "the reads got {runs:?} (returned within {:?})",
                woken_at.elapsed()
            )
        },
    );
    Ok(())
}
