//! Child processes: forked to die of a signal, to be killed at a random
//! moment, to consume a ring until killed, or to run with other
//! credentials.

use std::io;
use std::time::{
    Duration,
    Instant, //
};

use std::sync::Arc;

use anyhow::bail;
use rmemring::{
    Access,
    Region, //
};

/// Forks; the child runs `child` and `_exit`s with its result, never
/// returning. Returns the child's pid.
///
/// Call only while this process has one thread.
pub(crate) fn fork_child(child: impl FnOnce() -> i32) -> anyhow::Result<libc::pid_t> {
    // SAFETY: The caller has one thread, so the child may run Rust code
    // (no lock is held by a thread that does not exist in it); it never
    // returns from here.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        bail!("fork: {}", io::Error::last_os_error());
    }
    if pid == 0 {
        let code = child();
        // SAFETY: Ends the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    Ok(pid)
}

/// Forks a consumer of the ring device `device`, reading it flat out
/// until killed, and waits (up to 10 s) until `observer`, a file of the
/// same ring, sees it open. Returns its pid.
///
/// Call only while this process has one thread.
pub(crate) fn fork_consumer(device: &str, observer: &Region) -> anyhow::Result<libc::pid_t> {
    let device = device.to_owned();
    let child = fork_child(move || {
        let Ok(region) = Region::open(&device, Access::Consume) else {
            return 1;
        };
        let region = Arc::new(region);
        let Ok(mut consumer) = region.consumer() else {
            return 2;
        };
        loop {
            if let Ok(mut batch) = consumer.batch() {
                batch.iter().for_each(drop);
            }
            let _ = consumer.wait(Some(Duration::from_millis(10)));
        }
    })?;
    let since = Instant::now();
    loop {
        match observer.stats() {
            Ok(stats) if stats.consumer_open != 0 => return Ok(child),
            Ok(_) if since.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(10))
            }
            result => {
                kill_and_reap(child);
                result?;
                bail!("the forked consumer never opened the ring");
            }
        }
    }
}

/// Who a child runs as: a user, its primary group and its supplementary
/// groups (none: only the primary one).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Credentials<'a> {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) groups: &'a [u32],
}

impl Credentials<'_> {
    /// Makes the calling process (root) this user for good: supplementary
    /// groups first, then the group, then the user, as `su` does.
    pub(crate) fn assume(&self) -> nix::Result<()> {
        use nix::unistd::{
            setgid,
            setgroups,
            setuid,
            Gid,
            Uid, //
        };
        let groups: Vec<Gid> = self.groups.iter().map(|&g| Gid::from_raw(g)).collect();
        setgroups(&groups)?;
        setgid(Gid::from_raw(self.gid))?;
        setuid(Uid::from_raw(self.uid))
    }
}

/// Forks a child that drops to `who` and runs `child`, which exits with
/// its result (127 if the credentials could not be taken); the child's
/// pid. Call only while this process has one thread.
pub(crate) fn fork_as(
    who: Credentials<'_>,
    child: impl FnOnce() -> i32,
) -> anyhow::Result<libc::pid_t> {
    fork_child(|| match who.assume() {
        Ok(()) => child(),
        Err(e) => {
            eprintln!("child: becoming {who:?}: {e}");
            127
        }
    })
}

/// The exit code of a child that exited, from its wait status.
pub(crate) fn exit_code(status: i32) -> Option<i32> {
    libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status))
}

/// Waits for child `pid`; its wait status.
pub(crate) fn wait_child(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    // SAFETY: Our own child; a valid out-pointer.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    status
}

/// Sends child `pid` SIGKILL.
pub(crate) fn kill(pid: libc::pid_t) {
    // SAFETY: Signalling our own child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// Waits up to `limit` for child `pid` to exit; whether it did.
pub(crate) fn reap_within(pid: libc::pid_t, limit: Duration) -> bool {
    let start = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: Our own child; `status` is a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid || r < 0 {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Kills child `pid` and waits (up to 30 s) for it to go.
pub(crate) fn kill_and_reap(pid: libc::pid_t) {
    kill(pid);
    reap_within(pid, Duration::from_secs(30));
}
