// SPDX-License-Identifier: GPL-2.0-only OR MIT

//! The consumer's index logic: find, validate and release records, and the
//! consumer half of the wake-up protocol.
//!
//! The user-space `Consumer` of the `rmemring` crate drives this code, and so does
//! the driver's `read()` path. It reads the control page and the data area,
//! which it does not trust: every header is read once, then checked against
//! the data area and the published producer position before any of its
//! fields are used, and a bad one is an error, never an out-of-bounds access.

use super::layout::{
    record_stride,
    RecordHeader,
    HEADER_SIZE,
    KIND_DATA,
    KIND_PAD,
    RECORD_ALIGN, //
};
use super::modes::Overflow;
use super::sync::{
    fence,
    Ordering, //
};
use super::view::{
    split_word0,
    RingView, //
};

/// What was wrong with the ring as the consumer found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadError {
    /// The producer position is behind the consumer, more than a data area
    /// ahead of it (drop-new mode), or one of the two is not a multiple of
    /// [`RECORD_ALIGN`]. In overwrite mode `producer` may also be the
    /// overwrite position.
    ProducerPosition {
        /// The consumer's position.
        consumer: u64,
        /// The producer position it read.
        producer: u64,
    },
    /// The record header at `pos` is invalid.
    BadRecord {
        /// Position of the header.
        pos: u64,
        /// What is wrong with it.
        defect: RecordDefect,
    },
    /// The record at `pos` has a sequence number below the next expected one.
    Sequence {
        /// Position of the header.
        pos: u64,
        /// The lowest sequence number the consumer could accept.
        expected: u64,
        /// The one it found.
        found: u64,
    },
    /// The caller's buffer is smaller than the record's payload.
    BufferTooSmall {
        /// Payload bytes of the record.
        needed: u32,
    },
}

impl core::fmt::Display for ReadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            ReadError::ProducerPosition { consumer, producer } => write!(
                f,
                "producer position {producer:#x} is impossible for a consumer at {consumer:#x} \
                 (behind it, more than the data area ahead of it, or not a multiple of 8)"
            ),
            ReadError::BadRecord { pos, defect } => {
                write!(f, "record at position {pos:#x}: ")?;
                match defect {
                    RecordDefect::Kind(k) => write!(f, "unknown kind {k}"),
                    RecordDefect::Length(l) => {
                        write!(f, "payload length {l} exceeds the ring's maximum")
                    }
                    RecordDefect::Wraps(l) => {
                        write!(f, "payload length {l} runs past the end of the data area")
                    }
                    RecordDefect::PadLength(l) => {
                        write!(f, "pad length {l} does not reach the end of the data area")
                    }
                    RecordDefect::PastProducer(l) => {
                        write!(f, "length {l} runs past the producer position")
                    }
                }
            }
            ReadError::Sequence {
                pos,
                expected,
                found,
            } => write!(
                f,
                "record at position {pos:#x} has sequence number {found}, \
                 below the expected {expected}"
            ),
            ReadError::BufferTooSmall { needed } => {
                write!(f, "the buffer cannot hold a {needed}-byte payload")
            }
        }
    }
}

/// The ways a record header can be invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordDefect {
    /// `kind` is neither data nor pad.
    Kind(u16),
    /// The payload length exceeds the ring's `max_payload`.
    Length(u32),
    /// The record would run past the end of the data area.
    Wraps(u32),
    /// A pad record's length does not reach exactly to the end of the area.
    PadLength(u32),
    /// The record extends past the published producer position.
    PastProducer(u32),
}

/// A record the consumer found: its header fields and where its payload is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordMeta {
    /// Byte position of the header.
    pub pos: u64,
    /// Offset of the header in the data area; the payload follows it.
    pub offset: u64,
    /// Payload bytes.
    pub len: u32,
    /// Application-defined type.
    pub tag: u16,
    /// Sequence number.
    pub seq: u64,
    /// Producer timestamp, `CLOCK_MONOTONIC` nanoseconds.
    pub timestamp_ns: u64,
    /// Records missing from the sequence just before this one.
    pub lost_before: u64,
}

impl RecordMeta {
    /// The record's header, as the ring had it.
    pub fn header(&self) -> RecordHeader {
        RecordHeader {
            len: self.len,
            kind: KIND_DATA,
            tag: self.tag,
            seq: self.seq,
            timestamp_ns: self.timestamp_ns,
        }
    }

    /// Offset of the payload in the data area.
    pub fn payload_offset(&self) -> u64 {
        self.offset + HEADER_SIZE
    }
}

