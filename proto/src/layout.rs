// SPDX-License-Identifier: GPL-2.0-only OR MIT

//! The shared-memory layout: the ABI between the kernel producer and user space.
//!
//! A ring occupies one physically contiguous region. Offsets below are from
//! the start of the region, which is also the `mmap` offset on the device:
//!
//! ```text
//!  0             page_size        2*page_size                 2*page_size + data_size
//!  +-------------+----------------+---------------------------+-------------+
//!  | ControlPage | ConsumerPage   | data area (power of two)   | unused tail |
//!  | producer    | consumer       | records, 8-byte aligned    |             |
//!  | writes      | writes         | producer writes            |             |
//!  | user: r/o   | user: r/w      | user: r/o                  | not mapped  |
//!  +-------------+----------------+---------------------------+-------------+
//! ```
//!
//! Each of the three parts starts on a page boundary because the kernel gives
//! them different permissions: the consumer may write only its own page, so a
//! buggy or hostile consumer can corrupt only its own position, which the
//! producer validates. Within a page, every field that one side writes while
//! the other reads sits on its own 128-byte line (two 64-byte lines, because
//! x86-64 and arm64 prefetch cache lines in pairs; the same figure as
//! `crossbeam_utils::CachePadded`). The offsets are fixed numbers, not
//! `align` attributes, so the ABI is the same on every architecture.
//!
//! All multi-byte fields are little-endian native integers: the ABI is defined
//! for little-endian machines only (x86-64, arm64, riscv64).
//!
//! A record is a [`RecordHeader`] followed by its payload, padded to
//! [`RECORD_ALIGN`]. A record never wraps around the end of the data area: when
//! the next record does not fit before the end, the producer writes a pad
//! record (see [`KIND_PAD`]) covering the rest of the area and starts the
//! record at offset 0. That keeps each record one contiguous byte range in the
//! consumer's mapping without mapping the data area twice.

/// The first eight bytes of every ring: `b"RMEMRING"` read as a little-endian `u64`.
pub const MAGIC: u64 = u64::from_le_bytes(*b"RMEMRING");

/// The version of this layout and protocol. A consumer refuses a ring whose
/// version is newer than the one it was built for.
pub const ABI_VERSION: u32 = 1;

/// The spacing between fields written by different sides, in bytes.
pub const LINE: usize = 128;

/// Every record starts at a multiple of this many bytes in the data area.
pub const RECORD_ALIGN: u64 = 8;

/// The size of a [`RecordHeader`] in bytes.
pub const HEADER_SIZE: u64 = 24;

/// The smallest page size a ring may be laid out with, in bytes: the
/// smallest page Linux uses.
pub const MIN_PAGE_SIZE: u32 = 4096;

/// The smallest data area a ring may have, in bytes.
pub const MIN_DATA_SIZE: u64 = 4096;

/// The largest data area a ring may have, in bytes (2 GiB; record lengths and
/// pad lengths are `u32`).
pub const MAX_DATA_SIZE: u64 = 1 << 31;

/// [`RecordHeader::kind`] of a record that carries a payload.
pub const KIND_DATA: u16 = 1;

/// [`RecordHeader::kind`] of a pad record: the rest of the data area up to its
/// end is unused and the next record starts at offset 0 of the next lap. Only
/// the first 8 bytes of a pad record (`len`, `kind`, `tag`) are defined,
/// because as little as 8 bytes may be left before the end. Its `len` is the
/// number of bytes from the pad record to the end of the data area.
pub const KIND_PAD: u16 = 2;

/// [`ControlPage::flags`] bit: the producer overwrites the oldest records when
/// the ring is full instead of dropping new ones.
pub const FLAG_OVERWRITE: u32 = 1 << 0;

/// [`ControlPage::flags`] bits 8..12: how the producer maps the region (see the
/// `CACHE_*` values). Informational; user space maps with the same type.
pub const FLAG_CACHE_SHIFT: u32 = 8;

/// Mask of the cache-mode bits in [`ControlPage::flags`].
pub const FLAG_CACHE_MASK: u32 = 0xf << FLAG_CACHE_SHIFT;

