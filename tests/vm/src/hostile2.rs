//! Hostile user space, second round: scribbles on the consumer page under
//! threads asleep in `read()`, `poll` and `epoll_wait`; `mremap` and partial
//! `munmap` of every part; a forked child scribbling through its inherited
//! mapping; writes through `/proc/self/mem` and `process_vm_writev`;
//! consumers killed with SIGKILL mid-stream; and open/close/mmap storms
//! against `rmmod`.
//!
//! Each scenario runs for a fixed time, not a fixed count, so the suite
//! costs about the same on the debug kernel (which gets fewer iterations
//! done) as on the normal one; the counts it reached are printed as
//! `# hostile2: ...` lines. The harness fails the run on any kernel
//! warning; what the group itself checks is that every call ends with a
//! result or an errno, that nothing outside the consumer page changes, and
//! that the counters account for every sequence number.

use std::io;
use std::os::fd::{
    AsRawFd,
    RawFd, //
};
use std::sync::atomic::{
    AtomicBool,
    AtomicI64,
    AtomicU64,
    AtomicUsize,
    Ordering, //
};
use std::sync::Arc;
use std::time::{
    Duration,
    Instant, //
};

use anyhow::{
    bail,
    Context, //
};
use rmemring::layout::{
    record_stride,
    ConsumerPage,
    OFF_PRODUCER_POS,
    RECORD_ALIGN, //
};
use rmemring::uapi::{
    ProducerConfig,
    ResetConfig,
    PRODUCER_WAIT, //
};
use rmemring::{
    pattern,
    Access,
    Device,
    Region,
    Wait, //
};
use rmemring_proto::modes::Overflow;
use rmemring_proto::roles::Role;
use rmemring_proto::stream::{
    parse_header,
    Records, //
};

use crate::support::fd::{
    close,
    device_of,
    epoll_wait_one,
    epoll_with,
    open_as,
    open_owned_as,
    poll_in,
    read_into, //
};
use crate::support::guard::Guard;
use crate::support::mapping::{
    map,
    map_anonymous,
    map_control,
    map_data,
    map_own_page,
    Mapping, //
};
use crate::support::process::{
    fork_child,
    kill,
    wait_child, //
};
use crate::support::ring::{
    consumer_with_page,
    control_intact,
    open_fresh,
    produce, //
};
use crate::support::rng::Rng;
use crate::support::threads::{
    Sleeper,
    IN_EPOLL,
    IN_POLL,
    IN_READ, //
};
use crate::support::verify::{
    read_each,
    seqs,
    still_works, //
};
use crate::support::{
    Env,
    Report, //
};

