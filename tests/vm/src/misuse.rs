//! Bad arguments get an errno, never an oops: mmap, ioctls, consumers, read().

use std::io;
use std::mem::offset_of;
use std::os::fd::{
    AsFd,
    AsRawFd,
    RawFd, //
};
use std::time::{
    Duration,
    Instant, //
};

use rmemring::layout::{
    record_stride,
    ControlPage, //
};
use rmemring::uapi::{
    ProducerConfig,
    ResetConfig,
    IOC_INFO,
    IOC_TYPE,
    PRODUCER_HOOK_ONLY,
    PRODUCER_WAIT, //
};
use rmemring::{
    ioctl,
    Access,
    Region, //
};
use rmemring_proto::modes::Overflow;
use rmemring_proto::roles::Role;

use crate::support::fd::{
    errno_of,
    open_owned,
    open_owned_as,
    read,
    set_nonblocking, //
};
use crate::support::mapping::map;
use crate::support::process::{
    fork_child,
    wait_child, //
};
use crate::support::ring::open_fresh;
use crate::support::{
    Env,
    Report, //
};

/// "errno NAME" of a result, for messages.
fn outcome<T>(r: &io::Result<T>) -> String {
    match r {
        Ok(_) => "success".into(),
        Err(e) => format!("{e}"),
    }
}

fn expect_errno<T>(report: &mut Report, name: &str, r: io::Result<T>, errno: i32) {
    let got = r.as_ref().err().and_then(|e| e.raw_os_error());
    report.expect(name, got == Some(errno), || {
        format!(
            "expected {}, got {}",
            io::Error::from_raw_os_error(errno),
            outcome(&r)
        )
    });
}

/// `ioctl(fd, request, arg)` with an integer argument, or an address
/// nothing of ours is at.
fn ioctl_raw(fd: RawFd, request: u32, arg: usize) -> io::Result<()> {
    // SAFETY: The callers pass integers and bad pointers, so the kernel can
    // write nothing of ours: the driver must validate `arg`, and a bad
    // pointer must give EFAULT.
    let r = unsafe { libc::ioctl(fd, request as _, arg) };
    errno_of(r as isize).map(drop)
}

pub(crate) fn misuse(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    mmaps(env, report)?;
    ioctls(env, report)?;
    controllers(env, report)?;
    consumers(env, report)?;
    reads(env, report)?;
    long_batches(env, report)
}

fn mmaps(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    let region = open_fresh(env, Overflow::DropNew)?;
    let fd = region.fd().as_raw_fd();
    let l = *region.layout();
    let page = l.page_size as usize;
    let end = (l.data_offset + l.data_size) as usize;
    let (r, rw, x) = (
        libc::PROT_READ,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::PROT_EXEC,
    );
    let shared = libc::MAP_SHARED;

    expect_errno(
        report,
        "mmap: a private mapping is refused (EINVAL)",
        map(fd, l.data_offset, page, r, libc::MAP_PRIVATE),
        libc::EINVAL,
    );
    expect_errno(
        report,
        "mmap: an executable mapping is refused (EPERM)",
        map(fd, l.data_offset, page, r | x, shared),
        libc::EPERM,
    );
    expect_errno(
        report,
        "mmap: a mapping past the ring is refused (EINVAL)",
        map(fd, 0, end + page, r, shared),
        libc::EINVAL,
    );
    expect_errno(
        report,
        "mmap: an offset past the ring is refused (EINVAL)",
        map(fd, end as u64, page, r, shared),
        libc::EINVAL,
    );
    let huge = map(fd, 1 << 62, page, r, shared);
    report.expect("mmap: a huge offset is refused", huge.is_err(), || {
        outcome(&huge)
    });
    expect_errno(
        report,
        "mmap: the control page cannot be mapped writable (EACCES)",
        map(fd, 0, page, rw, shared),
        libc::EACCES,
    );
    expect_errno(
        report,
        "mmap: the data area cannot be mapped writable (EACCES)",
        map(fd, l.data_offset, page, rw, shared),
        libc::EACCES,
    );
    expect_errno(
        report,
        "mmap: a writable mapping spanning the consumer page and another is refused (EACCES)",
        map(fd, 0, 2 * page, rw, shared),
        libc::EACCES,
    );
    let own = map(fd, l.consumer_offset, page, rw, shared);
    report.expect(
        "mmap: the consumer maps its own page writable",
        own.is_ok(),
        || outcome(&own),
    );
    let whole = map(fd, 0, end, r, shared);
    report.expect("mmap: the whole ring maps read-only", whole.is_ok(), || {
        outcome(&whole)
    });
    if let Ok(whole) = &whole {
        let magic = whole.word(offset_of!(ControlPage, magic));
        report.expect(
            "mmap: the mapping shows the ring's magic",
            magic == rmemring::layout::MAGIC,
            || format!("{magic:#x}"),
        );
        expect_errno(
            report,
            "mmap: mprotect cannot make a read-only part writable (EACCES)",
            whole.protect(page, rw),
            libc::EACCES,
        );
        expect_errno(
            report,
            "mmap: mprotect cannot make it executable (EACCES)",
            whole.protect(page, r_exec()),
            libc::EACCES,
        );
    }
    report.check(
        "mmap: writing a read-only page faults in user space (SIGSEGV)",
        write_faults(fd, l.data_offset, page),
    );

    let observer = Region::open(&env.device, Access::Observe)?;
    let ofd = observer.fd().as_raw_fd();
    expect_errno(
        report,
        "mmap: an observer cannot map the consumer page writable (EACCES)",
        map(ofd, l.consumer_offset, page, rw, shared),
        libc::EACCES,
    );
    let ro = map(ofd, l.consumer_offset, page, r, shared);
    report.expect(
        "mmap: an observer maps the consumer page read-only",
        ro.is_ok(),
        || outcome(&ro),
    );
    Ok(())
}

