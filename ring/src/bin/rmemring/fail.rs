//! One-line errors and conventional exit statuses.
//!
//! Usage errors exit with 2 (clap's convention, also used for arguments
//! that turn out impossible for the ring, like a record larger than its
//! maximum). Everything else follows `sysexits.h` where a code fits, so a
//! script can tell "load the driver" from "someone else is consuming":
//! see [`EXIT_STATUS_HELP`].

use std::io::{
    self,
    Write as _, //
};
use std::process::ExitCode;

/// The exit statuses, for `--help` and `docs/cli.md`.
pub(crate) const EXIT_STATUS_HELP: &str = "\
Exit status:
  0   success (also after Ctrl-C ends `cat` or `produce`, or a closed pipe ends any subcommand)
  1   any other failure
  2   usage: bad arguments, or arguments the ring cannot satisfy
  65  data error: the ring is corrupt, or records failed verification (EX_DATAERR)
  69  no such device: the driver is not loaded or bound (EX_UNAVAILABLE)
  74  I/O error (EX_IOERR)
  75  busy: the ring already has a consumer, or its producer is running (EX_TEMPFAIL)
  77  permission denied (EX_NOPERM)
  130 interrupted (Ctrl-C) before `bench` finished";

/// Bad arguments found after parsing.
pub(crate) const USAGE: u8 = 2;
/// `EX_DATAERR`.
pub(crate) const DATA: u8 = 65;
/// `EX_UNAVAILABLE`.
pub(crate) const UNAVAILABLE: u8 = 69;
/// `EX_IOERR`.
pub(crate) const IO: u8 = 74;
/// `EX_TEMPFAIL`.
pub(crate) const BUSY: u8 = 75;
/// `EX_NOPERM`.
pub(crate) const NOPERM: u8 = 77;
/// 128 + SIGINT.
pub(crate) const INTERRUPTED: u8 = 130;

/// An error that carries its own exit status.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) status: u8,
    pub(crate) message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// A usage error (status 2) with `message`.
pub(crate) fn usage(message: impl Into<String>) -> anyhow::Error {
    Failure {
        status: USAGE,
        message: message.into(),
    }
    .into()
}

/// A failure with exit status `status` and `message`.
pub(crate) fn with_status(status: u8, message: impl Into<String>) -> anyhow::Error {
    Failure {
        status,
        message: message.into(),
    }
    .into()
}

/// Prints `err` as one line and returns the exit status it calls for.
pub(crate) fn report(err: &anyhow::Error) -> ExitCode {
    let status = status(err);
    if status != 0 {
        // Not `eprintln!`, which would panic if stderr is closed too.
        let _ = writeln!(io::stderr(), "rmemring: {}", one_line(err));
    }
    ExitCode::from(status)
}

/// The causes joined by ": ", each only once: some errors repeat their
/// source in their own message.
fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// The exit status for `err`: the first cause that says.
fn status(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(failure) = cause.downcast_ref::<Failure>() {
            return failure.status;
        }
        if let Some(e) = cause.downcast_ref::<rmemring::Error>() {
            if let Some(status) = ring_status(e) {
                return status;
            }
        }
        if let Some(e) = cause.downcast_ref::<io::Error>() {
            return errno_status(e);
        }
        if let Some(e) = cause.downcast_ref::<nix::Error>() {
            return errno_status(&io::Error::from(*e));
        }
    }
    1
}

fn ring_status(e: &rmemring::Error) -> Option<u8> {
    use rmemring::Error as E;
    Some(match e {
        E::NoDevice { .. } => UNAVAILABLE,
        E::PermissionDenied { .. } => NOPERM,
        E::Busy { .. } => BUSY,
        E::Corrupt(_)
        | E::BadMagic { .. }
        | E::AbiVersion { .. }
        | E::PageSize { .. }
        | E::Layout(_)
        | E::UnknownFlags(_)
        | E::TooSmall { .. } => DATA,
        // The cause (an `io::Error`) decides.
        E::Io { .. } => return None,
        _ => 1,
    })
}

fn errno_status(e: &io::Error) -> u8 {
    match e.raw_os_error() {
        Some(libc::ENOENT | libc::ENODEV | libc::ENXIO) => UNAVAILABLE,
        Some(libc::EACCES | libc::EPERM) => NOPERM,
        Some(libc::EBUSY) => BUSY,
        // A closed pipe (`rmemring ... | head`) ends a subcommand the way
        // `head` expects any stream to end: see `out`.
        Some(libc::EPIPE) => 0,
        Some(libc::EINVAL) => USAGE,
        Some(_) => IO,
        None => 1,
    }
}

/// The one-line explanation of a failed open of a ring device.
pub(crate) fn open_error(path: &std::path::Path, e: io::Error) -> anyhow::Error {
    let shown = path.display();
    match e.raw_os_error() {
        Some(libc::ENOENT | libc::ENODEV | libc::ENXIO) if path.starts_with("/dev") => {
            anyhow::Error::new(e).context(format!(
                "{shown}: no such device; load the driver (`insmod rmemring.ko phys_base=ADDR \
                 phys_size=BYTES` for a `memmap=` reservation, or bind it through the device tree) \
                 and check `dmesg`"
            ))
        }
        Some(libc::EACCES | libc::EPERM) => anyhow::Error::new(e).context(format!(
            "{shown}: permission denied (the device is root-only unless the driver's `mode` \
             parameter says otherwise)"
        )),
        _ => anyhow::Error::new(e).context(shown.to_string()),
    }
}
