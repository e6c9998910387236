//! Threads asleep in `read()` or `poll` while another thread resets the
//! ring, stops the producer or closes the descriptor.

use std::io;
use std::os::fd::{
    AsFd,
    AsRawFd,
    FromRawFd,
    OwnedFd,
    RawFd, //
};
use std::os::unix::thread::JoinHandleExt;
use std::sync::mpsc;
use std::time::{
    Duration,
    Instant, //
};

use anyhow::bail;
use rmemring::layout::{
    record_stride,
    RecordHeader,
    HEADER_SIZE, //
};
use rmemring::uapi::{
    ProducerConfig,
    ResetConfig, //
};
use rmemring::{
    device,
    Access,
    Region,
    Wait, //
};

use crate::lifecycle::open;
use crate::stream::open_fresh;
use crate::{
    Env,
    Report, //
};

extern "C" fn on_signal(_: libc::c_int) {}

/// System calls a sleeper may block in, by what it calls: `read`, `poll`
/// (glibc may use `ppoll`), `epoll_wait` (or `epoll_pwait`); arm64 has only
/// the `p` variants.
pub(crate) const IN_READ: &[libc::c_long] = &[libc::SYS_read];
#[cfg(target_arch = "x86_64")]
pub(crate) const IN_POLL: &[libc::c_long] = &[libc::SYS_poll, libc::SYS_ppoll];
#[cfg(not(target_arch = "x86_64"))]
pub(crate) const IN_POLL: &[libc::c_long] = &[libc::SYS_ppoll];
#[cfg(target_arch = "x86_64")]
pub(crate) const IN_EPOLL: &[libc::c_long] = &[libc::SYS_epoll_wait, libc::SYS_epoll_pwait];
#[cfg(not(target_arch = "x86_64"))]
pub(crate) const IN_EPOLL: &[libc::c_long] = &[libc::SYS_epoll_pwait];

/// A blocking call running on a thread of its own.
pub(crate) struct Sleeper<T> {
    handle: std::thread::JoinHandle<()>,
    done: mpsc::Receiver<T>,
    started: Instant,
}