/// What [`ConsumerCore::read_overwrite`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverwriteRead {
    /// A record, whose payload was copied intact into the caller's buffer.
    Record(RecordMeta),
    /// Nothing is published beyond the consumer's position: sleep with
    /// [`ConsumerCore::prepare_sleep`].
    Empty,
    /// Records are published beyond the consumer's position, but none could
    /// be read in this call: the producer kept lapping this reader (it
    /// retired each record before the copy of it was done, [`LAP_RETRIES`]
    /// times, or the discarded copies added up to more than the data area),
    /// or it is retiring records it has not published yet. Try again after
    /// the producer's next publication: sleep with
    /// [`ConsumerCore::prepare_sleep_until_published`], whose wake-up that
    /// publication brings. (`prepare_sleep` would decline, since records
    /// are published beyond the consumer's position, and a caller that
    /// loops on it would spin.)
    Lapped,
}

/// Counters the consumer publishes in its page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct ConsumerStats {
    /// Data records read.
    pub records: u64,
    /// Payload bytes read.
    pub bytes: u64,
    /// Records missing from the sequence (dropped or overwritten).
    pub lost: u64,
    /// Times the consumer went to sleep.
    pub sleeps: u64,
}

/// A consumer's position and counters at one moment; see
/// [`ConsumerCore::checkpoint`].
#[derive(Clone, Copy, Debug)]
pub struct Checkpoint {
    pos: u64,
    expected_seq: u64,
    resync: bool,
    stats: ConsumerStats,
}

/// How many times [`ConsumerCore::read_overwrite`] restarts after being
/// lapped before it gives up for this call with [`OverwriteRead::Lapped`].
pub const LAP_RETRIES: u32 = 64;

/// How far ahead of the read position [`ConsumerCore::next_record`] asks the
/// CPU to fetch records, in bytes. Chosen on the host benchmark
/// (`benches/host.rs`, two x86-64 cores): 2 and 4 KiB both made 8-byte
/// records about 2.3 times as fast and 64-byte ones 1.5 times; 4 KiB also
/// made 1 KiB records 1.35 times as fast, where 2 KiB did nothing.
const PREFETCH_AHEAD: u64 = 4096;

/// The consumer side of a ring.
///
/// # Invariants
///
/// - `released <= pos <= head` as positions (modulo 2^64), all three within
///   one data area of each other in drop-new mode.
/// - `head` is a producer position loaded with Acquire ordering, so every
///   record in `[pos, head)` is fully written (drop-new mode).
#[doc(hidden)]
pub struct ConsumerCore {
    view: RingView,
    overflow: Overflow,
    max_payload: u32,
    pos: u64,
    released: u64,
    head: u64,
    expected_seq: u64,
    /// The next record's sequence number starts the count afresh.
    resync: bool,
    /// The `need_wakeup` value of the last sleep attempt, also kept in the
    /// consumer page's `wake_token`.
    sleep_token: u32,
    /// The stride [`Self::prefetch_ahead`] last computed its distance for,
    /// and that distance: records in a row mostly have one size.
    prefetch_for: (u64, u64),
    stats: ConsumerStats,
}

impl ConsumerCore {
    /// Takes over the consumer side of a ring, continuing from the position
    /// and counters in its consumer page.
    ///
    /// Fails if that position and the producer's are inconsistent.
    pub fn attach(view: RingView, overflow: Overflow, max_payload: u32) -> Result<Self, ReadError> {
        // ORDERING: Relaxed; only this side writes its own page.
        let pos = view.consumer_pos().load(Ordering::Relaxed);
        let stats = ConsumerStats {
            records: view.records_consumed().load(Ordering::Relaxed),
            bytes: view.bytes_consumed().load(Ordering::Relaxed),
            lost: view.records_lost().load(Ordering::Relaxed),
            sleeps: view.sleeps().load(Ordering::Relaxed),
        };
        let mut core = Self {
            overflow,
            max_payload,
            pos,
            released: pos,
            head: pos,
            expected_seq: stats.records.wrapping_add(stats.lost),
            resync: false,
            // Continue the tokens of the consumers before this one: the
            // producer may have answered their last one already.
            // ORDERING: Relaxed; only consumers write it, one at a time.
            sleep_token: view.wake_token().load(Ordering::Relaxed),
            prefetch_for: (0, 0),
            stats,
            view,
        };
        core.refresh_head()?;
        Ok(core)
    }

    /// The ring this consumer reads.
    #[inline]
    pub fn view(&self) -> &RingView {
        &self.view
    }

    /// The position of the next record to read.
    #[inline]
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The sequence number the next record should have.
    #[inline]
    pub fn expected_seq(&self) -> u64 {
        self.expected_seq
    }

