// SPDX-License-Identifier: GPL-2.0-only OR MIT

//! Recovering a previous boot's ring from retained memory: the flight
//! recorder (`docs/flight-recorder.md`).
//!
//! Nothing clears reserved memory across a warm reboot, a panic and
//! reboot, or a kexec. A driver asked to keep what its region holds
//! (`retain=1`) calls [`recover`] before it lays a ring out: it believes
//! the region only if the control page is a ring's (magic, ABI version,
//! page size), laid out as this driver would lay it out, sealed by its
//! [`identity_sum`](super::layout::ControlPage::identity_sum), and written
//! by another boot. Then it walks every record from the oldest retained
//! one to the last published one, judging each header as a consumer
//! would, and keeps the records up to the first that fails: a torn tail is
//! cut, never served. Anything else is an [`Unrecoverable`] ring, which
//! the driver replaces with an empty one.
//!
//! The walk reads the data area only through [`RingView::read_word`] at
//! offsets it has checked, so no content of the region, however hostile
//! (the consumer page is user space's to write), makes it read outside
//! the data area. It writes nothing.

use super::layout::{
    max_payload_for,
    record_stride,
    ConsumerPage,
    ControlPage,
    Geometry,
    LayoutDefect,
    FLAG_CACHE_MASK,
    HEADER_SIZE,
    KIND_DATA,
    KIND_PAD,
    RECORD_ALIGN, //
};
use super::modes::Overflow;
use super::view::{
    split_word0,
    RingView, //
};

/// How many records [`recover`] walks between calls of its `pause`.
pub const PAUSE_EVERY: u64 = 4096;

/// A previous boot's ring, found intact up to [`Recovered::end`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recovered {
    /// The boot id of the boot that wrote it.
    pub boot_id: [u64; 2],
    /// Its `CLOCK_REALTIME - CLOCK_MONOTONIC` (0 if it did not record one).
    pub realtime_offset_ns: i64,
    /// Position of the oldest retained record: the ring's `overwrite_pos`.
    pub start: u64,
    /// Position one past the last record that verified.
    pub end: u64,
    /// The producer position the ring published.
    pub published: u64,
    /// Data records in `[start, end)`.
    pub records: u64,
    /// Sequence number of the first, and of the last, of them (0 if none).
    pub first_seq: u64,
    /// See [`Self::first_seq`].
    pub last_seq: u64,
    /// Timestamps (`CLOCK_MONOTONIC` of the boot that wrote them) of the
    /// first and the last of them (0 if none).
    pub first_ns: u64,
    /// See [`Self::first_ns`].
    pub last_ns: u64,
    /// Why the walk stopped before `published`, if it did: the tail from
    /// `end` to `published` is cut.
    pub cut: Option<RecordDefect>,
}

impl Recovered {
    /// Published bytes cut from the tail: `published - end`.
    pub const fn bytes_cut(&self) -> u64 {
        self.published.wrapping_sub(self.end)
    }

    /// The consumer page a reader of the recovered records starts from:
    /// at [`Self::start`], nothing consumed, and the `records_lost` that
    /// makes the first recovered record the next one expected (every
    /// record before the window counts as lost to this reader: consumed or
    /// overwritten in the previous boot). `wake_token` is kept from
    /// `previous`, so that no two sleep attempts on the ring share a value.
    pub const fn consumer_page(&self, previous: &ConsumerPage) -> ConsumerPage {
        let mut page = super::layout::CONSUMER_PAGE_INIT;
        page.consumer_pos = self.start;
        page.records_lost = self.first_seq;
        page.wake_token = previous.wake_token;
        page
    }
}

/// Why a record header ended the walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordDefect {
    /// Its kind is neither data nor pad.
    Kind(u16),
    /// A pad record whose length does not reach exactly the end of the
    /// data area.
    PadLength(u32),
    /// A data record longer than the ring's `max_payload`.
    Length(u32),
    /// A data record running past the end of the data area.
    PastEnd,
    /// A record running past the published position.
    PastPublished,
    /// A sequence number not exactly one above its predecessor's (an
    /// overwrite-mode ring drops nothing).
    Sequence {
        /// Its predecessor's.
        previous: u64,
        /// Its own.
        found: u64,
    },
    /// A timestamp below its predecessor's.
    Timestamp {
        /// Its predecessor's.
        previous: u64,
        /// Its own.
        found: u64,
    },
}

