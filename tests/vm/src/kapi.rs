//! The in-kernel producer API, driven by kernel code that is not
//! rmemring's: the `sched_switch` tracer of `examples/kernel/sched_switch`
//! (`rmemring_sched_switch.ko`) writes one record per context switch from
//! inside the scheduler (runqueue lock held, interrupts off), on both
//! vCPUs, while the guest switches as fast as a pipe ping-pong and two
//! busy loops make it.
//!
//! The stream is real data that proves itself: on each CPU, the task a
//! switch brings in is the task the next switch on that CPU takes out, so
//! `next_pid` of one record equals `prev_pid` of the CPU's next one unless
//! a record between them was lost. And the tracer counts every call of its
//! probe and every outcome itself, so the consumer's count is held to it
//! exactly: delivered + lost (sequence gaps) == calls, dropped + refused +
//! gone + written == calls. The two stream checks make the ring overflow
//! under the tracer first (drop-new: the tracer's own writes dropped;
//! overwrite: its own records lapped unread), so that the loss the
//! equation accounts for is real, not zero.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{
    Duration,
    Instant, //
};

use anyhow::{
    ensure,
    Context, //
};
use nix::errno::Errno;
use rmemring::events::{
    SchedSwitch,
    TimerSample,
    TAG_PATTERN,
    TAG_SCHED_SWITCH,
    TAG_TIMER_SAMPLE, //
};
use rmemring::uapi::{
    ProducerConfig,
    ResetConfig, //
};
use rmemring::{
    Access,
    Consumer,
    Device,
    Record,
    Region, //
};
use rmemring_board_expect::DeviceTreeValue as _;
use rmemring_proto::layout::record_stride;
use rmemring_proto::modes::{
    CacheMode,
    Overflow, //
};
use rmemring_proto::pattern;
use rmemring_proto::roles::Role;

use crate::support::clients::{
    tracer_count,
    tracer_ended,
    tracer_reaches,
    tracer_state,
    Client,
    Counts,
    InitFailed,
    SwitchLoad, //
    CONTRACT_MODULE,
    NESTED_MODULE,
};
use crate::support::env::board_expectations;
use crate::support::fd::open_owned_as;
use crate::support::process::{
    fork_consumer,
    kill,
    kill_and_reap,
    reap_within, //
};
use crate::support::ring::{
    open_fresh,
    produce, //
};
use crate::support::unbind;
use crate::support::{
    Env,
    Report, //
};

pub(crate) fn kapi(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    let seconds = if env.debug_kernel { 2 } else { 3 };
    for overflow in [Overflow::DropNew, Overflow::OverwriteOldest] {
        report.check(
            &format!(
                "kapi: sched_switch stream under a switch load, the ring overflowing under \
                 the tracer first, {}: per-CPU pid chain unbroken, timestamps ordered, \
                 delivered + lost == the probe's calls, exactly, some of them lost",
                overflow.name()
            ),
            sched_stream(env, overflow, seconds),
        );
    }
    report.check(
        "kapi: a client module pins the driver: rmmod rmemring fails while the tracer is loaded \
         (no file open), and works after",
        client_pins_driver(env),
    );
    report.check(
        "kapi: an idle consumer is not woken by the records of its own sleep: \
         the tracer alone on an idle guest makes few switches",
        idle_consumer_sleeps(env),
    );
    report.check(
        "kapi: the consumer killed with SIGKILL while the tracer and the built-in producer \
         write flat out: no warning, its role freed, the next consumer's stream whole",
        consumer_killed(env),
    );
    report.check(
        "kapi: the tracer and the built-in producer flat out together, the consumer stalling: \
         every pattern record verified, the pid chain unbroken across no gap, every drop counted",
        mixed(env, seconds),
    );
    report.check(
        "kapi: the Rust hard-IRQ timer sampler on every CPU and the built-in producer together: \
         every pattern record verified, each CPU's samples consecutive, counts exact",
        sampler_with_builtin(env, seconds),
    );
    report.check(
        "kapi: the sampler alone wakes a consumer sleeping in poll through the irq_work \
         (hard-IRQ context): no wait lasts its whole 2 s",
        sampler_wakes(env),
    );
    // On the arm64 board, the rings the kernel maps write-combined and
    // uncached (Normal non-cacheable and Device memory, which take only
    // aligned stores): the tracer fills its records with `rmemring_fill`.
    if let Ok(board) = board_expectations() {
        let rings = board
            .rings
            .iter()
            .filter(|r| r.cache != CacheMode::WriteBack);
        for ring in rings {
            let result = tracer_stream(&env.with_device(&ring.dev), 1)
                .map(|summary| println!("# /dev/{}: {summary}", ring.dev));
            report.check(
                &format!(
                    "kapi: the sched_switch tracer on the board's /dev/{} ({}): \
                     its stream whole and chained",
                    ring.dev,
                    ring.cache.devicetree_value()
                ),
                result,
            );
        }
    }
    report.check(
        "kapi: the API's edges (tests/kernel/api_contract): too large, unknown flags, \
         writes inside an open reservation, in NMI context and (x86-64) from an int3 kprobe \
         refused with the promised errno, (arm64) a BRK kprobe's written, \
         commits of no reservation, of another payload and from an NMI refused, discards \
         leave nothing; the ring then holds exactly the records committed",
        api_contract(env),
    );
    // Only lockdep's tracepoints fire on every taking of the lock, so only
    // a lockdep kernel (the debug one) can be made to nest a write in its
    // instrumentation at will.
    if env.debug_kernel {
        report.check(
            "kapi: writes from probes on the producer lock's own tracepoints \
             (tests/kernel/nested_lock: lockdep's lock_acquire and lock_release, \
             lock:contention_begin and contention_end if a waiter queued) are refused \
             with -EBUSY and counted (a RESET zeroes the count), where spinning on \
             the lock their CPU holds would never end",
            nested_lock(env),
        );
    }
    report.check(
        "kapi: RESETs while the tracer writes: its writes during them are refused, \
         the ring after them starts whole at sequence 0, calls == written + dropped + refused",
        resets_while_tracing(env),
    );
    unbind_under_clients(env, report);
    Ok(())
}