    /// Counters so far, including those not yet published.
    #[inline]
    pub fn stats(&self) -> ConsumerStats {
        self.stats
    }

    /// Bytes read but not yet released.
    #[inline]
    pub fn unreleased(&self) -> u64 {
        self.pos.wrapping_sub(self.released)
    }

    /// Bytes published by the producer and not yet read, as of the last
    /// producer position loaded.
    #[inline]
    pub fn cached_backlog(&self) -> u64 {
        self.head.wrapping_sub(self.pos)
    }

    /// Loads the producer position and checks it against ours.
    ///
    /// Returns the bytes available to read.
    pub fn refresh_head(&mut self) -> Result<u64, ReadError> {
        // ORDERING: Acquire; pairs with the Release store in
        // `ProducerCore::publish`, making the records it covers visible.
        trace!(super::trace::Event::ProducerPosLoad);
        let head = self.view.producer_pos().load(Ordering::Acquire);
        // ORDERING: on memory that is not write-back, loads may pass each
        // other even after an Acquire load: none of the records' bytes may
        // be read before this load (`rmb()`; pairs with the `io_wmb` in
        // `ProducerCore::publish`). Nothing on write-back memory.
        self.view.io_rmb();
        let backlog = head.wrapping_sub(self.pos);
        // Records start at multiples of `RECORD_ALIGN`, so positions are
        // too; a misaligned one would have us read a header straddling the
        // end of the data area. Ours is checked here as well, because
        // `attach` takes it from the consumer page, which anyone who can
        // consume may have written.
        if (head | self.pos) % RECORD_ALIGN != 0 {
            return Err(ReadError::ProducerPosition {
                consumer: self.pos,
                producer: head,
            });
        }
        if self.overflow == Overflow::DropNew && backlog > self.view.data_size() {
            return Err(ReadError::ProducerPosition {
                consumer: self.pos,
                producer: head,
            });
        }
        self.head = head;
        Ok(backlog)
    }

    /// Finds the next record (drop-new mode), skipping pad records.
    ///
    /// The payload is `len` bytes at [`RingView::payload_ptr`]`(offset)` and
    /// stays intact until [`Self::release`] hands its bytes back, because in
    /// drop-new mode the producer never writes past the released position.
    /// Reloads the producer position only when the cached one is used up.
    #[inline]
    pub fn next_record(&mut self) -> Result<Option<RecordMeta>, ReadError> {
        self.next_record_if(|_| true)
    }

    /// Like [`Self::next_record`], but takes the record only if `take`
    /// accepts its (validated) metadata; otherwise it stays the next record
    /// and this returns `None` with [`Self::cached_backlog`] non-zero.
    #[inline]
    pub fn next_record_if(
        &mut self,
        take: impl FnOnce(&RecordMeta) -> bool,
    ) -> Result<Option<RecordMeta>, ReadError> {
        self.next_record_from(true, take)
    }

    /// Like [`Self::next_record`], but never loads the producer position:
    /// returns `None` once the records published at the last
    /// [`Self::refresh_head`] are used up. A consumer that reads a batch at
    /// a time this way bounds every batch, so it releases space while a
    /// producer keeps publishing, instead of holding it all until it has
    /// caught up.
    #[inline]
    pub fn next_cached_record(&mut self) -> Result<Option<RecordMeta>, ReadError> {
        self.next_record_from(false, |_| true)
    }

    #[inline]
    fn next_record_from(
        &mut self,
        refresh: bool,
        take: impl FnOnce(&RecordMeta) -> bool,
    ) -> Result<Option<RecordMeta>, ReadError> {
        loop {
            if self.pos == self.head && (!refresh || self.refresh_head()? == 0) {
                return Ok(None);
            }
            let (meta, stride) = self.check_header()?;
            if let Some(mut meta) = meta {
                self.prefetch_ahead(stride);
                if !take(&meta) {
                    return Ok(None);
                }
                self.account(&mut meta)?;
                self.pos = self.pos.wrapping_add(stride);
                return Ok(Some(meta));
            }
            self.pos = self.pos.wrapping_add(stride);
        }
    }

    /// Asks the CPU to start fetching the published record a few kilobytes
    /// ahead of the read position, taking this record's `stride` as the
    /// likely one of the records in between.
    ///
    /// The producer wrote those lines, so without the hint the consumer
    /// stalls on a transfer from the producer's cache at nearly every new
    /// line; the hardware prefetchers alone do not run far enough ahead.
    /// Only published lines are hinted (the producer is done with them),
    /// and at most one line per record, on a predicted header, so records
    /// of a few kilobytes and more do not drag their payloads over. This is
    /// only a hint: nothing is read, and where the CPU has no prefetch hint
    /// (or the kernel, which is built without SSE) it compiles to nothing.
    #[inline(always)]
    fn prefetch_ahead(&mut self, stride: u64) {
        prefetch_ahead(
            &self.view,
            &mut self.prefetch_for,
            self.pos,
            self.head,
            stride,
        );
    }