impl core::fmt::Display for RecordDefect {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            RecordDefect::Kind(kind) => write!(f, "record kind {kind} is neither data nor pad"),
            RecordDefect::PadLength(len) => {
                write!(f, "pad record of {len} bytes does not end the data area")
            }
            RecordDefect::Length(len) => write!(f, "record of {len} bytes exceeds max_payload"),
            RecordDefect::PastEnd => write!(f, "record runs past the end of the data area"),
            RecordDefect::PastPublished => {
                write!(f, "record runs past the published position")
            }
            RecordDefect::Sequence { previous, found } => {
                write!(f, "sequence number {found} follows {previous}")
            }
            RecordDefect::Timestamp { previous, found } => {
                write!(f, "timestamp {found} ns follows {previous} ns")
            }
        }
    }
}

/// Why a region holds no ring worth recovering. The driver lays out an
/// empty ring instead, and says why in one log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unrecoverable {
    /// No magic: memory never written or cleared (a cold boot).
    Blank,
    /// The control page is not a ring's, or not one of this version and
    /// page size.
    Layout(LayoutDefect),
    /// The identity fields do not match their checksum: garbage, or a page
    /// torn by the reset.
    Checksum {
        /// The page's `identity_sum`.
        found: u64,
        /// What its fields sum to.
        computed: u64,
    },
    /// The ring was laid out for another region size or cache mode than
    /// the driver lays out now.
    Geometry {
        /// The retained ring's data area, in bytes.
        found: u64,
        /// This load's.
        expected: u64,
    },
    /// The retained ring's cache mode bits differ from this load's.
    CacheMode {
        /// The retained ring's `flags`.
        found: u32,
        /// This load's.
        expected: u32,
    },
    /// The ring has no boot id: laid out by a driver that does not keep
    /// rings, or by user space.
    NoBootId,
    /// This boot's own id is unknown (unreadable when the driver loaded):
    /// a ring of this very boot could not be told from a previous one's.
    BootIdUnknown,
    /// The ring was in drop-new mode. Only an overwrite-mode ring is a
    /// flight recorder: there the oldest record's position is the
    /// kernel's (`overwrite_pos`); in drop-new mode it is the consumer's,
    /// which user space writes, and a walk from a position user space
    /// chose could read payload bytes as headers.
    DropNew,
    /// The ring was laid out by this very boot (the module was reloaded):
    /// it is not a previous boot's.
    ThisBoot,
    /// The positions cannot be a ring's: misaligned, or the oldest record
    /// past the published position or more than a data area behind it.
    Positions {
        /// Where the walk would start.
        start: u64,
        /// The published position.
        published: u64,
    },
    /// Intact, but not one record to recover: the ring was empty (every
    /// record consumed, or none written), or the first record failed.
    NoRecords {
        /// Why the first record failed, if one did.
        cut: Option<RecordDefect>,
    },
}

impl core::fmt::Display for Unrecoverable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Unrecoverable::Blank => {
                write!(f, "no ring in the region (zeroed memory: a cold boot?)")
            }
            Unrecoverable::Layout(defect) => write!(f, "not a ring: {defect}"),
            Unrecoverable::Checksum { found, computed } => write!(
                f,
                "identity checksum {found:#018x} does not match its fields' {computed:#018x}"
            ),
            Unrecoverable::Geometry { found, expected } => write!(
                f,
                "laid out with a {found}-byte data area; this load lays out {expected} bytes"
            ),
            Unrecoverable::CacheMode { found, expected } => write!(
                f,
                "laid out with cache-mode flags {:#x}; this load maps with {:#x}",
                found & FLAG_CACHE_MASK,
                expected & FLAG_CACHE_MASK
            ),
            Unrecoverable::NoBootId => write!(f, "the ring records no boot id"),
            Unrecoverable::BootIdUnknown => write!(f, "this boot's id is unknown"),
            Unrecoverable::DropNew => write!(
                f,
                "the ring was in drop-new mode (only overwrite-mode rings are kept)"
            ),
            Unrecoverable::ThisBoot => {
                write!(f, "the ring is this boot's own, not a previous one's")
            }
            Unrecoverable::Positions { start, published } => write!(
                f,
                "impossible positions: oldest record at {start:#x}, published up to {published:#x}"
            ),
            Unrecoverable::NoRecords { cut: None } => write!(f, "the ring held no unread records"),
            Unrecoverable::NoRecords { cut: Some(defect) } => {
                write!(f, "its first record is invalid: {defect}")
            }
        }
    }
}

