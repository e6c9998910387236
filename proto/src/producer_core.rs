// SPDX-License-Identifier: GPL-2.0-only OR MIT

//! The producer's index logic: reserve, commit, publish, wake.
//!
//! The kernel driver and the user-space `Producer` of the `rmemring` crate both
//! drive this exact code. It writes the control page and the data area and
//! reads the consumer page, whose contents it treats as hostile: a consumer
//! position that moves backwards, runs ahead of the producer or lags by more
//! than the data area is ignored (and counted), so whatever the consumer
//! writes, every producer write stays inside the data area and never touches
//! a published record the consumer has not released (drop-new mode).

use super::layout::{
    record_stride,
    RecordHeader,
    HEADER_SIZE,
    KIND_DATA,
    KIND_PAD,
    RECORD_ALIGN, //
};
pub use super::modes::Overflow;
use super::sync::{
    fence,
    Ordering, //
};
use super::view::{
    split_word0,
    RingView, //
};

/// The most record bytes a producer commits between two publications,
/// whatever the ring's size: [`batch_bytes`] caps a batch at this.
///
/// A bound on how long a batch holds records back from the consumer and,
/// in the kernel, on how long a batch (and so a stop request) takes.
pub const MAX_BATCH_BYTES: u64 = 1 << 20;

/// The most records a producer commits or drops between two publications:
/// a batch of drops writes no bytes, but each still costs a little.
pub const MAX_BATCH_RECORDS: u64 = 1 << 14;

/// How many bytes of records a producer on a data area of `data_size`
/// bytes commits before it publishes: a quarter of the data area, at most
/// [`MAX_BATCH_BYTES`] (and at least 1). A batch that reaches it is
/// published before it takes another record, so a batch is at most this
/// plus one record (and the pad before it), or one record alone.
///
/// A quarter, so that a batch never holds more than about a quarter of the
/// ring back from the consumer, and in overwrite mode a producer never
/// retires records of its own batch: retiring stops at the published
/// position as long as the batch and the next record (at most a quarter
/// of the data area, plus a pad shorter than it) fit in the data area.
///
/// # Examples
///
/// ```
/// use rmemring_proto::producer_core::{batch_bytes, MAX_BATCH_BYTES};
///
/// assert_eq!(batch_bytes(4096), 1024);
/// assert_eq!(batch_bytes(1 << 30), MAX_BATCH_BYTES);
/// ```
pub const fn batch_bytes(data_size: u64) -> u64 {
    let quarter = data_size / 4;
    if quarter == 0 {
        1
    } else if quarter > MAX_BATCH_BYTES {
        MAX_BATCH_BYTES
    } else {
        quarter
    }
}

/// Why [`ProducerCore::reserve`] gave no room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReserveError {
    /// Drop-new mode and the consumer has not released enough space.
    Full,
    /// The payload is larger than the ring's `max_payload`.
    TooLarge,
}

/// Space for one record, handed out by [`ProducerCore::reserve`] and turned
/// into a record by [`ProducerCore::commit`], which consumes it.
///
/// # Invariants
///
/// Only `reserve` makes slots, so `offset` plus the stride of `len` lies
/// inside the data area of the ring it was reserved in. A slot cannot be
/// copied, so it is committed at most once. (The methods taking a slot
/// still check it against their own ring, so a slot used with another
/// producer cannot make it write out of bounds.)
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a slot is wasted unless it is committed"]
pub struct Slot {
    offset: u64,
    len: u32,
}