fn r_exec() -> i32 {
    libc::PROT_READ | libc::PROT_EXEC
}

/// Forks a child that writes to a read-only mapping; it must die of SIGSEGV.
fn write_faults(fd: RawFd, offset: u64, len: usize) -> anyhow::Result<()> {
    let mapping = map(fd, offset, len, libc::PROT_READ, libc::MAP_SHARED)?;
    // This group runs no threads, so the child may run Rust code.
    let pid = fork_child(|| {
        // SAFETY: Deliberately writing to a read-only page; the kernel must
        // deliver SIGSEGV. The child exits if it does not.
        unsafe { mapping.ptr.write_volatile(0x5a) };
        0
    })?;
    let status = wait_child(pid);
    let signal = if libc::WIFSIGNALED(status) {
        libc::WTERMSIG(status)
    } else {
        0
    };
    if signal != libc::SIGSEGV && signal != libc::SIGBUS {
        anyhow::bail!("the child's write did not fault (status {status:#x})");
    }
    Ok(())
}

fn ioctls(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    let region = open_fresh(env, Overflow::DropNew)?;
    let fd = region.fd().as_raw_fd();
    let l = *region.layout();

    let unknown = (IOC_TYPE << 8) | 99;
    expect_errno(
        report,
        "ioctl: an unknown command gets ENOTTY",
        ioctl_raw(fd, unknown, 0),
        libc::ENOTTY,
    );
    expect_errno(
        report,
        "ioctl: another driver's command gets ENOTTY",
        ioctl_raw(fd, libc::TCGETS as u32, 0),
        libc::ENOTTY,
    );
    expect_errno(
        report,
        "ioctl: INFO into a bad pointer gets EFAULT",
        ioctl_raw(fd, IOC_INFO, 8),
        libc::EFAULT,
    );

    let info = ioctl::info(region.fd())?;
    report.expect(
        "ioctl: INFO matches the mapped layout",
        info.data_size == l.data_size
            && info.region_size == l.region_size
            // Root sees the physical base, which the shared control page
            // leaves out.
            && info.phys_base != 0
            && l.phys_base == 0,
        || format!("{info:?} vs {l:?}"),
    );

    let good = ProducerConfig {
        min_len: 8,
        max_len: 64,
        rate: 1000,
        ..Default::default()
    };
    let bad_configs: Vec<(&str, ProducerConfig)> = vec![
        (
            "min_len > max_len",
            ProducerConfig {
                min_len: 65,
                ..good
            },
        ),
        (
            "max_len > max_payload",
            ProducerConfig {
                max_len: l.max_payload + 1,
                ..good
            },
        ),
        ("an unknown pattern", ProducerConfig { pattern: 7, ..good }),
        (
            "unknown flags",
            ProducerConfig {
                flags: 1 << 20,
                ..good
            },
        ),
        (
            "a rate above 1e9/s",
            ProducerConfig {
                rate: 2_000_000_000,
                ..good
            },
        ),
        (
            "a batch above 65536",
            ProducerConfig {
                batch: 1 << 20,
                ..good
            },
        ),
        (
            "non-zero reserved words",
            ProducerConfig {
                reserved: [0, 0, 1, 0, 0, 0, 0],
                ..good
            },
        ),
    ];
    for (what, config) in bad_configs {
        expect_errno(
            report,
            &format!("ioctl: START with {what} gets EINVAL"),
            ioctl::start(region.fd(), &config),
            libc::EINVAL,
        );
    }
    let started = ioctl::start(region.fd(), &good);
    report.expect(
        "ioctl: START with a good configuration",
        started.is_ok(),
        || outcome(&started),
    );
    expect_errno(
        report,
        "ioctl: START while running gets EBUSY",
        ioctl::start(region.fd(), &good),
        libc::EBUSY,
    );
    expect_errno(
        report,
        "ioctl: RESET while running gets EBUSY",
        ioctl::reset(region.fd(), &ResetConfig::default()),
        libc::EBUSY,
    );
    let stopped = ioctl::stop(region.fd()).and_then(|()| ioctl::stop(region.fd()));
    report.expect(
        "ioctl: STOP, and STOP again, succeed",
        stopped.is_ok(),
        || outcome(&stopped),
    );
    expect_errno(
        report,
        "ioctl: RESET with unknown flags gets EINVAL",
        ioctl::reset(
            region.fd(),
            &ResetConfig {
                flags: 1 << 9,
                ..Default::default()
            },
        ),
        libc::EINVAL,
    );
    ioctl::reset(
        region.fd(),
        &ResetConfig {
            flags: Overflow::OverwriteOldest.flag(),
            ..Default::default()
        },
    )?;
    expect_errno(
        report,
        "ioctl: START with PRODUCER_WAIT in overwrite mode gets EINVAL",
        ioctl::start(
            region.fd(),
            &ProducerConfig {
                flags: PRODUCER_WAIT,
                ..good
            },
        ),
        libc::EINVAL,
    );
    ioctl::reset(region.fd(), &ResetConfig::default())?;

    let observer = Region::open(&env.device, Access::Observe)?;
    expect_errno(
        report,
        "ioctl: an observer cannot START (EPERM)",
        ioctl::start(observer.fd(), &good),
        libc::EPERM,
    );
    let stats = ioctl::stats(observer.fd());
    report.expect(
        "ioctl: an observer reads STATS",
        stats.as_ref().is_ok_and(|s| s.consumer_open == 1),
        || format!("{stats:?}"),
    );
    Ok(())
}

