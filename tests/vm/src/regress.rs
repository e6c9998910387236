//! Regression tests for the defects a hardening review found in the
//! driver; each of them fails on the driver as it was before its fix.
//!
//! - a blocking `read()` that the producer laps on every attempt (overwrite
//!   mode) must stay killable;
//! - a RESET racing a thread in `read()` must not leave the previous ring's
//!   counters in the fresh consumer page;
//! - the data area holds no bytes from before the ring was laid out, after
//!   a load and after a RESET;
//! - the region's physical address is for `CAP_SYS_ADMIN` only.

use std::io;
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
    Context, //
};
use rmemring::layout::record_stride;
use rmemring::uapi::{
    ProducerConfig,
    ResetConfig,
    PATTERN_NONE, //
};
use rmemring::{
    ioctl,
    Access,
    Region, //
};
use rmemring_proto::modes::Overflow;

use crate::support::fd::{
    close,
    poll_in,
    read,
    read_into, //
};
use crate::support::mapping::map_data;
use crate::support::process::{
    fork_child,
    kill,
    kill_and_reap,
    reap_within,
    wait_child, //
};
use crate::support::ring::{
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
    Ok(())
}

/// The longest a reader killed with SIGKILL may take to die.
const DIE_WITHIN: Duration = Duration::from_secs(1);

/// A consumer blocked in `read()` on an overwrite ring whose producer laps
/// it on every attempt: records of the largest size, no payload pattern
/// (the producer writes one word per record, the reader copies all of
/// it), no rate limit. The driver used to give up after 64 laps, copy
/// nothing, decline to sleep because the ring was not empty, and loop
/// without looking at signals or yielding: SIGKILL never landed, and the
/// producer the reader's file had started never stopped.
fn lapped_reader_is_killable(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    env.kmod.ensure_loaded()?;
    let mut pipe = [0; 2];
    // SAFETY: `pipe` has room for the two descriptors.
    if unsafe { libc::pipe(pipe.as_mut_ptr()) } < 0 {
        bail!("pipe: {}", io::Error::last_os_error());
    }
    let [ready_rx, ready_tx] = pipe;
    // This group runs its threads only after this check, so this process
    // has one thread.
    let pid = fork_child(|| match lapped_reader(env, ready_tx) {
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
    // Let it be lapped for a while, inside read().
    std::thread::sleep(Duration::from_secs(2));
    let (nr, syscall) = syscall_of(&format!("/proc/{pid}/syscall"));
    let in_read = nr == Some(libc::SYS_read);
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
        "regress: a reader the producer laps on every attempt dies within 1 s of SIGKILL",
        died,
        || {
            format!(
                "still alive {took:?} after SIGKILL (in read(): {in_read}; syscall {syscall:?})"
            )
        },
    );
    // Its file is closed, so the producer it started has stopped.
    let observer = Region::open(&env.device, Access::Observe)?;
    let stats = ioctl::stats(observer.fd())?;
    report.expect(
        "regress: the killed reader's producer stopped with it",
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
/// reads until killed.
fn lapped_reader(env: &Env, ready: RawFd) -> anyhow::Result<()> {
    let region = open_fresh(env, Overflow::OverwriteOldest)?;
    let l = *region.layout();
    let config = ProducerConfig {
        min_len: l.max_payload,
        max_len: l.max_payload,
        pattern: PATTERN_NONE,
        ..Default::default()
    };
    ioctl::start(region.fd(), &config)?;
    let mut buf = vec![0u8; 2 * record_stride(l.max_payload) as usize];
    // SAFETY: One byte from a local, on our pipe.
    unsafe { libc::write(ready, b"r".as_ptr().cast(), 1) };
    loop {
        // It is lapped on every attempt: whatever this returns, try again.
        let _ = read_into(region.fd().as_raw_fd(), &mut buf);
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
            ioctl::start(region.fd(), &one)?;
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
                match ioctl::reset(region.fd(), &reset) {
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => std::thread::yield_now(),
                    other => break other.context("RESET")?,
                }
            }
        }
        stop.store(true, Ordering::Release);
        let (_, _, _) = reader.finish(Duration::ZERO);
        let stats = ioctl::stats(region.fd())?;
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
    let base = env
        .kmod
        .param("phys_base")?
        .context("no phys_base in the reference parameters")?;
    let root = Region::open(&env.device, Access::Observe)?;
    let info = ioctl::info(root.fd())?;
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
            let info = ioctl::info(region.fd())?;
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