impl Slot {
    /// Payload bytes the slot holds.
    #[inline]
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Whether the slot holds no payload bytes.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Offset of the record header in the data area.
    #[inline]
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

/// Space for up to [`Run::count`] records of one payload length, one after
/// the other, handed out by [`ProducerCore::reserve_run`] and turned into
/// records by [`ProducerCore::commit_run`], which consumes it.
///
/// # Invariants
///
/// As for [`Slot`]: only `reserve_run` makes runs, so `count` strides of
/// `len` from `offset` lie inside the data area and inside the room the
/// producer had reserved; the methods taking a run still check it against
/// their own ring.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a run is wasted unless it is committed"]
pub struct Run {
    offset: u64,
    len: u32,
    count: u32,
}

impl Run {
    /// Payload bytes of each record.
    #[inline]
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Whether each record holds no payload bytes.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Records reserved (at least one).
    #[inline]
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Offset of the first record's header in the data area; record `i`'s
    /// is [`Self::stride`] bytes times `i` further.
    #[inline]
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Bytes from one record's header to the next one's.
    #[inline]
    pub fn stride(&self) -> u64 {
        record_stride(self.len)
    }
}

/// Contiguous room for records of any payload lengths, one after the
/// other, handed out by [`ProducerCore::reserve_span`]; the caller lays
/// its records out in it and closes it with [`ProducerCore::commit_span`],
/// which consumes it.
///
/// # Invariants
///
/// As for [`Slot`]: only `reserve_span` makes spans, so the `bytes` from
/// `offset` lie inside the data area and inside the room the producer had
/// reserved, and `bytes` is a multiple of [`RECORD_ALIGN`] and at least a
/// record header's size; `commit_span` still checks a span against its own
/// ring and its producer's state (`seq`: the sequence number the producer
/// had when it made the span, which any later commit or drop moves).
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a span is wasted unless it is committed"]
pub struct Span {
    offset: u64,
    bytes: u64,
    seq: u64,
}

impl Span {
    /// Offset in the data area of the first record's header.
    #[inline]
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Bytes reserved: a multiple of [`RECORD_ALIGN`], at least the first
    /// record's stride.
    #[inline]
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// Counters the producer publishes in the control page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct ProducerStats {
    /// Records committed.
    pub records: u64,
    /// Payload bytes committed.
    pub bytes: u64,
    /// Records dropped (drop-new mode).
    pub dropped: u64,
    /// Records retired to make room (overwrite mode), read by the consumer
    /// or not (the control page's `records_overwritten`).
    pub overwritten: u64,
    /// Wake-ups requested.
    pub wakeups: u64,
    /// Invalid consumer positions seen and ignored.
    pub consumer_errors: u64,
}

/// The producer side of a ring.
///
/// # Invariants
///
/// - `published <= head` (as positions, modulo 2^64), and the bytes in
///   `[published, head)` hold whole records committed since the last publish.
/// - `head - consumer <= data_size`: `consumer` is a released position the
///   producer has validated, and it never writes at or beyond
///   `consumer + data_size` (drop-new mode).
/// - In overwrite mode, `head - oldest <= data_size` and `oldest` is the
///   position of a record header (or equals `head`).
/// - The room, `room_end - head` bytes from `head` on (0
///   if `head` passed `room_end`), are free and lie before the end of the
///   data area: `room <= data_size - offset(head)`, and `room <=
///   consumer + data_size - head` (drop-new) or `room <= oldest +
///   data_size - head` (overwrite).
/// - `fast_end - head` (0 if `head` passed `fast_end`) is at most the room
///   and at most what the batch bound leaves,
///   `batch_limit - (head - published)`.
#[doc(hidden)]
pub struct ProducerCore {
    view: RingView,
    overflow: Overflow,
    max_payload: u32,
    head: u64,
    /// Where what [`Self::reserve`] may hand out without a pad record, a
    /// look at the consumer page or retiring records ends: a cache of the
    /// nearer of the end of the data area and the end of the free space,
    /// kept by every path that moves `consumer` or `oldest` or pads. A
    /// position, so that a commit, which moves only `head`, leaves it as it
    /// is: one store fewer per record than a count of bytes left.
    room_end: u64,
    /// Where [`Self::reserve_in_batch`] stops: the nearer of `room_end` and
    /// the batch bound, `published + batch_limit`; kept with `room_end` and
    /// at every publication, so that the fast path is one comparison.
    fast_end: u64,
    published: u64,
    /// [`batch_bytes`] of the data area, computed once.
    batch_limit: u64,
    consumer: u64,
    oldest: u64,
    seq: u64,
    last_woken_token: u32,
    /// The counters, except `records`, which [`Self::stats`] derives from
    /// `seq` so that `commit` has one counter fewer to bump.
    stats: ProducerStats,
}

impl ProducerCore {
    /// Takes over the producer side of a ring, continuing from the position
    /// and counters in its control page.
    ///
    /// The caller must be the ring's only producer, and the control page must
    /// have been initialised by a producer (never by the consumer).
    pub fn attach(view: RingView, overflow: Overflow, max_payload: u32) -> Self {
        // ORDERING: Relaxed; only this side writes these words.
        //
        // Records start at multiples of `RECORD_ALIGN`; a position that is
        // not one is corruption, and writing from it would put a header
        // across the end of the data area. Round it down.
        let head = view.producer_pos().load(Ordering::Relaxed) & !(RECORD_ALIGN - 1);
        let stats = ProducerStats {
            records: view.records_produced().load(Ordering::Relaxed),
            bytes: view.bytes_produced().load(Ordering::Relaxed),
            dropped: view.records_dropped().load(Ordering::Relaxed),
            overwritten: view.records_overwritten().load(Ordering::Relaxed),
            wakeups: view.wakeups().load(Ordering::Relaxed),
            consumer_errors: view.consumer_errors().load(Ordering::Relaxed),
        };
        let oldest = match overflow {
            Overflow::DropNew => head,
            Overflow::OverwriteOldest => view.overwrite_pos().load(Ordering::Relaxed),
        };
        let mut core = Self {
            overflow,
            max_payload,
            head,
            // Set by `refresh_consumer` below.
            room_end: head,
            fast_end: head,
            published: head,
            batch_limit: batch_bytes(view.data_size()),
            // Validated below; until then assume nothing has been released.
            consumer: head.wrapping_sub(view.data_size()),
            oldest,
            seq: stats.records.wrapping_add(stats.dropped),
            last_woken_token: 0,
            stats,
            view,
        };
        let size = core.view.data_size();
        if head.wrapping_sub(core.oldest) > size || core.oldest % RECORD_ALIGN != 0 {
            core.oldest = head;
        }
        if overflow == Overflow::OverwriteOldest
            && core.view.overwrite_pos().load(Ordering::Relaxed) != core.oldest
        {
            // Readers follow `overwrite_pos`. The one found here is not ours
            // to keep: a producer that retired records and stopped before
            // publishing their successors leaves it ahead of the published
            // position, where this producer lays records out anew, so it
            // would point into the middle of one of them.
            // ORDERING: as in `retire_oldest`: the store, then a Release
            // fence and, on memory that is not write-back, a drain, before
            // any data write.
            trace!(super::trace::Event::OverwritePosStore(core.oldest));
            core.view
                .overwrite_pos()
                .store(core.oldest, Ordering::Relaxed);
            fence(Ordering::Release);
            core.view.io_wmb();
        }
        core.refresh_consumer();
        core
    }

    /// The ring this producer writes.
    #[inline]
    pub fn view(&self) -> &RingView {
        &self.view
    }