impl Unrecoverable {
    /// A stable number for `RMEMRING_IOC_RECOVERY`'s `reason`
    /// (`uapi::RECOVERY_REASON_*`).
    pub const fn reason(&self) -> u32 {
        use super::uapi::*;
        match self {
            Unrecoverable::Blank => RECOVERY_REASON_BLANK,
            Unrecoverable::Layout(_) => RECOVERY_REASON_LAYOUT,
            Unrecoverable::Checksum { .. } => RECOVERY_REASON_CHECKSUM,
            Unrecoverable::Geometry { .. } => RECOVERY_REASON_GEOMETRY,
            Unrecoverable::CacheMode { .. } => RECOVERY_REASON_CACHE_MODE,
            Unrecoverable::NoBootId => RECOVERY_REASON_NO_BOOT_ID,
            Unrecoverable::BootIdUnknown => RECOVERY_REASON_BOOT_ID_UNKNOWN,
            Unrecoverable::DropNew => RECOVERY_REASON_DROP_NEW,
            Unrecoverable::ThisBoot => RECOVERY_REASON_THIS_BOOT,
            Unrecoverable::Positions { .. } => RECOVERY_REASON_POSITIONS,
            Unrecoverable::NoRecords { .. } => RECOVERY_REASON_NO_RECORDS,
        }
    }
}

/// Judges the ring retained in `view`'s memory, for a driver that would
/// lay out `expected` with cache-mode bits `cache_flags`, in the boot
/// `this_boot` (zero if unknown). Reads the control page and the data
/// area; writes nothing. Calls `pause` every [`PAUSE_EVERY`] records
/// (the kernel yields the CPU there: a walk of a large uncached ring takes
/// a while).
///
/// # Examples
///
/// ```
/// use core::ptr::NonNull;
/// use rmemring_proto::layout::Geometry;
/// use rmemring_proto::recovery::{recover, Unrecoverable};
/// use rmemring_proto::view::{MemoryOrdering, RingView};
///
/// // A region of zeroes (a cold boot) holds nothing to recover.
/// let geometry = Geometry::for_region(3 * 4096, 4096).unwrap();
/// let mut memory = vec![0u64; 3 * 4096 / 8];
/// let base = NonNull::new(memory.as_mut_ptr().cast::<u8>()).unwrap();
/// // SAFETY: `memory` is 8-byte aligned, outlives the view and holds the
/// // control page, the consumer page and the data area at these offsets.
/// let view = unsafe {
///     RingView::new(
///         base.cast(),
///         base.add(4096).cast(),
///         base.add(8192),
///         geometry.data_size,
///         MemoryOrdering::WriteBack,
///     )
/// };
/// assert_eq!(recover(&view, &geometry, 0, [1, 1], &mut || ()), Err(Unrecoverable::Blank));
/// ```
pub fn recover(
    view: &RingView,
    expected: &Geometry,
    cache_flags: u32,
    this_boot: [u64; 2],
    pause: &mut dyn FnMut(),
) -> Result<Recovered, Unrecoverable> {
    let page = view.read_control_page();
    check_identity(&page, expected, cache_flags, this_boot)?;
    let overflow = Overflow::from_flags(page.flags);
    if overflow == Overflow::DropNew {
        return Err(Unrecoverable::DropNew);
    }
    let published = page.producer_pos;
    let start = page.overwrite_pos;
    let size = view.data_size();
    // Positions count bytes from the ring's first and never wrap (2^64
    // bytes): the oldest record is at or before the published position.
    // Checked without wrapping, so that no walk below can step past it
    // (`overwrite_pos` is the kernel's, but the identity checksum does not
    // cover it).
    if start % RECORD_ALIGN != 0
        || published % RECORD_ALIGN != 0
        || published.checked_sub(start).is_none_or(|span| span > size)
    {
        return Err(Unrecoverable::Positions { start, published });
    }
    let walk = walk(view, start, published, page.max_payload, pause);
    if walk.records == 0 {
        return Err(Unrecoverable::NoRecords { cut: walk.cut });
    }
    Ok(Recovered {
        boot_id: page.boot_id,
        realtime_offset_ns: page.realtime_offset_ns,
        start,
        published,
        ..walk
    })
}

