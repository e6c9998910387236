//! Bad arguments get an errno, never an oops: mmap, ioctls, consumers,
//! read(); and a user the device's permissions leave out gets `EACCES`
//! (and the CLI's hint), while one in its group consumes.

use std::io;
use std::mem::offset_of;
use std::os::fd::{
    AsRawFd,
    RawFd, //
};
use std::time::{
    Duration,
    Instant, //
};

use anyhow::Context as _;
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
    PRODUCER_STAGED,
    PRODUCER_WAIT, //
};
use rmemring::{
    Access,
    Device,
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
    exit_code,
    fork_as,
    fork_child,
    wait_child,
    Credentials, //
};
use crate::support::ring::open_fresh;
use crate::support::{
    Env,
    Report, //
};

/// "errno NAME" of a result, for messages.
/// An error with an errno: the system's, or the library's that keeps it.
trait Errno {
    fn errno(&self) -> Option<i32>;
    /// The whole message: the library's error and its source.
    fn describe(&self) -> String;
}

impl Errno for io::Error {
    fn errno(&self) -> Option<i32> {
        self.raw_os_error()
    }

    fn describe(&self) -> String {
        self.to_string()
    }
}

impl Errno for rmemring::Error {
    fn errno(&self) -> Option<i32> {
        self.raw_os_error()
    }

    fn describe(&self) -> String {
        match std::error::Error::source(self) {
            Some(source) => format!("{self}: {source}"),
            None => self.to_string(),
        }
    }
}

fn outcome<T, E: Errno>(r: &Result<T, E>) -> String {
    match r {
        Ok(_) => "success".into(),
        Err(e) => e.describe(),
    }
}

fn expect_errno<T, E: Errno>(report: &mut Report, name: &str, r: Result<T, E>, errno: i32) {
    let got = r.as_ref().err().and_then(Errno::errno);
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
    long_batches(env, report)?;
    permissions(env, report)
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

    let info = region.info()?;
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
            "PRODUCER_STAGED with PRODUCER_HOOK_ONLY",
            ProducerConfig {
                flags: PRODUCER_STAGED | PRODUCER_HOOK_ONLY,
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
            region.start(&config),
            libc::EINVAL,
        );
    }
    let started = region.start(&good);
    report.expect(
        "ioctl: START with a good configuration",
        started.is_ok(),
        || outcome(&started),
    );
    expect_errno(
        report,
        "ioctl: START while running gets EBUSY",
        region.start(&good),
        libc::EBUSY,
    );
    expect_errno(
        report,
        "ioctl: RESET while running gets EBUSY",
        region.device()?.reset(&ResetConfig::default()),
        libc::EBUSY,
    );
    let stopped = region.stop().and_then(|()| region.stop());
    report.expect(
        "ioctl: STOP, and STOP again, succeed",
        stopped.is_ok(),
        || outcome(&stopped),
    );
    expect_errno(
        report,
        "ioctl: RESET with unknown flags gets EINVAL",
        region.device()?.reset(&ResetConfig {
            flags: 1 << 9,
            ..Default::default()
        }),
        libc::EINVAL,
    );
    region.device()?.reset(&ResetConfig {
        flags: Overflow::OverwriteOldest.flag(),
        ..Default::default()
    })?;
    expect_errno(
        report,
        "ioctl: START with PRODUCER_WAIT in overwrite mode gets EINVAL",
        region.start(&ProducerConfig {
            flags: PRODUCER_WAIT,
            ..good
        }),
        libc::EINVAL,
    );
    region.device()?.reset(&ResetConfig::default())?;

    let observer = Region::open(&env.device, Access::Observe)?;
    expect_errno(
        report,
        "ioctl: an observer cannot START (EPERM)",
        observer.start(&good),
        libc::EPERM,
    );
    let stats = observer.stats();
    report.expect(
        "ioctl: an observer reads STATS",
        stats.as_ref().is_ok_and(|s| s.consumer_open == 1),
        || format!("{stats:?}"),
    );
    Ok(())
}

fn controllers(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    let region = open_fresh(env, Overflow::DropNew)?;
    let controller = Device::from_fd(open_owned_as(&env.device, Role::Controller)?)?;
    let config = ProducerConfig {
        min_len: 8,
        max_len: 64,
        rate: 1000,
        ..Default::default()
    };
    let started = controller.start(&config);
    report.expect(
        "controller: a write-only open may START beside the consumer",
        started.is_ok(),
        || outcome(&started),
    );
    expect_errno(
        report,
        "controller: it may not RESET (EPERM)",
        controller.reset(&ResetConfig::default()),
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
    let stats = region.stats()?;
    report.expect(
        "controller: closing it stops the producer it started",
        stats.producer_running == 0,
        || format!("{stats:?}"),
    );
    let controller = Device::from_fd(open_owned_as(&env.device, Role::Controller)?)?;
    controller.start(&config)?;
    drop(region);
    let observer = Region::open(&env.device, Access::Observe)?;
    let stats = observer.stats()?;
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
    region.start(&ten)?;
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
        region.start(&config)?;
        std::thread::sleep(Duration::from_millis(500));
        let mut times = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            region.stats()?;
            times.push(t.elapsed());
            std::thread::sleep(Duration::from_millis(50));
        }
        let slowest = times.iter().copied().max().unwrap_or_default();
        let t = Instant::now();
        region.stop()?;
        let stop = t.elapsed();
        let stats = region.stats()?;
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

/// The udev rule the driver ships, whose effect [`permissions`] applies
/// by hand: the busybox guest has no udev.
const UDEV_RULE: &str = include_str!("../../../driver/packaging/60-rmemring.rules");

/// The number the guest gives the rule's group (it has no /etc/group).
const RING_GID: u32 = 4242;

/// A user in the ring's group, as a supplementary group (as a user added
/// to `rmemring` is).
const MEMBER: Credentials<'static> = Credentials {
    uid: 4243,
    gid: 4243,
    groups: &[RING_GID],
};

