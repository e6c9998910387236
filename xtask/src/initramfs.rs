//! The guest's initramfs: a gzipped `newc` cpio archive, written here in Rust.
//!
//! Writing the archive ourselves lets it hold `/dev/console` (which the
//! kernel opens before `/init`) without mknod or root, and keeps every file
//! owned by root with a fixed mtime, whoever builds it.
//!
//! Contents: busybox, `/init` (`init.sh`), the driver at
//! `/lib/modules/rmemring.ko` and its client modules (`examples/kernel/`)
//! next to it, the guest binaries in `/bin`, `--add` files in
//! `/add`, and `/etc/rmemring/{config,command}` telling `/init` what to do.

use std::fs;
use std::io::Write;
use std::path::{
    Path,
    PathBuf, //
};

use anyhow::{
    Context,
    Result, //
};
use xshell::{
    cmd,
    Shell, //
};

use crate::exec::Log;

/// The guest's `/init`.
const INIT: &str = include_str!("init.sh");

/// Where `/init` loads the driver from.
pub const MODULE_PATH: &str = "lib/modules/rmemring.ko";

/// Prefix of the lines `/init` uses to talk to the host (see [`Marker`]).
pub const MARK: &str = "@@rmemring-vm-7f3a";

/// What one boot of the guest does.
pub struct Spec<'a> {
    pub busybox: &'a Path,
    pub module: &'a Path,
    /// Client modules of the in-kernel API, for `/lib/modules`.
    pub clients: &'a [PathBuf],
    pub bins: &'a [PathBuf],
    /// Files for `/add`.
    pub add: &'a [PathBuf],
    /// Load the driver at boot with these module parameters.
    pub load: Option<&'a str>,
    /// The command for `sh -c`; `None` gives an interactive shell.
    pub command: Option<&'a str>,
    /// The guest runs the debug kernel: told to the command as
    /// `RMEMRING_DEBUG_KERNEL=1`, so that long tests can scale themselves
    /// to a kernel several times slower.
    pub debug_kernel: bool,
    /// How `/init` ends the machine once it has dumped the kernel log.
    pub end: End,
}

/// How `/init` ends the machine after a command (`END` in its config).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// `reboot -f`: QEMU runs with `-no-reboot`, so the reset ends it.
    Reboot,
    /// `poweroff -f`, for runs of several boots, in which QEMU keeps the
    /// machine (and its RAM) across a reset: ACPI S5 on x86_64, PSCI
    /// `SYSTEM_OFF` on arm64.
    Poweroff,
}

impl End {
    /// The busybox command, as `/init` runs it with `-f`.
    fn command(self) -> &'static str {
        match self {
            End::Reboot => "reboot",
            End::Poweroff => "poweroff",
        }
    }
}

/// A line `/init` writes to the console, behind [`MARK`].
#[derive(Debug, PartialEq, Eq)]
pub enum Marker {
    /// The command starts.
    Begin,
    /// The command exited with this status.
    Status(i32),
    /// insmod failed with this status; the command did not run.
    InsmodFailed(i32),
    /// rmmod after the command failed with this status.
    RmmodFailed(i32),
    /// The kernel log follows.
    Dmesg,
    /// The kernel log is complete.
    End,
}

impl Marker {
    /// Finds a marker in a console line: the text before it, and the marker.
    ///
    /// The kernel may print onto the console in the middle of a line of
    /// the guest's (a watchdog's message under a loaded host, say), so a
    /// marker is its word and the digits of its value, whatever follows
    /// them.
    pub fn find(line: &str) -> Option<(&str, Marker)> {
        let at = line.find(MARK)?;
        let rest = line[at + MARK.len()..].strip_prefix(':')?;
        let word_end = rest
            .find(|c: char| !(c.is_ascii_lowercase() || c == '-'))
            .unwrap_or(rest.len());
        let (word, after) = rest.split_at(word_end);
        let digits = after.strip_prefix('=').unwrap_or("");
        let digits = &digits[..digits
            .find(|c: char| !(c.is_ascii_digit() || c == '-'))
            .unwrap_or(digits.len())];
        let value = || digits.parse().ok();
        let marker = match word {
            "begin" => Marker::Begin,
            "status" => Marker::Status(value()?),
            "insmod-failed" => Marker::InsmodFailed(value()?),
            "rmmod-failed" => Marker::RmmodFailed(value()?),
            "dmesg" => Marker::Dmesg,
            "end" => Marker::End,
            _ => return None,
        };
        Some((&line[..at], marker))
    }
}

