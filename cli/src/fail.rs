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
  65  data error: the ring is corrupt, records failed verification, or an input line
      does not fit in a record (EX_DATAERR)
  66  no such file: the ring file does not exist, or is something (a directory, a pipe)
      that cannot hold a ring (EX_NOINPUT)
  69  no such device: the driver is not loaded or bound (EX_UNAVAILABLE)
  71  the ring could not be mapped (mmap failed: see the message) (EX_OSERR)
  73  `create` found the file there already (EX_CANTCREAT)
  74  I/O error (EX_IOERR)
  75  busy: the ring already has a consumer (or producer), or its producer is running
      (EX_TEMPFAIL)
  77  permission denied (EX_NOPERM)
  130 interrupted (Ctrl-C) before `bench` finished";

/// Bad arguments found after parsing.
pub(crate) const USAGE: u8 = 2;
/// `EX_DATAERR`.
pub(crate) const DATA: u8 = 65;
/// `EX_NOINPUT`: the ring file is missing, or no file a ring can be in.
pub(crate) const NOINPUT: u8 = 66;
/// `EX_UNAVAILABLE`.
pub(crate) const UNAVAILABLE: u8 = 69;
/// `EX_OSERR`: a failed `mmap` of the ring.
pub(crate) const OSERR: u8 = 71;
/// `EX_CANTCREAT`: a file to create exists.
pub(crate) const CANTCREAT: u8 = 73;
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
        // The causes joined by ": ", as anyhow's `{:#}` does: no error of
        // the library repeats its source in its own message.
        let mut line = format!("{err:#}");
        if let Some(hint) = hint(err) {
            line.push_str("; ");
            line.push_str(&hint);
        }
        // Not `eprintln!`, which would panic if stderr is closed too.
        let _ = writeln!(io::stderr(), "rmemring: {line}");
    }
    ExitCode::from(status)
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
        E::Busy { .. } | E::Taken(_) => BUSY,
        E::DataSize { .. } => USAGE,
        // A ring file that is not there (a missing device is `NoDevice`).
        E::Io {
            op: rmemring::IoOp::Open,
            source,
            ..
        } if source.kind() == io::ErrorKind::NotFound => NOINPUT,
        E::NotARing { .. } => NOINPUT,
        // A driver's request made of a ring file: the wrong argument.
        E::NotADevice { .. } => USAGE,
        E::Corrupt(_)
        | E::BadMagic { .. }
        | E::AbiVersion { .. }
        | E::PageSize { .. }
        | E::Layout(_)
        | E::UnknownFlags(_)
        | E::TooSmall { .. } => DATA,
        // Permission is permission; any other failed mapping is the
        // system's (a cache-type conflict, no memory), not the caller's.
        E::Map { source, .. } => match source.raw_os_error() {
            Some(libc::EACCES | libc::EPERM) => NOPERM,
            _ => OSERR,
        },
        // The cause (an `io::Error`) decides.
        E::Io { .. } | E::Ioctl { .. } => return None,
        _ => 1,
    })
}

/// What to look at, for failures whose message cannot say it alone.
fn hint(err: &anyhow::Error) -> Option<String> {
    err.chain()
        .find_map(|cause| match cause.downcast_ref::<rmemring::Error>() {
            Some(rmemring::Error::Map { source, .. })
                if source.raw_os_error() == Some(libc::EINVAL) =>
            {
                Some(
                    "on a ring device this is most often a cache-type conflict: another mapping \
                 of the same physical range has another cache type (x86 PAT); check \
                 `dmesg | grep -i pat` and see docs/troubleshooting.md"
                        .to_owned(),
                )
            }
            Some(rmemring::Error::PermissionDenied { path }) => std::fs::metadata(path)
                .ok()
                .map(|m| permission_hint(path, &m)),
            _ => None,
        })
}