/// A user outside it.
const OUTSIDER: Credentials<'static> = Credentials {
    uid: 4244,
    gid: 4244,
    groups: &[],
};

/// Records the member's consumer must read.
const MEMBER_RECORDS: u64 = 1000;

/// The `GROUP` and `MODE` the rule's one rule line assigns.
fn rule_settings(rule: &str) -> anyhow::Result<(String, u32)> {
    let line = rule
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .context("60-rmemring.rules has no rule")?;
    let value = |key: &str| -> anyhow::Result<&str> {
        let start = line
            .find(&format!("{key}=\""))
            .with_context(|| format!("no {key}= in {line:?}"))?
            + key.len()
            + 2;
        let len = line[start..].find('"').context("an unterminated value")?;
        Ok(&line[start..start + len])
    };
    let mode = u32::from_str_radix(value("MODE")?, 8).context("MODE is not octal")?;
    Ok((value("GROUP")?.to_owned(), mode))
}

/// A device node's owner, group and mode, put back when dropped.
struct NodePermissions {
    path: String,
    uid: u32,
    gid: u32,
    mode: u32,
}

impl NodePermissions {
    /// Gives `path` to root and group `gid` with `mode`, as udev applies
    /// a rule.
    fn set(path: &str, gid: u32, mode: u32) -> anyhow::Result<Self> {
        use std::os::unix::fs::{
            MetadataExt as _,
            PermissionsExt as _, //
        };
        let meta = std::fs::metadata(path)?;
        let old = Self {
            path: path.to_owned(),
            uid: meta.uid(),
            gid: meta.gid(),
            mode: meta.mode() & 0o7777,
        };
        std::os::unix::fs::chown(path, Some(0), Some(gid))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        Ok(old)
    }
}

impl Drop for NodePermissions {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt as _;
        let _ = std::os::unix::fs::chown(&self.path, Some(self.uid), Some(self.gid));
        let _ = std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(self.mode));
    }
}

/// The device as `60-rmemring.rules` leaves it (group and mode applied
/// by hand: no udev here): a consumer in the group reads every record; a
/// user outside gets `EACCES` for every access mode, and the CLI exits
/// 77 (`EX_NOPERM`) with its hint naming the group to join.
fn permissions(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    let (group, mode) = rule_settings(UDEV_RULE)?;
    report.expect(
        "permissions: 60-rmemring.rules gives ring devices to group rmemring, mode 0660",
        group == "rmemring" && mode == 0o660,
        || format!("GROUP={group:?} MODE={mode:04o}"),
    );
    // An empty ring, then the records, started by root's controller.
    drop(open_fresh(env, Overflow::DropNew)?);
    let node = NodePermissions::set(&env.device, RING_GID, mode)?;
    let controller = Device::from_fd(open_owned_as(&env.device, Role::Controller)?)?;
    let config = ProducerConfig {
        min_len: 100,
        max_len: 100,
        count: MEMBER_RECORDS,
        ..Default::default()
    };
    controller.start(&config)?;

    let device = env.device.clone();
    // This group runs no threads, so the children may run Rust code.
    let status = wait_child(fork_as(MEMBER, || member_consumes(&device))?);
    report.expect(
        "permissions: a consumer in the device's group (supplementary) reads all 1 000 records, \
         intact",
        exit_code(status) == Some(0),
        || format!("the member's child: wait status {status:#x} (see its line above)"),
    );
    let status = wait_child(fork_as(OUTSIDER, || outsider_is_refused(&device))?);
    report.expect(
        "permissions: a user outside the group gets EACCES, from Region::open and from open(2) \
         in every access mode",
        exit_code(status) == Some(0),
        || format!("the outsider's child: wait status {status:#x} (see its line above)"),
    );
    report.check(
        "permissions: `rmemring cat` outside the group exits 77 and says which group to join",
        cli_refused(&env.device),
    );
    report.check(
        "permissions: `rmemring info` as a user whose primary group is the device's works",
        cli_member(&env.device),
    );
    drop(controller);
    drop(node);
    Ok(())
}