/// Every flag bit this version defines.
pub const FLAGS_KNOWN: u32 = FLAG_OVERWRITE | FLAG_CACHE_MASK;

/// Cache mode: write-back (cacheable), the default and the fast one.
pub const CACHE_WRITE_BACK: u32 = 0;
/// Cache mode: write-combining (device memory that tolerates it).
pub const CACHE_WRITE_COMBINE: u32 = 1;
/// Cache mode: uncached (device memory).
pub const CACHE_UNCACHED: u32 = 2;

/// The producer-owned first page of a ring. User space maps it read-only.
///
/// Lines (see [`LINE`]): identity at 0, `producer_pos` at 128,
/// `overwrite_pos` at 256, the wake-up word and statistics at 384.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControlPage {
    /// [`MAGIC`].
    pub magic: u64,
    /// [`ABI_VERSION`] of the producer that laid the ring out.
    pub abi_version: u32,
    /// The page size the layout was computed for.
    pub page_size: u32,
    /// Bytes in the whole region, including any unused tail.
    pub region_size: u64,
    /// Offset of the [`ConsumerPage`], one page.
    pub consumer_offset: u64,
    /// Offset of the data area, page-aligned.
    pub data_offset: u64,
    /// Bytes in the data area, a power of two.
    pub data_size: u64,
    /// The largest payload one record may carry, in bytes.
    pub max_payload: u32,
    /// `FLAG_*` bits.
    pub flags: u32,
    /// Physical address of the region, or 0 when it has none (a file or memfd).
    pub phys_base: u64,
    /// The kernel's boot id (`/proc/sys/kernel/random/boot_id`, as two
    /// little-endian words) of the boot that laid the ring out, or zero
    /// (a file or memfd ring, or no boot id known): how a driver keeping
    /// retained rings (`retain=1`, docs/flight-recorder.md) tells a
    /// previous boot's ring from its own.
    pub boot_id: [u64; 2],
    /// `CLOCK_REALTIME` minus `CLOCK_MONOTONIC`, in nanoseconds, when the
    /// ring was laid out (at load, reset or release; 0 if unknown): adding it to a record's
    /// `timestamp_ns` gives its wall-clock time, also for records a later
    /// boot recovers, whose monotonic clock restarted.
    pub realtime_offset_ns: i64,
    /// [`ControlPage::identity_sum`] of this page: a ring recovered from
    /// retained memory is believed only if it matches.
    pub identity_sum: u64,
    /// Zero; room for later fields of the identity line.
    pub reserved0: [u64; 4],

    /// Byte position one past the last published record. Written by the
    /// producer with release ordering after the records it covers.
    pub producer_pos: u64,
    /// Padding to the next line.
    pub pad1: [u64; 15],

    /// Overwrite mode: position of the oldest record the producer has not
    /// begun to overwrite. The producer advances it *before* writing over the
    /// bytes, so a reader that sees it unchanged after reading a record knows
    /// the record was intact. Zero in drop-new mode.
    pub overwrite_pos: u64,
    /// Padding to the next line.
    pub pad2: [u64; 15],

    /// Futex word for consumers without a device to `poll` (memfd and file
    /// rings): the producer increments it each time it wakes the consumer.
    pub wake_seq: u32,
    /// Zero.
    pub reserved1: u32,
    /// Records published.
    pub records_produced: u64,
    /// Payload bytes published.
    pub bytes_produced: u64,
    /// Records not written because the ring was full (drop-new mode). Each
    /// dropped record still used a sequence number.
    pub records_dropped: u64,
    /// Records the producer overwrote to make room (overwrite mode), whether
    /// or not the consumer had read them by then.
    pub records_overwritten: u64,
    /// Times the producer woke a sleeping consumer.
    pub wakeups: u64,
    /// Times the producer found an impossible consumer position and ignored it.
    pub consumer_errors: u64,
    /// Padding to the end of the line.
    pub pad3: [u64; 9],
}

