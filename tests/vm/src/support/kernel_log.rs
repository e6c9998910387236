//! The kernel log: marks written into it, so that what follows a mark can
//! be told apart from everything before, and its lines since a mark.

use std::process::Command;

use anyhow::Context;

/// Writes `line` into the kernel log (`/dev/kmsg`); a log that will not
/// take it changes no check's outcome.
pub(crate) fn write(line: &str) {
    let _ = std::fs::write("/dev/kmsg", format!("{line}\n"));
}

/// Writes a unique line into the kernel log and returns it, so the lines
/// that follow can be told apart from everything before (timestamps and
/// line counts are not reliable: clocks differ, and a full log buffer drops
/// its oldest lines).
pub(crate) fn mark() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mark = format!("rmemring-selftest: mark {}-{n}", std::process::id());
    write(&mark);
    mark
}

/// The kernel log lines after the line `mark` wrote, as `dmesg` prints
/// them.
pub(crate) fn dmesg_since(mark: &str) -> String {
    let log = Command::new("dmesg")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    let start = lines
        .iter()
        .rposition(|l| l.ends_with(mark))
        .map_or(0, |i| i + 1);
    lines[start..].join("\n")
}

/// One kernel log record: its level (0 emergency .. 7 debug) and text.
pub(crate) struct LogLine {
    pub(crate) level: u8,
    pub(crate) text: String,
}

/// The kernel log, from `/dev/kmsg` (each record with its level).
pub(crate) fn records() -> anyhow::Result<Vec<LogLine>> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut kmsg = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/kmsg")
        .context("opening /dev/kmsg")?;
    let mut lines = Vec::new();
    let mut buf = vec![0u8; 8192];
    loop {
        match kmsg.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                // "PRI,SEQ,TS,FLAGS;TEXT\n", then continuation lines.
                let record = String::from_utf8_lossy(&buf[..n]);
                let Some((head, text)) = record.split_once(';') else {
                    continue;
                };
                let pri: u32 = head.split(',').next().unwrap_or("").parse().unwrap_or(7);
                lines.push(LogLine {
                    level: (pri & 7) as u8,
                    text: text.lines().next().unwrap_or("").to_string(),
                });
            }
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => break,
            // A record overwritten while reading: go on with the next.
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(e) => return Err(e).context("reading /dev/kmsg"),
        }
    }
    Ok(lines)
}

/// The records of `log` after the line [`mark`] wrote.
pub(crate) fn since(log: Vec<LogLine>, mark: &str) -> Vec<LogLine> {
    let start = log
        .iter()
        .rposition(|l| l.text.ends_with(mark))
        .map_or(0, |i| i + 1);
    log.into_iter().skip(start).collect()
}
