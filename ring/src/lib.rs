//! Zero-copy streaming from a producer (usually the Linux kernel) to a
//! consumer through one shared memory region.
//!
//! A ring is a control page the producer writes, a consumer page the
//! consumer writes, and a power-of-two data area of variable-length records
//! (see [`layout`]). The index logic in the [`rmemring_proto`] crate is the one the kernel
//! driver compiles too. This crate adds the user-space side:
//!
//! - [`Region`] opens and validates a ring on a `/dev/rmemringN` device, a
//!   file or a memfd, and maps each part with the permissions it needs;
//! - [`Consumer`] reads records in place ([`Consumer::batch`]) and hands
//!   their space back with one store per batch, or copies them
//!   ([`Consumer::read_copy`]) in overwrite mode; it sleeps in `poll(2)` or
//!   on a futex when idle, and asks for a wake-up only then; event loops
//!   (epoll, mio, tokio) wait on its [`WakeFd`] instead, on every kind of
//!   ring;
//! - [`Producer`] writes records in place and publishes them in batches, for
//!   user-to-user streaming, tests and benchmarks;
//! - on a device, [`Region::start`], [`Region::stop`], [`Region::stats`]
//!   and the driver's other ioctls; [`Device`] makes them without
//!   mapping the ring (a controller beside another process's consumer).
//!
//! # Examples
//!
//! A producer and a consumer on a memfd, as two threads (they could as well
//! be two processes sharing the descriptor):
//!
//! ```
//! use std::sync::Arc;
//! use rmemring::{CreateOptions, Region};
//!
//! let region = Arc::new(Region::memfd(CreateOptions::new(1 << 16))?);
//! let mut producer = region.producer()?;
//! let mut consumer = region.consumer()?;
//!
//! let writer = std::thread::spawn(move || {
//!     for i in 0u32..10_000 {
//!         // Drop-new mode: when the ring is full, wait for the consumer.
//!         while producer.push(&i.to_le_bytes()).is_err() {
//!             producer.publish();
//!             std::thread::yield_now();
//!         }
//!     }
//! });
//!
//! let mut next = 0u32;
//! while next < 10_000 {
//!     consumer.wait(None)?;
//!     for record in &mut consumer.batch()? {
//!         let record = record?;
//!         assert_eq!(record.payload, next.to_le_bytes()); // read in place
//!         next += 1;
//!     } // the batch's space goes back to the producer here, in one store
//! }
//! writer.join().unwrap();
//! assert_eq!(consumer.stats().lost, 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Guarantees
//!
//! The consumer validates everything it reads from the shared memory: a
//! corrupt or hostile producer yields [`Error::Corrupt`], never a panic or
//! an out-of-bounds access. The kernel driver applies the same rule to the
//! consumer page in the other direction.
//!
//! A ring has one [`Consumer`] and one [`Producer`] at a time, across every
//! [`Region`] and process that opens it (see [`Region::consumer`]), so the
//! `&[u8]` a [`Batch`] lends and the `&mut [u8]` a [`Reservation`] (or
//! [`Reservations`], records of one size reserved together, or a
//! [`Span`], records of any sizes laid out together) lends are
//! never written or read by a second party of this crate. What zero
//! copy still trusts, and why the constructors are safe all the same, is
//! [`Region`]'s safety model.
//!
//! # Features
//!
//! - `serde`: `serde::Serialize` for the data a program reports: the ioctl
//!   structures ([`uapi::RingInfo`], [`uapi::RingStats`],
//!   [`uapi::RecoveryInfo`], [`uapi::ProducerConfig`]) with their field
//!   names, the counters ([`ProducerStats`], [`ConsumerStats`]) and the
//!   modes ([`Overflow`], [`CacheMode`]) as their names. The `rmemring`
//!   command's `--json` output is built on it.
//!
//! ```
//! # #[cfg(feature = "serde")] {
//! use rmemring::Overflow;
//! use rmemring::uapi::RingStats;
//!
//! let stats = RingStats { records_produced: 3, ..Default::default() };
//! let json = serde_json::to_value(stats).unwrap();
//! assert_eq!(json["records_produced"], 3);
//! assert_eq!(serde_json::to_string(&Overflow::DropNew).unwrap(), r#""drop-new""#);
//! # }
//! ```

#![deny(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

// `Record::try_cast` takes types with `bytemuck`'s traits: the same
// version for the caller to derive them with.
pub use bytemuck;
pub use rmemring_proto::events;
pub use rmemring_proto::layout;
pub use rmemring_proto::pattern;
pub use rmemring_proto::stream;
pub use rmemring_proto::uapi;

mod consumer;
mod device;
mod error;
mod ioctl;
mod producer;
mod region;
mod role;
mod wait;
mod wake_fd;

pub use consumer::{
    Batch,
    BatchIter,
    Consumer,
    Record,
    Wait, //
};
pub use device::Device;
pub use error::{
    Error,
    FileKind,
    IoOp,
    IoctlRequest,
    LayoutError,
    MapPart,
    ProduceError, //
};
pub use producer::{
    monotonic_ns,
    Payloads,
    Producer,
    Reservation,
    Reservations,
    Span, //
};
pub use region::{
    system_page_size,
    Access,
    Backend,
    CacheMode,
    CreateOptions,
    Region,
    RingLayout, //
};
pub use rmemring_proto::consumer_core::{
    ConsumerStats,
    ReadError,
    RecordDefect, //
};
pub use rmemring_proto::modes::Overflow;
pub use rmemring_proto::producer_core::ProducerStats;
pub use rmemring_proto::roles::Role;
pub use wake_fd::{
    WakeFd,
    WAKE_THREAD_NAME, //
};

/// The repository README's Rust example, compiled by `cargo test --doc` so
/// that it cannot drift from the API. Only doctest builds have it (and
/// only in the repository: the published package has the crate's README).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// The crate README's examples (what crates.io shows), run by `cargo test
/// --doc`. Only doctest builds have it.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct CrateReadmeDoctests;