/// The consumer-owned second page of a ring, the only one user space writes.
///
/// Lines: `consumer_pos` at 0, `need_wakeup` at 128, statistics at 256.
/// The producer treats everything here as untrusted input.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsumerPage {
    /// Byte position up to which the consumer has released records. Written
    /// with release ordering after the consumer is done reading them.
    pub consumer_pos: u64,
    /// Padding to the next line.
    pub pad0: [u64; 15],

    /// Non-zero while the consumer is asleep or about to sleep and wants the
    /// producer to wake it after the next publication.
    pub need_wakeup: u32,
    /// The last non-zero value the consumer stored in `need_wakeup`. Only
    /// consumers use it: one that attaches continues from it, so no two
    /// sleep attempts on a ring share a value, whichever consumer made them
    /// (the producer wakes once per value). Zero in a fresh ring.
    pub wake_token: u32,
    /// Padding to the next line.
    pub pad1: [u64; 15],

    /// Records the consumer has released.
    pub records_consumed: u64,
    /// Payload bytes the consumer has released.
    pub bytes_consumed: u64,
    /// Records the consumer found missing from the sequence (dropped or overwritten).
    pub records_lost: u64,
    /// Times the consumer went to sleep waiting for data.
    pub sleeps: u64,
    /// Padding to the end of the line.
    pub pad2: [u64; 12],
}

/// The header in front of every record in the data area.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RecordHeader {
    /// Payload bytes that follow the header ([`KIND_DATA`]), or bytes from
    /// this header to the end of the data area ([`KIND_PAD`]).
    pub len: u32,
    /// [`KIND_DATA`] or [`KIND_PAD`]; anything else is corruption.
    pub kind: u16,
    /// Application-defined record type; the ring does not interpret it.
    pub tag: u16,
    /// Sequence number: 0 for the first record, then one more for every
    /// record the producer wrote or dropped, so gaps count lost records.
    pub seq: u64,
    /// The producer's clock for the record, in `CLOCK_MONOTONIC`
    /// nanoseconds: taken at commit by the kernel producer, once per batch
    /// by the user-space `Producer` of the `rmemring` crate;
    /// not decreasing along the sequence (`docs/protocol.md`, section 4).
    pub timestamp_ns: u64,
}

/// Offset of [`ControlPage::producer_pos`].
pub const OFF_PRODUCER_POS: usize = core::mem::offset_of!(ControlPage, producer_pos);
/// Offset of [`ControlPage::overwrite_pos`].
pub const OFF_OVERWRITE_POS: usize = core::mem::offset_of!(ControlPage, overwrite_pos);
/// Offset of [`ControlPage::wake_seq`].
pub const OFF_WAKE_SEQ: usize = core::mem::offset_of!(ControlPage, wake_seq);
/// Offset of [`ConsumerPage::consumer_pos`].
pub const OFF_CONSUMER_POS: usize = core::mem::offset_of!(ConsumerPage, consumer_pos);
/// Offset of [`ConsumerPage::need_wakeup`].
pub const OFF_NEED_WAKEUP: usize = core::mem::offset_of!(ConsumerPage, need_wakeup);
/// Offset of [`ConsumerPage::wake_token`].
pub const OFF_WAKE_TOKEN: usize = core::mem::offset_of!(ConsumerPage, wake_token);

