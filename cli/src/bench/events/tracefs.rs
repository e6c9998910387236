//! tracefs: where it is, the `sched_switch` event's format (which the perf
//! and BPF peers read their records by), and ftrace's own ring buffer as a
//! peer: an instance with the event enabled, each CPU's `trace_pipe_raw`
//! read a page at a time with `read()` (which copies the page out;
//! `trace-cmd record` splices it instead).

use std::fs;
use std::os::fd::{
    AsFd,
    BorrowedFd,
    OwnedFd, //
};
use std::path::{
    Path,
    PathBuf, //
};

use anyhow::{
    bail,
    ensure,
    Context,
    Result, //
};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::{
    Consumed,
    Source, //
};

/// Where tracefs is mounted (mounted here if it is not yet).
pub(super) fn root() -> Result<PathBuf> {
    let root = PathBuf::from("/sys/kernel/tracing");
    if !root.join("events").exists() {
        nix::mount::mount(
            Some("tracefs"),
            &root,
            Some("tracefs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .context("mounting tracefs on /sys/kernel/tracing (is CONFIG_FTRACE set?)")?;
    }
    Ok(root)
}

/// What the peers need of the `sched_switch` event's record, from its
/// `format` file: its type id and where `prev_pid` and `next_pid` are.
#[derive(Clone, Copy, Debug)]
pub(super) struct SchedSwitchFormat {
    /// `common_type` of its records.
    pub(super) id: u16,
    /// Offset of `prev_pid` (a 4-byte `pid_t`) in the record.
    pub(super) prev_pid: usize,
    /// Offset of `next_pid` (a 4-byte `pid_t`) in the record.
    pub(super) next_pid: usize,
    /// The offsets of the fields a tracer copies.
    fields: [(&'static str, Option<usize>); 5],
}

impl SchedSwitchFormat {
    pub(super) fn read(root: &Path) -> Result<Self> {
        let path = root.join("events/sched/sched_switch/format");
        let text = fs::read_to_string(&path)
            .with_context(|| format!("reading {} (no sched_switch event?)", path.display()))?;
        Self::parse(&text).with_context(|| format!("parsing {}", path.display()))
    }

    fn parse(text: &str) -> Result<Self> {
        let id = text
            .lines()
            .find_map(|l| l.strip_prefix("ID:"))
            .context("no ID line")?
            .trim()
            .parse()?;
        // `field:pid_t next_pid;\toffset:56;\tsize:4;\tsigned:1;`: the
        // offset and size of a field.
        let field = |name: &str| -> Option<(usize, usize)> {
            let line = text.lines().find(|l| {
                l.split(';').next().is_some_and(|decl| {
                    decl.rsplit([' ', '\t'])
                        .next()
                        .is_some_and(|n| n.split('[').next() == Some(name))
                })
            })?;
            let value = |key: &str| {
                line.split(';')
                    .find_map(|part| part.trim().strip_prefix(key))
                    .and_then(|v| v.parse().ok())
            };
            Some((value("offset:")?, value("size:")?))
        };
        let pid = |name: &str| -> Result<usize> {
            let (offset, size) = field(name).with_context(|| format!("no {name} field"))?;
            ensure!(size == 4, "{name} is {size} bytes, not 4");
            Ok(offset)
        };
        let (prev_pid, next_pid) = (pid("prev_pid")?, pid("next_pid")?);
        let names = [
            "prev_comm",
            "prev_pid",
            "prev_state",
            "next_comm",
            "next_pid",
        ];
        Ok(Self {
            id,
            prev_pid,
            next_pid,
            fields: names.map(|name| (name, field(name).map(|(offset, _)| offset))),
        })
    }

    /// Where `field` (one a tracer copies) is in the record.
    #[cfg_attr(not(feature = "bpf"), allow(dead_code))]
    pub(super) fn offset(&self, field: &str) -> Option<usize> {
        self.fields.iter().find(|f| f.0 == field).and_then(|f| f.1)
    }
}

/// The name of the benchmark's tracefs instance.
const INSTANCE: &str = "rmemring-bench";

/// ftrace's ring buffer, in an instance of its own with only `sched_switch`
/// enabled, `per_cpu_kb` KiB per CPU, dropping new events when full (as
/// the other peers do) rather than overwriting.
pub(super) struct Ftrace {
    dir: PathBuf,
    pipes: Vec<OwnedFd>,
    /// The CPU whose pipe a woken consumer polls; see [`Ftrace::attach`].
    poll_cpu: Option<usize>,
    format: SchedSwitchFormat,
    page: Vec<u8>,
    /// `options/record-cmd` at the top level, as it was.
    record_cmd: Option<String>,
    root: PathBuf,
}

impl Ftrace {
    /// With `woken`, a reader waiting in `poll` is woken at the next
    /// event (`buffer_percent` 0), and polls only `load_cpu`'s buffer: its
    /// own CPU's would wake it at the event of its own going to sleep, for
    /// ever (the other peers wake it at most every 64th event). Otherwise
    /// only when a buffer is full (100).
    ///
    /// ftrace's `record-cmd` option (on by default, and only settable at
    /// the top level, which instances follow) hooks `sched_switch` and
    /// `sched_wakeup` to save task names for its text output; a binary
    /// reader does not need them, so it is off while this lives.
    pub(super) fn attach(
        root: &Path,
        cpus: usize,
        per_cpu_kb: u64,
        woken: bool,
        load_cpu: usize,
        format: SchedSwitchFormat,
    ) -> Result<Self> {
        let record_cmd_path = root.join("options/record-cmd");
        let record_cmd = fs::read_to_string(&record_cmd_path).ok();
        if record_cmd.is_some() {
            fs::write(&record_cmd_path, "0").context("turning options/record-cmd off")?;
        }
        let dir = root.join("instances").join(INSTANCE);
        if dir.exists() {
            // Left by a run that did not finish.
            fs::remove_dir(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let set = |file: &str, value: &str| {
            fs::write(dir.join(file), value)
                .with_context(|| format!("writing {value} to {}", dir.join(file).display()))
        };
        set("tracing_on", "0")?;
        set("buffer_size_kb", &per_cpu_kb.to_string())?;
        set("options/overwrite", "0")?;
        set("buffer_percent", if woken { "0" } else { "100" })?;
        set("events/sched/sched_switch/enable", "1")?;
        let mut pipes = Vec::new();
        for cpu in 0..cpus {
            let path = dir.join(format!("per_cpu/cpu{cpu}/trace_pipe_raw"));
            pipes.push(
                nix::fcntl::open(&path, OFlag::O_RDONLY | OFlag::O_NONBLOCK, Mode::empty())
                    .with_context(|| format!("opening {}", path.display()))?,
            );
        }
        set("tracing_on", "1")?;
        Ok(Self {
            dir,
            pipes,
            poll_cpu: woken.then_some(load_cpu),
            format,
            page: vec![0; page_size()],
            record_cmd,
            root: root.to_owned(),
        })
    }
}

impl Source for Ftrace {
    fn fds(&self) -> Vec<BorrowedFd<'_>> {
        match self.poll_cpu.and_then(|cpu| self.pipes.get(cpu)) {
            Some(pipe) => vec![pipe.as_fd()],
            None => self.pipes.iter().map(AsFd::as_fd).collect(),
        }
    }

    fn detach(&mut self) -> Result<()> {
        fs::write(self.dir.join("tracing_on"), "0").context("tracing_on")
    }

    /// Reads every page (full or not) each CPU's buffer has now.
    fn drain(&mut self, consumed: &mut Consumed) -> Result<()> {
        for (cpu, pipe) in self.pipes.iter().enumerate() {
            loop {
                match nix::unistd::read(pipe, &mut self.page) {
                    Ok(0) | Err(Errno::EAGAIN) => break,
                    Ok(n) => count_page(&self.page[..n], cpu, self.format, consumed)?,
                    Err(Errno::EINTR) => {}
                    Err(e) => return Err(e).context("reading trace_pipe_raw"),
                }
            }
        }
        Ok(())
    }

    /// Events the buffers dropped for lack of room, from each CPU's
    /// `stats`.
    fn dropped(&self) -> Result<u64> {
        let mut dropped = 0;
        for cpu in 0..self.pipes.len() {
            let path = self.dir.join(format!("per_cpu/cpu{cpu}/stats"));
            let text = fs::read_to_string(&path)?;
            for line in text.lines() {
                if let Some(n) = line.strip_prefix("dropped events:") {
                    dropped += n.trim().parse::<u64>()?;
                }
            }
        }
        Ok(dropped)
    }
}

impl Drop for Ftrace {
    fn drop(&mut self) {
        let _ = fs::write(self.dir.join("events/sched/sched_switch/enable"), "0");
        self.pipes.clear();
        let _ = fs::remove_dir(&self.dir);
        if let Some(value) = &self.record_cmd {
            let _ = fs::write(self.root.join("options/record-cmd"), value.trim());
        }
    }
}

fn page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |n| n as usize)
}

/// A ring-buffer page's data starts after its timestamp and its commit
/// word (`events/header_page`: `u64 timestamp`, `local_t commit`).
const PAGE_HEADER: usize = 16;
/// The commit word's bits below the two flags (`RB_MISSED_EVENTS`, bit 31,
/// and `RB_MISSED_STORED`, bit 30): the data's length.
const COMMIT_LENGTH_MASK: u64 = (1 << 30) - 1;

/// Counts the `sched_switch` events in one `trace_pipe_raw` page of `cpu`,
/// reading each one's pids (as every peer does). The event layout is the
/// ring buffer's (`include/linux/ring_buffer.h`): a 32-bit header whose
/// low 5 bits are `type_len`: 1..=28 a record of `4 * type_len` bytes
/// following the header; 0 a longer one whose length (itself included)
/// is the next word; 29 padding, 30 a time extension and 31 an absolute
/// timestamp.
fn count_page(
    page: &[u8],
    cpu: usize,
    format: SchedSwitchFormat,
    consumed: &mut Consumed,
) -> Result<()> {
    ensure!(
        page.len() >= PAGE_HEADER,
        "a short page: {} bytes",
        page.len()
    );
    let word = |at: usize| -> Result<u32> {
        let bytes = page.get(at..at + 4).context("an event runs off the page")?;
        Ok(u32::from_ne_bytes(bytes.try_into()?))
    };
    let commit = u64::from_ne_bytes(page[8..16].try_into()?) & COMMIT_LENGTH_MASK;
    let end = (PAGE_HEADER + commit as usize).min(page.len());
    let mut at = PAGE_HEADER;
    while at + 4 <= end {
        let header = word(at)?;
        let type_len = header & 0x1f;
        let (data, len) = match type_len {
            0 => {
                let len = word(at + 4)? as usize;
                (at + 8, 4 + len)
            }
            1..=28 => (at + 4, 4 + 4 * type_len as usize),
            29 => {
                let len = word(at + 4)? as usize;
                if header >> 5 == 0 && len == 0 {
                    break; // the rest of the page is padding
                }
                at += 4 + len;
                continue;
            }
            30 | 31 => {
                at += 8;
                continue;
            }
            _ => bail!("event type {type_len}"),
        };
        let kind = page
            .get(data..data + 2)
            .context("an event runs off the page")?;
        if u16::from_ne_bytes(kind.try_into()?) == format.id {
            consumed.event(
                cpu,
                word(data + format.prev_pid)?,
                word(data + format.next_pid)?,
            );
        }
        at += len;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORMAT: &str = "name: sched_switch\nID: 316\nformat:\n\
        \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
        \tfield:char prev_comm[16];\toffset:8;\tsize:16;\tsigned:0;\n\
        \tfield:pid_t prev_pid;\toffset:24;\tsize:4;\tsigned:1;\n\
        \tfield:pid_t next_pid;\toffset:56;\tsize:4;\tsigned:1;\n";

    #[test]
    fn parses_the_format_file() {
        let f = SchedSwitchFormat::parse(FORMAT).unwrap();
        assert_eq!((f.id, f.prev_pid, f.next_pid), (316, 24, 56));
        assert_eq!(f.offset("prev_comm"), Some(8));
        assert_eq!(f.offset("prev_state"), None);
    }

    #[test]
    fn counts_events_across_time_extends_and_stops_at_padding() {
        let format = SchedSwitchFormat::parse(FORMAT).unwrap();
        let mut page = vec![0u8; 4096];
        let mut at = PAGE_HEADER;
        let put = |page: &mut Vec<u8>, at: &mut usize, bytes: &[u8]| {
            page[*at..*at + bytes.len()].copy_from_slice(bytes);
            *at += bytes.len();
        };
        // A time extension (8 bytes), then two 64-byte events, the second
        // of another type, then one long form (type_len 0) event.
        put(&mut page, &mut at, &30u32.to_ne_bytes());
        put(&mut page, &mut at, &0u32.to_ne_bytes());
        for kind in [316u16, 7] {
            put(&mut page, &mut at, &16u32.to_ne_bytes());
            let mut event = [0u8; 64];
            event[..2].copy_from_slice(&kind.to_ne_bytes());
            event[56..60].copy_from_slice(&42u32.to_ne_bytes());
            put(&mut page, &mut at, &event);
        }
        put(&mut page, &mut at, &0u32.to_ne_bytes());
        put(&mut page, &mut at, &(4u32 + 64).to_ne_bytes());
        let mut event = [0u8; 64];
        event[..2].copy_from_slice(&316u16.to_ne_bytes());
        event[24..28].copy_from_slice(&42u32.to_ne_bytes());
        event[56..60].copy_from_slice(&7u32.to_ne_bytes());
        put(&mut page, &mut at, &event);
        let commit = (at - PAGE_HEADER) as u64 | 1 << 31;
        page[8..16].copy_from_slice(&commit.to_ne_bytes());
        let mut consumed = Consumed::default();
        count_page(&page, 1, format, &mut consumed).unwrap();
        assert_eq!((consumed.events, consumed.checksum), (2, 49));
        // The second event takes out the task the first brought in.
        assert_eq!(consumed.chain_breaks, 0);
    }
}