    /// The read position and counters, to return to with [`Self::rewind`]
    /// if what was read since cannot be delivered.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            pos: self.pos,
            expected_seq: self.expected_seq,
            resync: self.resync,
            stats: self.stats,
        }
    }

    /// Returns to a checkpoint taken since the last [`Self::release`], so
    /// the records read since are read again.
    pub fn rewind(&mut self, checkpoint: Checkpoint) {
        if checkpoint.pos.wrapping_sub(self.released) <= self.pos.wrapping_sub(self.released) {
            self.pos = checkpoint.pos;
            self.expected_seq = checkpoint.expected_seq;
            self.resync = checkpoint.resync;
            self.stats = checkpoint.stats;
        }
    }

    /// Reads and validates the header at `pos` against `head`.
    ///
    /// Returns the record (or `None` for a pad) and its stride.
    #[inline]
    fn check_header(&self) -> Result<(Option<RecordMeta>, u64), ReadError> {
        let size = self.view.data_size();
        let pos = self.pos;
        let offset = self.view.offset(pos);
        let to_end = size - offset;
        let available = self.head.wrapping_sub(pos);
        let bad = |defect| ReadError::BadRecord { pos, defect };
        // SAFETY: `offset` is a multiple of 8 below `size` (positions only
        // advance by multiples of 8), so the first word is in the data area.
        let (len, kind, tag) = split_word0(unsafe { self.view.read_word(offset) });
        match kind {
            KIND_PAD => {
                // A pad covers exactly the rest of the area...
                if u64::from(len) != to_end {
                    return Err(bad(RecordDefect::PadLength(len)));
                }
                // ...and only published bytes.
                if to_end > available {
                    return Err(bad(RecordDefect::PastProducer(len)));
                }
                Ok((None, to_end))
            }
            KIND_DATA => {
                // The length is bounded before it is used in arithmetic...
                if len > self.max_payload {
                    return Err(bad(RecordDefect::Length(len)));
                }
                let stride = record_stride(len);
                // ...the record lies inside the data area...
                if stride > to_end {
                    return Err(bad(RecordDefect::Wraps(len)));
                }
                // ...and inside what the producer has published.
                if stride > available {
                    return Err(bad(RecordDefect::PastProducer(len)));
                }
                // SAFETY: `offset + HEADER_SIZE <= offset + stride <= size`.
                let (seq, timestamp_ns) = unsafe { self.view.read_seq_ts(offset) };
                let meta = RecordMeta {
                    pos,
                    offset,
                    len,
                    tag,
                    seq,
                    timestamp_ns,
                    lost_before: 0,
                };
                Ok((Some(meta), stride))
            }
            other => Err(bad(RecordDefect::Kind(other))),
        }
    }

    /// Checks a record's sequence number and counts it and any gap before it.
    #[inline]
    fn account(&mut self, meta: &mut RecordMeta) -> Result<(), ReadError> {
        let gap = if self.resync {
            self.resync = false;
            0
        } else {
            meta.seq.wrapping_sub(self.expected_seq)
        };
        if gap > i64::MAX as u64 {
            return Err(ReadError::Sequence {
                pos: meta.pos,
                expected: self.expected_seq,
                found: meta.seq,
            });
        }
        meta.lost_before = gap;
        self.expected_seq = meta.seq.wrapping_add(1);
        self.stats.lost = self.stats.lost.wrapping_add(gap);
        self.stats.records = self.stats.records.wrapping_add(1);
        self.stats.bytes = self.stats.bytes.wrapping_add(u64::from(meta.len));
        Ok(())
    }

    /// Finds the next record in overwrite mode and copies its payload into
    /// `dst`, returning it only if the producer did not overwrite it while
    /// it was being copied.
    ///
    /// A reader that was lapped skips to the oldest intact record; the
    /// records it missed show as [`RecordMeta::lost_before`]. Returns
    /// [`OverwriteRead::Empty`] when nothing is published beyond the
    /// consumer's position, and [`OverwriteRead::Lapped`] when records are
    /// published but none could be read in this call (see there).
    ///
    /// The work of one call is bounded: at most [`LAP_RETRIES`] attempts,
    /// and it stops once the payload bytes of discarded copies exceed the
    /// data area, so a call copies at most about `data_size + max_payload`
    /// bytes, whatever the producer does.
    pub fn read_overwrite(&mut self, dst: &mut [u8]) -> Result<OverwriteRead, ReadError> {
        let size = self.view.data_size();
        let mut discarded = 0u64;
        for _ in 0..LAP_RETRIES {
            if self.pos == self.head && self.refresh_head()? == 0 {
                return Ok(OverwriteRead::Empty);
            }
            // ORDERING: Acquire; pairs with the Release fence after the store
            // in `ProducerCore::retire_oldest`.
            trace!(super::trace::Event::OverwritePosLoad);
            let oldest = self.view.overwrite_pos().load(Ordering::Acquire);
            if self.is_retired(oldest) {
                // The oldest intact record starts at an aligned position.
                if oldest % RECORD_ALIGN != 0 {
                    return Err(ReadError::ProducerPosition {
                        consumer: self.pos,
                        producer: oldest,
                    });
                }
                // The producer retires records before it publishes the ones
                // that replace them, so `oldest` can be ahead of the
                // published position (or of our stale copy of it). Follow it
                // only once what it points to is published.
                if is_ahead(oldest, self.head) {
                    self.refresh_head()?;
                    if is_ahead(oldest, self.head) {
                        // Everything published beyond us is retired; the
                        // next publication brings what replaced it.
                        return Ok(OverwriteRead::Lapped);
                    }
                }
                self.pos = oldest;
                continue;
            }
            // The producer keeps `head - oldest <= size` and we are not
            // behind `oldest`, so a larger backlog is a broken producer.
            if self.head.wrapping_sub(self.pos) > size {
                return Err(ReadError::ProducerPosition {
                    consumer: self.pos,
                    producer: self.head,
                });
            }
            let checked = self.check_header();
            let mut copied_len = 0u64;
            let copied = match checked {
                Ok((Some(meta), _)) if meta.len as usize > dst.len() => {
                    Err(ReadError::BufferTooSmall { needed: meta.len })
                }
                Ok((Some(meta), _)) => {
                    // SAFETY: `check_header` proved that the record's whole
                    // stride lies in the data area from its 8-aligned
                    // offset, and `dst`, the caller's memory, holds at least
                    // `len` bytes.
                    unsafe {
                        self.view
                            .copy_payload_out(meta.offset, dst.as_mut_ptr(), meta.len as usize)
                    };
                    copied_len = u64::from(meta.len);
                    Ok(())
                }
                _ => Ok(()),
            };
            #[cfg(test)]
            super::trace::after_copy();
            // ORDERING: Acquire fence, then the re-check: if the copy above
            // read anything the producer wrote after retiring this record,
            // the fence makes that retirement visible here.
            fence(Ordering::Acquire);
            // ORDERING: on memory that is not write-back the fence is no
            // instruction on x86-64, and loads from it may pass each other:
            // the copy's loads must be done before the re-check's (`rmb()`;
            // pairs with the `io_wmb` after the store in `retire_oldest`).
            self.view.io_rmb();
            // ORDERING: Relaxed; ordered by the fences above.
            trace!(super::trace::Event::OverwritePosLoad);
            let oldest = self.view.overwrite_pos().load(Ordering::Relaxed);
            if self.is_retired(oldest) {
                // Torn or lapped while reading: what we read is garbage.
                // Bound the copying a producer can make us do in one call.
                discarded += copied_len;
                if discarded > size {
                    break;
                }
                continue;
            }
            copied?;
            let (meta, stride) = checked?;
            if let Some(mut meta) = meta {
                self.account(&mut meta)?;
                self.pos = self.pos.wrapping_add(stride);
                return Ok(OverwriteRead::Record(meta));
            }
            self.pos = self.pos.wrapping_add(stride);
        }
        // Lapped: load the producer position once more, so that
        // `prepare_sleep_until_published` sleeps only until a publication
        // that comes after this call's last look.
        self.refresh_head()?;
        Ok(OverwriteRead::Lapped)
    }

    /// Whether the producer has retired the record at our position.
    #[inline]
    fn is_retired(&self, oldest: u64) -> bool {
        is_ahead(oldest, self.pos)
    }

    /// Hands every record read so far back to the producer with one store,
    /// and publishes the counters.
    pub fn release(&mut self) {
        if self.pos != self.released {
            // ORDERING: Release; pairs with the Acquire load in
            // `ProducerCore::refresh_consumer`: our reads of the released
            // records happen before the producer reuses their bytes.
            self.view.consumer_pos().store(self.pos, Ordering::Release);
            self.released = self.pos;
        }
        let v = &self.view;
        // ORDERING: Relaxed; statistics.
        v.records_consumed()
            .store(self.stats.records, Ordering::Relaxed);
        v.bytes_consumed()
            .store(self.stats.bytes, Ordering::Relaxed);
        v.records_lost().store(self.stats.lost, Ordering::Relaxed);
        v.sleeps().store(self.stats.sleeps, Ordering::Relaxed);
    }

    /// Skips everything published so far, for a consumer that only wants
    /// new records. The skipped records do not count as lost by this
    /// consumer; one that attaches later continues the count from the
    /// consumer page and sees them as lost.
    pub fn skip_to_producer(&mut self) -> Result<(), ReadError> {
        self.refresh_head()?;
        self.pos = self.head;
        self.resync = true;
        self.release();
        Ok(())
    }

    /// The control page's futex word; a futex sleeper reads it *before*
    /// [`Self::prepare_sleep`] and sleeps only while it is unchanged.
    pub fn wake_seq(&self) -> u32 {
        // ORDERING: Acquire; pairs with `ProducerCore::bump_wake_seq`.
        self.view.wake_seq().load(Ordering::Acquire)
    }

    /// Releases what was read, asks the producer for a wake-up and checks
    /// once more for data.
    ///
    /// Returns `true` if the consumer may now sleep (in `poll` or on the
    /// futex); `false` if data arrived meanwhile, in which case the request
    /// is already withdrawn. After sleeping, call [`Self::finish_sleep`].
    pub fn prepare_sleep(&mut self) -> bool {
        // Sleep while nothing is published beyond our position.
        let pos = self.pos;
        self.arm_sleep(pos)
    }

    /// Like [`Self::prepare_sleep`], for a reader that
    /// [`read_overwrite`](Self::read_overwrite) found
    /// [`Lapped`](OverwriteRead::Lapped): asks for a wake-up at the
    /// producer's next publication rather than for "anything beyond my
    /// position", which is there already.
    ///
    /// Returns `false` (and withdraws the request) only if the producer
    /// position moved since the consumer last loaded it, which
    /// `read_overwrite` does just before it returns `Lapped`: a publication
    /// that came between that call and this one is not slept through.
    pub fn prepare_sleep_until_published(&mut self) -> bool {
        let head = self.head;
        self.arm_sleep(head)
    }

    /// The wake-up handshake of both `prepare_sleep` variants: releases
    /// what was read, arms `need_wakeup` with a fresh token, and declines
    /// (disarming) if the producer position is no longer `expected`.
    fn arm_sleep(&mut self, expected: u64) -> bool {
        self.release();
        // A fresh non-zero token per attempt lets the producer wake once per
        // sleep without ever missing one. Fresh per *attempt*, not per
        // sleep: the producer may have woken an attempt that then found
        // data and did not sleep, and must not take the next sleep for it.
        self.sleep_token = self.sleep_token.wrapping_add(1).max(1);
        let token = self.sleep_token;
        // ORDERING: Relaxed; read only by the next consumer to attach.
        self.view.wake_token().store(token, Ordering::Relaxed);
        // ORDERING: Release, so that a producer that reads the token reads
        // the `consumer_pos` released above too (see `ProducerCore::
        // publish`); ordered before the load below by the fence.
        self.view.need_wakeup().store(token, Ordering::Release);
        // ORDERING: SeqCst fence between the `need_wakeup` store and the
        // `producer_pos` load; pairs with the fence in
        // `ProducerCore::publish` (store `producer_pos`, fence, load
        // `need_wakeup`). Without it both sides could miss each other's store.
        fence(Ordering::SeqCst);
        // ORDERING: Acquire; as in `refresh_head`.
        let head = self.view.producer_pos().load(Ordering::Acquire);
        if head != expected {
            self.finish_sleep();
            return false;
        }
        self.stats.sleeps = self.stats.sleeps.wrapping_add(1);
        // ORDERING: Relaxed; a statistic.
        self.view
            .sleeps()
            .store(self.stats.sleeps, Ordering::Relaxed);
        true
    }

    /// Whether the producer position differs from the one the consumer
    /// last loaded: the producer published since (or, on a broken ring,
    /// moved it anyhow). One relaxed load, for a lapped reader polling for
    /// the next publication before it sleeps.
    pub fn published_since_refresh(&self) -> bool {
        // ORDERING: Relaxed; the caller reads only after `read_overwrite`
        // loads it again with Acquire.
        self.view.producer_pos().load(Ordering::Relaxed) != self.head
    }

    /// Withdraws the wake-up request after a sleep.
    pub fn finish_sleep(&mut self) {
        // ORDERING: Relaxed; the producer only uses it to decide whether to
        // wake, and a stale non-zero value costs one spurious wake-up.
        self.view.need_wakeup().store(0, Ordering::Relaxed);
    }

    /// A [`Cursor`] for a run of [`Self::next_cached_record`] and
    /// [`Self::next_record`] calls (drop-new mode).
    #[inline(always)]
    pub fn cursor(&mut self) -> Cursor<'_> {
        debug_assert!(self.overflow == Overflow::DropNew);
        Cursor::new(self)
    }
}