// The layout is an ABI: pin every size and offset.
const _: () = {
    assert!(core::mem::size_of::<ControlPage>() == 4 * LINE);
    assert!(core::mem::offset_of!(ControlPage, abi_version) == 8);
    assert!(core::mem::offset_of!(ControlPage, page_size) == 12);
    assert!(core::mem::offset_of!(ControlPage, region_size) == 16);
    assert!(core::mem::offset_of!(ControlPage, consumer_offset) == 24);
    assert!(core::mem::offset_of!(ControlPage, data_offset) == 32);
    assert!(core::mem::offset_of!(ControlPage, data_size) == 40);
    assert!(core::mem::offset_of!(ControlPage, max_payload) == 48);
    assert!(core::mem::offset_of!(ControlPage, flags) == 52);
    assert!(core::mem::offset_of!(ControlPage, phys_base) == 56);
    assert!(core::mem::offset_of!(ControlPage, boot_id) == 64);
    assert!(core::mem::offset_of!(ControlPage, realtime_offset_ns) == 80);
    assert!(core::mem::offset_of!(ControlPage, identity_sum) == 88);
    assert!(core::mem::offset_of!(ControlPage, reserved0) == 96);
    assert!(OFF_PRODUCER_POS == LINE);
    assert!(OFF_OVERWRITE_POS == 2 * LINE);
    assert!(OFF_WAKE_SEQ == 3 * LINE);
    assert!(core::mem::offset_of!(ControlPage, records_produced) == 3 * LINE + 8);
    assert!(core::mem::offset_of!(ControlPage, consumer_errors) == 3 * LINE + 48);
    assert!(core::mem::size_of::<ConsumerPage>() == 3 * LINE);
    assert!(OFF_CONSUMER_POS == 0);
    assert!(OFF_NEED_WAKEUP == LINE);
    assert!(OFF_WAKE_TOKEN == LINE + 4);
    assert!(core::mem::offset_of!(ConsumerPage, records_consumed) == 2 * LINE);
    assert!(core::mem::offset_of!(ConsumerPage, sleeps) == 2 * LINE + 24);
    assert!(core::mem::size_of::<RecordHeader>() as u64 == HEADER_SIZE);
    assert!(core::mem::offset_of!(RecordHeader, kind) == 4);
    assert!(core::mem::offset_of!(RecordHeader, tag) == 6);
    assert!(core::mem::offset_of!(RecordHeader, seq) == 8);
    assert!(core::mem::offset_of!(RecordHeader, timestamp_ns) == 16);
    assert!(HEADER_SIZE % RECORD_ALIGN == 0);
    assert!(MIN_DATA_SIZE.is_power_of_two() && MAX_DATA_SIZE.is_power_of_two());
    assert!(cfg!(target_endian = "little"));
};

/// Asserts that a `repr(C)` struct has no padding: the pattern names every
/// field (a missing one does not compile), and their sizes add up to the
/// struct's. `RingView` relies on it to copy pages as whole 8-byte words.
macro_rules! assert_no_padding {
    ($value:expr, $ty:ident { $($field:ident),* $(,)? }) => {
        const _: () = {
            let $ty { $($field),* } = $value;
            assert!(0 $(+ core::mem::size_of_val(&$field))* == core::mem::size_of::<$ty>());
            assert!(core::mem::size_of::<$ty>() % 8 == 0);
        };
    };
}

assert_no_padding!(
    Geometry {
        region_size: 0,
        page_size: 4096,
        consumer_offset: 0,
        data_offset: 0,
        data_size: 0,
    }
    .control_page(0, 0),
    ControlPage {
        magic,
        abi_version,
        page_size,
        region_size,
        consumer_offset,
        data_offset,
        data_size,
        max_payload,
        flags,
        phys_base,
        boot_id,
        realtime_offset_ns,
        identity_sum,
        reserved0,
        producer_pos,
        pad1,
        overwrite_pos,
        pad2,
        wake_seq,
        reserved1,
        records_produced,
        bytes_produced,
        records_dropped,
        records_overwritten,
        wakeups,
        consumer_errors,
        pad3,
    }
);

assert_no_padding!(
    CONSUMER_PAGE_INIT,
    ConsumerPage {
        consumer_pos,
        pad0,
        need_wakeup,
        wake_token,
        pad1,
        records_consumed,
        bytes_consumed,
        records_lost,
        sleeps,
        pad2,
    }
);

/// Rounds a record's header plus payload up to its footprint in the data area.
pub const fn record_stride(payload: u32) -> u64 {
    let raw = HEADER_SIZE + payload as u64;
    (raw + RECORD_ALIGN - 1) & !(RECORD_ALIGN - 1)
}

/// The padding after a payload of `payload` bytes, up to the next record.
pub const fn record_padding(payload: u32) -> u64 {
    record_stride(payload) - HEADER_SIZE - payload as u64
}

