// SPDX-License-Identifier: GPL-2.0-only OR MIT

//! The device's ioctl interface: command numbers and argument structs.
//!
//! Every struct is `#[repr(C)]` with explicit padding fields, so no byte of
//! kernel memory reaches user space uninitialised and the layout is the same
//! on every supported architecture.

use super::layout::FLAG_OVERWRITE;

/// The ioctl type byte of rmemring (unused in `ioctl-number.rst`).
pub const IOC_TYPE: u32 = 0xBB;

const IOC_NRBITS: u32 = 8;
const IOC_TYPEBITS: u32 = 8;
const IOC_SIZEBITS: u32 = 14;
const IOC_NRSHIFT: u32 = 0;
const IOC_TYPESHIFT: u32 = IOC_NRSHIFT + IOC_NRBITS;
const IOC_SIZESHIFT: u32 = IOC_TYPESHIFT + IOC_TYPEBITS;
const IOC_DIRSHIFT: u32 = IOC_SIZESHIFT + IOC_SIZEBITS;
const IOC_NONE: u32 = 0;
const IOC_WRITE: u32 = 1;
const IOC_READ: u32 = 2;

/// Encodes an ioctl number the way `asm-generic/ioctl.h` does (x86-64,
/// arm64 and riscv all use it).
const fn ioc(dir: u32, nr: u32, size: usize) -> u32 {
    (dir << IOC_DIRSHIFT)
        | (IOC_TYPE << IOC_TYPESHIFT)
        | (nr << IOC_NRSHIFT)
        | ((size as u32) << IOC_SIZESHIFT)
}

/// `RMEMRING_IOC_INFO`: read the ring's [`RingInfo`].
pub const IOC_INFO: u32 = ioc(IOC_READ, 0, core::mem::size_of::<RingInfo>());
/// `RMEMRING_IOC_START`: start the kernel producer with a [`ProducerConfig`].
pub const IOC_START: u32 = ioc(IOC_WRITE, 1, core::mem::size_of::<ProducerConfig>());
/// `RMEMRING_IOC_STOP`: stop the kernel producer and wait until it has.
pub const IOC_STOP: u32 = ioc(IOC_NONE, 2, 0);
/// `RMEMRING_IOC_STATS`: read [`RingStats`].
pub const IOC_STATS: u32 = ioc(IOC_READ, 3, core::mem::size_of::<RingStats>());
/// `RMEMRING_IOC_RESET`: with the producer stopped, empty the ring, zero its
/// counters and set its overflow mode from a [`ResetConfig`].
pub const IOC_RESET: u32 = ioc(IOC_WRITE, 4, core::mem::size_of::<ResetConfig>());
/// `RMEMRING_IOC_RECOVERY`: read what the driver found in the region when
/// it claimed it, a [`RecoveryInfo`] (the flight recorder,
/// docs/flight-recorder.md).
pub const IOC_RECOVERY: u32 = ioc(IOC_READ, 5, core::mem::size_of::<RecoveryInfo>());
/// `RMEMRING_IOC_RELEASE_RECOVERED`: let go of a recovered ring (state
/// [`STATE_RECOVERED`]): the driver lays out an empty ring in the mode it
/// was loaded with, and producers may start. `EINVAL` if there is none.
/// Needs the device open for writing.
pub const IOC_RELEASE_RECOVERED: u32 = ioc(IOC_NONE, 6, 0);

/// What `RMEMRING_IOC_INFO` returns.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct RingInfo {
    /// [`ABI_VERSION`](super::layout::ABI_VERSION) of the driver.
    pub abi_version: u32,
    /// The kernel's page size.
    pub page_size: u32,
    /// Physical address of the region.
    pub phys_base: u64,
    /// Bytes in the region.
    pub region_size: u64,
    /// Offset of the consumer page.
    pub consumer_offset: u64,
    /// Offset of the data area.
    pub data_offset: u64,
    /// Bytes in the data area.
    pub data_size: u64,
    /// Largest payload of one record.
    pub max_payload: u32,
    /// `FLAG_*` bits of the control page.
    pub flags: u32,
    /// The `N` of `/dev/rmemringN`.
    pub index: u32,
    /// `STATE_*`: what the ring holds.
    pub state: u32,
    /// Zero.
    pub reserved: [u32; 8],
}

/// [`RingInfo::state`]: a live ring, which producers write.
pub const STATE_LIVE: u32 = 0;
/// [`RingInfo::state`]: a previous boot's records, recovered and served
/// read-only; no producer writes until `RMEMRING_IOC_RELEASE_RECOVERED`
/// (or `RMEMRING_IOC_RESET`).
pub const STATE_RECOVERED: u32 = 1;