/// Who may open the ring at `path`, whose metadata is `meta`, and how to
/// be one of them.
fn permission_hint(path: &std::path::Path, meta: &std::fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt as _;
    let mode = meta.mode() & 0o777;
    let gid = meta.gid();
    let group = nix::unistd::Group::from_gid(gid.into())
        .ok()
        .flatten()
        .map_or_else(|| gid.to_string(), |g| g.name);
    let shown = path.display();
    if mode & 0o060 != 0 && gid != 0 {
        format!(
            "{shown} is mode {mode:04o}, group {group}: members of {group} may open it; ask to \
             be added to {group} (and log in again)"
        )
    } else {
        format!(
            "{shown} is mode {mode:04o}, group {group}: to open ring devices without root, \
             install the driver's udev rule (driver/packaging/60-rmemring.rules: group \
             rmemring, mode 0660) and join the group rmemring"
        )
    }
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

/// A failed open of `path`, as the library reports one: a missing
/// `/dev` node is [`rmemring::Error::NoDevice`], a refusal
/// [`rmemring::Error::PermissionDenied`] (with its hint), anything else
/// the system's error.
pub(crate) fn open_error(path: &std::path::Path, e: io::Error) -> anyhow::Error {
    use rmemring::Error as E;
    let path = path.to_owned();
    match e.raw_os_error() {
        Some(libc::ENOENT | libc::ENODEV | libc::ENXIO) if path.starts_with("/dev") => {
            E::NoDevice { path }
        }
        Some(libc::EACCES | libc::EPERM) => E::PermissionDenied { path },
        _ => E::Io {
            op: rmemring::IoOp::Open,
            path,
            source: e,
        },
    }
    .into()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use rmemring::MapPart;

    use super::*;

    fn map_error(errno: i32) -> anyhow::Error {
        rmemring::Error::Map {
            path: PathBuf::from("/dev/rmemring0"),
            part: MapPart::DataArea,
            offset: 0x2000,
            len: 0x100_0000,
            writable: false,
            source: io::Error::from_raw_os_error(errno),
        }
        .into()
    }

    #[test]
    fn a_failed_mapping_is_not_a_usage_error() {
        let err = map_error(libc::EINVAL);
        assert_eq!(status(&err), OSERR);
        let line = format!("{err:#}");
        assert!(
            line.starts_with(
                "/dev/rmemring0: mmap of the data area (0x1000000 bytes at offset 0x2000, \
                 read-only): Invalid argument"
            ),
            "{line}"
        );
        // The errno once, not again from the source.
        assert_eq!(line.matches("Invalid argument").count(), 1, "{line}");
        assert!(hint(&err).is_some_and(
            |h| h.contains("dmesg | grep -i pat") && h.contains("docs/troubleshooting.md")
        ));

        assert_eq!(status(&map_error(libc::EACCES)), NOPERM);
        assert_eq!(status(&map_error(libc::ENOMEM)), OSERR);
        assert_eq!(hint(&map_error(libc::ENOMEM)), None);
        // Permission: who may open the node, and how to become one of them.
        let denied = |path: &str| -> anyhow::Error {
            rmemring::Error::PermissionDenied {
                path: PathBuf::from(path),
            }
            .into()
        };
        let dir = std::env::temp_dir().join(format!("rmemring-hint-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let node = dir.join("ring");
        std::fs::write(&node, b"").unwrap();
        std::fs::set_permissions(&node, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let private = hint(&denied(node.to_str().unwrap())).unwrap();
        assert!(
            private.contains("mode 0600") && private.contains("60-rmemring.rules"),
            "{private}"
        );
        assert_eq!(hint(&denied("/nonexistent/rmemring0")), None);
        std::fs::remove_dir_all(&dir).unwrap();
        // Wrapped in context, the mapping error still decides.
        assert_eq!(status(&map_error(libc::EINVAL).context("opening")), OSERR);
        assert!(hint(&map_error(libc::EINVAL).context("opening")).is_some());
    }

    #[test]
    fn other_statuses() {
        let io = |errno| anyhow::Error::new(io::Error::from_raw_os_error(errno));
        assert_eq!(status(&io(libc::EPIPE)), 0);
        assert_eq!(status(&io(libc::EINVAL)), USAGE);
        assert_eq!(status(&io(libc::ENOENT)), UNAVAILABLE);
        // A missing ring file is no missing device.
        let open =
            |path: &str| open_error(path.as_ref(), io::Error::from_raw_os_error(libc::ENOENT));
        assert_eq!(status(&open("/tmp/no-such-ring")), NOINPUT);
        assert_eq!(status(&open("/dev/rmemring9")), UNAVAILABLE);
        let dir = rmemring::Error::NotARing {
            path: PathBuf::from("/tmp"),
            kind: rmemring::FileKind::Directory,
        };
        assert_eq!(status(&dir.into()), NOINPUT);
        let file = rmemring::Error::NotADevice {
            path: PathBuf::from("/tmp/r"),
        };
        assert_eq!(status(&file.into()), USAGE);
        assert_eq!(status(&usage("bad")), USAGE);
        let busy = rmemring::Error::Busy {
            path: PathBuf::from("/dev/rmemring0"),
        };
        assert_eq!(status(&busy.into()), BUSY);
        // A ring file's roles are taken through locks, not by the driver.
        assert_eq!(
            status(&rmemring::Error::Taken(rmemring::Role::Producer).into()),
            BUSY
        );
        let size = rmemring::Error::DataSize {
            size: 3000,
            min: 4096,
            max: 1 << 31,
        };
        assert_eq!(status(&size.into()), USAGE);
    }
}