/// A run of reads (drop-new mode) for a loop over records, which keeps the
/// reading state in registers.
///
/// Through `&mut ConsumerCore` every record's position, expected sequence
/// number and counters were loaded and stored in memory, since the
/// compiler cannot tell them from the ring's bytes or from what the loop
/// writes. The cursor holds them as values of its own and takes the
/// common record (a data record that lies inside the data area and the
/// published bytes, with no sequence number below the expected one) on a
/// fast path; everything else (the end of what is cached, a pad, every
/// defect and its error) goes to [`ConsumerCore`]'s own reading, with the
/// state written back before and taken again after. So the cursor accepts
/// nothing that `ConsumerCore` would not, and answers the same for the
/// rest (checked against it on random rings by
/// `tests::a_cursor_answers_as_the_core_on_any_ring`).
/// Dropping it writes its state back, and so does every call into the
/// core (so the core has it after the last record too); one leaked leaves
/// the core where the last of those left it, and the records the fast path
/// read since are read again.
#[doc(hidden)]
pub struct Cursor<'c> {
    home: &'c mut ConsumerCore,
    view: RingView,
    max_payload: u32,
    pos: u64,
    /// The end of the fast path: the cached producer position, or the end
    /// of the data area if nearer; the read position itself while the
    /// next record starts a fresh count (`resync`), which only the core
    /// takes.
    end: u64,
    expected_seq: u64,
    prefetch_for: (u64, u64),
    records: u64,
    bytes: u64,
    /// The core's expected sequence number, records and lost records when
    /// the cursor took its state: the records lost since are the sequence
    /// numbers passed less the records read, so the loop keeps one
    /// counter fewer.
    taken: (u64, u64, u64),
}