    /// The producer's overflow policy.
    #[inline]
    pub fn overflow(&self) -> Overflow {
        self.overflow
    }

    /// The sequence number the next record will get.
    #[inline]
    pub fn next_seq(&self) -> u64 {
        self.seq
    }

    /// Counters so far, including those not yet published.
    #[inline]
    pub fn stats(&self) -> ProducerStats {
        ProducerStats {
            // Every sequence number went to a committed or a dropped record.
            records: self.seq.wrapping_sub(self.stats.dropped),
            ..self.stats
        }
    }

    /// Bytes committed but not yet published.
    #[inline]
    pub fn unpublished(&self) -> u64 {
        self.head.wrapping_sub(self.published)
    }

    /// Whether the producer must [`publish`](Self::publish) before it
    /// reserves a record of `len` payload bytes, to keep its batch within
    /// [`batch_bytes`]: the unpublished bytes plus the record (and the pad
    /// it may need) would exceed it. Never with nothing unpublished, so a
    /// record of any size can always go, alone.
    ///
    /// A producer that follows it never retires its own unpublished
    /// records in overwrite mode (see [`batch_bytes`]).
    #[inline]
    pub fn publish_due(&self, len: u32) -> bool {
        let unpublished = self.unpublished();
        // `room` is at most the bytes to the end of the data area, so a
        // record that fits it needs no pad; one that does not may, of at
        // most one stride.
        let stride = record_stride(len);
        let need = if stride <= self.room() {
            stride
        } else {
            2 * stride
        };
        unpublished != 0 && unpublished.saturating_add(need) > self.batch_limit
    }

    /// [`Self::publish_due`] and [`Self::reserve`] in one for the common
    /// case, a record that fits the room left without a pad, a look at the
    /// consumer page, retiring records or a publication first: its slot, in
    /// two comparisons. `None` says nothing about the record; the caller
    /// then takes the full path (`publish_due`, then `reserve`), which
    /// decides exactly as before.
    ///
    /// # Examples
    ///
    /// ```
    /// # use rmemring_proto::producer_core::ProducerCore;
    /// # fn produce(core: &mut ProducerCore, len: u32) {
    /// let slot = match core.reserve_in_batch(len) {
    ///     Some(slot) => slot,
    ///     None => {
    ///         if core.publish_due(len) {
    ///             core.publish();
    ///         }
    ///         match core.reserve(len) {
    ///             Ok(slot) => slot,
    ///             Err(_) => return,
    ///         }
    ///     }
    /// };
    /// core.commit(slot, 0, 0);
    /// # }
    /// ```
    #[inline]
    pub fn reserve_in_batch(&mut self, len: u32) -> Option<Slot> {
        // `len` is a `u32`, so the stride cannot overflow. `fast_end -
        // head` is at most a data area, or, should `head` have passed
        // `fast_end`, more than any data area, and so is what the stride
        // leaves of it: one comparison tells both the record fits.
        let stride = record_stride(len);
        let left = self.fast_end.wrapping_sub(self.head).wrapping_sub(stride);
        let fits = len <= self.max_payload && left <= self.view.data_size();
        // Then `publish_due(len)` is false (the record needs no pad, and
        // the batch stays within its bound) and `reserve(len)` takes its
        // fast path, which hands out this very slot.
        fits.then(|| Slot {
            offset: self.view.offset(self.head),
            len,
        })
    }

    /// Re-reads the consumer's released position and adopts it if it is
    /// possible; an impossible one is counted and ignored.
    ///
    /// Returns whether the position was valid.
    pub fn refresh_consumer(&mut self) -> bool {
        // ORDERING: Acquire; pairs with the Release store of `consumer_pos`
        // in `ConsumerCore::release`, so the consumer's reads of the records
        // it released happen before this producer overwrites them.
        let pos = self.view.consumer_pos().load(Ordering::Acquire);
        // A consumer can release only bytes it could see: up to the
        // *published* position, not `head`. Bytes in `[published, head)`
        // hold this batch's records, committed and not yet published; a
        // position among them is a lie that would hand those bytes back for
        // reuse before anyone read them (the BPF ring buffer's
        // CVE-2024-41009 was this check made against the wrong position).
        let valid = match self.overflow {
            // Drop-new: a released position moves forward from the last one
            // accepted, and no further than the published position. The
            // last one accepted is at most a data area behind `head`, so
            // this one is too.
            Overflow::DropNew => {
                pos.wrapping_sub(self.consumer) <= self.published.wrapping_sub(self.consumer)
            }
            // Readers that were lapped lag by any amount; the position is
            // only a hint here, but it cannot be ahead of what was published.
            Overflow::OverwriteOldest => self.published.wrapping_sub(pos) <= i64::MAX as u64,
        };
        if valid {
            self.consumer = pos;
        } else {
            self.stats.consumer_errors = self.stats.consumer_errors.wrapping_add(1);
        }
        self.update_room();
        valid
    }

    /// Free bytes as of the last consumer position seen (drop-new mode).
    #[inline]
    fn free(&self) -> u64 {
        self.view.data_size() - self.head.wrapping_sub(self.consumer)
    }

    /// Bytes from `head` on that [`Self::reserve`] may hand out without a
    /// pad record, a look at the consumer page or retiring records.
    #[inline]
    fn room(&self) -> u64 {
        let room = self.room_end.wrapping_sub(self.head);
        // A commit of a slot of another ring may have moved `head` past
        // `room_end`: no room then, until the next `reserve` recomputes it.
        if room > self.view.data_size() {
            0
        } else {
            room
        }
    }