/// The largest payload a ring with a data area of `data_size` bytes accepts.
///
/// A record may fill at most a quarter of the data area, so an empty ring can
/// always take it even after padding to the end, and a full ring frees room
/// for the next record soon.
///
/// A data area too small for a header (under 96 bytes) gives 0.
pub const fn max_payload_for(data_size: u64) -> u32 {
    let max = (data_size / 4).saturating_sub(HEADER_SIZE);
    if max > u32::MAX as u64 {
        u32::MAX
    } else {
        max as u32
    }
}

/// Why a region cannot hold a ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeometryError {
    /// The page size is not a power of two of at least [`MIN_PAGE_SIZE`].
    PageSize,
    /// The region is smaller than two pages plus [`MIN_DATA_SIZE`].
    TooSmall,
}

/// Where the parts of a ring lie in a region of a given size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Bytes in the region.
    pub region_size: u64,
    /// The page size the layout is aligned to.
    pub page_size: u32,
    /// Offset of the consumer page.
    pub consumer_offset: u64,
    /// Offset of the data area.
    pub data_offset: u64,
    /// Bytes in the data area.
    pub data_size: u64,
}

impl Geometry {
    /// Lays a ring out in a region of `region_size` bytes: two pages of
    /// control and consumer state, then the largest power-of-two data area
    /// that fits (at most [`MAX_DATA_SIZE`]).
    pub const fn for_region(region_size: u64, page_size: u32) -> Result<Self, GeometryError> {
        if page_size < MIN_PAGE_SIZE || !page_size.is_power_of_two() {
            return Err(GeometryError::PageSize);
        }
        let page = page_size as u64;
        let data_offset = 2 * page;
        if region_size < data_offset || region_size - data_offset < MIN_DATA_SIZE {
            return Err(GeometryError::TooSmall);
        }
        let room = region_size - data_offset;
        // Largest power of two not above `room`; `room` >= MIN_DATA_SIZE > 0.
        let mut data_size = 1u64 << (63 - room.leading_zeros());
        if data_size > MAX_DATA_SIZE {
            data_size = MAX_DATA_SIZE;
        }
        Ok(Self {
            region_size,
            page_size,
            consumer_offset: page,
            data_offset,
            data_size,
        })
    }

    /// The region size that gives a data area of exactly `data_size` bytes
    /// (`u64::MAX` if that does not fit in a `u64`).
    pub const fn region_size_for(data_size: u64, page_size: u32) -> u64 {
        data_size.saturating_add(2 * page_size as u64)
    }

    /// The control page a producer writes before it publishes the region,
    /// with no boot id (see [`ControlPage::with_boot`]).
    pub const fn control_page(&self, flags: u32, phys_base: u64) -> ControlPage {
        ControlPage {
            magic: MAGIC,
            abi_version: ABI_VERSION,
            page_size: self.page_size,
            region_size: self.region_size,
            consumer_offset: self.consumer_offset,
            data_offset: self.data_offset,
            data_size: self.data_size,
            max_payload: max_payload_for(self.data_size),
            flags,
            phys_base,
            boot_id: [0; 2],
            realtime_offset_ns: 0,
            identity_sum: 0,
            reserved0: [0; 4],
            producer_pos: 0,
            pad1: [0; 15],
            overwrite_pos: 0,
            pad2: [0; 15],
            wake_seq: 0,
            reserved1: 0,
            records_produced: 0,
            bytes_produced: 0,
            records_dropped: 0,
            records_overwritten: 0,
            wakeups: 0,
            consumer_errors: 0,
            pad3: [0; 9],
        }
        .sealed()
    }
}