impl<'c> Cursor<'c> {
    #[inline(always)]
    fn new(home: &'c mut ConsumerCore) -> Self {
        let mut cursor = Self {
            view: home.view.another(),
            max_payload: home.max_payload,
            pos: 0,
            end: 0,
            expected_seq: 0,
            prefetch_for: (0, 0),
            records: 0,
            bytes: 0,
            taken: (0, 0, 0),
            home,
        };
        cursor.take_state();
        cursor
    }

    /// Takes the core's reading state.
    #[inline(always)]
    fn take_state(&mut self) {
        let home = &*self.home;
        self.pos = home.pos;
        self.expected_seq = home.expected_seq;
        self.prefetch_for = home.prefetch_for;
        self.records = home.stats.records;
        self.bytes = home.stats.bytes;
        self.taken = (home.expected_seq, home.stats.records, home.stats.lost);
        let to_end = self.view.data_size() - self.view.offset(self.pos);
        let fast = if home.resync {
            0
        } else {
            core::cmp::min(home.head.wrapping_sub(self.pos), to_end)
        };
        self.end = self.pos.wrapping_add(fast);
    }

    /// Gives the core the reading state back.
    #[inline(always)]
    fn give_state(&mut self) {
        let home = &mut *self.home;
        home.pos = self.pos;
        home.expected_seq = self.expected_seq;
        home.prefetch_for = self.prefetch_for;
        home.stats.records = self.records;
        home.stats.bytes = self.bytes;
        let (seq, records, lost) = self.taken;
        let passed = self.expected_seq.wrapping_sub(seq);
        home.stats.lost =
            lost.wrapping_add(passed.wrapping_sub(self.records.wrapping_sub(records)));
    }

