//! What the groups share, by concern. A group imports from here (and
//! from the libraries), never from another group, and these modules import
//! only one another, never back up into a group and never in a loop (the
//! crate's tests check both):
//!
//! ```text
//! guard  -> env, kmod, mapping, report, ring
//! unbind -> clients, fd, process
//! verify -> env, fd, mapping, ring
//! ring   -> env, mapping
//! env    -> kmod -> kernel_log
//! fd, mapping, process, threads, rng, report: nothing of the crate's
//! ```
//!
//! - [`report`]: `ok`, `not ok` and skips;
//! - [`env`](mod@env) and [`kmod`]: the ring device, and loading the driver;
//! - [`kernel_log`]: marks in the kernel log, and what follows them;
//! - [`fd`]: descriptors, and the system calls made on them directly;
//! - [`mapping`]: raw mappings of the ring's parts;
//! - [`threads`] and [`process`]: callers asleep in the kernel, and
//!   forked children;
//! - [`ring`]: a fresh ring, a producer run, an intact control page;
//! - [`verify`]: streams consumed, every record verified, every loss
//!   counted;
//! - [`guard`]: the reserved page past the reference region;
//! - [`unbind`]: a ring's platform device unbound under its writers;
//! - [`rng`]: reproducible randomness.

pub(crate) mod clients;
pub(crate) mod env;
pub(crate) mod fd;
pub(crate) mod guard;
pub(crate) mod kernel_log;
pub(crate) mod kmod;
pub(crate) mod mapping;
pub(crate) mod process;
pub(crate) mod report;
pub(crate) mod ring;
pub(crate) mod rng;
pub(crate) mod threads;
pub(crate) mod unbind;
pub(crate) mod verify;

pub(crate) use env::Env;
pub(crate) use report::Report;