/// Why a control page does not describe a ring this side can use; see
/// [`ControlPage::geometry`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutDefect {
    /// `magic` is not [`MAGIC`].
    Magic(u64),
    /// `abi_version` is not [`ABI_VERSION`].
    AbiVersion(u32),
    /// The layout was computed for another page size than `system`.
    PageSize {
        /// The control page's.
        found: u32,
        /// This system's.
        system: u32,
    },
    /// The consumer page is not the second page.
    ConsumerOffset(u64),
    /// The data area does not start at the third page.
    DataOffset(u64),
    /// The data area is not a power of two from [`MIN_DATA_SIZE`] to
    /// [`MAX_DATA_SIZE`].
    DataSize(u64),
    /// The data area runs past the end of the region.
    PastRegion {
        /// Where the data area ends.
        end: Option<u64>,
        /// Bytes in the region.
        region_size: u64,
    },
    /// `max_payload` exceeds what the data area allows
    /// ([`max_payload_for`]).
    MaxPayload(u32),
    /// `flags` has bits this version does not define.
    UnknownFlags(u32),
}

impl core::fmt::Display for LayoutDefect {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            LayoutDefect::Magic(found) => {
                write!(f, "magic {found:#x} is not rmemring's ({MAGIC:#x})")
            }
            LayoutDefect::AbiVersion(found) => write!(
                f,
                "ABI version {found}; this side speaks version {ABI_VERSION}"
            ),
            LayoutDefect::PageSize { found, system } => write!(
                f,
                "laid out for {found}-byte pages; this system's are {system} bytes"
            ),
            LayoutDefect::ConsumerOffset(found) => {
                write!(f, "consumer page at {found:#x}, expected one page in")
            }
            LayoutDefect::DataOffset(found) => {
                write!(f, "data area at {found:#x}, expected two pages in")
            }
            LayoutDefect::DataSize(found) => write!(
                f,
                "data area of {found} bytes is not a power of two between {MIN_DATA_SIZE} \
                 and {MAX_DATA_SIZE}"
            ),
            LayoutDefect::PastRegion { end, region_size } => match end {
                Some(end) => write!(
                    f,
                    "data area ends at {end:#x}, past the region's {region_size:#x} bytes"
                ),
                None => write!(f, "data area ends past the address space"),
            },
            LayoutDefect::MaxPayload(found) => {
                write!(f, "max_payload {found} exceeds a quarter of the data area")
            }
            LayoutDefect::UnknownFlags(bits) => write!(f, "unknown flags {bits:#x}"),
        }
    }
}

impl core::error::Error for LayoutDefect {}

/// FNV-1a's 64-bit offset basis and prime.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

impl ControlPage {
    /// A checksum of the identity line's fields that say what the ring is
    /// and who laid it out: `magic` to `phys_base`, and `boot_id` (not
    /// `realtime_offset_ns`, which a running producer updates, nor
    /// `identity_sum` itself). FNV-1a over their little-endian bytes: it
    /// guards against memory that merely looks like a ring (garbage, a
    /// half-written page), not against forgery.
    ///
    /// # Examples
    ///
    /// ```
    /// use rmemring_proto::layout::Geometry;
    ///
    /// let page = Geometry::for_region(1 << 20, 4096).unwrap().control_page(0, 0);
    /// assert_eq!(page.identity_sum, page.identity_sum());
    /// let page = page.with_boot([1, 2], 0);
    /// assert_eq!(page.identity_sum, page.identity_sum());
    /// ```
    pub const fn identity_sum(&self) -> u64 {
        let words = [
            self.magic,
            self.abi_version as u64 | (self.page_size as u64) << 32,
            self.region_size,
            self.consumer_offset,
            self.data_offset,
            self.data_size,
            self.max_payload as u64 | (self.flags as u64) << 32,
            self.phys_base,
            self.boot_id[0],
            self.boot_id[1],
        ];
        let mut hash = FNV_OFFSET;
        let mut w = 0;
        while w < words.len() {
            let bytes = words[w].to_le_bytes();
            let mut b = 0;
            while b < bytes.len() {
                hash = (hash ^ bytes[b] as u64).wrapping_mul(FNV_PRIME);
                b += 1;
            }
            w += 1;
        }
        hash
    }

    /// This page with [`Self::identity_sum`] brought up to date.
    pub const fn sealed(mut self) -> Self {
        self.identity_sum = self.identity_sum();
        self
    }