/// The member's child: consumes [`MEMBER_RECORDS`] records, each intact,
/// in sequence. Its exit code says where it failed.
fn member_consumes(device: &str) -> i32 {
    let region = match Region::open(device, Access::Consume) {
        Ok(region) => std::sync::Arc::new(region),
        Err(e) => {
            eprintln!("member: Region::open: {e}");
            return 2;
        }
    };
    let mut consumer = match region.consumer() {
        Ok(consumer) => consumer,
        Err(e) => {
            eprintln!("member: consumer: {e}");
            return 3;
        }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut count, mut next) = (0u64, None);
    while count < MEMBER_RECORDS {
        if Instant::now() > deadline {
            eprintln!("member: {count} of {MEMBER_RECORDS} records in 20 s");
            return 4;
        }
        if let Err(e) = consumer.wait(Some(Duration::from_millis(100))) {
            eprintln!("member: wait: {e}");
            return 5;
        }
        let mut batch = match consumer.batch() {
            Ok(batch) => batch,
            Err(e) => {
                eprintln!("member: batch: {e}");
                return 6;
            }
        };
        for record in &mut batch {
            let record = match record {
                Ok(record) => record,
                Err(e) => {
                    eprintln!("member: record {count}: {e}");
                    return 7;
                }
            };
            let intact = record.payload.len() == 100
                && rmemring::pattern::verify(record.seq, record.payload)
                && next.is_none_or(|next| next == record.seq);
            if !intact {
                eprintln!(
                    "member: record {count} (seq {}) is not the pattern",
                    record.seq
                );
                return 8;
            }
            next = Some(record.seq + 1);
            count += 1;
        }
    }
    0
}

/// The outsider's child: every way in is `EACCES`.
fn outsider_is_refused(device: &str) -> i32 {
    match Region::open(device, Access::Consume) {
        Err(rmemring::Error::PermissionDenied { .. }) => {}
        Ok(_) => {
            eprintln!("outsider: Region::open succeeded");
            return 2;
        }
        Err(e) => {
            eprintln!("outsider: Region::open: {e}, not PermissionDenied");
            return 2;
        }
    }
    for flags in [libc::O_RDONLY, libc::O_WRONLY, libc::O_RDWR] {
        let r = open_owned(device, flags);
        if r.as_ref().err().and_then(io::Error::raw_os_error) != Some(libc::EACCES) {
            eprintln!("outsider: open({flags:#o}): {}", outcome(&r));
            return 3;
        }
    }
    0
}

/// `rmemring cat DEV --count 1` as [`OUTSIDER`]: exit status 77 and one
/// line on stderr with the hint naming the group.
fn cli_refused(device: &str) -> anyhow::Result<()> {
    let hint =
        format!("{device} is mode 0660, group {RING_GID}: members of {RING_GID} may open it");
    run_cli_as(OUTSIDER, &["cat", device, "--count", "1"], |out| {
        let stderr = String::from_utf8_lossy(&out.stderr);
        anyhow::ensure!(
            out.status.code() == Some(77)
                && stderr.starts_with("rmemring: ")
                && stderr.lines().count() == 1
                && stderr.contains("permission denied")
                && stderr.contains(&hint),
            "{:?}, stderr {stderr:?} (wanted status 77 and {hint:?})",
            out.status
        );
        Ok(())
    })
}

/// `rmemring info DEV` as a user whose primary group is the device's.
fn cli_member(device: &str) -> anyhow::Result<()> {
    let member = Credentials {
        gid: RING_GID,
        groups: &[],
        ..MEMBER
    };
    run_cli_as(member, &["info", device], |out| {
        anyhow::ensure!(
            out.status.success() && !out.stdout.is_empty(),
            "{:?}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    })
}

/// Runs `rmemring ARGS` from a child that has become `who` (the way a
/// login shell of that user would run it), and judges its output with
/// `check` there.
fn run_cli_as(
    who: Credentials<'_>,
    args: &[&str],
    check: impl FnOnce(&std::process::Output) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let pid = fork_as(who, || {
        let result = std::process::Command::new("rmemring")
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .context("running rmemring")
            .and_then(|out| check(&out));
        match result {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("rmemring {}: {e:#}", args.join(" "));
                1
            }
        }
    })?;
    let status = wait_child(pid);
    anyhow::ensure!(
        exit_code(status) == Some(0),
        "wait status {status:#x} (see the line above)"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_is_read() {
        assert_eq!(
            rule_settings(UDEV_RULE).unwrap(),
            ("rmemring".to_owned(), 0o660)
        );
        let other = "# comment\nKERNEL==\"x\", MODE=\"0640\", GROUP=\"adm\"\n";
        assert_eq!(rule_settings(other).unwrap(), ("adm".to_owned(), 0o640));
        assert!(rule_settings("# only a comment\n").is_err());
        assert!(rule_settings("KERNEL==\"x\", GROUP=\"adm\"\n").is_err());
        assert!(rule_settings("KERNEL==\"x\", MODE=\"rw\", GROUP=\"adm\"\n").is_err());
    }
}