pub(crate) fn hostile2(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    let started = Instant::now();
    let guard = Guard::set(env, "hostile2", report)?;
    // The scenarios that fork come first, while this process has one
    // thread: the children run Rust code between fork and _exit.
    forked_scribbler(env, report)?;
    foreign_writes(env, report)?;
    killed_consumers(env, report)?;
    remaps(env, report)?;
    scribbles_under_sleepers(env, report)?;
    storms(env, report)?;
    if let Some((guard, before)) = &guard {
        guard.expect_unchanged(before, "hostile2", report);
    }
    report.check(
        "hostile2: a well-behaved consumer streams verified records afterwards",
        still_works(env),
    );
    println!(
        "# hostile2: the group took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A random word for the consumer page: garbage, or a position near the
/// producer's that the producer may well accept (so that it moves on the
/// scribbler's say-so, and overwrites what a reader has not read).
fn hostile_word(rng: &mut Rng, head: u64, data_size: u64) -> u64 {
    match rng.next() % 8 {
        0 => rng.next(),
        1 => head.wrapping_add(rng.next() % (4 * data_size)),
        2 => head.wrapping_sub(data_size + 8 + rng.next() % data_size),
        3 => head | 1,
        4 | 5 => head.wrapping_sub(rng.next() % data_size) & !(RECORD_ALIGN - 1),
        6 => u64::MAX,
        _ => head,
    }
}

/// Writes random values into the consumer page at `page`: its position,
/// its wake-up word and token, its counters and any other word.
///
/// # Safety
///
/// `page` must point to a writable mapping of a consumer page.
unsafe fn scribble(
    page: *mut ConsumerPage,
    rng: &mut Rng,
    head: u64,
    data_size: u64,
    words: usize,
) {
    let value = hostile_word(rng, head, data_size);
    let word = (rng.next() % words as u64) as usize;
    // SAFETY: The caller gives us a writable page of `words` words, which
    // holds a whole `ConsumerPage`; every bit pattern is a valid value of
    // its integer fields.
    unsafe {
        std::ptr::addr_of_mut!((*page).consumer_pos).write_volatile(value);
        std::ptr::addr_of_mut!((*page).need_wakeup).write_volatile(rng.next() as u32);
        std::ptr::addr_of_mut!((*page).wake_token).write_volatile(rng.next() as u32);
        page.cast::<u64>().add(word).write_volatile(rng.next());
    }
}

/// An anonymous shared page of counters, so killed children can leave
/// their tallies behind.
struct SharedCounters(Mapping);

impl SharedCounters {
    const WORDS: usize = 512;

    fn new() -> anyhow::Result<Self> {
        let page = map_anonymous(
            Self::WORDS * 8,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
        )
        .context("mmap of the shared counters")?;
        Ok(Self(page))
    }

    fn get(&self, i: usize) -> &AtomicU64 {
        assert!(i < Self::WORDS);
        // SAFETY: The page is mapped while `self` lives, zero-filled (a
        // valid AtomicU64), aligned, and only ever accessed atomically.
        unsafe { &*self.0.ptr.cast::<AtomicU64>().add(i) }
    }
}

// ---------------------------------------------------------------------
// Scribbles under sleepers.

/// How long the scribbler works against each overflow mode.
const SCRIBBLE_FOR: Duration = Duration::from_secs(3);

/// What the thread in `read()` saw.
#[derive(Debug, Default)]
struct ReadTally {
    calls: u64,
    records: u64,
    /// Records that were not whole, in order and intact (overwrite mode:
    /// the kernel validates every copy, so there must be none).
    bad: u64,
    /// Byte counts that were not whole records (never allowed).
    malformed: u64,
    /// Errors by errno.
    errors: Vec<(i32, u64)>,
}

impl ReadTally {
    fn error(&mut self, errno: i32) {
        match self.errors.iter_mut().find(|(e, _)| *e == errno) {
            Some((_, n)) => *n += 1,
            None => self.errors.push((errno, 1)),
        }
    }
}

/// What the thread in `poll`/`epoll_wait` saw.
#[derive(Debug, Default)]
struct PollTally {
    polls: u64,
    epolls: u64,
    readable: u64,
    /// Events other than readable (POLLERR, POLLHUP, POLLNVAL...).
    odd_events: u64,
    errors: u64,
    /// The longest call; each asks for at most [`POLL_TIMEOUT`].
    longest: Duration,
}

const POLL_TIMEOUT: Duration = Duration::from_millis(20);

/// A thread scribbles on the consumer page (the same process's mapping)
/// while another sleeps in blocking `read()`s and a third in `poll` and
/// `epoll_wait`, with the producer publishing a few thousand records a
/// second: every call must come back with records or an errno, and in
/// overwrite mode, where the consumer page cannot steer the producer,
/// every record `read()` returns must be intact.
fn scribbles_under_sleepers(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    for overflow in Overflow::ALL {
        let mode = overflow.name();
        let (region, page) = consumer_with_page(env, overflow)?;
        let l = *region.layout();
        let fd = region.fd().as_raw_fd();
        let words = l.page_size as usize / 8;
        let stop = Arc::new(AtomicBool::new(false));
        let in_read = Arc::new(AtomicBool::new(false));
        let in_poll = Arc::new(AtomicBool::new(false));

        let reader = {
            let (stop, in_read) = (stop.clone(), in_read.clone());
            let stride = record_stride(l.max_payload) as usize;
            Sleeper::spawn(IN_READ, move || {
                let mut t = ReadTally::default();
                let mut buf = vec![0u8; 2 * stride];
                let mut next_seq = 0;
                while !stop.load(Ordering::Acquire) {
                    in_read.store(true, Ordering::Release);
                    let n = read_into(fd, &mut buf);
                    in_read.store(false, Ordering::Release);
                    t.calls += 1;
                    let n = match n {
                        Ok(n) => n,
                        Err(e) => {
                            let errno = e.raw_os_error().unwrap_or(0);
                            t.error(errno);
                            if errno != libc::EINTR {
                                // A broken page makes every read fail; do
                                // not spin on it.
                                std::thread::sleep(Duration::from_millis(1));
                            }
                            continue;
                        }
                    };
                    let mut records = Records::new(&buf[..n]);
                    for record in records.by_ref().map_while(Result::ok) {
                        let seq = record.header.seq;
                        if seq < next_seq || !pattern::verify(seq, record.payload) {
                            t.bad += 1;
                        }
                        next_seq = seq + 1;
                        t.records += 1;
                    }
                    let rest = records.remainder();
                    if parse_header(rest).is_some() {
                        // Not a data record, or one longer than the rest:
                        // in drop-new mode the scribbler may have let the
                        // producer rewrite what the kernel then copied;
                        // the lengths still came from the kernel's
                        // validated view, so the call's count must be
                        // whole records. Count and move on to the next
                        // read.
                        t.bad += 1;
                    } else if !rest.is_empty() {
                        // Not even a whole header.
                        t.malformed += 1;
                    }
                    if !(n as u64).is_multiple_of(RECORD_ALIGN) {
                        t.malformed += 1;
                    }
                }
                t
            })?
        };
        let poller = {
            let (stop, in_poll) = (stop.clone(), in_poll.clone());
            let epfd = epoll_with(fd)?;
            let calls: Vec<libc::c_long> = IN_POLL.iter().chain(IN_EPOLL).copied().collect();
            Sleeper::spawn(&calls, move || {
                let mut t = PollTally::default();
                let mut i = 0u64;
                while !stop.load(Ordering::Acquire) {
                    let began = Instant::now();
                    in_poll.store(true, Ordering::Release);
                    let events = if i.is_multiple_of(2) {
                        t.polls += 1;
                        poll_in(fd, POLL_TIMEOUT).map(|revents| revents as u32)
                    } else {
                        t.epolls += 1;
                        epoll_wait_one(epfd.as_raw_fd(), POLL_TIMEOUT)
                    };
                    in_poll.store(false, Ordering::Release);
                    t.longest = t.longest.max(began.elapsed());
                    i += 1;
                    let events = match events {
                        Ok(events) => events,
                        // The signal that ends the scenario may land in a
                        // call; anything else is an error.
                        Err(e) => {
                            if e.raw_os_error() != Some(libc::EINTR) {
                                t.errors += 1;
                            }
                            continue;
                        }
                    };
                    let readable = (libc::POLLIN | libc::POLLRDNORM) as u32;
                    if events & readable != 0 {
                        t.readable += 1;
                    }
                    if events & !readable != 0 {
                        t.odd_events += 1;
                    }
                    // Readable stays readable until someone consumes: do
                    // not spin on it.
                    if events != 0 {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                }
                drop(epfd);
                t
            })?
        };

        let config = ProducerConfig {
            min_len: 0,
            max_len: 2048,
            rate: 5000,
            batch: 4,
            ..Default::default()
        };
        region.start(&config)?;
        let consumer = page.ptr.cast::<ConsumerPage>();
        let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ u64::from(overflow.flag()));
        let (mut total, mut during_read, mut during_poll) = (0u64, 0u64, 0u64);
        let start = Instant::now();
        while start.elapsed() < SCRIBBLE_FOR {
            let head = region.control().producer_pos;
            for _ in 0..16 {
                let reading = in_read.load(Ordering::Acquire);
                let polling = in_poll.load(Ordering::Acquire);
                // SAFETY: `consumer` is our writable mapping of the
                // consumer page, `words` words long.
                unsafe { scribble(consumer, &mut rng, head, l.data_size, words) };
                total += 1;
                during_read += u64::from(reading && in_read.load(Ordering::Acquire));
                during_poll += u64::from(polling && in_poll.load(Ordering::Acquire));
            }
            // Leave the sleepers' vCPU some room now and then.
            std::thread::yield_now();
        }
        stop.store(true, Ordering::Release);
        // The sleepers may sleep on: a signal ends their wait.
        let (poll, poll_took, _) = poller.finish(Duration::ZERO);
        let (read, read_took, _) = reader.finish(Duration::ZERO);
        region.stop()?;
        let stats = region.stats()?;
        println!(
            "# hostile2 ({mode}): {total} scribbles, {during_read} during read(), {during_poll} during poll/epoll_wait; \
             read(): {} calls, {} records ({} bad, {} malformed), errors {:?}; \
             poll: {} polls, {} epoll_waits, {} readable, {} odd events, {} errors, longest {:?}; \
             producer wrote {}, dropped {}, overwrote {}, ignored {} bad consumer positions",
            read.calls,
            read.records,
            read.bad,
            read.malformed,
            read.errors,
            poll.polls,
            poll.epolls,
            poll.readable,
            poll.odd_events,
            poll.errors,
            poll.longest,
            stats.records_produced,
            stats.records_dropped,
            stats.records_overwritten,
            stats.consumer_errors,
        );
        // A blocking read() and a poll: the signal after the stop ends
        // either within far less than a second.
        let prompt = read_took.max(poll_took) < SCRIBBLE_FOR + Duration::from_secs(5);
        let only_known_errors = read
            .errors
            .iter()
            .all(|&(e, _)| e == libc::EINTR || e == libc::EIO);
        report.expect(
            &format!(
                "hostile2 ({mode}): scribbles during read(), poll and epoll_wait: every call returns whole records or an errno, promptly; the control page stays intact"
            ),
            during_read > 0
                && during_poll > 0
                && read.calls > 0
                && read.malformed == 0
                && only_known_errors
                && poll.errors == 0
                && poll.odd_events == 0
                && poll.longest < POLL_TIMEOUT + Duration::from_secs(2)
                && prompt
                && stats.records_produced > 0
                && control_intact(&region),
            || format!("read {read:?} (took {read_took:?}), poll {poll:?} (took {poll_took:?}), stats {stats:?}"),
        );
        if overflow == Overflow::OverwriteOldest {
            report.expect(
                &format!("hostile2 ({mode}): with the consumer page scribbled on, every record read() returns is intact and in order"),
                read.records > 0 && read.bad == 0,
                || format!("{read:?}"),
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------
// mremap and partial munmap.

/// Grows, shrinks and moves each part's mapping and punches holes in them,
/// then uses what is left: the pieces show exactly the ring's bytes, the
/// moved consumer page still steers the producer's view of the consumer,
/// and while any piece is mapped the file stays open (no second consumer,
/// no `rmmod`); once the last goes, both work.
fn remaps(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    let region = open_fresh(env, Overflow::DropNew)?;
    let l = *region.layout();
    let fd = region.fd().as_raw_fd();
    let page = l.page_size as usize;
    let size = l.data_size as usize;
    // Records over most of the data area, then nothing moves.
    let config = ProducerConfig {
        min_len: 8,
        max_len: 1024,
        count: l.data_size / 1024,
        ..Default::default()
    };
    produce(&region, &config)?;
    let data_ref = map_data(fd, &l)?.bytes();
    let control_ref = map_control(fd, &l)?.bytes();
    let mut failures = Vec::new();
    let mut fail = |what: String| failures.push(what);

    let mut control = map_control(fd, &l)?;
    let mut own = map_own_page(fd, &l)?;
    let mut data = map_data(fd, &l)?;

    // Growth: the driver's mappings cannot grow past what it mapped.
    let mut grown = Vec::new();
    for (name, m) in [
        ("control page", &mut control),
        ("consumer page", &mut own),
        ("data area", &mut data),
    ] {
        let len = m.len;
        for (how, flags) in [("in place", 0), ("moving", libc::MREMAP_MAYMOVE)] {
            match m.remap(len + page, flags, std::ptr::null_mut()) {
                Ok(()) => {
                    fail(format!("the {name} grew {how} by a page"));
                    // Back to its size, so the rest can go on.
                    let _ = m.remap(len, 0, std::ptr::null_mut());
                }
                Err(e) => grown.push(format!("{name} {how}: {e}")),
            }
        }
    }
    if control.bytes() != control_ref || data.bytes() != data_ref {
        fail("after the refused growths the mappings show other bytes".into());
    }

    // Moves: each part to a fresh address, where it shows the same bytes.
    let (mut moved, mut unmoved) = (Vec::new(), Vec::new());
    for (name, m) in [
        ("control page", &mut control),
        ("consumer page", &mut own),
        ("data area", &mut data),
    ] {
        let len = m.len;
        // An address range nobody uses, for the mapping to move onto.
        let to = map_anonymous(len, libc::PROT_NONE, libc::MAP_PRIVATE)?;
        // The kernel may refuse to move a PFN mapping; then the original
        // stays, and must still show the ring.
        match m.remap(len, libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED, to.ptr) {
            // The range is the moved mapping's now: not to be unmapped.
            Ok(()) => {
                std::mem::forget(to);
                moved.push(name);
            }
            Err(e) => unmoved.push(format!("{name}: {e}")),
        }
    }
    if control.bytes() != control_ref {
        fail("the moved control page shows other bytes".into());
    }
    if data.bytes() != data_ref {
        fail("the moved data area shows other bytes".into());
    }

    // Shrinking the data area, then punching holes into what is left: the
    // first page, and one in the middle.
    if let Err(e) = data.remap(size / 2, 0, std::ptr::null_mut()) {
        fail(format!("shrinking the data area: {e}"));
    }
    let head_hole = data.punch(0, page);
    let mut middle = match head_hole {
        Ok(rest) => rest,
        Err(e) => bail!("punching the first page of the data area: {e}"),
    };
    // `data` is now empty (its range went with the hole); `middle` starts
    // at data offset `page`.
    let hole_at = (middle.len / page / 2) * page;
    let tail = middle.punch(hole_at, page)?;
    let tail_offset = page + hole_at + page;
    if middle.bytes() != data_ref[page..page + middle.len] {
        fail("the piece between the holes shows other bytes".into());
    }
    if tail.bytes() != data_ref[tail_offset..tail_offset + tail.len] {
        fail("the piece after the middle hole shows other bytes".into());
    }

    // A read-only mapping of the whole ring with the consumer page cut
    // out of it: control page and data area, apart.
    let whole_len = (l.data_offset + l.data_size) as usize;
    let mut whole = map(fd, 0, whole_len, libc::PROT_READ, libc::MAP_SHARED)?;
    let after_own = whole.punch(l.consumer_offset as usize, page)?;
    if whole.bytes() != control_ref {
        fail("the control page left of the cut shows other bytes".into());
    }
    if after_own.bytes() != data_ref {
        fail("the data area right of the cut shows other bytes".into());
    }

    // The moved consumer page is still the consumer page: a position
    // written through it is what the driver reports.
    let c = region.control();
    let target = c.producer_pos;
    // SAFETY: `own` is our writable (moved) mapping of the consumer page.
    unsafe {
        std::ptr::addr_of_mut!((*own.ptr.cast::<ConsumerPage>()).consumer_pos)
            .write_volatile(target)
    };
    let seen = region.stats()?.consumer_pos;
    if seen != target {
        fail(format!(
            "wrote consumer_pos {target} through the moved page, the driver sees {seen}"
        ));
    }

    // Close the file: the pieces keep it open.
    drop(region);
    let busy = Region::open(&env.device, Access::Consume);
    if !matches!(busy, Err(rmemring::Error::Busy { .. })) {
        fail(format!(
            "with pieces of the consumer's mappings left, another consumer opened: {busy:?}"
        ));
    }
    drop(busy);
    if env.kmod.try_rmmod() {
        fail("rmmod succeeded with pieces of the ring mapped".into());
        env.kmod.ensure_loaded()?;
    }
    // Using what is left after the close.
    if control.bytes() != control_ref || tail.bytes() != data_ref[tail_offset..][..tail.len] {
        fail("after close the pieces show other bytes".into());
    }
    let pieces = [control, own, data, middle, tail, whole, after_own];
    let count = pieces.iter().filter(|p| p.len != 0).count();
    // Unmap them one by one: the file goes with the last.
    let mut left = pieces
        .into_iter()
        .filter(|p| p.len != 0)
        .collect::<Vec<_>>();
    while let Some(piece) = left.pop() {
        if !left.is_empty() && env.kmod.try_rmmod() {
            fail(format!(
                "rmmod succeeded with {} pieces still mapped",
                left.len()
            ));
            env.kmod.ensure_loaded()?;
        }
        drop(piece);
    }
    let reopened = Region::open(&env.device, Access::Consume).map(drop);
    if let Err(e) = reopened {
        fail(format!("after the last piece went, no new consumer: {e}"));
    }
    if let Err(e) = env.reload() {
        fail(format!("after the last piece went: {e:#}"));
    }
    println!(
        "# hostile2: mremap growth refused ({}); moved: {moved:?}, moves refused: {unmoved:?}; a shrink and {count} pieces from partial munmaps checked",
        grown.join("; ")
    );
    report.expect(
        "hostile2: mremap growth is refused, moves and shrinks keep the ring's bytes, partial munmaps leave usable pieces that hold the file and module until the last goes",
        failures.is_empty(),
        || failures.join("; "),
    );
    Ok(())
}

// ---------------------------------------------------------------------
// A forked scribbler.

/// How long the child scribbles for each way of consuming.
const FORKED_FOR: Duration = Duration::from_secs(2);

/// A child inherits the consumer's mappings and fills the consumer page
/// with random words while the parent consumes, through the mapping and
/// then through `read()`: the parent gets records or errors, never a
/// crash; the producer keeps going and the control page stays intact; once
/// the child is gone, the ring works again.
fn forked_scribbler(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    for via_read in [false, true] {
        let how = if via_read { "read()" } else { "the mapping" };
        let (region, page) = consumer_with_page(env, Overflow::DropNew)?;
        let l = *region.layout();
        let fd = region.fd().as_raw_fd();
        let counters = SharedCounters::new()?;
        let config = ProducerConfig {
            min_len: 8,
            max_len: 512,
            rate: 200_000,
            ..Default::default()
        };
        region.start(&config)?;
        let words = l.page_size as usize / 8;
        let consumer_page = page.ptr.cast::<ConsumerPage>();
        let child = fork_child(|| {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ u64::from(via_read));
            let start = Instant::now();
            let mut n = 0;
            while start.elapsed() < FORKED_FOR {
                let head = region.control().producer_pos;
                for _ in 0..64 {
                    // SAFETY: The child inherited the parent's shared,
                    // writable mapping of the consumer page.
                    unsafe { scribble(consumer_page, &mut rng, head, l.data_size, words) };
                }
                n += 64;
                counters.get(0).store(n, Ordering::Relaxed);
            }
            0
        })?;
        let (mut records, mut errors, mut bad) = (0u64, 0u64, 0u64);
        let start = Instant::now();
        let mut buf = vec![0u8; 1 << 16];
        let mut consumer = None;
        while start.elapsed() < FORKED_FOR {
            if via_read {
                match read_into(fd, &mut buf) {
                    Ok(n) => records += seqs(&buf[..n]).len() as u64,
                    Err(_) => {
                        errors += 1;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                continue;
            }
            // The library's consumer, attached afresh after each error
            // (attaching reads the scribbled page too).
            let c = match consumer.as_mut() {
                Some(c) => c,
                None => match region.consumer() {
                    Ok(c) => consumer.insert(c),
                    Err(_) => {
                        errors += 1;
                        std::thread::sleep(Duration::from_millis(1));
                        continue;
                    }
                },
            };
            c.set_wait(Wait::Spin(1000));
            let result = c.wait(Some(Duration::from_millis(20))).and_then(|_| {
                let mut batch = c.batch()?;
                for r in batch.iter() {
                    let r = r?;
                    // The child may have let the producer overwrite what
                    // the batch lends: count, do not fail.
                    bad += u64::from(!pattern::verify(r.seq, r.payload));
                    records += 1;
                }
                Ok(())
            });
            if result.is_err() {
                errors += 1;
                consumer = None;
            }
        }
        drop(consumer);
        let status = wait_child(child);
        region.stop()?;
        let stats = region.stats()?;
        let scribbles = counters.get(0).load(Ordering::Relaxed);
        println!(
            "# hostile2: a forked child wrote {scribbles} scribbles while the parent consumed through {how}: \
             {records} records ({bad} garbled), {errors} errors; producer wrote {}, dropped {}, ignored {} bad positions",
            stats.records_produced, stats.records_dropped, stats.consumer_errors
        );
        report.expect(
            &format!("hostile2: a forked child scribbling on the inherited consumer page while the parent consumes through {how}: the producer keeps going, the control page stays intact"),
            // Whether the producer met a bad position depends on whether it
            // ran out of room (it looks only then): on the debug kernel it
            // may not; the hostile group checks that they are counted.
            libc::WIFEXITED(status)
                && libc::WEXITSTATUS(status) == 0
                && scribbles > 0
                && stats.records_produced > 0
                && control_intact(&region),
            || format!("child status {status:#x}, stats {stats:?}"),
        );
        drop(page);
        drop(region);
        let observer = Region::open(&env.device, Access::Observe)?;
        let s = observer.stats()?;
        report.expect(
            &format!("hostile2: after the forked scribbler ({how}) and its parent close, nothing holds the consumer's place or runs"),
            s.consumer_open == 0 && s.producer_running == 0,
            || format!("{s:?}"),
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------
// /proc/self/mem and process_vm_writev.

/// Writes into the read-only control page and data area through
/// `/proc/self/mem` (which can write through read-only mappings of
/// ordinary memory) and `process_vm_writev`, from this process and from a
/// child: every write fails with an errno, and not one byte changes.
fn foreign_writes(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    let region = open_fresh(env, Overflow::DropNew)?;
    let l = *region.layout();
    let fd = region.fd().as_raw_fd();
    let page = l.page_size as usize;
    let config = ProducerConfig {
        min_len: 8,
        max_len: 256,
        count: 20_000,
        ..Default::default()
    };
    produce(&region, &config)?;
    let control = map_control(fd, &l)?;
    let data = map_data(fd, &l)?;
    let before = (control.bytes(), data.bytes());
    let size = l.data_size as usize;
    let targets: Vec<(&str, usize)> = vec![
        ("control page: magic", control.ptr as usize),
        (
            "control page: producer_pos",
            control.ptr as usize + OFF_PRODUCER_POS,
        ),
        ("control page: last word", control.ptr as usize + page - 8),
        ("data area: first record", data.ptr as usize),
        ("data area: middle", data.ptr as usize + size / 2),
        ("data area: last word", data.ptr as usize + size - 8),
    ];
    let junk = [0xa5u8; 8];
    let mut outcomes = Vec::new();
    let mut succeeded = Vec::new();
    let mut no_vm_writev = false;
    let mem = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/proc/self/mem")
        .context("opening /proc/self/mem")?;
    for &(name, addr) in &targets {
        // SAFETY: `junk` is valid for its length; the offset is an address
        // in this process, which the kernel checks.
        let n = unsafe {
            libc::pwrite(
                mem.as_raw_fd(),
                junk.as_ptr().cast(),
                junk.len(),
                addr as libc::off_t,
            )
        };
        let errno = io::Error::last_os_error();
        if n >= 0 {
            succeeded.push(format!("/proc/self/mem at the {name}: wrote {n}"));
        } else {
            outcomes.push(format!("/proc/self/mem: {errno}"));
        }
        let n = vm_writev(std::process::id() as libc::pid_t, addr, &junk);
        match n {
            Ok(n) => succeeded.push(format!("process_vm_writev at the {name}: wrote {n}")),
            // Refused for want of the system call proves nothing.
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => no_vm_writev = true,
            Err(e) => outcomes.push(format!("process_vm_writev: {e}")),
        }
    }
    // Another process, into ours.
    let parent = std::process::id() as libc::pid_t;
    let addrs: Vec<usize> = targets.iter().map(|t| t.1).collect();
    let child = fork_child(|| {
        let path = format!("/proc/{parent}/mem");
        let mem = std::fs::OpenOptions::new().write(true).open(path);
        let mut wrote = 0;
        for &addr in &addrs {
            if vm_writev(parent, addr, &junk).is_ok() {
                wrote += 1;
            }
            if let Ok(mem) = &mem {
                // SAFETY: As above, into the parent's address space.
                let n = unsafe {
                    libc::pwrite(
                        mem.as_raw_fd(),
                        junk.as_ptr().cast(),
                        junk.len(),
                        addr as libc::off_t,
                    )
                };
                wrote += i32::from(n >= 0);
            }
        }
        wrote
    })?;
    let status = wait_child(child);
    let child_wrote = libc::WEXITSTATUS(status);
    if !libc::WIFEXITED(status) || child_wrote != 0 {
        succeeded.push(format!(
            "a child's writes into this process: status {status:#x}, {child_wrote} succeeded"
        ));
    }
    let after = (control.bytes(), data.bytes());
    let unchanged = before == after;
    outcomes.sort();
    outcomes.dedup();
    println!(
        "# hostile2: {} writes through /proc/PID/mem and process_vm_writev into the read-only parts ({} targets, from this process and a child): {}",
        4 * targets.len(),
        targets.len(),
        outcomes.join(", ")
    );
    if no_vm_writev {
        report.skip(
            "hostile2: process_vm_writev into the read-only parts",
            "this kernel has no process_vm_writev (CONFIG_CROSS_MEMORY_ATTACH)",
        );
    }
    report.expect(
        "hostile2: writes through /proc/self/mem and process_vm_writev into the read-only control page and data area fail with an errno and change nothing",
        succeeded.is_empty() && unchanged,
        || {
            let first = before
                .1
                .iter()
                .zip(&after.1)
                .position(|(a, b)| a != b);
            format!(
                "{}; control page unchanged {}, data area unchanged {} (first difference {first:?})",
                succeeded.join("; "),
                before.0 == after.0,
                before.1 == after.1
            )
        },
    );
    Ok(())
}

/// `process_vm_writev` of `bytes` to `addr` in process `pid`.
fn vm_writev(pid: libc::pid_t, addr: usize, bytes: &[u8]) -> io::Result<isize> {
    let local = libc::iovec {
        iov_base: bytes.as_ptr().cast_mut().cast(),
        iov_len: bytes.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: One local iovec over `bytes`, which the kernel only reads;
    // the remote one is checked by the kernel.
    let n = unsafe { libc::process_vm_writev(pid, &local, 1, &remote, 1, 0) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n)
    }
}

// ---------------------------------------------------------------------
// Consumers killed mid-stream.

/// How long consumers are forked and killed in each of the four phases.
const KILLING_FOR: Duration = Duration::from_secs(4);

/// Counter slots of [`SharedCounters`] the killed consumers use.
const VERIFIED: usize = 0;
const BAD: usize = 1;
const FAILED: usize = 2;
const ATTACHED: usize = 3;

/// Payload lengths of the killed consumers' stream.
const KILL_MIN: u32 = 8;
const KILL_MAX: u32 = 512;

/// A producer runs flat out, started by a controller that stays open, while
/// consumers come and go: each is a child that attaches (through the
/// mapping or through `read()`), verifies what it reads and is killed with
/// SIGKILL at a random moment, from before it attached to the middle of a
/// batch. Each next consumer continues from the consumer page; at the end
/// one more drains the ring, and the consumer page's counters, carried
/// through every killed consumer, must account for every sequence number
/// the producer used, exactly.
fn killed_consumers(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    for overflow in Overflow::ALL {
        for via_read in [false, true] {
            killed_phase(env, report, overflow, via_read)?;
        }
    }
    pending_on_close(env, report)
}

/// Overwrite mode: a `read()` whose buffer holds one record and half of
/// the next hands out the first and keeps the second for its next call.
/// If the file closes before that call (its reader killed, say), the next
/// consumer must still get the second record, or count it lost: it may
/// not vanish counted as consumed.
fn pending_on_close(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    const RECORDS: u64 = 10;
    let region = open_fresh(env, Overflow::OverwriteOldest)?;
    let config = ProducerConfig {
        min_len: 100,
        max_len: 100,
        count: RECORDS,
        ..Default::default()
    };
    produce(&region, &config)?;
    let stride = record_stride(100) as usize;
    let mut buf = vec![0u8; stride + stride / 2];
    let mut seqs = Vec::new();
    read_each(region.fd().as_raw_fd(), &mut buf, |seq, _, _| {
        seqs.push(seq)
    })?;
    let after_read = region.consumer_page();
    drop(region);
    let region = Arc::new(Region::open(&env.device, Access::Consume)?);
    let mut consumer = region.consumer()?;
    while let Some(r) = consumer.read_copy()? {
        seqs.push(r.seq);
    }
    consumer.release();
    drop(consumer);
    let page = region.consumer_page();
    let delivered = seqs.len() as u64;
    report.expect(
        "hostile2: overwrite mode, a record read() kept for its next call when the file closes: the next consumer gets it or counts it lost",
        delivered + page.records_lost == RECORDS && page.records_consumed == delivered,
        || {
            format!(
                "{RECORDS} records produced; delivered {seqs:?}; after the first read() the consumer page said \
                 {} consumed at position {}; at the end {} consumed, {} lost",
                after_read.records_consumed,
                after_read.consumer_pos,
                page.records_consumed,
                page.records_lost
            )
        },
    );
    Ok(())
}

fn killed_phase(
    env: &Env,
    report: &mut Report,
    overflow: Overflow,
    via_read: bool,
) -> anyhow::Result<()> {
    let mode = overflow.name();
    let how = if via_read { "read()" } else { "the mapping" };
    drop(open_fresh(env, overflow)?);
    let dev = env.device.clone();
    let control = Device::from_fd(open_owned_as(&dev, Role::Controller)?)?;
    let config = ProducerConfig {
        min_len: KILL_MIN,
        max_len: KILL_MAX,
        ..Default::default()
    };
    control.start(&config)?;
    let counters = SharedCounters::new()?;
    let mut rng =
        Rng(0xd1b5_4a32_d192_ed03 ^ (u64::from(overflow.flag()) << 1 | u64::from(via_read)));
    let (mut kills, mut early, mut exits) = (0u64, 0u64, Vec::new());
    let start = Instant::now();
    while start.elapsed() < KILLING_FOR {
        let child = fork_child(
            || match killed_consumer(&dev, overflow, via_read, &counters) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("killed consumer: {e:#}");
                    counters.get(FAILED).fetch_add(1, Ordering::Relaxed);
                    3
                }
            },
        )?;
        // One in eight at once, before it has attached; one in four up
        // to 300 ms (the debug kernel's read() may take longer than 30 ms
        // to return its first records); the rest up to 30 ms.
        let delay = if rng.one_in(8) {
            0
        } else if rng.one_in(4) {
            rng.next() % 300_000
        } else {
            rng.next() % 30_000
        };
        early += u64::from(delay == 0);
        std::thread::sleep(Duration::from_micros(delay));
        kill(child);
        let status = wait_child(child);
        kills += 1;
        if !(libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL) {
            exits.push(status);
        }
    }
    control.stop()?;
    if overflow == Overflow::DropNew {
        // Records dropped after the last one published are not gaps yet:
        // one more record, waiting for room, makes them gaps the last
        // consumer sees.
        let last = ProducerConfig {
            min_len: KILL_MIN,
            max_len: KILL_MAX,
            count: 1,
            flags: PRODUCER_WAIT,
            ..Default::default()
        };
        control.start(&last)?;
    }
    // The last consumer drains the ring (waiting for that record).
    let region = Arc::new(Region::open(&dev, Access::Consume)?);
    let attached = region.consumer_page();
    let mut consumer = region.consumer()?;
    let mut last_seq = None;
    let (mut verified, mut bad) = (0u64, 0u64);
    let drain = Instant::now();
    loop {
        let stats = control.stats()?;
        let available = consumer.wait(Some(Duration::from_millis(50)))?;
        if !available && stats.producer_running == 0 {
            break;
        }
        if drain.elapsed() > Duration::from_secs(60) {
            bail!("draining after the killed consumers took over 60 s");
        }
        let mut check = |seq: u64, payload: &[u8]| {
            let len = pattern::payload_len(seq, KILL_MIN, KILL_MAX) as usize;
            if last_seq.is_some_and(|l| seq <= l)
                || payload.len() != len
                || !pattern::verify(seq, payload)
            {
                bad += 1;
            }
            last_seq = Some(seq);
            verified += 1;
        };
        if overflow == Overflow::OverwriteOldest {
            while let Some(r) = consumer.read_copy()? {
                check(r.seq, r.payload);
            }
        } else {
            for r in consumer.batch()?.iter() {
                let r = r?;
                check(r.seq, r.payload);
            }
        }
    }
    consumer.release();
    drop(consumer);
    let page = region.consumer_page();
    let stats = control.stats()?;
    drop(control);
    drop(region);

    let used = stats.records_produced + stats.records_dropped;
    let (consumed, lost) = (page.records_consumed, page.records_lost);
    let child_verified = counters.get(VERIFIED).load(Ordering::Relaxed);
    let child_bad = counters.get(BAD).load(Ordering::Relaxed);
    let failed = counters.get(FAILED).load(Ordering::Relaxed);
    let attaches = counters.get(ATTACHED).load(Ordering::Relaxed);
    // A consumer in user space stores its position, then its counters: a
    // SIGKILL between the two stores leaves records it read counted as
    // lost by the next one. The sum stays exact; only the kernel's
    // read() stores both where no signal lands in between.
    let misfiled = match overflow {
        Overflow::OverwriteOldest => String::new(),
        Overflow::DropNew => format!(
            "; {} counted lost beyond the {} dropped",
            lost.saturating_sub(stats.records_dropped),
            stats.records_dropped
        ),
    };
    let summary = format!(
        "{kills} consumers killed ({early} before attaching, {attaches} after), {child_verified} records verified by them ({child_bad} bad), \
         {failed} failed; the last one attached at consumed {} + lost {} and verified {verified} ({bad} bad), last seq {last_seq:?}; \
         consumer page: {consumed} consumed + {lost} lost = {}; producer: {} produced + {} dropped = {used}, {} overwritten{misfiled}",
        attached.records_consumed,
        attached.records_lost,
        consumed + lost,
        stats.records_produced,
        stats.records_dropped,
        stats.records_overwritten,
    );
    println!("# hostile2: kill -9 ({mode}, {how}): {summary}");
    let exact_sum = consumed + lost == used && last_seq == used.checked_sub(1);
    // How the sum splits: exactly as the producer counted where the
    // kernel's read() kept the counters; with lost possibly too high by
    // `misfiled` where killed user-space consumers did.
    let exact_split = match (overflow, via_read) {
        (Overflow::DropNew, true) => {
            consumed == stats.records_produced && lost == stats.records_dropped
        }
        (Overflow::DropNew, false) => lost >= stats.records_dropped,
        (Overflow::OverwriteOldest, true) => lost <= stats.records_overwritten,
        (Overflow::OverwriteOldest, false) => true,
    };
    report.expect(
        &format!("hostile2: consumers through {how} killed at random points of a flat-out {mode} stream: each next one resumes, and consumed + lost account for every sequence number exactly"),
        kills > 0
            && exits.is_empty()
            && failed == 0
            && child_bad == 0
            && bad == 0
            // The killed consumers got somewhere, and the page kept it
            // for the last one. (Whether one lived to tally what it
            // verified is down to timing: on the debug kernel an
            // overwrite-mode read() under a flat-out producer may not.)
            && attached.records_consumed > 0
            && exact_sum
            && exact_split,
        || format!("{summary}; children that did not die of SIGKILL: {exits:x?}"),
    );
    Ok(())
}

/// A child consumer: attaches and verifies records until it is killed.
fn killed_consumer(
    dev: &str,
    overflow: Overflow,
    via_read: bool,
    counters: &SharedCounters,
) -> anyhow::Result<()> {
    // The previous consumer died before this one was forked, so its file
    // is gone; no waiting for it.
    let check = |seq: u64, next: &mut u64, payload: &[u8]| -> bool {
        let len = pattern::payload_len(seq, KILL_MIN, KILL_MAX) as usize;
        let ok = seq >= *next && payload.len() == len && pattern::verify(seq, payload);
        *next = seq + 1;
        ok
    };
    let mut next = 0;
    if via_read {
        let fd = open_as(dev, Role::Consumer)?;
        counters.get(ATTACHED).fetch_add(1, Ordering::Relaxed);
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let (mut ok, mut bad) = (0, 0);
            read_each(fd, &mut buf, |seq, _, payload| {
                if check(seq, &mut next, payload) {
                    ok += 1;
                } else {
                    bad += 1;
                }
            })?;
            counters.get(VERIFIED).fetch_add(ok, Ordering::Relaxed);
            counters.get(BAD).fetch_add(bad, Ordering::Relaxed);
        }
    }
    let region = Arc::new(Region::open(dev, Access::Consume)?);
    let mut consumer = region.consumer()?;
    counters.get(ATTACHED).fetch_add(1, Ordering::Relaxed);
    consumer.set_wait(Wait::BusyPoll);
    // Batches of random sizes, so that the kill falls before, inside and
    // after releases (a whole full ring would take one batch longer than
    // the kill's delay, and nothing would ever be released).
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id()));
    loop {
        consumer.wait(Some(Duration::from_millis(100)))?;
        let (mut ok, mut bad) = (0, 0);
        let most = 1 + (rng.next() % 2048) as usize;
        if overflow == Overflow::OverwriteOldest {
            for _ in 0..most {
                let Some(r) = consumer.read_copy()? else {
                    break;
                };
                if check(r.seq, &mut next, r.payload) {
                    ok += 1;
                } else {
                    bad += 1;
                }
            }
        } else {
            for r in consumer.batch()?.iter().take(most) {
                let r = r?;
                if check(r.seq, &mut next, r.payload) {
                    ok += 1;
                } else {
                    bad += 1;
                }
            }
        }
        counters.get(VERIFIED).fetch_add(ok, Ordering::Relaxed);
        counters.get(BAD).fetch_add(bad, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------
// Open/close/mmap storms against rmmod.

/// Storm threads.
const STORMERS: usize = 4;
/// How long the storm lasts.
const STORM_FOR: Duration = Duration::from_secs(8);
/// The most files and mappings one storm thread holds at once.
const HOLD_AT_MOST: usize = 6;

/// What the storm threads share with the thread that runs `rmmod`.
#[derive(Default)]
struct Storm {
    stop: AtomicBool,
    /// Set: finish the current step and wait; `release` too: first close
    /// and unmap everything.
    freeze: AtomicBool,
    release: AtomicBool,
    frozen: AtomicUsize,
    /// Files and mappings the threads hold.
    held: AtomicI64,
    opens: AtomicU64,
    maps: AtomicU64,
    ioctls: AtomicU64,
    /// Calls that failed with an errno the storm does not expect.
    odd: AtomicU64,
    odd_example: std::sync::Mutex<Option<String>>,
}

impl Storm {
    fn odd(&self, what: String) {
        self.odd.fetch_add(1, Ordering::Relaxed);
        let mut example = self.odd_example.lock().unwrap();
        example.get_or_insert(what);
    }
}

/// One thing a storm thread holds.
enum Held {
    File {
        fd: RawFd,
        role: Role,
    },
    /// Unmapped when dropped.
    Map {
        _mapping: Mapping,
    },
}

/// Threads open the device in every mode, map its parts, start, stop and
/// reset, unmap and close, at random, while this thread runs `rmmod` at
/// random moments. Now and then the threads freeze (after closing
/// everything, or holding what they hold): then `rmmod` must fail exactly
/// when they hold something, and when they hold nothing it must succeed
/// and leave `/proc/iomem` clean, and the driver loads again.
fn storms(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    env.kmod.ensure_loaded()?;
    let l = *Region::open(&env.device, Access::Observe)?.layout();
    let storm = Arc::new(Storm::default());
    let threads: Vec<_> = (0..STORMERS)
        .map(|i| {
            let storm = storm.clone();
            let dev = env.device.clone();
            std::thread::spawn(move || stormer(&dev, &l, &storm, i as u64))
        })
        .collect();
    let mut rng = Rng(0x94d0_49bb_1331_11eb);
    let mut failures = Vec::new();
    let (mut attempts, mut refused, mut unloaded, mut frozen_checks) = (0u64, 0u64, 0u64, 0u64);
    let start = Instant::now();
    let mut round = 0u64;
    while start.elapsed() < STORM_FOR {
        round += 1;
        std::thread::sleep(Duration::from_millis(5 + rng.next() % 60));
        let freeze = round.is_multiple_of(3);
        if freeze {
            storm
                .release
                .store(round.is_multiple_of(2), Ordering::Release);
            storm.freeze.store(true, Ordering::Release);
            let waited = Instant::now();
            while storm.frozen.load(Ordering::Acquire) < STORMERS {
                if waited.elapsed() > Duration::from_secs(30) {
                    bail!("the storm threads did not freeze within 30 s");
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let held = storm.held.load(Ordering::Acquire);
        attempts += 1;
        let removed = env.kmod.try_rmmod();
        if removed {
            unloaded += 1;
            let iomem = std::fs::read_to_string("/proc/iomem")?;
            if iomem.contains("rmemring") {
                failures.push(format!(
                    "after rmmod /proc/iomem still shows the region:\n{iomem}"
                ));
            }
            if std::path::Path::new(&env.device).exists() {
                failures.push(format!("after rmmod {} still exists", env.device));
            }
            env.kmod.ensure_loaded()?;
        } else {
            refused += 1;
        }
        if freeze {
            frozen_checks += 1;
            if held > 0 && removed {
                failures.push(format!(
                    "rmmod succeeded while the frozen threads held {held} files and mappings"
                ));
            }
            if held == 0 && !removed {
                failures.push("rmmod failed with nothing open or mapped".into());
            }
            storm.freeze.store(false, Ordering::Release);
            while storm.frozen.load(Ordering::Acquire) > 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    storm.stop.store(true, Ordering::Release);
    for t in threads {
        if t.join().is_err() {
            failures.push("a storm thread panicked".into());
        }
    }
    let held = storm.held.load(Ordering::Acquire);
    if held != 0 {
        failures.push(format!("the storm threads ended holding {held}"));
    }
    if let Err(e) = env.reload() {
        failures.push(format!("after the storm: {e:#}"));
    }
    let odd = storm.odd.load(Ordering::Relaxed);
    if odd > 0 {
        failures.push(format!(
            "{odd} calls failed unexpectedly, e.g. {:?}",
            storm.odd_example.lock().unwrap()
        ));
    }
    println!(
        "# hostile2: storm of {STORMERS} threads: {} opens, {} mmaps, {} ioctls; {attempts} rmmod attempts \
         ({refused} refused, {unloaded} unloaded and reloaded), {frozen_checks} with the threads frozen",
        storm.opens.load(Ordering::Relaxed),
        storm.maps.load(Ordering::Relaxed),
        storm.ioctls.load(Ordering::Relaxed),
    );
    report.expect(
        "hostile2: open/close/mmap storms from several threads with rmmod in between: refused exactly while anything is open or mapped, else it unloads cleanly and the driver loads again",
        failures.is_empty() && unloaded > 0 && refused > 0,
        || failures.join("; "),
    );
    Ok(())
}

/// One storm thread.
fn stormer(dev: &str, l: &rmemring::RingLayout, storm: &Storm, seed: u64) {
    let mut rng = Rng(0xbf58_476d_1ce4_e5b9 ^ (seed + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut held: Vec<Held> = Vec::new();
    let page = l.page_size as usize;
    // `held` changes between steps, so a frozen count is exact.
    let drop_one = |held: &mut Vec<Held>, i: usize| {
        let item = held.swap_remove(i);
        if let Held::File { fd, .. } = item {
            close(fd);
        }
        storm.held.fetch_sub(1, Ordering::AcqRel);
    };
    loop {
        if storm.stop.load(Ordering::Acquire) {
            while !held.is_empty() {
                drop_one(&mut held, 0);
            }
            return;
        }
        if storm.freeze.load(Ordering::Acquire) {
            if storm.release.load(Ordering::Acquire) {
                while !held.is_empty() {
                    drop_one(&mut held, 0);
                }
            }
            storm.frozen.fetch_add(1, Ordering::AcqRel);
            while storm.freeze.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(1));
            }
            storm.frozen.fetch_sub(1, Ordering::AcqRel);
            continue;
        }
        let files: Vec<(RawFd, Role)> = held
            .iter()
            .filter_map(|h| match h {
                Held::File { fd, role } => Some((*fd, *role)),
                Held::Map { .. } => None,
            })
            .collect();
        let pick = |rng: &mut Rng| files[(rng.next() % files.len() as u64) as usize];
        match rng.next() % 8 {
            0 | 1 if held.len() < HOLD_AT_MOST => {
                let role =
                    [Role::Observer, Role::Controller, Role::Consumer][(rng.next() % 3) as usize];
                match open_as(dev, role) {
                    Ok(fd) => {
                        storm.held.fetch_add(1, Ordering::AcqRel);
                        storm.opens.fetch_add(1, Ordering::Relaxed);
                        held.push(Held::File { fd, role });
                    }
                    // Another thread's consumer, or the module between
                    // rmmod and insmod.
                    Err(e)
                        if matches!(
                            e.raw_os_error(),
                            Some(libc::EBUSY | libc::ENOENT | libc::ENODEV | libc::ENXIO)
                        ) => {}
                    Err(e) => storm.odd(format!("open: {e}")),
                }
            }
            // A controller's file is write-only, and a shared mapping
            // needs read access.
            2 | 3 if held.len() < HOLD_AT_MOST && files.iter().any(|f| f.1 != Role::Controller) => {
                let readable: Vec<_> = files.iter().filter(|f| f.1 != Role::Controller).collect();
                let &(fd, role) = readable[(rng.next() % readable.len() as u64) as usize];
                let (offset, len, prot) = match rng.next() % 4 {
                    0 => (0, page, libc::PROT_READ),
                    1 if role.consumes() => {
                        (l.consumer_offset, page, libc::PROT_READ | libc::PROT_WRITE)
                    }
                    2 => (
                        l.data_offset + (rng.next() % (l.data_size / page as u64)) * page as u64,
                        page,
                        libc::PROT_READ,
                    ),
                    _ => (0, (l.data_offset + l.data_size) as usize, libc::PROT_READ),
                };
                match map(fd, offset, len, prot, libc::MAP_SHARED) {
                    Ok(m) => {
                        // A read through it, as a consumer would.
                        m.word(0);
                        storm.held.fetch_add(1, Ordering::AcqRel);
                        storm.maps.fetch_add(1, Ordering::Relaxed);
                        held.push(Held::Map { _mapping: m });
                    }
                    Err(e) => storm.odd(format!("mmap at {offset:#x}: {e}")),
                }
            }
            4 if !files.is_empty() => {
                let (fd, role) = pick(&mut rng);
                let device = match device_of(fd) {
                    Ok(device) => device,
                    Err(e) => {
                        storm.odd(format!("dup of a {}'s descriptor: {e}", role.name()));
                        continue;
                    }
                };
                storm.ioctls.fetch_add(1, Ordering::Relaxed);
                // Each call, and whether the file's role may make it.
                let (result, allowed) = match rng.next() % 4 {
                    0 => (
                        device.start(&ProducerConfig {
                            min_len: 8,
                            max_len: 256,
                            rate: 50_000,
                            ..Default::default()
                        }),
                        role.may_control(),
                    ),
                    1 => (device.stop(), role.may_control()),
                    2 => (device.reset(&ResetConfig::default()), role.may_reset()),
                    _ => (device.stats().map(drop), true),
                };
                if let Err(e) = result {
                    let expected = match e.raw_os_error() {
                        // Another file's producer runs (START, RESET).
                        Some(libc::EBUSY) => true,
                        Some(libc::EPERM) => !allowed,
                        _ => false,
                    };
                    if !expected {
                        storm.odd(format!("ioctl by a {}: {e}", role.name()));
                    }
                }
            }
            _ if !held.is_empty() => {
                let i = (rng.next() % held.len() as u64) as usize;
                drop_one(&mut held, i);
            }
            _ => {}
        }
    }
}