    /// Recomputes [`Self::fast_end`] after `room_end` or `published` moved.
    #[inline]
    fn update_fast_end(&mut self) {
        let batch_left = self.batch_limit.saturating_sub(self.unpublished());
        self.fast_end = self
            .head
            .wrapping_add(core::cmp::min(self.room(), batch_left));
    }

    /// Recomputes [`Self::room_end`] (and [`Self::fast_end`]) after
    /// `head`, `consumer` or `oldest` moved.
    fn update_room(&mut self) {
        let size = self.view.data_size();
        let to_end = size - self.view.offset(self.head);
        let released = match self.overflow {
            Overflow::DropNew => self.consumer,
            Overflow::OverwriteOldest => self.oldest,
        };
        // INVARIANT: the space up to `released + size`, which the type
        // invariants keep within `size` of `head` (saturating all the same,
        // so that no arithmetic here can overflow), and no further than the
        // end of the data area.
        let free = size.saturating_sub(self.head.wrapping_sub(released));
        self.room_end = self.head.wrapping_add(core::cmp::min(to_end, free));
        self.update_fast_end();
    }

    /// Reserves room for a record of `len` payload bytes.
    ///
    /// In drop-new mode this fails with [`ReserveError::Full`] when the
    /// consumer has not released enough; the caller may retry later or count
    /// the record with [`Self::drop_record`]. In overwrite mode it always
    /// succeeds, retiring the oldest records first. A pad record may be
    /// written to the end of the data area; it becomes visible with the
    /// record.
    #[inline]
    pub fn reserve(&mut self, len: u32) -> Result<Slot, ReserveError> {
        // The common case in two comparisons: a record that fits the cached
        // room needs no pad, no look at the consumer page and no retiring.
        // `len` is a `u32`, so the stride cannot overflow.
        let stride = record_stride(len);
        if len <= self.max_payload && stride <= self.room() {
            return Ok(Slot {
                offset: self.view.offset(self.head),
                len,
            });
        }
        self.reserve_slow(len)
    }

    /// [`Self::reserve`] when the cached room is short: pads to the end of
    /// the data area, refreshes the consumer position or retires records.
    #[inline(never)]
    fn reserve_slow(&mut self, len: u32) -> Result<Slot, ReserveError> {
        if len > self.max_payload {
            return Err(ReserveError::TooLarge);
        }
        let size = self.view.data_size();
        let stride = record_stride(len);
        let offset = self.view.offset(self.head);
        let to_end = size - offset;
        let pad = if stride > to_end { to_end } else { 0 };
        let need = pad + stride;

        match self.overflow {
            Overflow::DropNew => {
                // Touch the consumer's line only when the cached position
                // says the ring is full.
                if need > self.free() {
                    // Also recomputes the room.
                    self.refresh_consumer();
                    if need > self.free() {
                        return Err(ReserveError::Full);
                    }
                }
            }
            Overflow::OverwriteOldest => self.retire_oldest(need),
        }

        if pad != 0 {
            // SAFETY: `offset` is 8-aligned and `offset + 8 <= size` because
            // `to_end` is a non-zero multiple of 8. The bytes are free: they
            // are within `need` of `head`, which the checks above made room for.
            unsafe {
                self.view
                    .write_word(offset, super::view::header_word0(pad as u32, KIND_PAD, 0))
            };
            self.head = self.head.wrapping_add(pad);
        }
        // The checks above made `need` bytes free; the room now starts after
        // the pad, and holds at least this record.
        self.update_room();
        Ok(Slot {
            offset: self.view.offset(self.head),
            len,
        })
    }

    /// Overwrite mode: retires whole records from `oldest` until `need` bytes
    /// past `head` are free, announcing the new `oldest` before any of the
    /// retired bytes are written.
    fn retire_oldest(&mut self, need: u64) {
        let size = self.view.data_size();
        let start = self.oldest;
        while self.head.wrapping_add(need).wrapping_sub(self.oldest) > size {
            let offset = self.view.offset(self.oldest);
            // SAFETY: `offset` is 8-aligned and below `size`, so the first
            // word is inside the data area. This producer wrote it.
            let (len, kind, _) = split_word0(unsafe { self.view.read_word(offset) });
            let step = match kind {
                // A pad reaches exactly to the end; with any other length
                // `oldest` would leave the record boundaries.
                KIND_PAD if u64::from(len) == size - offset => u64::from(len),
                KIND_DATA => {
                    self.stats.overwritten = self.stats.overwritten.wrapping_add(1);
                    record_stride(len)
                }
                _ => 0,
            };
            // Our own records cannot be corrupt unless someone else wrote the
            // region; then give up on the old data rather than loop on it.
            if step == 0 || step > size - offset || step > self.head.wrapping_sub(self.oldest) {
                self.oldest = self.head;
                break;
            }
            self.oldest = self.oldest.wrapping_add(step);
        }
        if self.oldest != start {
            // ORDERING: the store, then a Release fence before the data
            // writes that follow: a reader whose copy saw any of those writes
            // sees this position after its Acquire fence (the seqlock pattern;
            // pairs with `ConsumerCore::read_overwrite`).
            trace!(super::trace::Event::OverwritePosStore(self.oldest));
            self.view
                .overwrite_pos()
                .store(self.oldest, Ordering::Relaxed);
            fence(Ordering::Release);
            // ORDERING: on memory that is not write-back the Release fence
            // orders nothing for the CPU (it is no instruction on x86-64):
            // the store above may still sit in a write-combining buffer when
            // the rewrites of the retired bytes leave the CPU. Drain it first
            // (`wmb()`; pairs with the `io_rmb` of `read_overwrite`'s
            // re-check).
            self.view.io_wmb();
        }
    }

