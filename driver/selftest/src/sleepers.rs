//! Threads asleep in `read()` or `poll` while another thread resets the
//! ring or stops the producer.

use std::io;
use std::os::fd::{
    AsRawFd,
    RawFd, //
};
use std::os::unix::thread::JoinHandleExt;
use std::sync::mpsc;
use std::time::{
    Duration,
    Instant, //
};

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
    Wait, //
};

use crate::stream::open_fresh;
use crate::{
    Env,
    Report, //
};

extern "C" fn on_signal(_: libc::c_int) {}

/// A blocking call running on a thread of its own.
pub(crate) struct Sleeper<T> {
    handle: std::thread::JoinHandle<()>,
    done: mpsc::Receiver<T>,
    started: Instant,
}

impl<T: Send + 'static> Sleeper<T> {
    /// Runs `f` on a new thread.
    pub(crate) fn spawn(f: impl FnOnce() -> T + Send + 'static) -> Self {
        // SIGUSR1 interrupts blocking calls (no SA_RESTART) and does
        // nothing else; see `Self::finish`.
        // SAFETY: Installing a handler that does nothing.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as *const () as usize;
            libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut());
        }
        let (tx, done) = mpsc::channel();
        let handle = std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        Self {
            handle,
            done,
            started: Instant::now(),
        }
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
fn seqs(mut data: &[u8]) -> Vec<u64> {
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
    let sleeper = Sleeper::spawn(move || poll_in(fd, Duration::from_secs(20)));
    std::thread::sleep(Duration::from_millis(300));
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
    let sleeper = Sleeper::spawn(move || read(fd, 1 << 16));
    std::thread::sleep(Duration::from_millis(300));
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
        slept_through_reset
            && !interrupted
            && after_start < WAKE
            && got.as_ref().is_ok_and(|s| !s.is_empty() && s[0] == 0),
        || format!("still asleep after the reset {slept_through_reset}, read {got:?} {after_start:?} after START"),
    );

    // STOP with nobody producing leaves a reader asleep, and the next run
    // still wakes it.
    let sleeper = Sleeper::spawn(move || read(fd, 1 << 16));
    std::thread::sleep(Duration::from_millis(300));
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