/// Writes the initramfs for `spec` into `dir`; returns its path.
pub fn write(sh: &Shell, log: &Log, spec: &Spec<'_>, dir: &Path) -> Result<PathBuf> {
    let cpio_path = dir.join("initramfs.cpio");
    let mut cpio = Cpio::new(Vec::new());
    for d in [
        "bin",
        "dev",
        "proc",
        "sys",
        "tmp",
        "root",
        "etc",
        "etc/rmemring",
        "lib",
        "lib/modules",
        "add",
    ] {
        cpio.dir(d)?;
    }
    cpio.char_device("dev/console", 0o600, (5, 1))?;
    cpio.file("init", 0o755, INIT.as_bytes())?;
    cpio.file("bin/busybox", 0o755, &read(spec.busybox)?)?;
    cpio.file(MODULE_PATH, 0o644, &read(spec.module)?)?;
    for client in spec.clients {
        cpio.file(
            &format!("lib/modules/{}", file_name(client)?),
            0o644,
            &read(client)?,
        )?;
    }
    for bin in spec.bins {
        cpio.file(&format!("bin/{}", file_name(bin)?), 0o755, &read(bin)?)?;
    }
    for file in spec.add {
        let mode = if is_executable(file) { 0o755 } else { 0o644 };
        cpio.file(&format!("add/{}", file_name(file)?), mode, &read(file)?)?;
    }
    let config = format!(
        "MARK='{MARK}'\nLOAD={}\nPARAMS='{}'\nDEBUG_KERNEL={}\nEND={}\n",
        u8::from(spec.load.is_some()),
        spec.load.unwrap_or_default(),
        u8::from(spec.debug_kernel),
        spec.end.command()
    );
    cpio.file("etc/rmemring/config", 0o644, config.as_bytes())?;
    if let Some(command) = spec.command {
        cpio.file("etc/rmemring/command", 0o644, command.as_bytes())?;
    }
    fs::write(&cpio_path, cpio.finish()?)
        .with_context(|| format!("writing {}", cpio_path.display()))?;
    log.run(cmd!(sh, "gzip -1 -n -f {cpio_path}"))?;
    Ok(dir.join("initramfs.cpio.gz"))
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("reading {} for the initramfs", path.display()))
}

fn file_name(path: &Path) -> Result<&str> {
    path.file_name()
        .and_then(|name| name.to_str())
        .with_context(|| format!("{} has no usable file name", path.display()))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

/// A `newc` (SVR4, no checksum) cpio writer.
struct Cpio<W: Write> {
    out: W,
    next_ino: u32,
}

impl<W: Write> Cpio<W> {
    const S_IFDIR: u32 = 0o040000;
    const S_IFREG: u32 = 0o100000;
    const S_IFCHR: u32 = 0o020000;

    fn new(out: W) -> Self {
        Cpio { out, next_ino: 1 }
    }

    fn dir(&mut self, name: &str) -> Result<()> {
        self.entry(name, Self::S_IFDIR | 0o755, 2, (0, 0), &[])
    }

    fn file(&mut self, name: &str, mode: u32, data: &[u8]) -> Result<()> {
        self.entry(name, Self::S_IFREG | mode, 1, (0, 0), data)
    }

    fn char_device(&mut self, name: &str, mode: u32, rdev: (u32, u32)) -> Result<()> {
        self.entry(name, Self::S_IFCHR | mode, 1, rdev, &[])
    }

    /// Writes the trailer and returns the output.
    fn finish(mut self) -> Result<W> {
        self.next_ino = 0;
        self.entry("TRAILER!!!", 0, 1, (0, 0), &[])?;
        Ok(self.out)
    }

    fn entry(
        &mut self,
        name: &str,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> Result<()> {
        let size = u32::try_from(data.len()).context("file too large for cpio")?;
        // The name size counts the terminating NUL.
        let name_size = name.len() as u32 + 1;
        let fields = [
            self.next_ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            size,
            0, // dev major
            0, // dev minor
            rdev.0,
            rdev.1,
            name_size,
            0, // check
        ];
        self.next_ino += 1;
        let mut header = String::from("070701");
        for field in fields {
            header += &format!("{field:08x}");
        }
        self.out.write_all(header.as_bytes())?;
        self.out.write_all(name.as_bytes())?;
        self.out.write_all(&[0])?;
        // The header (110 bytes) plus the name, then the data, each padded to 4.
        self.pad(110 + name_size as usize)?;
        self.out.write_all(data)?;
        self.pad(data.len())
    }

    fn pad(&mut self, len: usize) -> Result<()> {
        let zeros = [0u8; 3];
        self.out.write_all(&zeros[..(4 - len % 4) % 4])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_found_after_unterminated_output() {
        let line = format!("no newline{MARK}:status=3");
        assert_eq!(Marker::find(&line), Some(("no newline", Marker::Status(3))));
        assert_eq!(
            Marker::find(&format!("{MARK}:dmesg")),
            Some(("", Marker::Dmesg))
        );
        assert_eq!(Marker::find("status=3"), None);
    }

    /// A kernel message printed onto the console right after a marker, on
    /// its line (seen once under a loaded host: `vm hostile-debug`'s
    /// status line, whose command had passed, was followed by
    /// "[   26.521037] clocksource: Watchdog remote CPU 1 read timed out").
    #[test]
    fn markers_are_found_before_a_kernel_message_on_their_line() {
        let line = format!(
            "{MARK}:status=0[   26.521037] clocksource: Watchdog remote CPU 1 read timed out"
        );
        assert_eq!(Marker::find(&line), Some(("", Marker::Status(0))));
        let line = format!("{MARK}:dmesg[   26.5] x");
        assert_eq!(Marker::find(&line), Some(("", Marker::Dmesg)));
        let line = format!("{MARK}:insmod-failed=-22 [ 1.0] y");
        assert_eq!(Marker::find(&line), Some(("", Marker::InsmodFailed(-22))));
        assert_eq!(Marker::find(&format!("{MARK}:status=[1.0]")), None);
        assert_eq!(Marker::find(&format!("{MARK}:statuses=1")), None);
    }

    #[test]
    fn cpio_entries_are_aligned() {
        let mut cpio = Cpio::new(Vec::new());
        cpio.file("a", 0o644, b"xyz").unwrap();
        let out = cpio.finish().unwrap();
        assert!(out.starts_with(b"070701"));
        // Header + "a\0" padded to 112, "xyz" padded to 4, then the trailer.
        assert_eq!(&out[110..112], b"a\0");
        assert_eq!(&out[112..116], b"xyz\0");
        assert_eq!(out.len() % 4, 0);
    }
}