    /// As [`ConsumerCore::next_cached_record`].
    #[inline(always)]
    pub fn next_cached_record(&mut self) -> Result<Option<RecordMeta>, ReadError> {
        match self.next_common() {
            Some(meta) => Ok(Some(meta)),
            None => self.next_by_core(false),
        }
    }

    /// As [`ConsumerCore::next_record`].
    #[inline(always)]
    pub fn next_record(&mut self) -> Result<Option<RecordMeta>, ReadError> {
        match self.next_common() {
            Some(meta) => Ok(Some(meta)),
            None => self.next_by_core(true),
        }
    }

    /// The next record if it is the common case; `None` if it is not
    /// (which need not mean there is none: ask [`Self::next_by_core`]).
    ///
    /// A loop that handles this case on a path of its own keeps the record
    /// in registers: joined with the other case's result, which comes back
    /// through memory, it goes through memory too.
    #[inline(always)]
    pub fn next_common(&mut self) -> Option<RecordMeta> {
        let room = self.end.wrapping_sub(self.pos);
        if room == 0 {
            return None;
        }
        let offset = self.view.offset(self.pos);
        // SAFETY: `offset` is a multiple of 8 below the data size (as in
        // `ConsumerCore::check_header`).
        let (len, kind, tag) = split_word0(unsafe { self.view.read_word(offset) });
        if kind != KIND_DATA || len > self.max_payload {
            return None;
        }
        let stride = record_stride(len);
        // `end` is at most the end of the data area and the producer
        // position: the record lies inside both.
        if stride > room {
            return None;
        }
        // SAFETY: `offset + HEADER_SIZE <= offset + stride <= size`.
        let (seq, timestamp_ns) = unsafe { self.view.read_seq_ts(offset) };
        let gap = seq.wrapping_sub(self.expected_seq);
        if gap > i64::MAX as u64 {
            return None;
        }
        prefetch_ahead(
            &self.view,
            &mut self.prefetch_for,
            self.pos,
            // The end of the fast path rather than the producer position:
            // the same while the lap lasts, and no hint across its end.
            self.end,
            stride,
        );
        let meta = RecordMeta {
            pos: self.pos,
            offset,
            len,
            tag,
            seq,
            timestamp_ns,
            lost_before: gap,
        };
        self.expected_seq = seq.wrapping_add(1);
        self.records = self.records.wrapping_add(1);
        self.bytes = self.bytes.wrapping_add(u64::from(len));
        self.pos = self.pos.wrapping_add(stride);
        Some(meta)
    }