    /// Writes the header for `slot` and makes it part of the next
    /// publication. The payload must already be in place.
    #[inline]
    pub fn commit(&mut self, slot: Slot, tag: u16, timestamp_ns: u64) {
        if !self.owns(&slot) {
            return;
        }
        // SAFETY: `owns` checked that the slot lies inside the data area.
        unsafe { self.commit_own(slot, tag, timestamp_ns) };
    }

    /// [`Self::commit`] without its check that `slot` lies inside this
    /// ring's data area: for a caller that holds the slot where only this
    /// core's reservations can be (the user-space crate's `Reservation`).
    ///
    /// # Safety
    ///
    /// `slot` must come from this core's [`Self::reserve`] or
    /// [`Self::reserve_in_batch`].
    #[inline]
    pub unsafe fn commit_own(&mut self, slot: Slot, tag: u16, timestamp_ns: u64) {
        let header = RecordHeader {
            len: slot.len,
            kind: KIND_DATA,
            tag,
            seq: self.seq,
            timestamp_ns,
        };
        // SAFETY: `reserve` handed out `slot.offset` with a whole stride of
        // free bytes behind it (the caller's guarantee, or `owns`), so the
        // header fits inside the data area.
        unsafe { self.view.write_header(slot.offset, &header) };
        self.advance(&slot);
    }

    /// Moves the producer's position past `slot`, whose header and payload
    /// are written: the record is part of the next publication.
    #[inline]
    fn advance(&mut self, slot: &Slot) {
        // INVARIANT: `reserve` handed the slot out of the room, so this only
        // shrinks the room (and what `fast_end` leaves), without a store to
        // either; a slot that did not come from `reserve` may move `head`
        // past them, which leaves no room until the next `reserve`
        // recomputes it.
        self.head = self.head.wrapping_add(record_stride(slot.len));
        // `stats.records` is `seq - stats.dropped`, computed when read.
        self.seq = self.seq.wrapping_add(1);
        self.stats.bytes = self.stats.bytes.wrapping_add(u64::from(slot.len));
    }

    /// Reserves room for between one and `max` records (at least one, even
    /// if `max` is 0) of `len` payload bytes each, one after the other: as
    /// [`Self::reserve`] for the first, then as many more as fit the room
    /// that leaves without a pad, a look at the consumer page or retiring
    /// records, and within the batch bound ([`Self::publish_due`]), with
    /// one division.
    ///
    /// The caller asks [`Self::publish_due`] first, as for a single record.
    ///
    /// # Examples
    ///
    /// ```
    /// # use rmemring_proto::producer_core::ProducerCore;
    /// # fn produce(core: &mut ProducerCore) {
    /// let Ok(run) = core.reserve_run(64, 100) else { return };
    /// assert!((1..=100).contains(&run.count()));
    /// // ... write the payloads at `run.offset() + i * run.stride() + 24` ...
    /// let n = run.count();
    /// core.commit_run(run, n, 0, 0);
    /// # }
    /// ```
    #[inline]
    pub fn reserve_run(&mut self, len: u32, max: u32) -> Result<Run, ReserveError> {
        let first = self.reserve(len)?;
        let stride = record_stride(len);
        // `reserve` left at least the first record's stride in the room, so
        // `fit` is at least 1.
        let fit = self.room() / stride;
        // The batch bound: the unpublished bytes plus the run's; the first
        // record alone may exceed it (`publish_due` let it go).
        let budget = self.batch_limit.saturating_sub(self.unpublished()) / stride;
        let count = u64::from(max).min(fit).min(budget).max(1);
        Ok(Run {
            offset: first.offset,
            len,
            // At most `max`, a `u32`.
            count: count as u32,
        })
    }

    /// Writes the headers of `run`'s first `n` records (at most
    /// [`Run::count`]; the rest are abandoned, as a slot dropped
    /// uncommitted), with consecutive sequence numbers, `tag` and
    /// `timestamp_ns`, and makes them part of the next publication. Their
    /// payloads must already be in place.
    #[inline]
    pub fn commit_run(&mut self, run: Run, n: u32, tag: u16, timestamp_ns: u64) {
        if !self.owns_run(&run) {
            return;
        }
        let n = n.min(run.count);
        let stride = run.stride();
        let word0 = super::view::header_word0(run.len, KIND_DATA, 0) | (u64::from(tag) << 48);
        let mut offset = run.offset;
        for i in 0..u64::from(n) {
            // SAFETY: `reserve_run` handed out `count` strides from
            // `run.offset` inside the data area (checked by `owns_run`),
            // and `i < n <= count`.
            unsafe {
                self.view.write_word(offset, word0);
                self.view.write_word(offset + 8, self.seq.wrapping_add(i));
                self.view.write_word(offset + 16, timestamp_ns);
            }
            offset += stride;
        }
        let bytes = stride * u64::from(n);
        // INVARIANT: as in `advance`.
        self.head = self.head.wrapping_add(bytes);
        self.seq = self.seq.wrapping_add(u64::from(n));
        self.stats.bytes = self
            .stats
            .bytes
            .wrapping_add(u64::from(run.len) * u64::from(n));
    }

