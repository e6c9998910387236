//! relay as a peer: the tracer of `examples/kernel/sched_switch_relay`,
//! which writes the same 48-byte record as rmemring's tracer with
//! `__relay_write()` into a relay channel (one buffer per CPU, sub-buffers
//! of a page), each CPU's buffer read with `read()` from its debugfs file.
//!
//! `read()` and not `mmap`: relay's file maps the whole buffer, but tells
//! a mapping reader neither where the writer is nor lets it hand sub-buffers
//! back (`relay_subbufs_consumed()` has no user-space entry in
//! `relay_file_operations`); every mmap user of relay adds a control file of
//! its own for both. `read()` is relay's own consumer protocol: it skips each
//! sub-buffer's padding and frees what it returns.

use std::fs::{
    self,
    File, //
};
use std::io::Read as _;
use std::os::fd::{
    AsFd,
    BorrowedFd, //
};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{
    Path,
    PathBuf, //
};

use anyhow::{
    ensure,
    Context,
    Result, //
};

use super::{
    insmod,
    rmmod,
    Consumed,
    Source, //
};

/// relay's sub-buffers: a page each, so that a reader sleeping in `poll` is
/// woken about every 85 events (the other peers: every 64).
const SUBBUF_BYTES: u64 = 4096;
/// The record, `struct rmemring_sched_switch`.
const RECORD: usize = 48;
/// The module's name, as in `/sys/module`.
const MODULE: &str = "rmemring_sched_switch_relay";

/// The relay tracer, loaded, with each CPU's file open.
pub(super) struct Relay {
    module: PathBuf,
    files: Vec<File>,
    /// Read into after each file's carried bytes.
    buf: Vec<u8>,
    /// Per file, the start of a record a `read()` ended in. Sub-buffers
    /// hold whole records, but relay's read side takes the writer's
    /// sub-buffer and offset in two unsynchronised loads
    /// (`relay_file_read_subbuf_avail`): a read racing a sub-buffer switch
    /// can end mid-record (the new sub-buffer's offset, less the old one's
    /// padding, applied to the old one), and the next read goes on from
    /// there. So each file is a byte stream, as blktrace reads it.
    carry: Vec<Vec<u8>>,
    /// The probe's calls and relay's drops, read once it is detached.
    final_counts: Option<(u64, u64)>,
}

impl Relay {
    /// Loads the relay tracer (`module`) with `per_cpu_bytes` of buffer per
    /// CPU and opens each of the `cpus` files.
    pub(super) fn attach(module: &Path, cpus: usize, per_cpu_bytes: u64) -> Result<Self> {
        let debugfs = Path::new("/sys/kernel/debug");
        if !debugfs.join(MODULE).exists() && fs::read_dir(debugfs)?.next().is_none() {
            nix::mount::mount(
                Some("debugfs"),
                debugfs,
                Some("debugfs"),
                nix::mount::MsFlags::empty(),
                None::<&str>,
            )
            .context("mounting debugfs on /sys/kernel/debug")?;
        }
        insmod(
            module,
            &[
                format!("subbuf_size={SUBBUF_BYTES}"),
                format!("n_subbufs={}", per_cpu_bytes / SUBBUF_BYTES),
            ],
        )?;
        let mut relay = Self {
            module: module.to_owned(),
            files: Vec::new(),
            buf: vec![0; RECORD * 1365],
            carry: vec![Vec::with_capacity(RECORD); cpus],
            final_counts: None,
        };
        for cpu in 0..cpus {
            let path = debugfs.join(MODULE).join(format!("cpu{cpu}"));
            relay.files.push(
                File::options()
                    .read(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(&path)
                    .with_context(|| format!("opening {}", path.display()))?,
            );
        }
        Ok(relay)
    }
}

/// One of the module's counts.
fn parameter(name: &str) -> Result<u64> {
    let path = format!("/sys/module/{MODULE}/parameters/{name}");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    text.trim()
        .parse()
        .with_context(|| format!("parsing {path}: {text:?}"))
}

impl Source for Relay {
    fn fds(&self) -> Vec<BorrowedFd<'_>> {
        self.files.iter().map(AsFd::as_fd).collect()
    }

    /// Detaches the probe (the module stays, its files with it, until
    /// dropped) and reads its final counts.
    fn detach(&mut self) -> Result<()> {
        let path = format!("/sys/module/{MODULE}/parameters/attached");
        fs::write(&path, "0").with_context(|| format!("writing {path}"))?;
        self.final_counts = Some((parameter("calls")?, parameter("dropped")?));
        Ok(())
    }

    /// Reads each CPU's file until it has nothing more.
    fn drain(&mut self, consumed: &mut Consumed) -> Result<()> {
        for (file, carry) in self.files.iter_mut().zip(&mut self.carry) {
            loop {
                let kept = carry.len();
                self.buf[..kept].copy_from_slice(carry);
                carry.clear();
                let n = match file.read(&mut self.buf[kept..]) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e).context("reading a relay buffer"),
                };
                if n == 0 {
                    carry.extend_from_slice(&self.buf[..kept]);
                    break;
                }
                let records = self.buf[..kept + n].chunks_exact(RECORD);
                carry.extend_from_slice(records.remainder());
                for record in records {
                    let word = |at: usize| {
                        u32::from_ne_bytes([
                            record[at],
                            record[at + 1],
                            record[at + 2],
                            record[at + 3],
                        ])
                    };
                    // struct rmemring_sched_switch: cpu, prev_pid,
                    // prev_state, next_pid.
                    consumed.event(word(0) as usize, word(4), word(12));
                }
            }
        }
        Ok(())
    }

    fn dropped(&self) -> Result<u64> {
        let dropped = self.final_counts.context("relay read before detaching")?.1;
        // Called after the last drain: every stream ends at a record's end.
        ensure!(
            self.carry.iter().all(Vec::is_empty),
            "relay's stream ended inside a record"
        );
        Ok(dropped)
    }

    fn calls(&self) -> Result<Option<u64>> {
        Ok(self.final_counts.map(|(calls, _)| calls))
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.files.clear();
        if let Err(e) = rmmod(&self.module) {
            eprintln!("warning: {e:#}");
        }
    }
}