    /// This page, laid out by the boot `boot_id` whose wall clock was
    /// `realtime_offset_ns` ahead of its monotonic clock, sealed.
    pub const fn with_boot(mut self, boot_id: [u64; 2], realtime_offset_ns: i64) -> Self {
        self.boot_id = boot_id;
        self.realtime_offset_ns = realtime_offset_ns;
        self.sealed()
    }

    /// Checks the identity of a ring a consumer or observer found, on a
    /// system with pages of `system_page` bytes, and returns where its
    /// parts lie: every field a consumer must check before it maps or
    /// reads anything (the one it must check beyond these, that the region
    /// is no larger than the memory behind it, is the mapper's business).
    ///
    /// # Examples
    ///
    /// ```
    /// use rmemring_proto::layout::{Geometry, LayoutDefect};
    ///
    /// let geometry = Geometry::for_region(1 << 20, 4096).unwrap();
    /// let mut page = geometry.control_page(0, 0);
    /// assert_eq!(page.geometry(4096), Ok(geometry));
    /// page.magic = 0;
    /// assert_eq!(page.geometry(4096), Err(LayoutDefect::Magic(0)));
    /// ```
    pub fn geometry(&self, system_page: u32) -> Result<Geometry, LayoutDefect> {
        if self.magic != MAGIC {
            return Err(LayoutDefect::Magic(self.magic));
        }
        if self.abi_version != ABI_VERSION {
            return Err(LayoutDefect::AbiVersion(self.abi_version));
        }
        if self.page_size != system_page {
            return Err(LayoutDefect::PageSize {
                found: self.page_size,
                system: system_page,
            });
        }
        let page = u64::from(self.page_size);
        if self.consumer_offset != page {
            return Err(LayoutDefect::ConsumerOffset(self.consumer_offset));
        }
        if self.data_offset != 2 * page {
            return Err(LayoutDefect::DataOffset(self.data_offset));
        }
        if !self.data_size.is_power_of_two()
            || self.data_size < MIN_DATA_SIZE
            || self.data_size > MAX_DATA_SIZE
        {
            return Err(LayoutDefect::DataSize(self.data_size));
        }
        let end = self.data_offset.checked_add(self.data_size);
        if end.is_none_or(|end| end > self.region_size) {
            return Err(LayoutDefect::PastRegion {
                end,
                region_size: self.region_size,
            });
        }
        if self.max_payload > max_payload_for(self.data_size) {
            return Err(LayoutDefect::MaxPayload(self.max_payload));
        }
        if self.flags & !FLAGS_KNOWN != 0 {
            return Err(LayoutDefect::UnknownFlags(self.flags & !FLAGS_KNOWN));
        }
        Ok(Geometry {
            region_size: self.region_size,
            page_size: self.page_size,
            consumer_offset: self.consumer_offset,
            data_offset: self.data_offset,
            data_size: self.data_size,
        })
    }
}

impl Geometry {
    /// What `RMEMRING_IOC_INFO` says of a ring of this geometry with these
    /// control-page `flags`, device number `index` and physical base (0
    /// for an opener who may not see it).
    pub const fn ring_info(&self, flags: u32, index: u32, phys_base: u64) -> super::uapi::RingInfo {
        super::uapi::RingInfo {
            abi_version: ABI_VERSION,
            page_size: self.page_size,
            phys_base,
            region_size: self.region_size,
            consumer_offset: self.consumer_offset,
            data_offset: self.data_offset,
            data_size: self.data_size,
            max_payload: max_payload_for(self.data_size),
            flags,
            index,
            state: super::uapi::STATE_LIVE,
            reserved: [0; 8],
        }
    }
}

/// An all-zero consumer page, as a fresh ring starts.
pub const CONSUMER_PAGE_INIT: ConsumerPage = ConsumerPage {
    consumer_pos: 0,
    pad0: [0; 15],
    need_wakeup: 0,
    wake_token: 0,
    pad1: [0; 15],
    records_consumed: 0,
    bytes_consumed: 0,
    records_lost: 0,
    sleeps: 0,
    pad2: [0; 12],
};
