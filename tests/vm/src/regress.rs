//! Regression tests for the defects a hardening review found in the
//! driver; each of them fails on the driver as it was before its fix.
//!
//! - a blocking `read()` that the producer laps on every attempt (overwrite
//!   mode) must stay killable;
//! - a RESET racing a thread in `read()` must not leave the previous ring's
//!   counters in the fresh consumer page;
//! - the data area holds no bytes from before the ring was laid out, after
//!   a load and after a RESET;
//! - the region's physical address is for `CAP_SYS_ADMIN` only;
//!
//! and for those a second, hostile review found:
//!
//! - the tails of the control and consumer pages (past their structs) are
//!   zeroed too, after a RESET and a load: a consumer's scribbles there
//!   reached the next opener;
//! - one `read()` copies a bounded amount, and a RESET zeroes the driver's
//!   own read counter;
//! - a non-blocking `read()` consumer that got `EAGAIN` is woken through
//!   `epoll` by the next record;
//!
//! and, for the first review's second defect, the part its RESET tests
//! leave out:
//!
//! - a `read()` that faults after copying records returns those records,
//!   and the one that faulted comes first in the next call.

use std::io;
use std::mem::size_of;
use std::os::fd::{
    AsRawFd,
    RawFd, //
};
use std::sync::atomic::{
    AtomicBool,
    AtomicU64,
    Ordering, //
};
use std::sync::{
    Arc,
    Mutex, //
};
use std::time::{
    Duration,
    Instant, //
};

use anyhow::{
    bail,
    ensure,
    Context, //
};
use rmemring::layout::record_stride;
use rmemring::uapi::{
    ProducerConfig,
    ResetConfig,
    PATTERN_NONE, //
};
use rmemring::{
    Access,
    Device,
    Region, //
};
use rmemring_proto::layout::{
    ConsumerPage,
    ControlPage, //
};
use rmemring_proto::modes::{
    CacheMode,
    Overflow, //
};
use rmemring_proto::roles::Role;

use crate::support::fd::{
    close,
    epoll_wait_one,
    epoll_with,
    errno_of,
    open_owned_as,
    poll_in,
    read,
    read_into,
    set_nonblocking, //
};
use crate::support::mapping::{
    map,
    map_anonymous,
    map_data, //
};
use crate::support::process::{
    fork_child,
    kill,
    kill_and_reap,
    reap_within,
    wait_child, //
};
use crate::support::ring::{
    consumer_with_page,
    open_fresh,
    produce, //
};
use crate::support::threads::{
    syscall_of,
    Sleeper,
    IN_READ, //
};
use crate::support::verify::seqs;
use crate::support::{
    Env,
    Report, //
};

pub(crate) fn regress(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    lapped_reader_is_killable(env, report)?;
    reset_under_reader(env, report)?;
    stale_bytes(env, report)?;
    phys_base_for_admin_only(env, report)?;
    page_tails(env, report)?;
    bounded_read(env, report)?;
    nonblocking_reader_wakes(env, report)?;
    fault_keeps_copied(env, report)?;
    Ok(())
}

/// More `read()` returns in the 2 s than a reader kept in the kernel makes
/// (about none), far fewer than one failing at once makes.
const LAPPED_RETURNS: u64 = 1000;

/// The longest a reader killed with SIGKILL may take to die.
const DIE_WITHIN: Duration = Duration::from_secs(1);

/// A consumer blocked in `read()` on an overwrite ring whose producer laps
/// it on every attempt: records of the largest size, no payload pattern
/// (the producer writes one word per record, the reader copies all of
/// it), no rate limit. The driver used to give up after 64 laps, copy
/// nothing, decline to sleep because the ring was not empty, and loop
/// without looking at signals or yielding: SIGKILL never landed, and the
/// producer the reader's file had started never stopped.
///
/// On a write-back ring, and where the driver takes module parameters, on
/// a write-combining one (`cache_mode=1`, the review's other way to make
/// every attempt lapped: its copies are slower).
fn lapped_reader_is_killable(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    env.kmod.ensure_loaded()?;
    lapped_reader_check(env, report, CacheMode::WriteBack)?;
    let kmod = &env.kmod;
    if kmod.params.is_empty() {
        return Ok(());
    }
    kmod.reload_in(CacheMode::WriteCombine)?;
    let result = lapped_reader_check(env, report, CacheMode::WriteCombine);
    // The rest of the group runs on the reference parameters' ring.
    kmod.reload()?;
    result
}