fn controllers(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    let region = open_fresh(env, Overflow::DropNew)?;
    let controller = open_owned_as(&env.device, Role::Controller)?;
    let config = ProducerConfig {
        min_len: 8,
        max_len: 64,
        rate: 1000,
        ..Default::default()
    };
    let started = ioctl::start(controller.as_fd(), &config);
    report.expect(
        "controller: a write-only open may START beside the consumer",
        started.is_ok(),
        || outcome(&started),
    );
    expect_errno(
        report,
        "controller: it may not RESET (EPERM)",
        ioctl::reset(controller.as_fd(), &ResetConfig::default()),
        libc::EPERM,
    );
    // The VFS refuses read() on a write-only descriptor before the driver sees it.
    expect_errno(
        report,
        "controller: it may not read() records (EBADF)",
        read(controller.as_raw_fd(), 4096),
        libc::EBADF,
    );
    let l = *region.layout();
    expect_errno(
        report,
        "controller: it may not map the consumer page (EACCES)",
        map(
            controller.as_raw_fd(),
            l.consumer_offset,
            l.page_size as usize,
            libc::PROT_READ,
            libc::MAP_SHARED,
        ),
        libc::EACCES,
    );
    drop(controller);
    let stats = ioctl::stats(region.fd())?;
    report.expect(
        "controller: closing it stops the producer it started",
        stats.producer_running == 0,
        || format!("{stats:?}"),
    );
    let controller = open_owned_as(&env.device, Role::Controller)?;
    ioctl::start(controller.as_fd(), &config)?;
    drop(region);
    let observer = Region::open(&env.device, Access::Observe)?;
    let stats = ioctl::stats(observer.fd())?;
    report.expect(
        "controller: its producer outlives the consumer's close",
        stats.producer_running == 1 && stats.consumer_open == 0,
        || format!("{stats:?}"),
    );
    drop(controller);
    Ok(())
}

fn consumers(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    let first = Region::open(&env.device, Access::Consume)?;
    let second = Region::open(&env.device, Access::Consume);
    report.expect(
        "consumers: a second consumer gets EBUSY",
        matches!(second, Err(rmemring::Error::Busy { .. })),
        || format!("{second:?}"),
    );
    let observer = Region::open(&env.device, Access::Observe);
    report.expect(
        "consumers: an observer may open beside the consumer",
        observer.is_ok(),
        || format!("{observer:?}"),
    );
    // Access mode 3 may neither read nor write: it is no consumer, so it
    // must not take the consumer's place (the consumer is still open here,
    // but EINVAL, not EBUSY, says it was refused for what it is).
    expect_errno(
        report,
        "consumers: an open with access mode 3 (neither read nor write) gets EINVAL",
        open_owned(&env.device, libc::O_ACCMODE),
        libc::EINVAL,
    );
    drop(first);
    let again = Region::open(&env.device, Access::Consume);
    report.expect(
        "consumers: once the consumer closes, another may open",
        again.is_ok(),
        || format!("{again:?}"),
    );
    Ok(())
}