/// The identity checks of [`recover`], in the order its log line reports
/// the first failure.
fn check_identity(
    page: &ControlPage,
    expected: &Geometry,
    cache_flags: u32,
    this_boot: [u64; 2],
) -> Result<(), Unrecoverable> {
    if page.magic == 0 {
        return Err(Unrecoverable::Blank);
    }
    let geometry = page
        .geometry(expected.page_size)
        .map_err(Unrecoverable::Layout)?;
    let computed = page.identity_sum();
    if page.identity_sum != computed {
        return Err(Unrecoverable::Checksum {
            found: page.identity_sum,
            computed,
        });
    }
    if geometry != *expected || page.max_payload != max_payload_for(expected.data_size) {
        return Err(Unrecoverable::Geometry {
            found: geometry.data_size,
            expected: expected.data_size,
        });
    }
    if page.flags & FLAG_CACHE_MASK != cache_flags & FLAG_CACHE_MASK {
        return Err(Unrecoverable::CacheMode {
            found: page.flags,
            expected: cache_flags,
        });
    }
    if page.boot_id == [0; 2] {
        return Err(Unrecoverable::NoBootId);
    }
    if this_boot == [0; 2] {
        return Err(Unrecoverable::BootIdUnknown);
    }
    if page.boot_id == this_boot {
        return Err(Unrecoverable::ThisBoot);
    }
    Ok(())
}

/// Walks the records in `[start, published)` (positions checked by the
/// caller: aligned, at most a data area apart), up to the first that fails.
/// Returns a [`Recovered`] whose identity fields are placeholders.
fn walk(
    view: &RingView,
    start: u64,
    published: u64,
    max_payload: u32,
    pause: &mut dyn FnMut(),
) -> Recovered {
    let size = view.data_size();
    let mut found = Recovered {
        boot_id: [0; 2],
        realtime_offset_ns: 0,
        start,
        end: start,
        published,
        records: 0,
        first_seq: 0,
        last_seq: 0,
        first_ns: 0,
        last_ns: 0,
        cut: None,
    };
    let mut pos = start;
    while pos != published {
        match next_record(view, pos, published, max_payload, &found) {
            Ok(Step::Pad(len)) => pos += len,
            Ok(Step::Data { stride, seq, ts }) => {
                if found.records == 0 {
                    found.first_seq = seq;
                    found.first_ns = ts;
                }
                found.records += 1;
                if found.records % PAUSE_EVERY == 0 {
                    pause();
                }
                found.last_seq = seq;
                found.last_ns = ts;
                pos += stride;
                // A pad is no record: the window ends after data only.
                found.end = pos;
            }
            Err(defect) => {
                found.cut = Some(defect);
                break;
            }
        }
        debug_assert!(pos.wrapping_sub(start) <= size);
    }
    if found.cut.is_none() {
        // A pad record at the very end is intact too.
        found.end = published;
    }
    found
}

/// One record the walk accepted.
enum Step {
    /// A pad record of this many bytes.
    Pad(u64),
    /// A data record.
    Data { stride: u64, seq: u64, ts: u64 },
}