/// [`lapped_reader_is_killable`] on the loaded driver's ring, mapped in
/// `mode`.
fn lapped_reader_check(env: &Env, report: &mut Report, mode: CacheMode) -> anyhow::Result<()> {
    let mode = mode.name();
    let mut pipe = [0; 2];
    // SAFETY: `pipe` has room for the two descriptors.
    if unsafe { libc::pipe(pipe.as_mut_ptr()) } < 0 {
        bail!("pipe: {}", io::Error::last_os_error());
    }
    let [ready_rx, ready_tx] = pipe;
    // A counter the child bumps after every read() return, in memory it
    // shares with us.
    let shared = map(
        -1,
        0,
        4096,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_SHARED | libc::MAP_ANONYMOUS,
    )?;
    // SAFETY: The mapping is page-aligned, zeroed, readable and writable,
    // outlives `returns`, and is only ever accessed atomically.
    let returns = unsafe { AtomicU64::from_ptr(shared.ptr.cast()) };
    // This group runs its threads only after this check, so this process
    // has one thread.
    let pid = fork_child(|| match lapped_reader(env, ready_tx, returns) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("lapped reader: {e:#}");
            1
        }
    })?;
    // Our copy of the write end; the child has its own.
    close(ready_tx);
    let ready = poll_in(ready_rx, Duration::from_secs(30)).is_ok_and(|events| events != 0);
    close(ready_rx);
    if !ready {
        kill_and_reap(pid);
        bail!("the lapped reader never started reading");
    }
    // Let it be lapped for a while, inside read(), and count how often
    // read() returns meanwhile: the fixed driver keeps a lapped reader in
    // the kernel (retrying, and sleeping until the next publication), so
    // it hardly returns at all.
    let observer = Region::open(&env.device, Access::Observe)?;
    let overwritten_before = observer.stats()?.records_overwritten;
    let returns_before = returns.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(2));
    let returned = returns.load(Ordering::Relaxed) - returns_before;
    let overwritten = observer.stats()?.records_overwritten - overwritten_before;
    let (_, syscall) = syscall_of(&format!("/proc/{pid}/syscall"));
    println!(
        "# lapped reader: {returned} read() returns in 2 s, {overwritten} records overwritten"
    );
    // Without both, the kill below tests nothing: a reader whose read()
    // failed at once would loop in user space (tens of thousands of
    // returns in 2 s even on the debug kernel), killable whatever the
    // driver does.
    report.expect(
        &format!("regress: the lapped reader was lapped, and kept inside read() ({mode})"),
        overwritten > 0 && returned < LAPPED_RETURNS,
        || {
            format!(
                "records overwritten meanwhile: {overwritten}; read() returned {returned} times \
                 in 2 s (at most {LAPPED_RETURNS} expected); syscall now: {:?}",
                syscall.trim()
            )
        },
    );
    let killed_at = Instant::now();
    kill(pid);
    let died = reap_within(pid, DIE_WITHIN);
    let took = killed_at.elapsed();
    if !died {
        // Give it a last chance, so the rest of the run is not stuck
        // behind it; a fixed driver never gets here.
        reap_within(pid, Duration::from_secs(30));
    }
    report.expect(
        &format!(
            "regress: a reader the producer laps on every attempt dies within 1 s of SIGKILL \
             ({mode})"
        ),
        died,
        || {
            format!(
                "still alive {took:?} after SIGKILL (read() returned {returned} times in the 2 s before; syscall then {syscall:?})"
            )
        },
    );
    // Its file is closed, so the producer it started has stopped.
    let stats = observer.stats()?;
    report.expect(
        &format!("regress: the killed reader's producer stopped with it ({mode})"),
        died && stats.producer_running == 0 && stats.consumer_open == 0,
        || {
            format!(
                "producer_running {}, consumer_open {}",
                stats.producer_running, stats.consumer_open
            )
        },
    );
    Ok(())
}