/// The parameter ring's revocation under its writers: last, as it makes
/// the ring anew. On the arm64 board the board suite unbinds a
/// device-tree ring the same way (`support::unbind`), so this runs where
/// the ring comes from module parameters.
fn unbind_under_clients(env: &Env, report: &mut Report) {
    if board_expectations().is_ok() {
        return;
    }
    let result = (|| {
        env.kmod.ensure_loaded()?;
        let ring = env.device.trim_start_matches("/dev/");
        ensure!(
            ring == "rmemring0" && unbind::param_device_bound(),
            "{} is not the parameter ring, or its platform device {} is not bound",
            env.device,
            unbind::PARAM_DEVICE
        );
        unbind::under_clients(ring, unbind::PARAM_DEVICE)
    })();
    report.check(
        "kapi: unbind of the parameter ring's platform device (rmemring.0) while the \
         sched_switch tracer, the hard-IRQ timer sampler on every CPU and the built-in \
         producer write flat out, its consumer killed with SIGKILL: the ring moves no more, \
         the clients' later writes are refused as gone and counted, the rebind waits for \
         both to let go, then works",
        result,
    );
}

/// What the consumer saw, checked record by record.
#[derive(Debug, Default)]
struct Check {
    /// `sched_switch` records delivered.
    switches: u64,
    /// Built-in producer records delivered (all verified).
    patterns: u64,
    /// Timer samples delivered.
    samples: u64,
    /// Per CPU: the last sample's count, and `lost` when it came.
    sample_cpus: HashMap<u32, (u64, u64)>,
    /// Consecutive samples of one CPU with no loss between them.
    samples_chained: u64,
    /// Records the sequence numbers say were lost before delivered ones.
    lost: u64,
    /// The last sequence number seen.
    last_seq: Option<u64>,
    last_timestamp: u64,
    /// Per CPU: the last switch's `next_pid`, and `lost` when it came.
    cpus: HashMap<u32, (u32, u64)>,
    /// Consecutive switches of one CPU with no loss between them.
    chained: u64,
    /// Whether the first record may have any sequence number (a consumer
    /// taking over a ring mid-stream): later ones are held to it.
    resumed: bool,
    /// Problems, the first few described.
    problems: u64,
    first_problems: Vec<String>,
}

impl Check {
    fn problem(&mut self, what: String) {
        self.problems += 1;
        if self.first_problems.len() < 5 {
            self.first_problems.push(what);
        }
    }

    fn record(&mut self, r: &Record<'_>) {
        let expected = match self.last_seq {
            Some(s) => s + 1 + r.lost_before,
            None if self.resumed => r.seq,
            None => r.lost_before,
        };
        if r.seq != expected {
            self.problem(format!(
                "seq {} after {:?} (+{} lost)",
                r.seq, self.last_seq, r.lost_before
            ));
        }
        self.lost += r.lost_before;
        self.last_seq = Some(r.seq);
        if r.timestamp_ns < self.last_timestamp {
            self.problem(format!("seq {}: timestamp went back", r.seq));
        }
        self.last_timestamp = r.timestamp_ns;
        match r.tag {
            TAG_SCHED_SWITCH => self.switch(r),
            TAG_TIMER_SAMPLE => self.sample(r),
            TAG_PATTERN => {
                if pattern::verify(r.seq, r.payload) {
                    self.patterns += 1;
                } else {
                    self.problem(format!("seq {}: pattern record corrupt", r.seq));
                }
            }
            tag => self.problem(format!("seq {}: unknown tag {tag}", r.seq)),
        }
    }

