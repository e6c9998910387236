//! The fixed context-switch load: on each of its CPUs, two threads handing
//! a byte back and forth over two pipes, so that every hand-over is one
//! context switch on that CPU and the pair is all the load runs there.

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

/// The most CPUs the load runs on at once.
pub(super) const MAX_CPUS: usize = 2;

/// The thread ids of the load running now (two a CPU), for the consumers'
/// check that the events they read are the load's switches ([`TIDS`]).
pub(super) struct LoadTids([AtomicU32; 2 * MAX_CPUS]);

/// No thread has this id.
const NO_TID: u32 = u32::MAX;

/// The running load's two threads, set before it starts counting.
pub(super) static TIDS: LoadTids = LoadTids([const { AtomicU32::new(NO_TID) }; 2 * MAX_CPUS]);

impl LoadTids {
    /// Whether `pid` is one of the load's threads.
    pub(super) fn contains(&self, pid: u32) -> bool {
        self.0.iter().any(|tid| tid.load(Ordering::Relaxed) == pid)
    }

    /// Sets the pair of threads of the load's `pair`th CPU.
    fn set(&self, pair: usize, tids: [u32; 2]) {
        for (slot, tid) in self.0[2 * pair..].iter().zip(tids) {
            slot.store(tid, Ordering::SeqCst);
        }
    }

    /// Forgets every thread (of an earlier run).
    fn clear(&self) {
        for slot in &self.0 {
            slot.store(NO_TID, Ordering::SeqCst);
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

/// Runs a ping-pong on each of `cpus` at once for `duration`: the round
/// trips they made together (two context switches each) and how long the
/// longest took.
pub(super) fn ping_pong(cpus: &[usize], duration: Duration) -> Result<(u64, Duration)> {
    ensure!(
        (1..=MAX_CPUS).contains(&cpus.len()),
        "the load runs on 1 to {MAX_CPUS} CPUs"
    );
    TIDS.clear();
    std::thread::scope(|scope| {
        let pairs: Vec<_> = cpus
            .iter()
            .enumerate()
            .map(|(pair, &cpu)| scope.spawn(move || pair_on(pair, cpu, duration)))
            .collect();
        let mut total = (0, Duration::ZERO);
        for pair in pairs {
            let (trips, took) = pair
                .join()
                .map_err(|_| anyhow::anyhow!("a load thread panicked"))??;
            total = (total.0 + trips, total.1.max(took));
        }
        Ok(total)
    })
}

/// One ping-pong, the load's `pair`th, on `cpu`.
fn pair_on(pair: usize, cpu: usize, duration: Duration) -> Result<(u64, Duration)> {
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
    TIDS.set(pair, [gettid(), echo_tid]);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_load_on_two_cpus_switches_on_both() {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let on: Vec<usize> = (0..cpus.min(MAX_CPUS)).collect();
        let (trips, took) = ping_pong(&on, Duration::from_millis(50)).unwrap();
        assert!(trips >= 256 * on.len() as u64, "{trips} round trips");
        assert!(took >= Duration::from_millis(50));
        // Every pair's two threads are the load's, and no others.
        let tids: Vec<u32> = TIDS.0.iter().map(|t| t.load(Ordering::SeqCst)).collect();
        let set = tids.iter().filter(|&&t| t != NO_TID).count();
        assert_eq!(set, 2 * on.len(), "{tids:?}");
        assert!(!TIDS.contains(gettid()));
        assert!(ping_pong(&[], Duration::ZERO).is_err());
        assert!(ping_pong(&[0; MAX_CPUS + 1], Duration::ZERO).is_err());
    }
}