    /// The next record by [`ConsumerCore`]'s own reading, which reloads
    /// the producer position if `refresh` and the cached records are used
    /// up (as [`ConsumerCore::next_record`]; else as
    /// [`ConsumerCore::next_cached_record`]).
    #[inline(always)]
    pub fn next_by_core(&mut self, refresh: bool) -> Result<Option<RecordMeta>, ReadError> {
        self.give_state();
        let next = next_by_core(self.home, refresh);
        self.take_state();
        next
    }
}

impl Drop for Cursor<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        self.give_state();
    }
}

/// [`ConsumerCore::next_record_from`] out of line, so that the cursor's
/// loop holds none of its state in memory for it. It must not panic: the
/// cursor's `Drop` would then put back the state from before the call.
#[inline(never)]
fn next_by_core(core: &mut ConsumerCore, refresh: bool) -> Result<Option<RecordMeta>, ReadError> {
    core.next_record_from(refresh, |_| true)
}

/// [`ConsumerCore::prefetch_ahead`], for it and for a [`Cursor`]: hints
/// the record `prefetch_for.1` bytes beyond `pos`, if `head` is beyond it;
/// `prefetch_for` caches that distance for records of `stride` bytes.
#[inline(always)]
fn prefetch_ahead(
    view: &RingView,
    prefetch_for: &mut (u64, u64),
    pos: u64,
    head: u64,
    stride: u64,
) {
    let ahead = if prefetch_for.0 == stride {
        prefetch_for.1
    } else {
        // `stride` is at least `HEADER_SIZE`; `PREFETCH_AHEAD >>
        // log2(stride)` is between one and two times the number of
        // records that cover `PREFETCH_AHEAD` bytes, without a division.
        let records = PREFETCH_AHEAD >> stride.checked_ilog2().unwrap_or(0);
        let ahead = stride.saturating_mul(core::cmp::max(2, records));
        *prefetch_for = (stride, ahead);
        ahead
    };
    if head.wrapping_sub(pos) > ahead {
        view.prefetch(view.offset(pos.wrapping_add(ahead)));
    }
}

/// Whether position `a` is ahead of position `b` (modulo 2^64, by less than
/// 2^63).
#[inline]
fn is_ahead(a: u64, b: u64) -> bool {
    let ahead = a.wrapping_sub(b);
    ahead != 0 && ahead <= i64::MAX as u64
}

/// Whether records are published beyond the consumer's released position:
/// the readiness test behind `poll`.
pub fn has_unreleased(view: &RingView) -> bool {
    // ORDERING: Relaxed for both: the caller only decides readiness from them;
    // the reader that follows loads `producer_pos` with Acquire itself.
    view.producer_pos().load(Ordering::Relaxed) != view.consumer_pos().load(Ordering::Relaxed)
}

const _: () = assert!(HEADER_SIZE == 24);