    fn switch(&mut self, r: &Record<'_>) {
        let Ok(e) = bytemuck::try_pod_read_unaligned::<SchedSwitch>(r.payload) else {
            self.problem(format!(
                "seq {}: a {}-byte sched_switch",
                r.seq,
                r.payload.len()
            ));
            return;
        };
        self.switches += 1;
        if let Some(&(next_pid, lost)) = self.cpus.get(&e.cpu) {
            if lost == self.lost {
                if next_pid == e.prev_pid {
                    self.chained += 1;
                } else {
                    self.problem(format!(
                        "seq {}: cpu {} switched out pid {} but last switched in pid {next_pid}",
                        r.seq, e.cpu, e.prev_pid
                    ));
                }
            }
        }
        self.cpus.insert(e.cpu, (e.next_pid, self.lost));
    }

    fn sample(&mut self, r: &Record<'_>) {
        let Ok(e) = bytemuck::try_pod_read_unaligned::<TimerSample>(r.payload) else {
            self.problem(format!(
                "seq {}: a {}-byte timer sample",
                r.seq,
                r.payload.len()
            ));
            return;
        };
        self.samples += 1;
        if let Some(&(count, lost)) = self.sample_cpus.get(&e.cpu) {
            if lost == self.lost {
                if e.count == count + 1 {
                    self.samples_chained += 1;
                } else {
                    self.problem(format!(
                        "seq {}: cpu {} sample {} after {count}",
                        r.seq, e.cpu, e.count
                    ));
                }
            }
        }
        self.sample_cpus.insert(e.cpu, (e.count, self.lost));
    }

    /// Reads what the ring holds now, in place (drop-new) or by copy
    /// (overwrite).
    fn drain(&mut self, consumer: &mut Consumer) -> anyhow::Result<u64> {
        let mut n = 0;
        if consumer.layout().overflow() == Overflow::DropNew {
            let mut batch = consumer.batch()?;
            for r in batch.iter() {
                self.record(&r?);
                n += 1;
            }
        } else {
            while let Some(r) = consumer.read_copy()? {
                self.record(&r);
                n += 1;
            }
        }
        Ok(n)
    }

    fn summary(&self) -> String {
        format!(
            "{} switches ({} chained), {} timer samples ({} chained, from {} CPUs), \
             {} pattern records, {} lost, last seq {:?}, {} problems {:?}",
            self.switches,
            self.chained,
            self.samples,
            self.samples_chained,
            self.sample_cpus.len(),
            self.patterns,
            self.lost,
            self.last_seq,
            self.problems,
            self.first_problems
        )
    }
}