impl<T: Send + 'static> Sleeper<T> {
    /// Runs `f` on a new thread and returns once that thread is blocked in
    /// one of the system calls `calls` (as `/proc/self/task/TID/syscall`
    /// says), so that what the caller does next happens to a sleeper.
    pub(crate) fn spawn(
        calls: &[libc::c_long],
        f: impl FnOnce() -> T + Send + 'static,
    ) -> anyhow::Result<Self> {
        // SIGUSR1 interrupts blocking calls (no SA_RESTART) and does
        // nothing else; see `Self::finish`.
        // SAFETY: Installing a handler that does nothing.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as *const () as usize;
            libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut());
        }
        let (tx, done) = mpsc::channel();
        let (tid_tx, tid_rx) = mpsc::channel();
        let handle = std::thread::spawn(move || {
            // SAFETY: `gettid` has no preconditions.
            let _ = tid_tx.send(unsafe { libc::gettid() });
            let _ = tx.send(f());
        });
        let tid = tid_rx.recv()?;
        let sleeper = Self {
            handle,
            done,
            started: Instant::now(),
        };
        let path = format!("/proc/self/task/{tid}/syscall");
        loop {
            // "NR args... sp pc" while blocked in a system call.
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let nr = text.split_whitespace().next().and_then(|w| w.parse().ok());
            if nr.is_some_and(|nr| calls.contains(&nr)) {
                // Blocked in it; let it get to sleep there.
                std::thread::sleep(Duration::from_millis(50));
                return Ok(sleeper);
            }
            if sleeper.started.elapsed() > Duration::from_secs(10) {
                let _ = sleeper.finish(Duration::ZERO);
                bail!("the sleeper never blocked in system call {calls:?} ({path}: {text:?})");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends the thread one `SIGUSR1`, which ends an interruptible wait in
    /// a system call with `EINTR`.
    pub(crate) fn interrupt(&self) {
        // SAFETY: The thread has not been joined (`self` owns the handle),
        // so its pthread_t is valid; the handler does nothing.
        unsafe { libc::pthread_kill(self.handle.as_pthread_t(), libc::SIGUSR1) };
    }

    /// Whether it is still blocked, after waiting up to `wait` for it.
    pub(crate) fn still_blocked(&self, wait: Duration) -> Result<bool, T> {
        match self.done.recv_timeout(wait) {
            Ok(result) => Err(result),
            Err(_) => Ok(true),
        }
    }

    /// Waits up to `limit` (from the start) for the call to return; after
    /// that, interrupts it with signals until it does. Returns its result,
    /// how long it ran and whether it had to be interrupted.
    pub(crate) fn finish(self, limit: Duration) -> (T, Duration, bool) {
        let left = limit.saturating_sub(self.started.elapsed());
        if let Ok(result) = self.done.recv_timeout(left) {
            let took = self.started.elapsed();
            let _ = self.handle.join();
            return (result, took, false);
        }
        let took = self.started.elapsed();
        loop {
            // SAFETY: The thread has not been joined, so its pthread_t is
            // valid; the handler does nothing.
            unsafe { libc::pthread_kill(self.handle.as_pthread_t(), libc::SIGUSR1) };
            if let Ok(result) = self.done.recv_timeout(Duration::from_millis(100)) {
                let _ = self.handle.join();
                return (result, took, true);
            }
        }
    }
}

/// A blocking `read()` of up to `len` bytes from `fd`.
pub(crate) fn read(fd: RawFd, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    // SAFETY: `buf` is valid for `len` bytes of writes.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), len) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

/// The sequence numbers of the records in a `read()` buffer.
pub(crate) fn seqs(mut data: &[u8]) -> Vec<u64> {
    let mut seqs = Vec::new();
    while data.len() >= HEADER_SIZE as usize {
        let header: RecordHeader = bytemuck::pod_read_unaligned(&data[..HEADER_SIZE as usize]);
        seqs.push(header.seq);
        let stride = record_stride(header.len) as usize;
        data = &data[stride.min(data.len())..];
    }
    seqs
}

/// `poll(fd, POLLIN, timeout)`: the returned events, 0 on timeout.
pub(crate) fn poll_in(fd: RawFd, timeout: Duration) -> io::Result<i16> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: One valid pollfd.
    let n = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(pfd.revents)
}

/// Opens the device, owned: an early return closes it.
fn open_owned(path: &str, flags: i32) -> io::Result<OwnedFd> {
    // SAFETY: `open` returned a descriptor nothing else owns.
    open(path, flags).map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A few records, now.
const FEW: ProducerConfig = ProducerConfig {
    min_len: 100,
    max_len: 100,
    count: 5,
    rate: 0,
    pattern: 0,
    flags: 0,
    batch: 0,
    reserved: [0; 7],
};

/// How long a woken sleeper may take to return; far more than a wake-up
/// takes even on the debug kernel, far less than the sleeps' own limits.
const WAKE: Duration = Duration::from_secs(5);

/// A reset wakes sleepers and does not lose their wake-up: the records of
/// the next run reach a consumer that went to sleep before the reset.
pub(crate) fn across_reset(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    // poll(): the consumer asks for a wake-up and sleeps; the reset wipes
    // the consumer page, request included.
    let region = open_fresh(env, false)?;
    let mut consumer = region.consumer()?;
    consumer.set_wait(Wait::Spin(0));
    let fd = region.fd().as_raw_fd();
    let armed = consumer.arm_wakeup();
    let sleeper = Sleeper::spawn(IN_POLL, move || poll_in(fd, Duration::from_secs(20)))?;
    let requested = region.consumer_page().need_wakeup;
    device::reset(region.fd(), &ResetConfig::default())?;
    std::thread::sleep(Duration::from_millis(200));
    let slept_through_reset = matches!(sleeper.still_blocked(Duration::ZERO), Ok(true));
    let woken_at = Instant::now();
    device::start(region.fd(), &FEW)?;
    let (events, _, interrupted) = sleeper.finish(Duration::from_secs(20));
    let after_start = woken_at.elapsed();
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
    let region = open_fresh(env, false)?;
    let fd = region.fd().as_raw_fd();
    let sleeper = Sleeper::spawn(IN_READ, move || read(fd, 1 << 16))?;
    let requested = region.consumer_page().need_wakeup;
    device::reset(region.fd(), &ResetConfig::default())?;
    std::thread::sleep(Duration::from_millis(200));
    let slept_through_reset = matches!(sleeper.still_blocked(Duration::ZERO), Ok(true));
    let woken_at = Instant::now();
    device::start(region.fd(), &FEW)?;
    let (data, _, interrupted) = sleeper.finish(Duration::from_secs(20));
    let after_start = woken_at.elapsed();
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
    device::stop(region.fd())?;
    let slept_through_stop = matches!(sleeper.still_blocked(Duration::from_millis(300)), Ok(true));
    device::start(region.fd(), &FEW)?;
    let (data, took, interrupted) = sleeper.finish(Duration::from_secs(20));
    let got = data.as_ref().map(|d| seqs(d));
    report.expect(
        "sleepers: STOP leaves a reader asleep, and the next START wakes it",
        slept_through_stop && !interrupted && got.as_ref().is_ok_and(|s| !s.is_empty()),
        || format!("still asleep after STOP {slept_through_stop}; read {got:?} after {took:?}"),
    );
    Ok(())
}

/// Two threads in `read()` on one descriptor: the second waits for the
/// first, which sleeps until records come, and a signal ends its wait (an
/// uninterruptible one would be a hung task after two minutes); both get
/// records, one run each.
pub(crate) fn two_readers(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    let region = open_fresh(env, false)?;
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
        device::start(region.fd(), &FEW)?;
        std::thread::sleep(Duration::from_millis(300));
        device::stop(region.fd())?;
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

/// Closing a descriptor another thread sleeps on: the sleeper keeps the
/// file until it returns, which then releases it.
pub(crate) fn closing_under_sleepers(env: &Env, report: &mut Report) -> anyhow::Result<()> {
    let dev = env.device.clone();
    drop(open_fresh(env, false)?);

    // read(): closing the descriptor does not end the read; a controller's
    // records do, and only then is the consumer's place free again.
    let result = (|| -> anyhow::Result<()> {
        let fd = open_owned(&dev, libc::O_RDWR)?;
        let raw = fd.as_raw_fd();
        let sleeper = Sleeper::spawn(IN_READ, move || read(raw, 1 << 16))?;
        drop(fd);
        if !matches!(sleeper.still_blocked(Duration::from_millis(300)), Ok(true)) {
            bail!("the read returned when its descriptor was closed");
        }
        let busy = Region::open(&dev, Access::Consume);
        let refused = env.kmod.rmmod().is_err() && env.kmod.loaded();
        let controller = open_owned(&dev, libc::O_WRONLY)?;
        device::start(controller.as_fd(), &FEW)?;
        let (data, took, interrupted) = sleeper.finish(Duration::from_secs(20));
        drop(controller);
        if !matches!(busy, Err(rmemring::Error::Busy { .. })) {
            bail!("a second consumer opened while the first one's read() still ran: {busy:?}");
        }
        drop(busy);
        if !refused {
            bail!("rmmod succeeded while a read() still ran on a closed descriptor");
        }
        let got = data.map(|d| seqs(&d));
        if interrupted || !got.as_ref().is_ok_and(|s| s.first() == Some(&0)) {
            bail!("the read on the closed descriptor got {got:?} after {took:?}");
        }
        Region::open(&dev, Access::Consume)
            .map(drop)
            .map_err(|e| anyhow::anyhow!("after the read returned, no new consumer: {e}"))
    })();
    report.check(
        "sleepers: close() under a blocked read(): the read still gets the next records, then the file is released",
        result,
    );

    // poll(): the same, ended by the poll's timeout (nothing asked for a
    // wake-up).
    let result = (|| -> anyhow::Result<()> {
        let fd = open_owned(&dev, libc::O_RDWR)?;
        let raw = fd.as_raw_fd();
        let sleeper = Sleeper::spawn(IN_POLL, move || poll_in(raw, Duration::from_secs(2)))?;
        drop(fd);
        let busy = Region::open(&dev, Access::Consume).map(drop);
        let (events, took, interrupted) = sleeper.finish(Duration::from_secs(20));
        if interrupted || took > Duration::from_secs(10) {
            bail!("poll on the closed descriptor returned {events:?} after {took:?}");
        }
        if !matches!(busy, Err(rmemring::Error::Busy { .. })) {
            bail!("a second consumer opened while the first one's poll() still ran: {busy:?}");
        }
        Region::open(&dev, Access::Consume)
            .map(drop)
            .map_err(|e| anyhow::anyhow!("after the poll returned, no new consumer: {e}"))
    })();
    report.check(
        "sleepers: close() under a blocked poll(): the poll ends, then the file is released",
        result,
    );

    // epoll: registered descriptors closed in both orders, and a thread in
    // epoll_wait while the device descriptor goes.
    for device_first in [true, false] {
        let order = if device_first {
            "the device, then the epoll instance"
        } else {
            "the epoll instance, then the device"
        };
        let result = (|| -> anyhow::Result<()> {
            let fd = open_owned(&dev, libc::O_RDWR)?;
            // SAFETY: `epoll_with` returned a descriptor nothing else owns.
            let epfd = unsafe { OwnedFd::from_raw_fd(epoll_with(fd.as_raw_fd())?) };
            let raw_ep = epfd.as_raw_fd();
            let waiter = Sleeper::spawn(IN_EPOLL, move || {
                let mut out = libc::epoll_event { events: 0, u64: 0 };
                // SAFETY: `out` has room for the one event asked for.
                unsafe { libc::epoll_wait(raw_ep, &mut out, 1, 1000) }
            })?;
            let epfd = if device_first {
                drop(fd);
                Some(epfd)
            } else {
                drop(epfd);
                drop(fd);
                None
            };
            let (n, took, interrupted) = waiter.finish(Duration::from_secs(20));
            if interrupted || n != 0 {
                bail!("epoll_wait returned {n} after {took:?}");
            }
            if let Some(epfd) = epfd {
                // The device file is gone, and its epoll entry with it: the
                // driver may go (freeing the wait queue the entry was on)
                // before the epoll instance does.
                Region::open(&dev, Access::Consume)?;
                env.kmod.rmmod()?;
                drop(epfd);
                env.kmod.ensure_loaded()?;
            }
            Ok(())
        })();
        report.check(
            &format!(
                "sleepers: an epoll registration, a thread in epoll_wait, closing {order}{}",
                if device_first { " (after rmmod)" } else { "" }
            ),
            result,
        );
    }
    Ok(())
}

/// A new epoll instance with `fd` registered for input.
pub(crate) fn epoll_with(fd: RawFd) -> anyhow::Result<RawFd> {
    // SAFETY: Plain epoll calls on descriptors we own.
    let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if epfd < 0 {
        bail!("epoll_create1: {}", io::Error::last_os_error());
    }
    let mut event = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: 0,
    };
    // SAFETY: As above; `event` is valid for the call.
    if unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, fd, &mut event) } < 0 {
        bail!("epoll_ctl: {}", io::Error::last_os_error());
    }
    Ok(epfd)
}