/// Judges the record at `pos`, which lies before `published`, following
/// the records `so_far` accepted.
fn next_record(
    view: &RingView,
    pos: u64,
    published: u64,
    max_payload: u32,
    so_far: &Recovered,
) -> Result<Step, RecordDefect> {
    let size = view.data_size();
    let off = view.offset(pos);
    let left = published - pos;
    // SAFETY: `pos` is a multiple of 8 (the caller's `start` is, and every
    // step adds a multiple of 8) and `off < size`, a multiple of 8, so the
    // word at `off` lies inside the data area.
    let (len, kind, _tag) = split_word0(unsafe { view.read_word(off) });
    match kind {
        KIND_PAD => {
            if u64::from(len) != size - off {
                return Err(RecordDefect::PadLength(len));
            }
            if u64::from(len) > left {
                return Err(RecordDefect::PastPublished);
            }
            Ok(Step::Pad(u64::from(len)))
        }
        KIND_DATA => {
            if len > max_payload {
                return Err(RecordDefect::Length(len));
            }
            let stride = record_stride(len);
            if off + stride > size || size - off < HEADER_SIZE {
                return Err(RecordDefect::PastEnd);
            }
            if stride > left {
                return Err(RecordDefect::PastPublished);
            }
            // SAFETY: `off` is a multiple of 8 and the header ends within
            // the data area (`off + stride <= size`, `stride >= HEADER_SIZE`).
            let (seq, ts) = unsafe { view.read_seq_ts(off) };
            if so_far.records != 0 {
                let previous = so_far.last_seq;
                // An overwrite-mode ring drops nothing: every record's
                // number is one more than its predecessor's (wrapping, in
                // crafted memory, is no defect of the walk's own).
                if seq != previous.wrapping_add(1) {
                    return Err(RecordDefect::Sequence {
                        previous,
                        found: seq,
                    });
                }
                if ts < so_far.last_ns {
                    return Err(RecordDefect::Timestamp {
                        previous: so_far.last_ns,
                        found: ts,
                    });
                }
            }
            Ok(Step::Data { stride, seq, ts })
        }
        other => Err(RecordDefect::Kind(other)),
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::vec::Vec;

    use super::*;
    use crate::layout::CONSUMER_PAGE_INIT;
    use crate::pattern;
    use crate::producer_core::ProducerCore;
    use crate::sync::Ordering;
    use crate::trace::heap_views;
    use crate::view::MemoryOrdering;

    const DATA: u64 = 4096;
    const PREVIOUS: [u64; 2] = [0x1111, 0x2222];
    const THIS: [u64; 2] = [0x3333, 0x4444];

    /// The geometry `heap_views` lays out.
    fn geometry() -> Geometry {
        Geometry {
            region_size: DATA + 8192,
            page_size: 4096,
            consumer_offset: 4096,
            data_offset: 8192,
            data_size: DATA,
        }
    }

    /// A ring of `DATA` bytes in `overflow` mode, stamped by boot
    /// `PREVIOUS`, into which `count` records of varying lengths were
    /// written (timestamps = sequence numbers) and published (in drop-new
    /// mode, with no consumer, the ring fills and the rest are dropped).
    /// Returns the view and the next sequence number.
    fn written(overflow: Overflow, count: u64) -> (RingView, u64) {
        let (view, other) = heap_views(DATA, overflow, MemoryOrdering::WriteBack);
        let page = view.read_control_page().with_boot(PREVIOUS, 42);
        view.write_control_page(&page);
        let mut p = ProducerCore::attach(other, overflow, max_payload_for(DATA));
        for i in 0..count {
            let len = pattern::payload_len(i, 0, 200);
            match p.reserve(len) {
                Ok(slot) => {
                    let seq = p.next_seq();
                    p.write_pattern(&slot, seq, false);
                    p.commit(slot, 0, seq);
                }
                Err(_) => p.drop_record(),
            }
            p.publish();
        }
        p.flush_stats();
        let next = p.next_seq();
        (view, next)
    }

    /// Every record in the window, as a consumer would read it.
    fn window(view: &RingView, r: &Recovered) -> Vec<(u64, u64)> {
        let mut pos = r.start;
        let mut out = Vec::new();
        while pos != r.end {
            let off = view.offset(pos);
            // SAFETY: The walk vouched for the records in `[start, end)`.
            let (len, kind, _) = split_word0(unsafe { view.read_word(off) });
            if kind == KIND_PAD {
                pos += u64::from(len);
                continue;
            }
            // SAFETY: As above.
            let (seq, ts) = unsafe { view.read_seq_ts(off) };
            let mut payload = std::vec![0u8; len as usize];
            // SAFETY: As above; `payload` has room for `len` bytes.
            unsafe { view.copy_payload_out(off, payload.as_mut_ptr(), len as usize) };
            assert!(pattern::verify(seq, &payload), "payload of {seq}");
            out.push((seq, ts));
            pos += record_stride(len);
        }
        out
    }

    #[test]
    fn an_overwrite_ring_is_recovered_whole_and_contiguous() {
        let (view, next) = written(Overflow::OverwriteOldest, 5000);
        let r = recover(&view, &geometry(), 0, THIS, &mut || ()).unwrap();
        assert_eq!(r.boot_id, PREVIOUS);
        assert_eq!(r.realtime_offset_ns, 42);
        assert_eq!(r.cut, None);
        assert_eq!(r.end, r.published);
        assert_eq!(r.last_seq, next - 1);
        let records = window(&view, &r);
        assert_eq!(records.len() as u64, r.records);
        assert!(r.records > 20, "{r:?}");
        for (i, (seq, ts)) in records.iter().enumerate() {
            assert_eq!(*seq, r.first_seq + i as u64);
            assert_eq!(ts, seq);
        }
    }

    #[test]
    fn a_drop_new_ring_is_not_served() {
        // Its oldest position would be the consumer's, which user space
        // writes: a walk from there could read payload bytes as headers.
        let (view, _) = written(Overflow::DropNew, 3000);
        assert_eq!(
            recover(&view, &geometry(), 0, THIS, &mut || ()),
            Err(Unrecoverable::DropNew)
        );
    }

    #[test]
    fn the_walk_pauses_every_few_thousand_records() {
        // 1 MiB of 8-byte records: 32 768 of them, 8 pauses.
        let size = 1 << 20;
        let overflow = Overflow::OverwriteOldest;
        let (view, other) = heap_views(size, overflow, MemoryOrdering::WriteBack);
        view.write_control_page(&view.read_control_page().with_boot(PREVIOUS, 0));
        let mut p = ProducerCore::attach(other, overflow, max_payload_for(size));
        for _ in 0..40_000 {
            let slot = p.reserve(8).unwrap();
            let seq = p.next_seq();
            p.write_pattern(&slot, seq, false);
            p.commit(slot, 0, seq);
            p.publish();
        }
        let geometry = Geometry {
            region_size: size + 8192,
            data_size: size,
            ..geometry()
        };
        let mut pauses = 0;
        let r = recover(&view, &geometry, 0, THIS, &mut || pauses += 1).unwrap();
        assert_eq!(r.records, size / 32);
        assert_eq!(pauses, r.records / PAUSE_EVERY);
        assert_eq!(pauses, 8);
    }

    #[test]
    fn positions_past_the_published_one_are_refused_without_overflow() {
        let (view, _) = written(Overflow::OverwriteOldest, 500);
        let good = view.read_control_page();
        for (overwrite_pos, producer_pos) in [
            (u64::MAX - 7, good.producer_pos),
            (good.producer_pos + 8, good.producer_pos),
            (u64::MAX - 7, 16),
            (0, u64::MAX - 7),
        ] {
            view.write_control_page(&ControlPage {
                overwrite_pos,
                producer_pos,
                ..good
            });
            assert!(
                matches!(
                    recover(&view, &geometry(), 0, THIS, &mut || ()),
                    Err(Unrecoverable::Positions { .. })
                ),
                "{overwrite_pos:#x} {producer_pos:#x}"
            );
        }
        // Sequence numbers that wrap (crafted memory): no overflow either.
        view.write_control_page(&good);
        let r = recover(&view, &geometry(), 0, THIS, &mut || ()).unwrap();
        let mut pos = r.start;
        let mut seq = u64::MAX - 2;
        while pos != r.end {
            let off = view.offset(pos);
            // SAFETY: Inside the verified window; the test owns the ring.
            let (len, kind, _) = split_word0(unsafe { view.read_word(off) });
            if kind == KIND_DATA {
                // SAFETY: As above.
                unsafe { view.write_word(off + 8, seq) };
                seq = seq.wrapping_add(1);
                pos += record_stride(len);
            } else {
                pos += u64::from(len);
            }
        }
        let wrapped = recover(&view, &geometry(), 0, THIS, &mut || ()).unwrap();
        assert_eq!(wrapped.records, r.records);
    }

    #[test]
    fn an_unknown_boot_id_serves_nothing() {
        let (view, _) = written(Overflow::OverwriteOldest, 500);
        assert_eq!(
            recover(&view, &geometry(), 0, [0, 0], &mut || ()),
            Err(Unrecoverable::BootIdUnknown)
        );
    }

    #[test]
    fn regions_that_are_no_previous_boots_ring_are_refused() {
        let expected = geometry();
        let (view, _) = heap_views(DATA, Overflow::OverwriteOldest, MemoryOrdering::WriteBack);
        let blank = ControlPage {
            magic: 0,
            ..view.read_control_page()
        };
        view.write_control_page(&blank);
        assert_eq!(
            recover(&view, &expected, 0, THIS, &mut || ()),
            Err(Unrecoverable::Blank)
        );

        let (view, _) = written(Overflow::OverwriteOldest, 100);
        let good = view.read_control_page();
        let with = |page: ControlPage| {
            view.write_control_page(&page);
            let verdict = recover(&view, &expected, 0, THIS, &mut || ());
            view.write_control_page(&good);
            verdict
        };
        assert!(matches!(
            with(ControlPage {
                magic: 0xdead_beef,
                ..good
            }),
            Err(Unrecoverable::Layout(LayoutDefect::Magic(0xdead_beef)))
        ));
        assert!(matches!(
            with(ControlPage {
                boot_id: [9, 9],
                ..good
            }),
            Err(Unrecoverable::Checksum { .. })
        ));
        assert_eq!(with(good.with_boot(THIS, 0)), Err(Unrecoverable::ThisBoot));
        assert_eq!(
            with(good.with_boot([0, 0], 0)),
            Err(Unrecoverable::NoBootId)
        );
        assert_eq!(
            recover(
                &view,
                &Geometry {
                    region_size: DATA + 12288,
                    ..expected
                },
                0,
                THIS,
                &mut || ()
            ),
            Err(Unrecoverable::Geometry {
                found: DATA,
                expected: DATA
            })
        );
        assert!(matches!(
            recover(&view, &expected, 1 << 8, THIS, &mut || ()),
            Err(Unrecoverable::CacheMode { .. })
        ));
        // The running producer's wall-clock offset is outside the sum.
        assert!(with(ControlPage {
            realtime_offset_ns: 7,
            ..good
        })
        .is_ok());
        assert!(matches!(
            with(ControlPage {
                overwrite_pos: good.producer_pos + 8,
                ..good
            }),
            Err(Unrecoverable::Positions { .. })
        ));
        assert_eq!(
            with(ControlPage {
                overwrite_pos: good.producer_pos,
                ..good
            }),
            Err(Unrecoverable::NoRecords { cut: None })
        );
        assert!(recover(&view, &expected, 0, THIS, &mut || ()).is_ok());
    }

    #[test]
    fn a_torn_header_cuts_the_tail_there() {
        let (view, _) = written(Overflow::OverwriteOldest, 5000);
        let whole = recover(&view, &geometry(), 0, THIS, &mut || ()).unwrap();
        let records = window(&view, &whole);
        // Find the position of the record in the middle, and tear it.
        let middle = records.len() / 2;
        let mut pos = whole.start;
        let mut seen = 0;
        loop {
            let off = view.offset(pos);
            // SAFETY: Inside the verified window.
            let (len, kind, _) = split_word0(unsafe { view.read_word(off) });
            if kind == KIND_DATA {
                if seen == middle {
                    // SAFETY: As above; the test owns the ring.
                    unsafe { view.write_word(off + 8, 0) };
                    break;
                }
                seen += 1;
                pos += record_stride(len);
            } else {
                pos += u64::from(len);
            }
        }
        let cut = recover(&view, &geometry(), 0, THIS, &mut || ()).unwrap();
        assert_eq!(cut.end, pos);
        assert_eq!(cut.records, middle as u64);
        assert!(matches!(cut.cut, Some(RecordDefect::Sequence { .. })));
        assert_eq!(cut.bytes_cut(), whole.published - pos);
        assert_eq!(window(&view, &cut).len(), middle);
    }

    /// splitmix64, for reproducible corruption.
    fn next(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    #[test]
    fn no_corruption_makes_the_walk_serve_an_invalid_record() {
        let mut state = 1;
        let (mut served, mut cut) = (0, 0);
        for round in 0..400 {
            let overflow = Overflow::OverwriteOldest;
            let (view, _) = written(overflow, 500 + next(&mut state) % 3000);
            // The consumer page is user space's: nothing it says matters.
            view.consumer_pos()
                .store(next(&mut state), Ordering::Relaxed);
            // Scribble on a few data words, and now and then on a position.
            for _ in 0..(next(&mut state) % 4) {
                let off = (next(&mut state) % (DATA / 8)) * 8;
                // SAFETY: An aligned word inside the data area.
                unsafe { view.write_word(off, next(&mut state) >> (next(&mut state) % 64)) };
            }
            if round % 5 == 0 {
                let page = view.read_control_page();
                // Anywhere, near the top of the range included.
                let bogus = next(&mut state) & !7;
                let bogus = if round % 10 == 0 {
                    bogus
                } else {
                    bogus & 0xffff
                };
                let page = if round % 3 == 0 {
                    ControlPage {
                        producer_pos: bogus,
                        ..page
                    }
                } else {
                    ControlPage {
                        overwrite_pos: bogus,
                        ..page
                    }
                };
                view.write_control_page(&page);
            }
            let Ok(r) = recover(&view, &geometry(), 0, THIS, &mut || ()) else {
                continue;
            };
            assert!(r.start <= r.end && r.end <= r.published);
            assert!(r.published - r.start <= DATA);
            // Whatever it serves is well formed: each record's header
            // inside the area and in order. (`window` also checks the
            // payloads against the pattern: a scribble inside a payload is
            // not a header defect, so skip that check here.)
            let mut pos = r.start;
            let mut last: Option<(u64, u64)> = None;
            let mut records = 0;
            while pos != r.end {
                let off = view.offset(pos);
                // SAFETY: The walk vouched for it.
                let (len, kind, _) = split_word0(unsafe { view.read_word(off) });
                if kind == KIND_PAD {
                    assert_eq!(u64::from(len), DATA - off);
                    pos += u64::from(len);
                    continue;
                }
                assert_eq!(kind, KIND_DATA);
                assert!(off + record_stride(len) <= DATA);
                // SAFETY: As above.
                let (seq, ts) = unsafe { view.read_seq_ts(off) };
                if let Some((s, t)) = last {
                    assert!(seq > s && ts >= t);
                }
                last = Some((seq, ts));
                records += 1;
                pos += record_stride(len);
            }
            assert_eq!(records, r.records);
            served += 1;
            cut += u32::from(r.cut.is_some());
        }
        // The rounds exercised both outcomes of the walk.
        assert!(served > 100 && cut > 20, "served {served}, cut {cut}");
    }

    #[test]
    fn a_readers_consumer_page_starts_at_the_window() {
        let (view, _) = written(Overflow::OverwriteOldest, 1000);
        let r = recover(&view, &geometry(), 0, THIS, &mut || ()).unwrap();
        let previous = ConsumerPage {
            wake_token: 5,
            records_consumed: 77,
            ..CONSUMER_PAGE_INIT
        };
        let page = r.consumer_page(&previous);
        assert_eq!(page.consumer_pos, r.start);
        assert_eq!(page.records_consumed + page.records_lost, r.first_seq);
        assert_eq!(page.wake_token, 5);
    }
}