    /// Reserves contiguous room for records of any payload lengths: as
    /// [`Self::reserve`] for a first record of `first_len` payload bytes,
    /// then as far on as the room left without a pad, a look at the
    /// consumer page or retiring records, and the batch bound
    /// ([`Self::publish_due`]) reach, up to `max_bytes` (rounded down to a
    /// multiple of [`RECORD_ALIGN`]; the first record's stride at least).
    ///
    /// The caller writes whole records from [`Span::offset`] on, each a
    /// header and a payload padded to its [`record_stride`], with
    /// consecutive sequence numbers from [`Self::next_seq`], then commits
    /// them with [`Self::commit_span`]. It asks [`Self::publish_due`]
    /// first, as for a single record.
    ///
    /// # Examples
    ///
    /// ```
    /// # use rmemring_proto::producer_core::ProducerCore;
    /// # use rmemring_proto::layout::record_stride;
    /// # fn produce(core: &mut ProducerCore) {
    /// let Ok(span) = core.reserve_span(64, 4096) else { return };
    /// assert!(span.bytes() >= record_stride(64));
    /// // ... write records of any sizes from `span.offset()` on ...
    /// let (used, records, payload_bytes) = (record_stride(64), 1, 64);
    /// core.commit_span(span, used, records, payload_bytes);
    /// # }
    /// ```
    #[inline]
    pub fn reserve_span(&mut self, first_len: u32, max_bytes: u64) -> Result<Span, ReserveError> {
        let first = self.reserve(first_len)?;
        // `reserve` left at least the first record's stride in the room,
        // which, like the batch bound and the stride, is a multiple of
        // `RECORD_ALIGN` (positions and the data size are).
        let budget = self.batch_limit.saturating_sub(self.unpublished());
        let bytes = (self.room().min(budget).min(max_bytes) & !(RECORD_ALIGN - 1))
            .max(record_stride(first_len));
        Ok(Span {
            offset: first.offset,
            bytes,
            seq: self.seq,
        })
    }

    /// Makes the first `used` bytes of `span` (at most [`Span::bytes`],
    /// rounded down to a multiple of [`RECORD_ALIGN`]) part of the next
    /// publication: `records` whole records the caller wrote there, with
    /// the sequence numbers from [`Self::next_seq`] on and `payload_bytes`
    /// of payload between them. The rest of the span is abandoned, as a
    /// slot dropped uncommitted.
    ///
    /// The core does not read the records back: a caller that wrote them
    /// wrongly hands the consumer records it will refuse, but cannot make
    /// this producer write outside the span. A span that is not this
    /// producer's latest (another ring's, or one reserved before a record
    /// was committed or dropped) commits nothing.
    #[inline]
    pub fn commit_span(&mut self, span: Span, used: u64, records: u64, payload_bytes: u64) {
        if !self.owns_span(&span) {
            return;
        }
        let used = used.min(span.bytes) & !(RECORD_ALIGN - 1);
        debug_assert!(
            records
                .checked_mul(HEADER_SIZE)
                .and_then(|headers| headers.checked_add(payload_bytes))
                .is_some_and(|bytes| bytes <= used),
            "{records} records of {payload_bytes} payload bytes in {used} bytes"
        );
        // INVARIANT: as in `advance`: the span came out of the room.
        self.head = self.head.wrapping_add(used);
        self.seq = self.seq.wrapping_add(records);
        self.stats.bytes = self.stats.bytes.wrapping_add(payload_bytes);
    }

    /// Counts a record that was not written for lack of room. It still uses
    /// a sequence number, so the consumer sees the gap.
    pub fn drop_record(&mut self) {
        self.seq = self.seq.wrapping_add(1);
        self.stats.dropped = self.stats.dropped.wrapping_add(1);
    }

    /// Makes every committed record visible to the consumer with one store,
    /// and says whether the consumer asked to be woken.
    ///
    /// Returns `true` at most once per consumer sleep; the caller then wakes
    /// the consumer (a wait queue in the kernel, [`Self::bump_wake_seq`] and
    /// a futex in user space).
    pub fn publish(&mut self) -> bool {
        self.publish_quietly();
        // ORDERING: SeqCst fence between the `producer_pos` store above and
        // the `need_wakeup` load below; pairs with the fence in
        // `ConsumerCore::prepare_sleep`, which orders its `need_wakeup` store
        // before its `producer_pos` load. At least one side sees the other's
        // store, so a consumer never sleeps on data it was not woken for.
        fence(Ordering::SeqCst);
        // ORDERING: Acquire, and ordered after the `producer_pos` store by
        // the fence above; pairs with the Release store in
        // `ConsumerCore::arm_sleep`, so the `consumer_pos` below is at
        // least the one the consumer released before it armed `token`.
        let token = self.view.need_wakeup().load(Ordering::Acquire);
        if token == 0 || token == self.last_woken_token {
            return false;
        }
        // The consumer armed `token` after releasing all this producer has
        // published: it saw this publication and sleeps until the next.
        // Waking it now would spend its token on records it has read, and
        // a sleeper in `poll` or `epoll`, finding nothing readable, sleeps
        // on; the next publication would then find the token spent. (Seen
        // on TCG: the producer stalled between its store and this load
        // while the consumer read the records and armed again.)
        // ORDERING: Relaxed; ordered by the Acquire load above. A hostile
        // consumer can only withhold its own wake-ups with it.
        if self.view.consumer_pos().load(Ordering::Relaxed) == self.published {
            return false;
        }
        // One wake-up per sleep: the consumer picks a new token each time.
        self.last_woken_token = token;
        self.stats.wakeups = self.stats.wakeups.wrapping_add(1);
        // ORDERING: Relaxed; a statistic.
        self.view
            .wakeups()
            .store(self.stats.wakeups, Ordering::Relaxed);
        true
    }