/// The child of [`lapped_reader_is_killable`]: resets the ring to
/// overwrite mode, starts the lapping producer, says so on `ready`, and
/// reads until killed, counting the returns in `returns`.
fn lapped_reader(env: &Env, ready: RawFd, returns: &AtomicU64) -> anyhow::Result<()> {
    let region = open_fresh(env, Overflow::OverwriteOldest)?;
    let l = *region.layout();
    let config = ProducerConfig {
        min_len: l.max_payload,
        max_len: l.max_payload,
        pattern: PATTERN_NONE,
        ..Default::default()
    };
    region.start(&config)?;
    let mut buf = vec![0u8; 2 * record_stride(l.max_payload) as usize];
    // SAFETY: One byte from a local, on our pipe.
    unsafe { libc::write(ready, b"r".as_ptr().cast(), 1) };
    loop {
        // It is lapped on every attempt: whatever this returns, try again.
        let _ = read_into(region.fd().as_raw_fd(), &mut buf);
        returns.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs of one record each, every one followed by a RESET issued just as
/// the thread in `read()` that got the record goes back to sleep.
const RESET_RUNS: u64 = 400;

/// A thread loops in blocking `read()` while another, on the same
/// descriptor, starts a run of one record, waits until the reader has it
/// and resets the ring, a few microseconds later each time. The reader
/// used to store its counters into the consumer page on its way to sleep
/// without checking for a reset, so a reset that fell between its last
/// look and that store left the old ring's `records_consumed` in the fresh
/// page: every later `read()` failed with EIO (a sequence number below the
/// expected one). Then every run's record must reach the reader, numbered
/// 0, and no read fail.
fn reset_under_reader(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    for (what, modes) in [
        (Overflow::DropNew.name(), &[Overflow::DropNew][..]),
        (
            Overflow::OverwriteOldest.name(),
            &[Overflow::OverwriteOldest][..],
        ),
        ("changing modes", &Overflow::ALL[..]),
    ] {
        let region = open_fresh(env, modes[0])?;
        let fd = region.fd().as_raw_fd();
        let got = Arc::new(AtomicU64::new(0));
        let bad = Arc::new(Mutex::new(Vec::<String>::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (got, bad, stop) = (got.clone(), bad.clone(), stop.clone());
            Sleeper::spawn(IN_READ, move || {
                while !stop.load(Ordering::Acquire) {
                    match read(fd, 1 << 16) {
                        Ok(data) => {
                            let seqs = seqs(&data);
                            if seqs.iter().any(|&s| s != 0) {
                                bad.lock().unwrap().push(format!("records {seqs:?}"));
                            }
                            got.fetch_add(seqs.len() as u64, Ordering::AcqRel);
                        }
                        Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                        Err(e) => {
                            bad.lock().unwrap().push(format!("read: {e}"));
                            return;
                        }
                    }
                }
            })?
        };
        let one = ProducerConfig {
            min_len: 64,
            max_len: 64,
            count: 1,
            ..Default::default()
        };
        let mut delay = 0x2545_f491u64;
        let mut lost_run = None;
        for run in 0..RESET_RUNS {
            let want = got.load(Ordering::Acquire) + 1;
            region.start(&one)?;
            let start = Instant::now();
            while got.load(Ordering::Acquire) < want {
                if start.elapsed() > Duration::from_secs(5) || !bad.lock().unwrap().is_empty() {
                    break;
                }
                std::hint::spin_loop();
            }
            if got.load(Ordering::Acquire) < want {
                lost_run = Some(run);
                break;
            }
            // A few microseconds, differing from run to run, so the reset
            // lands at every point of the reader's way back to sleep.
            delay = delay.wrapping_mul(6364136223846793005).wrapping_add(1);
            let spin = Instant::now();
            while spin.elapsed() < Duration::from_micros((delay >> 33) % 120) {
                std::hint::spin_loop();
            }
            let reset = ResetConfig {
                flags: modes[(run as usize + 1) % modes.len()].flag(),
                ..Default::default()
            };
            // The one-record run may still be winding down.
            loop {
                match region.device()?.reset(&reset) {
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => std::thread::yield_now(),
                    other => break other.context("RESET")?,
                }
            }
        }
        stop.store(true, Ordering::Release);
        let (_, _, _) = reader.finish(Duration::ZERO);
        let stats = region.stats()?;
        let bad = bad.lock().unwrap().clone();
        let got = got.load(Ordering::Acquire);
        report.expect(
            &format!("regress: RESET under a thread in read(), {what}: every run's record arrives"),
            lost_run.is_none() && bad.is_empty() && got == RESET_RUNS && stats.consumer_errors == 0,
            || {
                format!(
                    "{got} of {RESET_RUNS} records read, run {lost_run:?} never arrived, \
                     consumer_errors {}, {bad:?}",
                    stats.consumer_errors
                )
            },
        );
    }
    Ok(())
}

/// Whether the data area of `region` holds only zeroes, and how many
/// bytes do not.
fn nonzero_bytes(env: &Env) -> anyhow::Result<usize> {
    let observer = Region::open(&env.device, Access::Observe)?;
    let l = *observer.layout();
    let data = map_data(observer.fd().as_raw_fd(), &l)?.bytes();
    Ok(data.iter().filter(|&&b| b != 0).count())
}

/// Fills the data area with records and stops.
fn fill(env: &Env) -> anyhow::Result<()> {
    let region = open_fresh(env, Overflow::OverwriteOldest)?;
    let l = *region.layout();
    let config = ProducerConfig {
        min_len: 0,
        max_len: 1000,
        count: 4 * l.data_size / 512,
        ..Default::default()
    };
    produce(&region, &config).context("filling the ring")
}

/// The data area shows nothing from before the ring was laid out: padding,
/// pad records and payloads the producer does not fill would otherwise
/// show a previous ring's (or a previous boot's) bytes to every reader.
fn stale_bytes(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    fill(env)?;
    let before = nonzero_bytes(env)?;
    {
        let mut region = Region::open(&env.device, Access::Consume)?;
        region.reset(&ResetConfig::default())?;
    }
    let after_reset = nonzero_bytes(env)?;
    report.expect(
        "regress: RESET zeroes the data area",
        before > 0 && after_reset == 0,
        || format!("{before} non-zero bytes before the reset, {after_reset} after"),
    );

    fill(env)?;
    let before = nonzero_bytes(env)?;
    env.kmod.rmmod()?;
    env.kmod.load(&env.kmod.params)?;
    let after_load = nonzero_bytes(env)?;
    report.expect(
        "regress: loading the driver zeroes the data area the region held",
        before > 0 && after_load == 0,
        || format!("{before} non-zero bytes before rmmod, {after_load} after insmod"),
    );
    Ok(())
}

/// The user and group an unprivileged child takes.
const NOBODY: libc::uid_t = 65534;

/// `RMEMRING_IOC_INFO` and the control page give the physical address only
/// to openers with `CAP_SYS_ADMIN`, as `/proc/iomem` does; others see 0.
fn phys_base_for_admin_only(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    env.kmod.ensure_loaded()?;
    // The reference parameters' base (x86_64), or the device tree's for
    // this device (the arm64 board).
    let base = match env.kmod.param("phys_base")? {
        Some(base) => base,
        None => {
            crate::support::env::board_expectations()
                .context("no phys_base in the reference parameters, and no board")?
                .rings
                .iter()
                .find(|ring| format!("/dev/{}", ring.dev) == env.device)
                .with_context(|| format!("{} is none of the board's rings", env.device))?
                .base
        }
    };
    let root = Region::open(&env.device, Access::Observe)?;
    let info = root.info()?;
    let control = root.control().phys_base;
    drop(root);
    report.expect(
        "regress: root sees the physical base in INFO, not in the shared control page",
        info.phys_base == base && control == 0,
        || {
            format!(
                "INFO {:#x}, control page {control:#x}, expected {base:#x} and 0",
                info.phys_base
            )
        },
    );

    // Let everyone open the node for a moment, then look as nobody.
    use std::os::unix::fs::PermissionsExt;
    let node = std::fs::metadata(&env.device)?.permissions();
    std::fs::set_permissions(&env.device, std::fs::Permissions::from_mode(0o644))?;
    // Single-threaded here (the reader threads above were joined).
    let pid = fork_child(|| {
        let code = (|| -> anyhow::Result<u8> {
            // SAFETY: Dropping privileges in the child.
            unsafe {
                if libc::setgid(NOBODY) != 0 || libc::setuid(NOBODY) != 0 {
                    bail!("setuid: {}", io::Error::last_os_error());
                }
            }
            let region = Region::open(&env.device, Access::Observe)?;
            let info = region.info()?;
            Ok(u8::from(info.phys_base != 0) | (u8::from(region.control().phys_base != 0) << 1))
        })();
        match code {
            Ok(c) => i32::from(c),
            Err(e) => {
                eprintln!("unprivileged child: {e:#}");
                8
            }
        }
    })?;
    let status = wait_child(pid);
    std::fs::set_permissions(&env.device, node)?;
    let code = libc::WEXITSTATUS(status);
    report.expect(
        "regress: an opener without CAP_SYS_ADMIN sees phys_base 0 in INFO and the control page",
        libc::WIFEXITED(status) && code == 0,
        || match code {
            8 => "the unprivileged child failed (see its message)".into(),
            c => format!("leaked: INFO {}, control page {}", c & 1 != 0, c & 2 != 0),
        },
    );
    Ok(())
}

/// The bytes of the control and consumer pages past their structs, as an
/// observer maps them; how many are not zero.
fn nonzero_page_tails(env: &Env) -> anyhow::Result<usize> {
    let observer = Region::open(&env.device, Access::Observe)?;
    let l = *observer.layout();
    let fd = observer.fd().as_raw_fd();
    let page = l.page_size as usize;
    let control = map(fd, 0, page, libc::PROT_READ, libc::MAP_SHARED)?.bytes();
    let consumer = map(
        fd,
        l.consumer_offset,
        page,
        libc::PROT_READ,
        libc::MAP_SHARED,
    )?
    .bytes();
    Ok(control[size_of::<ControlPage>()..]
        .iter()
        .chain(&consumer[size_of::<ConsumerPage>()..])
        .filter(|&&b| b != 0)
        .count())
}

/// A consumer writes 0xa5 over the tail of its page (it may write the
/// whole page); returns how many bytes it wrote.
fn scribble_page_tail(env: &Env) -> anyhow::Result<usize> {
    let (_region, page) = consumer_with_page(env, Overflow::DropNew)?;
    let tail = size_of::<ConsumerPage>()..page.len;
    for at in tail.clone() {
        // SAFETY: `at` lies inside the writable mapping `page`.
        unsafe { page.ptr.add(at).write_volatile(0xa5) };
    }
    Ok(tail.len())
}

/// Before the fix only the structs were rewritten: the rest of each page
/// kept what was there, a previous consumer's scribbles or a previous
/// boot's data, for every opener to map.
fn page_tails(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    let written = scribble_page_tail(env)?;
    let before = nonzero_page_tails(env)?;
    {
        let mut region = Region::open(&env.device, Access::Consume)?;
        region.reset(&ResetConfig::default())?;
    }
    let after_reset = nonzero_page_tails(env)?;
    report.expect(
        "regress: RESET zeroes the pages past their structs (a consumer's scribbles do not reach the next opener)",
        before >= written && after_reset == 0,
        || format!("{before} non-zero bytes before the reset ({written} scribbled), {after_reset} after"),
    );
    scribble_page_tail(env)?;
    let before = nonzero_page_tails(env)?;
    env.kmod.rmmod()?;
    env.kmod.load(&env.kmod.params)?;
    let after_load = nonzero_page_tails(env)?;
    report.expect(
        "regress: loading the driver zeroes the pages past their structs",
        before >= written && after_load == 0,
        || format!("{before} non-zero bytes before rmmod, {after_load} after insmod"),
    );
    Ok(())
}

/// The most the driver copies in one `read()` when no record is larger.
const READ_CHUNK: usize = 1 << 20;

/// A ring holding 4 MiB of records, read with a 16 MiB buffer: one call
/// returns at most 1 MiB of whole records (before the fix, all 4 MiB: one
/// pass gathered up to a data area of records with no resched point, tens
/// of seconds for 0-byte records on an uncached ring). Then a RESET zeroes
/// `records_read` (before the fix it survived resets).
fn bounded_read(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    let region = open_fresh(env, Overflow::DropNew)?;
    let config = ProducerConfig {
        min_len: 1000,
        max_len: 1000,
        count: 4096,
        ..Default::default()
    };
    produce(&region, &config)?;
    let data = read(region.fd().as_raw_fd(), 16 << 20)?;
    let records = seqs(&data).len();
    report.expect(
        "regress: one read() copies at most 1 MiB of whole records when no record is larger",
        !data.is_empty()
            && data.len() <= READ_CHUNK
            && records as u64 * record_stride(1000) == data.len() as u64,
        || format!("{} bytes, {records} whole records", data.len()),
    );
    let read_before = region.stats()?.records_read;
    drop(region);

    // A record larger than the bound still comes whole, and alone.
    let region = open_fresh(env, Overflow::DropNew)?;
    let big = ProducerConfig {
        min_len: 3 << 19,
        max_len: 3 << 19,
        count: 3,
        ..Default::default()
    };
    produce(&region, &big)?;
    let data = read(region.fd().as_raw_fd(), 16 << 20)?;
    report.expect(
        "regress: a record larger than 1 MiB comes whole, alone, in one read()",
        data.len() as u64 == record_stride(big.max_len) && seqs(&data).len() == 1,
        || format!("{} bytes, {} whole records", data.len(), seqs(&data).len()),
    );
    drop(region);
    let region = open_fresh(env, Overflow::DropNew)?;
    let read_after = region.stats()?.records_read;
    report.expect(
        "regress: RESET zeroes the driver's count of records read",
        read_before == records as u64 && read_after == 0,
        || format!("records_read {read_before} before the reset, {read_after} after"),
    );
    Ok(())
}

/// An event loop's consumer: a non-blocking `read()` until `EAGAIN`, then
/// `epoll_wait`. Before the fix the `EAGAIN` path asked the producer for no
/// wake-up, and a `read()` consumer has no page of its own to ask with:
/// `epoll_wait` slept through every record. (The first publication after a
/// RESET wakes every sleeper regardless, so the second round is the test.)
fn nonblocking_reader_wakes(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    drop(open_fresh(env, Overflow::DropNew)?);
    let reader = open_owned_as(&env.device, Role::Observer)?;
    let fd = reader.as_raw_fd();
    set_nonblocking(fd, true);
    let epoll = epoll_with(fd)?;
    let controller = Arc::new(Device::from_fd(open_owned_as(
        &env.device,
        Role::Controller,
    )?)?);
    let mut rounds = Vec::new();
    for _ in 0..3 {
        let drained = read(fd, 1 << 16).map(|d| d.len());
        let starter = {
            let controller = controller.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                let config = ProducerConfig {
                    min_len: 64,
                    max_len: 64,
                    count: 10,
                    ..Default::default()
                };
                controller.start(&config)
            })
        };
        let events = epoll_wait_one(epoll.as_raw_fd(), Duration::from_secs(5));
        starter.join().expect("starter thread")?;
        std::thread::sleep(Duration::from_millis(100));
        let got = read(fd, 1 << 16).map(|d| seqs(&d).len());
        let ok = drained.as_ref().err().and_then(io::Error::raw_os_error) == Some(libc::EAGAIN)
            && events
                .as_ref()
                .is_ok_and(|&e| e & libc::EPOLLIN as u32 != 0)
            && got.as_ref().is_ok_and(|&n| n == 10);
        rounds.push((
            ok,
            format!("read {drained:?}, epoll_wait {events:?}, then {got:?} records"),
        ));
    }
    report.expect(
        "regress: a non-blocking read() consumer that got EAGAIN wakes in epoll_wait for the next records (3 rounds)",
        rounds.iter().all(|(ok, _)| *ok),
        || {
            rounds
                .iter()
                .map(|(_, what)| what.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        },
    );
    Ok(())
}

/// A `read()` whose buffer runs into a page that faults, in each mode: the
/// records copied before the fault are returned, and the record that
/// faulted is the next call's first, nothing lost or counted lost. The
/// driver used to return the error and lose what it had copied.
fn fault_keeps_copied(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    const LEN: u32 = 1000;
    /// Records that fit before the fault.
    const FIT: usize = 5;
    const RECORDS: u64 = 20;
    let stride = record_stride(LEN) as usize;
    let config = ProducerConfig {
        min_len: LEN,
        max_len: LEN,
        ..Default::default()
    };
    for overflow in [Overflow::DropNew, Overflow::OverwriteOldest] {
        let region = open_fresh(env, overflow)?;
        let fd = region.fd().as_raw_fd();
        // Drop-new mode copies each contiguous run of records with one
        // `copy_to_user`, so only a run the wrap breaks off can fault after
        // another was copied: fill and drain the ring up to FIT records
        // before its end.
        let mut first = 0;
        if overflow == Overflow::DropNew {
            let fill = region.layout().geometry.data_size / stride as u64 - FIT as u64;
            produce(
                &region,
                &ProducerConfig {
                    count: fill,
                    ..config
                },
            )?;
            while first < fill {
                let got = seqs(&read(fd, READ_CHUNK)?).len() as u64;
                ensure!(
                    got > 0,
                    "draining the ring stopped at {first} of {fill} records"
                );
                first += got;
            }
        }
        produce(
            &region,
            &ProducerConfig {
                count: RECORDS,
                ..config
            },
        )?;
        let page = region.layout().geometry.page_size as usize;
        let pages = (FIT * stride).div_ceil(page) + 1;
        let buf = map_anonymous(
            pages * page,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE,
        )?;
        // SAFETY: The last page lies inside `buf`'s mapping.
        let last = unsafe { buf.ptr.add((pages - 1) * page) };
        // SAFETY: `mprotect` of a page of our own mapping.
        let protected = unsafe { libc::mprotect(last.cast(), page, libc::PROT_NONE) };
        ensure!(protected == 0, "mprotect: {}", io::Error::last_os_error());
        // Room for FIT records and half of the next, then the fault.
        let room = FIT * stride + stride / 2;
        // SAFETY: `room` bytes before the last page, inside the mapping.
        let start = unsafe { last.sub(room) };
        // SAFETY: The kernel writes at most `room` bytes into our mapping
        // before the protected page; a fault there is the point.
        let got = errno_of(unsafe { libc::read(fd, start.cast(), RECORDS as usize * stride) });
        let before = match got {
            // SAFETY: The kernel wrote `n` bytes at `start`, inside the mapping.
            Ok(n) if n <= room => seqs(unsafe { std::slice::from_raw_parts(start, n) }),
            _ => Vec::new(),
        };
        let rest = seqs(&read(fd, RECORDS as usize * stride)?);
        let stats = region.stats()?;
        let want_before: Vec<u64> = (first..first + FIT as u64).collect();
        let want_rest: Vec<u64> = (first + FIT as u64..first + RECORDS).collect();
        let mode = overflow.name();
        report.expect(
            &format!(
                "regress: a read() that faults after copying {FIT} records returns them, \
                 and the next starts at the one that faulted ({mode})"
            ),
            got.as_ref().is_ok_and(|&n| n == FIT * stride)
                && before == want_before
                && rest == want_rest
                && stats.records_lost + stats.records_dropped + stats.records_overwritten == 0
                && stats.records_read == first + RECORDS,
            || {
                format!(
                    "read {got:?} (seqs {before:?}), then seqs {rest:?}; \
                     want {want_before:?}, then {want_rest:?}; \
                     lost {}, dropped {}, overwritten {}, read {}",
                    stats.records_lost,
                    stats.records_dropped,
                    stats.records_overwritten,
                    stats.records_read
                )
            },
        );
    }
    Ok(())
}