extern "C" fn on_alarm(_: libc::c_int) {}

fn reads(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    let region = open_fresh(env, Overflow::DropNew)?;
    let fd = region.fd().as_raw_fd();
    // How many bytes a read() of up to `len` returned.
    let read_len = |fd: RawFd, len: usize| read(fd, len).map(|data| data.len());
    // An observer's read() would make it the consumer (as `cat` does),
    // but the consumer's place is taken.
    let observer = Region::open(&env.device, Access::Observe)?;
    expect_errno(
        report,
        "read: an observer's read() while another file is the consumer gets EBUSY",
        read_len(observer.fd().as_raw_fd(), 4096),
        libc::EBUSY,
    );
    // Blocking, on an empty ring: it must not wait for a record it could
    // not return anyway.
    let zero = read_len(fd, 0);
    report.expect(
        "read: a read of 0 bytes returns 0 at once, even on an empty ring",
        matches!(zero, Ok(0)),
        || format!("{zero:?}"),
    );

    set_nonblocking(fd, true);
    expect_errno(
        report,
        "read: non-blocking on an empty ring gets EAGAIN",
        read_len(fd, 4096),
        libc::EAGAIN,
    );
    let ten = ProducerConfig {
        min_len: 100,
        max_len: 100,
        count: 10,
        ..Default::default()
    };
    ioctl::start(region.fd(), &ten)?;
    std::thread::sleep(std::time::Duration::from_millis(200));
    expect_errno(
        report,
        "read: a buffer smaller than the next record gets EINVAL",
        read_len(fd, 16),
        libc::EINVAL,
    );
    let n = read_len(fd, 1 << 16);
    report.expect(
        "read: a large buffer gets all ten records",
        n.as_ref()
            .is_ok_and(|&n| n as u64 == ten.count * record_stride(ten.max_len)),
        || outcome(&n),
    );
    set_nonblocking(fd, false);

    // A blocking read on an empty ring is interrupted by a signal.
    // SAFETY: Installing a handler without SA_RESTART, then arming an alarm.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_alarm as *const () as usize;
        libc::sigaction(libc::SIGALRM, &action, std::ptr::null_mut());
        libc::alarm(1);
    }
    expect_errno(
        report,
        "read: a blocking read is interrupted by a signal (EINTR)",
        read_len(fd, 4096),
        libc::EINTR,
    );
    Ok(())
}

/// The largest batch the driver accepts, of the largest records: the
/// producer must still let go of the ring between bounded pieces of work,
/// so STATS (which takes the ring's lock) and STOP (which waits for the
/// thread) answer promptly. Overwrite mode is the worst case: there a
/// record always fits, so one batch would be 65 536 records of 4 MiB.
fn long_batches(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    // Minutes without the bound; a few records' worth of writes with it.
    const PROMPT: Duration = Duration::from_secs(3);
    for (overflow, flags) in [
        (Overflow::OverwriteOldest, 0),
        (Overflow::DropNew, 0),
        (Overflow::DropNew, PRODUCER_HOOK_ONLY),
    ] {
        let what = if flags & PRODUCER_HOOK_ONLY != 0 {
            "tracepoint only".to_string()
        } else {
            format!("{} mode", overflow.name())
        };
        let region = open_fresh(env, overflow)?;
        let l = *region.layout();
        let config = ProducerConfig {
            min_len: l.max_payload,
            max_len: l.max_payload,
            batch: 1 << 16,
            flags,
            ..Default::default()
        };
        ioctl::start(region.fd(), &config)?;
        std::thread::sleep(Duration::from_millis(500));
        let mut times = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            ioctl::stats(region.fd())?;
            times.push(t.elapsed());
            std::thread::sleep(Duration::from_millis(50));
        }
        let slowest = times.iter().copied().max().unwrap_or_default();
        let t = Instant::now();
        ioctl::stop(region.fd())?;
        let stop = t.elapsed();
        let stats = ioctl::stats(region.fd())?;
        let made = if flags & PRODUCER_HOOK_ONLY != 0 {
            stats.records_hooked
        } else {
            stats.records_produced
        };
        let summary = format!(
            "STATS took {times:?}, STOP {stop:?}; {made} records of {} B made, {} overwritten, {} dropped",
            l.max_payload, stats.records_overwritten, stats.records_dropped
        );
        println!("# long batches, {what}: {summary}");
        report.expect(
            &format!(
                "misuse: batches of 65 536 records of {} B ({what}): STATS and STOP answer within {PROMPT:?}",
                l.max_payload
            ),
            slowest < PROMPT && stop < PROMPT && made > 0 && stats.producer_running == 0,
            || summary.clone(),
        );
    }
    Ok(())
}