    /// Forgets which wake-up request was answered last, for a new consumer:
    /// its tokens continue from a consumer page that the previous consumer
    /// could write, so one of them may equal the last token answered. At
    /// most one spurious wake-up follows.
    pub fn forget_woken_token(&mut self) {
        self.last_woken_token = 0;
    }

    /// Makes every committed record visible, as [`Self::publish`] does,
    /// without looking at the consumer's wake-up request: a sleeping
    /// consumer is not woken, and its request stays armed for the next
    /// [`Self::publish`]. For records that should not wake anyone by
    /// themselves (the BPF ring buffer's `BPF_RB_NO_WAKEUP`): a tracer of
    /// context switches publishing the switch of the consumer that is
    /// going to sleep would otherwise wake it at once, for ever.
    #[inline]
    pub fn publish_quietly(&mut self) {
        if self.head != self.published {
            // ORDERING: on memory that is not write-back, the records'
            // stores may still be in write-combining buffers, which a
            // Release store (a plain `mov` on x86-64) does not drain: drain
            // them first (`wmb()`), as the kernel's drivers do before they
            // ring a doorbell. Nothing on write-back memory.
            self.view.io_wmb();
            // ORDERING: Release; pairs with the Acquire load of
            // `producer_pos` in `ConsumerCore`, so the records written above
            // are visible before the position that covers them.
            trace!(super::trace::Event::ProducerPosStore(self.head));
            self.view.producer_pos().store(self.head, Ordering::Release);
            self.published = self.head;
            self.update_fast_end();
        }
        self.flush_stats();
    }

    /// For futex waiters: advances the control page's wake sequence word.
    /// Call after [`Self::publish`] returned `true`, then wake the futex.
    pub fn bump_wake_seq(&self) {
        // ORDERING: Release; the futex waiter compares this word, and a
        // changed value must come with the publication before it.
        self.view.wake_seq().fetch_add(1, Ordering::Release);
    }

    /// Stores the counters in the control page.
    #[inline]
    pub fn flush_stats(&self) {
        let v = &self.view;
        let stats = self.stats();
        // ORDERING: Relaxed; statistics, read without ordering requirements.
        v.records_produced().store(stats.records, Ordering::Relaxed);
        v.bytes_produced().store(stats.bytes, Ordering::Relaxed);
        v.records_dropped().store(stats.dropped, Ordering::Relaxed);
        v.records_overwritten()
            .store(stats.overwritten, Ordering::Relaxed);
        v.consumer_errors()
            .store(stats.consumer_errors, Ordering::Relaxed);
    }
}

/// Writing payloads in place.
impl ProducerCore {
    /// Writes record `seq`'s test pattern (see [`pattern`](super::pattern))
    /// into `slot`'s payload, or only its first word if `first_word_only`.
    ///
    /// Uses aligned 8-byte stores only, which are valid on uncached and
    /// write-combined mappings too, through
    /// [`pattern::for_each_word`](super::pattern::for_each_word): no check
    /// per word, the slot's bounds having been checked once. A partial last
    /// word is written whole: its extra bytes are the record's padding.
    pub fn write_pattern(&self, slot: &Slot, seq: u64, first_word_only: bool) {
        if !self.owns(slot) {
            return;
        }
        let words = u64::from(slot.len).div_ceil(8);
        let words = if first_word_only { words.min(1) } else { words };
        // `owns` checked `slot.offset + stride <= data_size`, so neither
        // this nor any word's offset below wraps.
        let payload = slot.offset.wrapping_add(HEADER_SIZE);
        super::pattern::for_each_word(seq, words, |i, word| {
            // SAFETY: `reserve` handed out `slot.offset` with a stride of
            // `HEADER_SIZE + len` rounded up to 8 bytes behind it, inside the
            // data area (checked by `owns`), so every word up to
            // `ceil(len / 8)` fits; `i < words`.
            unsafe { self.view.write_word(payload.wrapping_add(i << 3), word) };
        });
    }

    /// Copies `payload` into `slot`'s payload with one relaxed atomic
    /// store per 8-byte word (see [`RingView::copy_payload_in`]): the write
    /// path for overwrite mode, where a lapped reader may copy the same
    /// bytes meanwhile. A partial last word is written whole. Writes
    /// nothing if `payload` is not `slot.len()` bytes long.
    #[cfg(not(loom))]
    pub fn write_payload(&self, slot: &Slot, payload: &[u8]) {
        if !self.owns(slot) || payload.len() != slot.len as usize {
            return;
        }
        // SAFETY: `reserve` handed out `slot.offset` with a stride of
        // `HEADER_SIZE + len` rounded up to 8 bytes behind it, inside the
        // data area (checked by `owns`), and this producer owns those bytes
        // until it commits the slot.
        unsafe { self.view.copy_payload_in(slot.offset, payload) };
    }

    /// The address of `slot`'s payload: `slot.len` writable bytes.
    ///
    /// Writing them is safe until the slot is committed; the address stays
    /// valid as long as the ring's memory does.
    #[cfg(not(loom))]
    #[inline]
    pub fn payload_ptr(&self, slot: &Slot) -> *mut u8 {
        // A slot of another ring gets the start of this one's data area,
        // never an address outside it.
        let offset = if self.owns(slot) { slot.offset } else { 0 };
        // SAFETY: `offset + HEADER_SIZE <= offset + stride <= data_size`,
        // checked by `owns` (or 0, and the data area holds a header).
        unsafe { self.view.payload_ptr(offset) }
    }