/// [`consume`] by a consumer that takes over a ring mid-stream.
fn consume_resumed(
    region: &Arc<Region>,
    client: Client,
    seconds: u64,
    before_unload: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<(Check, Counts)> {
    consume_into(
        Check {
            resumed: true,
            ..Check::default()
        },
        region,
        client,
        seconds,
        false,
        before_unload,
    )
}

/// Consumes for `seconds`, then unloads the client and drains the rest;
/// with `stall`, stops reading every 500 ms until the ring has dropped
/// records (drop-new mode), instead of keeping up.
fn consume(
    region: &Arc<Region>,
    client: Client,
    seconds: u64,
    stall: bool,
    before_unload: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<(Check, Counts)> {
    consume_into(
        Check::default(),
        region,
        client,
        seconds,
        stall,
        before_unload,
    )
}

fn consume_into(
    mut check: Check,
    region: &Arc<Region>,
    client: Client,
    seconds: u64,
    stall: bool,
    mut before_unload: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<(Check, Counts)> {
    let mut consumer = region.consumer()?;
    let start = Instant::now();
    let mut next_stall = start + Duration::from_millis(500);
    while start.elapsed() < Duration::from_secs(seconds) {
        if check.drain(&mut consumer)? == 0 {
            consumer.wait(Some(Duration::from_millis(50)))?;
        }
        if stall && Instant::now() >= next_stall {
            let dropped = region.stats()?.records_dropped;
            let since = Instant::now();
            while region.stats()?.records_dropped == dropped {
                ensure!(
                    since.elapsed() < Duration::from_secs(30),
                    "the ring did not fill in 30 s"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            next_stall = Instant::now() + Duration::from_millis(500);
        }
    }
    before_unload()?;
    let counts = client.unload()?;
    while check.drain(&mut consumer)? != 0 {}
    Ok((check, counts))
}

/// What holds whenever the tracer wrote into a live ring that no reset
/// paused: the stream the consumer saw is sound, and every call of the
/// probe was written or dropped.
fn sound(check: &Check, counts: &Counts) -> anyhow::Result<()> {
    ensure!(check.problems == 0, "{}", check.summary());
    ensure!(
        counts.failed == 0 && counts.refused == 0 && counts.gone == 0,
        "{counts:?}"
    );
    ensure!(
        counts.written + counts.dropped == counts.calls,
        "{counts:?}"
    );
    Ok(())
}

/// [`sound`], and (drop-new mode) every record written is delivered.
fn exact(check: &Check, counts: &Counts) -> anyhow::Result<()> {
    sound(check, counts)?;
    ensure!(
        check.switches == counts.written,
        "delivered {} (lost {}) of {} written",
        check.switches,
        check.lost,
        counts.written
    );
    Ok(())
}

/// The ring made to overflow under the tracer before the consumer reads
/// a thing: the built-in producer writes `count` 2 KiB records, twice
/// the ring's room, as fast as it can, among the tracer's. In drop-new
/// mode the ring fills and the writes after are dropped, the tracer's
/// with the rest, until the consumer makes room; in overwrite mode the
/// second half laps the first, and the tracer's records among it are
/// retired unread. Returns `count`.
fn overflow_under_tracer(region: &Region) -> anyhow::Result<u64> {
    const LEN: u32 = 2048;
    let count = 2 * region.layout().data_size / u64::from(LEN);
    let config = ProducerConfig {
        min_len: LEN,
        max_len: LEN,
        count,
        ..Default::default()
    };
    produce(region, &config)?;
    Ok(count)
}

/// After [`overflow_under_tracer`] in drop-new mode, nothing else writes
/// but the tracer, and what room the producer thread left, less than one
/// of its records, holds `room / stride` of the tracer's records at most:
/// once that many more of its calls (and one per CPU, whose record may be
/// in the ring already and not yet counted) have ended, one of them was
/// dropped, and counted as dropped. A bound on the tracer's calls, not on
/// time; a tracer not called that often in a minute is a failure of its
/// own, with the tracer's counts.
fn tracer_drops_when_full(region: &Region) -> anyhow::Result<()> {
    let stats = region.stats()?;
    ensure!(
        stats.producer_running == 0,
        "the producer thread still runs"
    );
    let room = region
        .layout()
        .data_size
        .checked_sub(stats.producer_pos - stats.consumer_pos)
        .with_context(|| format!("the ring holds more than its data area: {stats:?}"))?;
    // Of the calls that end from here on, all but one a CPU (its record
    // committed before the room was read, not yet counted) that wrote a
    // record wrote it into that room.
    let ended = tracer_ended()?;
    let cpus = std::thread::available_parallelism()?.get() as u64;
    let fit = room / record_stride(size_of::<SchedSwitch>() as u32);
    let since = tracer_reaches(
        "calls ended",
        ended + fit + 1 + cpus,
        Duration::from_secs(60),
        tracer_ended,
    )? - ended;
    let dropped = tracer_count("dropped")?;
    println!(
        "# {room} B free after the producer thread: room for {fit} tracer records; \
         {since} of its calls ended since, {dropped} dropped in all"
    );
    ensure!(
        dropped > 0,
        "the ring had room for {fit} of the tracer's records, and {since} of its calls ended \
         since, none dropped ({})",
        tracer_state()
    );
    Ok(())
}

fn sched_stream(env: &Env, overflow: Overflow, seconds: u64) -> anyhow::Result<()> {
    let region = open_fresh(env, overflow)?;
    let load = SwitchLoad::start()?;
    let tracer = Client::tracer(env)?;
    let start = Instant::now();
    let result = overflow_under_tracer(&region).and_then(|filled| {
        println!("# {filled} 2 KiB records written in {:?}", start.elapsed());
        if overflow == Overflow::DropNew {
            tracer_drops_when_full(&region)?;
        }
        Ok((filled, consume(&region, tracer, seconds, false, || Ok(()))?))
    });
    load.stop();
    let (filled, (check, counts)) = result?;
    let stats = region.stats()?;
    println!(
        "# {}: {} / tracer {counts:?} / {filled} 2 KiB records first / ring dropped {}, \
         overwritten {}",
        overflow.name(),
        check.summary(),
        stats.records_dropped,
        stats.records_overwritten
    );
    sound(&check, &counts)?;
    // The built-in producer's records that did not arrive were lost
    // (dropped or overwritten) as the tracer's were: the rest of the
    // sequence gaps are the tracer's.
    let filler_lost = filled
        .checked_sub(check.patterns)
        .context("more pattern records than written")?;
    let tracer_lost = check
        .lost
        .checked_sub(filler_lost)
        .with_context(|| format!("lost {} < the filler's {filler_lost}", check.lost))?;
    ensure!(
        check.switches + tracer_lost == counts.calls,
        "delivered {} + lost {tracer_lost} != {} calls",
        check.switches,
        counts.calls
    );
    match overflow {
        Overflow::DropNew => ensure!(
            tracer_lost == counts.dropped
                && counts.dropped > 0
                && stats.records_dropped == counts.dropped + filler_lost
                && stats.records_refused == 0,
            "the tracer lost {tracer_lost}; ring stats {stats:?} against {counts:?}"
        ),
        // The ring lapped the tracer's own records: their loss is what
        // the count is held to.
        Overflow::OverwriteOldest => ensure!(
            counts.dropped == 0
                && tracer_lost > 0
                && stats.records_overwritten >= check.lost
                && stats.records_dropped == 0
                && stats.records_refused == 0,
            "the tracer lost {tracer_lost}; ring stats {stats:?} against {counts:?}"
        ),
    }
    // Enough to mean something: a few hundred switches a second even on
    // the debug kernel, and most of them checked against their neighbour.
    ensure!(
        counts.calls >= 200 * seconds && check.chained * 2 >= check.switches,
        "too few switches to judge: {}",
        check.summary()
    );
    Ok(())
}

/// The tracer alone on the ring of `env` (drop-new, a consumer keeping
/// up) for `seconds` under the switch load: the stream sound, every
/// record written delivered, most switches chained: on the board's
/// write-combined and uncached rings, where a reservation must be filled
/// with aligned stores (`rmemring_fill`). Returns the summary.
fn tracer_stream(env: &Env, seconds: u64) -> anyhow::Result<String> {
    let region = open_fresh(env, Overflow::DropNew)?;
    let load = SwitchLoad::start()?;
    let result =
        Client::tracer(env).and_then(|tracer| consume(&region, tracer, seconds, false, || Ok(())));
    load.stop();
    let (check, counts) = result?;
    exact(&check, &counts)?;
    ensure!(
        counts.dropped == 0 && counts.calls >= 200 * seconds && check.chained * 2 >= check.switches,
        "too few switches to judge, or some dropped: {} / {counts:?}",
        check.summary()
    );
    Ok(format!("{} / tracer {counts:?}", check.summary()))
}

fn mixed(env: &Env, seconds: u64) -> anyhow::Result<()> {
    let region = open_fresh(env, Overflow::DropNew)?;
    let load = SwitchLoad::start()?;
    let tracer = Client::tracer(env)?;
    // Records of 2 KiB fill the ring in a few thousand (under a second
    // on the debug kernel), so the consumer's stalls do not last long.
    let config = ProducerConfig {
        min_len: 2048,
        max_len: 2048,
        count: 0,
        rate: 0,
        pattern: 0,
        flags: 0,
        batch: 0,
        reserved: [0; 7],
    };
    region.start(&config)?;
    let result = consume(&region, tracer, seconds, true, || Ok(region.stop()?));
    load.stop();
    let (check, counts) = result?;
    let stats = region.stats()?;
    println!(
        "# mixed: {} / tracer {counts:?} / ring dropped {}",
        check.summary(),
        stats.records_dropped
    );
    exact(&check, &counts)?;
    // Every record produced was delivered; every sequence number missing
    // before the last delivered one is one the ring counted as dropped
    // (more may have been dropped after it, once the consumer was done).
    ensure!(
        check.switches + check.patterns == stats.records_produced
            && check.lost <= stats.records_dropped
            && check.last_seq.map_or(0, |s| s + 1)
                <= stats.records_produced + stats.records_dropped,
        "delivered {} + {}, lost {}, against the ring's {} produced and {} dropped",
        check.switches,
        check.patterns,
        check.lost,
        stats.records_produced,
        stats.records_dropped
    );
    ensure!(
        check.lost > 0,
        "the stalls dropped nothing: {}",
        check.summary()
    );
    ensure!(
        check.patterns > 0 && check.switches > 0,
        "{}",
        check.summary()
    );
    Ok(())
}

/// A consumer in a child process, killed with SIGKILL while the tracer and
/// the producer thread write flat out; then a consumer in this process
/// takes over and must get a sound stream.
fn consumer_killed(env: &Env) -> anyhow::Result<()> {
    env.kmod.ensure_loaded()?;
    let observer = Region::open(&env.device, Access::Observe)?;
    // Forked first, while this process has one thread.
    let child = fork_consumer(&env.device, &observer)?;
    let result = (|| -> anyhow::Result<(Check, Counts)> {
        let controller = Device::from_fd(open_owned_as(&env.device, Role::Controller)?)?;
        let config = ProducerConfig {
            min_len: 8,
            max_len: 512,
            ..Default::default()
        };
        controller.start(&config)?;
        let tracer = Client::tracer(env)?;
        let load = SwitchLoad::start()?;
        std::thread::sleep(Duration::from_millis(500));
        kill(child);
        ensure!(
            reap_within(child, Duration::from_secs(5)),
            "the consumer did not die"
        );
        // Its close frees the consumer role.
        let since = Instant::now();
        let region = loop {
            match Region::open(&env.device, Access::Consume) {
                Ok(region) => break Arc::new(region),
                Err(e) if since.elapsed() < Duration::from_secs(5) => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(e).context("a consumer after the killed one"),
            }
        };
        let result = consume_resumed(&region, tracer, 1, || Ok(controller.stop()?));
        load.stop();
        result
    })();
    kill_and_reap(child);
    let (check, counts) = result?;
    println!("# after the kill: {} / tracer {counts:?}", check.summary());
    sound(&check, &counts)?;
    ensure!(
        check.switches > 0 && check.patterns > 0,
        "{}",
        check.summary()
    );
    Ok(())
}

fn client_pins_driver(env: &Env) -> anyhow::Result<()> {
    env.kmod.ensure_loaded()?;
    let tracer = Client::tracer(env)?;
    let refused = !env.kmod.try_rmmod();
    let counts = tracer.unload()?;
    ensure!(
        refused,
        "rmmod rmemring succeeded while the tracer held its ring"
    );
    ensure!(counts.failed == 0, "{counts:?}");
    ensure!(
        env.kmod.try_rmmod(),
        "rmmod rmemring failed after the tracer left"
    );
    env.kmod.ensure_loaded()
}

/// A consumer sleeping for records, with the tracer alone on an otherwise
/// idle guest: each of its sleeps is a switch, and so a record. If that
/// record woke it, it would read it and sleep again at once, for ever (a
/// switch storm of thousands a second under TCG); the tracer commits the
/// records of tasks going to sleep quietly (`RMEMRING_NO_WAKEUP`), so the
/// consumer is woken by other events only.
fn idle_consumer_sleeps(env: &Env) -> anyhow::Result<()> {
    let region = open_fresh(env, Overflow::DropNew)?;
    let tracer = Client::tracer(env)?;
    let seconds = 3;
    let (check, counts) = consume(&region, tracer, seconds, false, || Ok(()))?;
    let stats = region.stats()?;
    let per_second = counts.calls / seconds;
    println!(
        "# idle: {per_second} switches/s, {} wake-ups in {seconds} s / tracer {counts:?}",
        stats.wakeups
    );
    ensure!(check.problems == 0, "{}", check.summary());
    ensure!(
        per_second < 1000,
        "{per_second} switches a second on an idle guest: the consumer wakes itself \
         ({} wake-ups in {seconds} s)",
        stats.wakeups
    );
    Ok(())
}

/// The sampler alone, so every wake-up comes from hard-IRQ context through
/// the ring's `irq_work` (the built-in producer would wake the consumer
/// itself): a consumer sleeping in `poll` between batches must be woken
/// for every publication it asked for. A wait that lasts its whole 2 s
/// (against a sample every few milliseconds) is a lost wake-up.
/// Cost: 2 s and the sampler's load.
fn sampler_wakes(env: &Env) -> anyhow::Result<()> {
    let region = open_fresh(env, Overflow::DropNew)?;
    let rate = if env.debug_kernel { 500 } else { 2000 };
    let sampler = Client::sampler(&env.device, rate)?;
    let mut consumer = region.consumer()?;
    let (mut records, mut lost) = (0u64, 0u64);
    let sleeps = region.stats()?.sleeps;
    let start = Instant::now();
    let result = (|| -> anyhow::Result<()> {
        while start.elapsed() < Duration::from_secs(2) {
            for record in &mut consumer.batch()? {
                record?;
                records += 1;
            }
            // A wait that lasts its whole 2 s lost its wake-up: `wait`
            // returns true then too, finding the records that came meanwhile.
            let waited = Instant::now();
            consumer.wait(Some(Duration::from_secs(2)))?;
            if waited.elapsed() >= Duration::from_secs(2) {
                lost += 1;
            }
        }
        Ok(())
    })();
    let counts = sampler.unload()?;
    result?;
    let sleeps = region.stats()?.sleeps - sleeps;
    println!("# sampler wake-ups: {records} records, {sleeps} sleeps, {lost} lost; {counts:?}");
    ensure!(
        lost == 0 && sleeps > 0 && records > 0 && counts.failed == 0,
        "{records} records, {sleeps} sleeps, {lost} waits lasted their whole 2 s"
    );
    Ok(())
}

fn sampler_with_builtin(env: &Env, seconds: u64) -> anyhow::Result<()> {
    let region = open_fresh(env, Overflow::DropNew)?;
    let config = ProducerConfig {
        min_len: 8,
        max_len: 256,
        count: 0,
        rate: 20_000,
        pattern: 0,
        flags: 0,
        batch: 0,
        reserved: [0; 7],
    };
    region.start(&config)?;
    let rate = if env.debug_kernel { 500 } else { 2000 };
    let sampler = Client::sampler(&env.device, rate)?;
    let (check, counts) = consume(&region, sampler, seconds, false, || Ok(region.stop()?))?;
    let stats = region.stats()?;
    println!("# sampler: {} / sampler {counts:?}", check.summary());
    println!(
        "# sampler: {} samples taken, {} periods skipped (no sample: the timer fired more \
         than a period late and was forwarded past them)",
        counts.calls, counts.skipped
    );
    let cpus = std::thread::available_parallelism()?.get();
    ensure!(check.problems == 0, "{}", check.summary());
    ensure!(
        counts.failed == 0 && counts.refused == 0 && counts.gone == 0,
        "{counts:?}"
    );
    ensure!(
        counts.written + counts.dropped == counts.calls
            && check.samples == counts.written
            && check.samples + check.patterns == stats.records_produced,
        "{counts:?}, delivered {} samples + {} pattern records of the ring's {} produced",
        check.samples,
        check.patterns,
        stats.records_produced
    );
    ensure!(
        check.sample_cpus.len() == cpus
            && check.patterns > 0
            && check.samples_chained + 2 * cpus as u64 >= check.samples,
        "samples from {} of {cpus} CPUs, or too few chained: {}",
        check.sample_cpus.len(),
        check.summary()
    );
    Ok(())
}

fn resets_while_tracing(env: &Env) -> anyhow::Result<()> {
    let region = open_fresh(env, Overflow::DropNew)?;
    let load = SwitchLoad::start()?;
    let tracer = Client::tracer(env)?;
    let resets = env.scaled(200);
    let result = (|| -> anyhow::Result<()> {
        for i in 0..resets {
            let overflow = if i % 2 == 0 {
                Overflow::OverwriteOldest
            } else {
                Overflow::DropNew
            };
            let config = ResetConfig {
                flags: overflow.flag(),
                ..Default::default()
            };
            region.device()?.reset(&config)?;
        }
        Ok(())
    })();
    // The last reset left drop-new: the stream from it on is whole.
    let consumed = result.and_then(|()| consume(&region, tracer, 1, false, || Ok(())));
    load.stop();
    let (check, counts) = consumed?;
    println!(
        "# after {resets} resets: {} / tracer {counts:?}",
        check.summary()
    );
    ensure!(
        check.problems == 0 && check.lost == 0,
        "{}",
        check.summary()
    );
    ensure!(counts.failed == 0 && counts.gone == 0, "{counts:?}");
    ensure!(
        counts.written + counts.dropped + counts.refused == counts.calls,
        "{counts:?}"
    );
    // The resets did pause the tracer: its writes met them.
    ensure!(
        counts.refused > 0 && check.switches > 0,
        "{counts:?}, {}",
        check.summary()
    );
    Ok(())
}

/// Loads and unloads `module`, a module that checks things as it loads,
/// on a fresh drop-new ring: the ring, opened as its consumer, and the
/// kernel log of the module's life. Its init runs once
/// ([`Client::load_once`]): the ring and the log hold that one run.
fn checked_at_load(env: &Env, module: &'static str) -> anyhow::Result<(Arc<Region>, String)> {
    let region = open_fresh(env, Overflow::DropNew)?;
    let ring = env
        .device
        .rsplit('/')
        .next()
        .context("the device has no name")?;
    let client = Client::load_once(module, &[format!("ring={ring}")])?;
    Ok((region, client.remove()?))
}

/// The returns at the API's edges, checked by the contract module as it
/// loads; then what it left in the ring, checked here: exactly its
/// committed records, in order, from sequence 0 (a discard, a refused
/// write or a refused commit takes no sequence number), and its refusals
/// counted.
fn api_contract(env: &Env) -> anyhow::Result<()> {
    let (region, log) = checked_at_load(env, CONTRACT_MODULE)?;
    let checks = log.lines().filter(|l| l.contains(" ok - ")).count();
    ensure!(
        log.contains("all checks held") && checks >= 13,
        "the contract module's log: {log}"
    );
    if let Some(line) = log.lines().find(|l| l.contains("max_payload write: ")) {
        println!("# {}", line.trim());
    }
    // Its NMI checks run where the CPU has a local APIC (x86-64): a
    // write and a commit refused; and there a kprobe's handler runs as an
    // NMI (int3), refused too, where on arm64 it writes (BRK). Everywhere
    // two inside a reservation, a write inside a batch and a batch begun
    // inside a reservation.
    let nmi = cfg!(target_arch = "x86_64");
    let refused = 4 + 3 * u64::from(nmi);
    // What its log says it wrote: the softirq writer's account, and the
    // batches' records (`bound`: the batch stopped by its bound; `fill`:
    // the batches that filled the ring, whose last dropped 2).
    let value = |prefix: &str, key: &str| -> anyhow::Result<u64> {
        log.lines()
            .filter_map(|l| l.split_once(prefix).map(|(_, rest)| rest))
            .flat_map(str::split_whitespace)
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
            .with_context(|| format!("no {prefix}{key}= in the contract module's log: {log}"))
    };
    let calls = value("softirq: ", "calls")?;
    let (written, in_softirq) = (
        value("softirq: ", "written")?,
        value("softirq: ", "in_softirq")?,
    );
    let others: u64 = ["dropped", "refused", "gone", "failed"]
        .iter()
        .map(|k| value("softirq: ", k))
        .sum::<anyhow::Result<u64>>()?;
    ensure!(
        calls == 64 && in_softirq == calls && written + others == calls && others == 0,
        "the softirq writer: calls {calls}, in softirq {in_softirq}, written {written}, \
         other outcomes {others}"
    );
    let bound = value("batch: ", "bound")? as usize;
    let fill = value("batch: ", "fill")? as usize;
    let stats = region.stats()?;
    ensure!(
        stats.records_refused == refused && stats.records_dropped == 2,
        "refused {} (want {refused}), dropped {} (want 2: the batch that found the ring full)",
        stats.records_refused,
        stats.records_dropped
    );
    let user = rmemring::events::TAG_USER_MIN;
    let max = region.layout().max_payload as usize;
    let mut expected: Vec<(u16, Vec<u8>)> = vec![
        (user + 2, b"written\0".to_vec()),
        (user + 3, (0..24).collect()),
        (user + 4, Vec::new()),
        (user + 5, (0..max).map(|i| (i % 251) as u8).collect()),
        (user + 8, (0..max).map(|i| (i % 251) as u8).collect()),
        (user + 6, b"reserved".to_vec()),
    ];
    if !nmi {
        expected.push((user + 9, b"kprobed\0".to_vec()));
    }
    if nmi {
        expected.push((user + 7, b"nmi-safe".to_vec()));
    }
    expected.extend((0..calls).map(|i| (user + 10, i.to_le_bytes().to_vec())));
    expected.extend([b"batch-0\0", b"batch-1\0", b"batch-2\0"].map(|n| (user + 12, n.to_vec())));
    // A batch's 4 KiB records: a u64 index, then the fresh ring's zeroes.
    let indexed = |tag: u16, count: usize| {
        (0..count as u64).map(move |i| {
            let mut payload = vec![0u8; 4096];
            payload[..8].copy_from_slice(&i.to_le_bytes());
            (tag, payload)
        })
    };
    expected.extend(indexed(user + 13, bound));
    expected.extend(indexed(user + 14, fill));
    let mut consumer = region.consumer()?;
    let mut seen = 0;
    for record in consumer.batch()?.iter() {
        let record = record?;
        let want = expected.get(seen).with_context(|| {
            format!("an extra record: seq {}, tag {:#x}", record.seq, record.tag)
        })?;
        ensure!(
            record.seq == seen as u64
                && record.lost_before == 0
                && record.tag == want.0
                && record.payload == want.1.as_slice(),
            "record {seen}: seq {}, tag {:#x}, {} bytes; want tag {:#x}, {} bytes",
            record.seq,
            record.tag,
            record.payload.len(),
            want.0,
            want.1.len()
        );
        seen += 1;
    }
    ensure!(
        seen == expected.len(),
        "{seen} records, want {}",
        expected.len()
    );
    Ok(())
}

/// The failed checks of a nested-lock load that failed only because a
/// lockdep probe was never called (its init's `-EAGAIN`).
fn probes_never_called(e: &anyhow::Error) -> Option<String> {
    let failed = e.downcast_ref::<InitFailed>()?;
    (failed.errno == Errno::EAGAIN).then(|| {
        let not_ok = failed.log.lines().filter(|l| l.contains("not ok - "));
        not_ok.map(str::trim).collect::<Vec<_>>().join("; ")
    })
}

/// Writes nested in the producer lock's own instrumentation, tried by the
/// nested-lock module's probes as it loads (with writers on every CPU)
/// and checked by it: each refused. Here: that it checked lockdep's
/// tracepoints (a debug kernel has them), that none of the nested writes
/// got through, and that the ring counted exactly its refusals. On the
/// driver before the per-CPU producer flag, the `lock_release` probe spun
/// on the lock its CPU held (the VM hangs) and `lock_acquire`'s writes got
/// through.
///
/// A load whose only failure is a lockdep probe never called at all (the
/// module's `-EAGAIN`: its tracepoint did not fire, on any lock, while the
/// writers took the producer lock; 11 of 600 loads on the arm64 debug
/// board)
/// checked nothing of the driver: the module is loaded once more, on a
/// fresh ring, and that load must pass. Every count compared is that one
/// load's: the ring's (the RESET of a fresh ring zeroes them) and its log.
fn nested_lock(env: &Env) -> anyhow::Result<()> {
    let loaded = checked_at_load(env, NESTED_MODULE);
    let (region, log) = match loaded.as_ref().err().and_then(probes_never_called) {
        Some(failed) => {
            println!("# {NESTED_MODULE}: EAGAIN ({failed}): loading it once more, on a fresh ring");
            checked_at_load(env, NESTED_MODULE).context(
                "loaded once more after a load whose lockdep probes were never called (EAGAIN)",
            )?
        }
        None => loaded?,
    };
    ensure!(
        log.matches("nested: ").count() == 1,
        "not one load in the nested-lock module's log: {log}"
    );
    ensure!(
        log.contains("all checks held"),
        "the nested-lock module's log: {log}"
    );
    ensure!(
        log.contains("ok - lock_acquire: ") && log.contains("ok - lock_release: "),
        "lockdep's tracepoints were not checked on the debug kernel: {log}"
    );
    let counts = log
        .lines()
        .find_map(|l| l.split_once("nested: "))
        .map(|(_, counts)| {
            counts
                .split_whitespace()
                .filter_map(|w| w.split_once('='))
                .filter_map(|(k, v)| Some((k, v.parse::<u64>().ok()?)))
                .collect::<std::collections::BTreeMap<_, _>>()
        })
        .with_context(|| format!("no counts in the module's log: {log}"))?;
    let count = |key: &str| counts.get(key).copied().unwrap_or(u64::MAX);
    let stats = region.stats()?;
    ensure!(
        count("tried") > 0
            && count("written") == 0
            && count("refused") == count("tried")
            && stats.records_refused == count("refused"),
        "nested writes {counts:?}; the ring counted {} refused",
        stats.records_refused
    );
    // A RESET zeroes the refusals with the ring's other counters.
    region.device()?.reset(&ResetConfig::default())?;
    let after = region.stats()?.records_refused;
    ensure!(after == 0, "records_refused {after} after a RESET");
    Ok(())
}
