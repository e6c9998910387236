//! The fixed context-switch load: two threads on one CPU handing a byte
//! back and forth over two pipes, so that every hand-over is one context
//! switch on that CPU and nothing else runs there.

use std::os::fd::OwnedFd;
use std::sync::atomic::{
    AtomicU32,
    Ordering, //
};
use std::time::{
    Duration,
    Instant, //
};

use anyhow::{
    ensure,
    Context,
    Result, //
};

/// The thread ids of the load running now, for the consumers' check that
/// the events they read are the load's switches ([`TIDS`]).
pub(super) struct LoadTids([AtomicU32; 2]);

/// No thread has this id.
const NO_TID: u32 = u32::MAX;

/// The running load's two threads, set before it starts counting.
pub(super) static TIDS: LoadTids = LoadTids([AtomicU32::new(NO_TID), AtomicU32::new(NO_TID)]);

impl LoadTids {
    /// Whether `pid` is one of the load's threads.
    pub(super) fn contains(&self, pid: u32) -> bool {
        self.0.iter().any(|tid| tid.load(Ordering::Relaxed) == pid)
    }

    fn set(&self, tids: [u32; 2]) {
        for (slot, tid) in self.0.iter().zip(tids) {
            slot.store(tid, Ordering::SeqCst);
        }
    }
}

/// The calling thread's id, as the kernel's events name it.
fn gettid() -> u32 {
    nix::unistd::gettid().as_raw() as u32
}

/// Pins the calling thread to `cpu`.
pub(super) fn pin(cpu: usize) -> Result<()> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).context("CPU number out of range")?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
        .with_context(|| format!("pinning a thread to CPU {cpu}"))
}

/// Runs the ping-pong on `cpu` for `duration`: the round trips it made (two
/// context switches each) and how long they took.
pub(super) fn ping_pong(cpu: usize, duration: Duration) -> Result<(u64, Duration)> {
    let (ping_r, ping_w) = nix::unistd::pipe()?;
    let (pong_r, pong_w) = nix::unistd::pipe()?;
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let echo = std::thread::spawn(move || -> Result<()> {
        pin(cpu)?;
        let _ = tid_tx.send(gettid());
        let mut byte = [0u8];
        // Ends when the other side closes its write end (read returns 0).
        while read_byte(&ping_r, &mut byte)? {
            write_byte(&pong_w, &byte)?;
        }
        Ok(())
    });
    pin(cpu)?;
    let echo_tid = tid_rx.recv().context("the echo thread did not start")?;
    TIDS.set([gettid(), echo_tid]);
    let mut byte = [0u8];
    let mut trips = 0u64;
    let start = Instant::now();
    // Check the clock every 256 trips, so that reading it costs nothing
    // measurable beside two switches.
    while start.elapsed() < duration {
        for _ in 0..256 {
            write_byte(&ping_w, &byte)?;
            ensure!(read_byte(&pong_r, &mut byte)?, "the echo thread went away");
        }
        trips += 256;
    }
    let took = start.elapsed();
    drop(ping_w);
    echo.join()
        .map_err(|_| anyhow::anyhow!("the echo thread panicked"))??;
    Ok((trips, took))
}

fn read_byte(fd: &OwnedFd, byte: &mut [u8; 1]) -> Result<bool> {
    loop {
        match nix::unistd::read(fd, byte) {
            Ok(n) => return Ok(n == 1),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e).context("reading the pipe"),
        }
    }
}

fn write_byte(fd: &OwnedFd, byte: &[u8; 1]) -> Result<()> {
    loop {
        match nix::unistd::write(fd, byte) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e).context("writing the pipe"),
        }
    }
}