/// [`RecoveryInfo::verdict`]: the driver was not asked to keep the
/// region's contents (`retain=0`): it laid out an empty ring.
pub const RECOVERY_NOT_ASKED: u32 = 0;
/// [`RecoveryInfo::verdict`]: a previous boot's ring was found and its
/// records are served ([`STATE_RECOVERED`]).
pub const RECOVERY_RECOVERED: u32 = 1;
/// [`RecoveryInfo::verdict`]: nothing to recover (see
/// [`RecoveryInfo::reason`]); the driver laid out an empty ring.
pub const RECOVERY_NONE: u32 = 2;
/// [`RecoveryInfo::verdict`]: a recovered ring was released (or reset);
/// the fields describe what it held.
pub const RECOVERY_RELEASED: u32 = 3;

/// [`RecoveryInfo::reason`] with [`RECOVERY_NONE`]: zeroed memory.
pub const RECOVERY_REASON_BLANK: u32 = 1;
/// Not a ring of this ABI version and page size.
pub const RECOVERY_REASON_LAYOUT: u32 = 2;
/// The identity checksum does not match.
pub const RECOVERY_REASON_CHECKSUM: u32 = 3;
/// Laid out for another region size.
pub const RECOVERY_REASON_GEOMETRY: u32 = 4;
/// Laid out with another cache mode.
pub const RECOVERY_REASON_CACHE_MODE: u32 = 5;
/// No boot id in the ring.
pub const RECOVERY_REASON_NO_BOOT_ID: u32 = 6;
/// Laid out by this boot.
pub const RECOVERY_REASON_THIS_BOOT: u32 = 7;
/// Impossible positions.
pub const RECOVERY_REASON_POSITIONS: u32 = 8;
/// Intact but without a record to recover.
pub const RECOVERY_REASON_NO_RECORDS: u32 = 9;
/// This boot's id was unreadable when the driver loaded.
pub const RECOVERY_REASON_BOOT_ID_UNKNOWN: u32 = 10;
/// The ring was in drop-new mode: only overwrite-mode rings are kept.
pub const RECOVERY_REASON_DROP_NEW: u32 = 11;

/// What `RMEMRING_IOC_RECOVERY` returns. With [`RECOVERY_RECOVERED`] and
/// [`RECOVERY_RELEASED`] every field describes the recovered ring (see
/// [`Recovered`](super::recovery::Recovered)); otherwise only `verdict`
/// and `reason` are set.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct RecoveryInfo {
    /// `RECOVERY_*`.
    pub verdict: u32,
    /// `RECOVERY_REASON_*` with [`RECOVERY_NONE`], else 0.
    pub reason: u32,
    /// The boot id of the boot that wrote the ring.
    pub boot_id: [u64; 2],
    /// That boot's `CLOCK_REALTIME - CLOCK_MONOTONIC`, in nanoseconds.
    pub realtime_offset_ns: i64,
    /// `FLAG_*` bits of the recovered ring.
    pub flags: u32,
    /// Zero.
    pub reserved0: u32,
    /// Position of the oldest recovered record.
    pub start_pos: u64,
    /// Position one past the last recovered record.
    pub end_pos: u64,
    /// The producer position the ring had published.
    pub published_pos: u64,
    /// Data records recovered.
    pub records: u64,
    /// Sequence numbers of the first and last recovered records.
    pub first_seq: u64,
    /// See `first_seq`.
    pub last_seq: u64,
    /// Timestamps of the first and last recovered records, in that boot's
    /// `CLOCK_MONOTONIC` nanoseconds.
    pub first_ns: u64,
    /// See `first_ns`.
    pub last_ns: u64,
    /// Published bytes cut from the tail because a record there failed.
    pub bytes_cut: u64,
    /// Zero.
    pub reserved: [u64; 5],
}

impl RecoveryInfo {
    /// The report of a recovered ring (the driver's; hidden from the
    /// documentation with the other internals, see the crate's).
    #[doc(hidden)]
    #[cfg(not(loom))]
    pub const fn recovered(r: &super::recovery::Recovered, flags: u32) -> Self {
        RecoveryInfo {
            verdict: RECOVERY_RECOVERED,
            reason: 0,
            boot_id: r.boot_id,
            realtime_offset_ns: r.realtime_offset_ns,
            flags,
            reserved0: 0,
            start_pos: r.start,
            end_pos: r.end,
            published_pos: r.published,
            records: r.records,
            first_seq: r.first_seq,
            last_seq: r.last_seq,
            first_ns: r.first_ns,
            last_ns: r.last_ns,
            bytes_cut: r.bytes_cut(),
            reserved: [0; 5],
        }
    }

    /// The report of a region with nothing to recover (the driver's).
    #[doc(hidden)]
    #[cfg(not(loom))]
    pub const fn none(why: &super::recovery::Unrecoverable) -> Self {
        RecoveryInfo {
            verdict: RECOVERY_NONE,
            reason: why.reason(),
            boot_id: [0; 2],
            realtime_offset_ns: 0,
            flags: 0,
            reserved0: 0,
            start_pos: 0,
            end_pos: 0,
            published_pos: 0,
            records: 0,
            first_seq: 0,
            last_seq: 0,
            first_ns: 0,
            last_ns: 0,
            bytes_cut: 0,
            reserved: [0; 5],
        }
    }
}