    /// [`Self::payload_ptr`] without its check that `slot` lies inside
    /// this ring's data area (see [`Self::commit_own`]).
    ///
    /// # Safety
    ///
    /// `slot` must come from this core's [`Self::reserve`] or
    /// [`Self::reserve_in_batch`].
    #[cfg(not(loom))]
    #[inline]
    pub unsafe fn own_payload_ptr(&self, slot: &Slot) -> *mut u8 {
        // SAFETY: This core handed the slot out with a whole stride of free
        // bytes behind its offset, inside the data area.
        unsafe { self.view.payload_ptr(slot.offset) }
    }

    /// Whether `slot` lies inside this ring's data area, as every slot
    /// `reserve` made for this ring does (a debug-build assertion: a slot
    /// used with another producer is a bug; release builds ignore it).
    #[inline]
    fn owns(&self, slot: &Slot) -> bool {
        let fits = slot
            .offset
            .checked_add(record_stride(slot.len))
            .is_some_and(|end| end <= self.view.data_size());
        debug_assert!(fits, "a slot of another ring");
        fits
    }

    /// Whether `run` lies inside this ring's data area, as every run
    /// `reserve_run` made for this ring does (see [`Self::owns`]).
    #[inline]
    fn owns_run(&self, run: &Run) -> bool {
        let fits = run
            .stride()
            .checked_mul(u64::from(run.count))
            .and_then(|bytes| run.offset.checked_add(bytes))
            .is_some_and(|end| end <= self.view.data_size());
        debug_assert!(fits, "a run of another ring");
        fits
    }

    /// Whether `span` is the latest this producer made and lies inside
    /// this ring's data area, as a span `reserve_span` made for this ring
    /// is until a record is committed or dropped: it starts at the
    /// producer's position, with its sequence number (a debug-build
    /// assertion, as in [`Self::owns`]). A span kept across a lap of the
    /// ring starts at the same offset, but not with the same sequence
    /// number.
    #[inline]
    fn owns_span(&self, span: &Span) -> bool {
        let fits = span.seq == self.seq
            && span.offset == self.view.offset(self.head)
            && span
                .offset
                .checked_add(span.bytes)
                .is_some_and(|end| end <= self.view.data_size());
        debug_assert!(fits, "a span of another ring, or one committed already");
        fits
    }

    /// The address of the byte at `span`'s offset, where its first
    /// record's header goes; [`Span::bytes`] bytes from it are writable
    /// until the span is committed (or a record committed or dropped
    /// otherwise), and the address stays valid as long as the ring's
    /// memory does. A span that is not this producer's latest
    /// ([`Self::commit_span`]) gets a null pointer (and fails a debug
    /// build's assertion).
    #[cfg(not(loom))]
    #[inline]
    pub fn span_ptr(&self, span: &Span) -> *mut u8 {
        if !self.owns_span(span) {
            return core::ptr::null_mut();
        }
        // SAFETY: `owns_span` checked that the span lies inside the data
        // area; it holds at least one record's stride, so at least
        // `HEADER_SIZE` bytes, and the payload pointer is `HEADER_SIZE`
        // bytes past the span's first byte.
        unsafe { self.view.payload_ptr(span.offset).sub(HEADER_SIZE as usize) }
    }

    /// The address of the payload of `run`'s first record: record `i`'s
    /// is [`Run::stride`] bytes times `i` further, for `i` below
    /// [`Run::count`], each [`Run::len`] writable bytes.
    ///
    /// Writing them is safe until the run is committed; the address stays
    /// valid as long as the ring's memory does. A run of another ring gets
    /// a null pointer.
    #[cfg(not(loom))]
    #[inline]
    pub fn run_payload_ptr(&self, run: &Run) -> *mut u8 {
        if !self.owns_run(run) {
            return core::ptr::null_mut();
        }
        // SAFETY: `run.offset + HEADER_SIZE <= data_size`, checked by
        // `owns_run` (a run holds at least one record).
        unsafe { self.view.payload_ptr(run.offset) }
    }

    /// Copies `payload` into record `i` of `run` with one relaxed atomic
    /// store per 8-byte word, as [`Self::write_payload`] does for a slot.
    /// Writes nothing if `i` is not below [`Run::count`] or `payload` is
    /// not [`Run::len`] bytes long.
    #[cfg(not(loom))]
    pub fn write_run_payload(&self, run: &Run, i: u32, payload: &[u8]) {
        if !self.owns_run(run) || i >= run.count || payload.len() != run.len as usize {
            return;
        }
        // SAFETY: record `i < count` of the run lies inside the data area
        // (checked by `owns_run`), and this producer owns its bytes until
        // it commits the run.
        unsafe {
            self.view
                .copy_payload_in(run.offset + u64::from(i) * run.stride(), payload)
        };
    }

    /// Writes the payload of `slot` word by word (the model memory has no
    /// byte addresses). `words` must fill the slot.
    #[cfg(loom)]
    pub fn write_payload_words(&self, slot: &Slot, words: &[u64]) {
        for (i, w) in words.iter().enumerate() {
            // SAFETY: The slot holds `len` bytes, a multiple of 8 in the model.
            unsafe {
                self.view
                    .write_word(slot.offset + HEADER_SIZE + 8 * i as u64, *w)
            };
        }
    }
}

const _: () = assert!(HEADER_SIZE % 8 == 0);