/// Payload pattern: every byte is derived from the sequence number (see
/// [`pattern`](super::pattern)), so the consumer can verify it.
pub const PATTERN_SEQ: u32 = 0;
/// Payload pattern: the payload is left as the ring had it (no fill cost),
/// except its first word, which holds the pattern's first word.
pub const PATTERN_NONE: u32 = 1;

/// Producer flag: when the ring is full, wait for the consumer instead of
/// dropping the record (drop-new mode only).
pub const PRODUCER_WAIT: u32 = 1 << 0;
/// Producer flag: emit each record only through the driver's
/// `rmemring_record_tp` tracepoint (arguments: sequence number, timestamp,
/// payload length, payload address), not into the ring. This is how the
/// benchmark feeds a BPF ring buffer the same records, for comparison.
pub const PRODUCER_HOOK_ONLY: u32 = 1 << 1;
/// Producer flag: write each record's payload into a private kernel buffer
/// first, then copy it into the ring's reservation (one 8-byte word at a
/// time), instead of writing it in place. Two passes per byte, as the
/// benchmark's BPF peer makes (its program copies the payload it is
/// handed); not with [`PRODUCER_HOOK_ONLY`].
pub const PRODUCER_STAGED: u32 = 1 << 2;
/// Every producer flag this version defines.
pub const PRODUCER_FLAGS_KNOWN: u32 = PRODUCER_WAIT | PRODUCER_HOOK_ONLY | PRODUCER_STAGED;

/// What `RMEMRING_IOC_START` takes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ProducerConfig {
    /// Smallest payload, in bytes.
    pub min_len: u32,
    /// Largest payload, in bytes; lengths in between are derived from the
    /// sequence number ([`pattern::payload_len`](super::pattern::payload_len)).
    pub max_len: u32,
    /// Records to produce (including dropped ones), or 0 for no limit.
    pub count: u64,
    /// Records per second, or 0 for as fast as possible.
    pub rate: u64,
    /// `PATTERN_*`.
    pub pattern: u32,
    /// `PRODUCER_*` flags.
    pub flags: u32,
    /// Records per publication, or 0 for the driver's default.
    pub batch: u32,
    /// Zero.
    pub reserved: [u32; 7],
}

/// What `RMEMRING_IOC_RESET` takes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResetConfig {
    /// [`FLAG_OVERWRITE`] or 0.
    pub flags: u32,
    /// Zero.
    pub reserved: [u32; 3],
}

/// Flags [`ResetConfig::flags`] accepts.
pub const RESET_FLAGS_KNOWN: u32 = FLAG_OVERWRITE;

/// What `RMEMRING_IOC_STATS` returns: the producer's counters, the
/// consumer's (as the consumer reported them), and the driver's own.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct RingStats {
    /// Published producer position.
    pub producer_pos: u64,
    /// Released consumer position, as the consumer wrote it.
    pub consumer_pos: u64,
    /// Records published.
    pub records_produced: u64,
    /// Payload bytes published.
    pub bytes_produced: u64,
    /// Records dropped because the ring was full.
    pub records_dropped: u64,
    /// Records the producer overwrote to make room (overwrite mode), read
    /// by the consumer or not.
    pub records_overwritten: u64,
    /// Wake-ups of a sleeping consumer.
    pub wakeups: u64,
    /// Impossible consumer positions ignored.
    pub consumer_errors: u64,
    /// Records the consumer reported reading.
    pub records_consumed: u64,
    /// Payload bytes the consumer reported reading.
    pub bytes_consumed: u64,
    /// Records the consumer reported lost.
    pub records_lost: u64,
    /// Times the consumer reported sleeping.
    pub sleeps: u64,
    /// Records copied out through `read()`.
    pub records_read: u64,
    /// 1 while the kernel producer runs.
    pub producer_running: u32,
    /// 1 while a consumer has the device open.
    pub consumer_open: u32,
    /// Records emitted through the tracepoint ([`PRODUCER_HOOK_ONLY`]).
    pub records_hooked: u64,
    /// Records in-kernel producers offered and the driver refused without
    /// a sequence number: written in NMI context, during a reset, or after
    /// the device went away (see docs/kernel-api.md). Always 0 from a
    /// driver without the in-kernel producer API.
    pub records_refused: u64,
    /// Zero.
    pub reserved: [u64; 2],
}

const _: () = {
    assert!(core::mem::size_of::<RingInfo>() == 96);
    assert!(core::mem::size_of::<ProducerConfig>() == 64);
    assert!(core::mem::size_of::<ResetConfig>() == 16);
    assert!(core::mem::size_of::<RingStats>() == 144);
    assert!(core::mem::size_of::<RecoveryInfo>() == 152);
};
