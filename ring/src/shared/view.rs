// SPDX-License-Identifier: GPL-2.0-only OR MIT

//! Raw access to one ring's shared memory.
//!
//! [`RingView`] is the only type that turns addresses in the mapping into
//! atomics and byte copies, so the producer and consumer logic above it has
//! no `unsafe` arithmetic of its own. Under `--cfg loom` it is backed by a
//! small model memory of loom atomics and cells instead of a mapping, so the
//! model checks run the same producer and consumer code.

use super::layout::{
    RecordHeader,
    HEADER_SIZE, //
};
#[cfg(not(loom))]
use super::sync::Ordering;
use super::sync::{
    AtomicU32,
    AtomicU64, //
};

#[cfg(not(loom))]
use super::layout::{
    ConsumerPage,
    ControlPage, //
};
#[cfg(not(loom))]
use core::ptr::{
    addr_of_mut,
    NonNull, //
};

/// A view of a ring's three parts: control page, consumer page, data area.
///
/// # Invariants
///
/// - `ctrl` and `cons` point to a [`ControlPage`] and a [`ConsumerPage`] that
///   stay mapped (or allocated) for as long as the view exists.
/// - `data` points to `data_size` bytes that stay mapped as long, and
///   `data_size` is a power of two.
/// - All three are 8-byte aligned.
/// - Every access to them goes through atomics, volatile accesses or raw
///   copies, never through references, because the other side of the ring
///   writes them concurrently.
pub struct RingView {
    #[cfg(not(loom))]
    ctrl: NonNull<ControlPage>,
    #[cfg(not(loom))]
    cons: NonNull<ConsumerPage>,
    #[cfg(not(loom))]
    data: NonNull<u8>,
    #[cfg(loom)]
    model: loom::sync::Arc<model::Memory>,
    data_size: u64,
}

// SAFETY: A view holds addresses of shared memory, not thread-local state;
// every access it performs is atomic or a raw copy whose exclusivity the ring
// protocol (not the thread) provides. Moving it to another thread is fine.
unsafe impl Send for RingView {}

impl RingView {
    /// Creates a view of a ring whose parts are mapped at the given addresses.
    ///
    /// # Safety
    ///
    /// - `ctrl` and `cons` must be 8-byte aligned and valid for reads and
    ///   atomic writes of a whole [`ControlPage`] and [`ConsumerPage`] for as
    ///   long as the view (and anything it is moved into) exists.
    /// - `data` must be 8-byte aligned and valid for reads and writes of
    ///   `data_size` bytes for as long; `data_size` must be a power of two.
    /// - Parts that the caller's side must not write (for example a
    ///   read-only mapping) must never be handed to code that writes them;
    ///   the producer and consumer types document which parts they write.
    #[cfg(not(loom))]
    pub unsafe fn new(
        ctrl: NonNull<ControlPage>,
        cons: NonNull<ConsumerPage>,
        data: NonNull<u8>,
        data_size: u64,
    ) -> Self {
        // INVARIANT: The caller guarantees validity, alignment and lifetime.
        Self {
            ctrl,
            cons,
            data,
            data_size,
        }
    }

    /// Bytes in the data area (a power of two).
    #[inline]
    pub fn data_size(&self) -> u64 {
        self.data_size
    }

    /// The offset in the data area of byte position `pos`.
    #[inline]
    pub fn offset(&self, pos: u64) -> u64 {
        pos & (self.data_size - 1)
    }
}

/// Accessors for the atomically shared words of the two pages.
#[cfg(not(loom))]
macro_rules! shared_word {
    ($(#[$doc:meta])* $name:ident, $page:ident, $field:ident, $atomic:ident) => {
        $(#[$doc])*
        #[inline]
        pub fn $name(&self) -> &$atomic {
            // SAFETY: By the type invariants the page is valid and 8-byte
            // aligned for the view's lifetime, so the field is too; it is
            // only ever accessed atomically, which is what `from_ptr`
            // requires of its other users.
            unsafe { $atomic::from_ptr(addr_of_mut!((*self.$page.as_ptr()).$field)) }
        }
    };
}

/// Accessors for the atomically shared words of the two pages.
#[cfg(loom)]
macro_rules! shared_word {
    ($(#[$doc:meta])* $name:ident, $page:ident, $field:ident, $atomic:ident) => {
        $(#[$doc])*
        #[inline]
        pub fn $name(&self) -> &$atomic {
            &self.model.$field
        }
    };
}

impl RingView {
    shared_word!(
        /// [`ControlPage::producer_pos`](super::layout::ControlPage::producer_pos).
        producer_pos, ctrl, producer_pos, AtomicU64
    );
    shared_word!(
        /// [`ControlPage::overwrite_pos`](super::layout::ControlPage::overwrite_pos).
        overwrite_pos, ctrl, overwrite_pos, AtomicU64
    );
    shared_word!(
        /// [`ControlPage::wake_seq`](super::layout::ControlPage::wake_seq).
        wake_seq, ctrl, wake_seq, AtomicU32
    );
    shared_word!(
        /// [`ControlPage::records_produced`](super::layout::ControlPage::records_produced).
        records_produced, ctrl, records_produced, AtomicU64
    );
    shared_word!(
        /// [`ControlPage::bytes_produced`](super::layout::ControlPage::bytes_produced).
        bytes_produced, ctrl, bytes_produced, AtomicU64
    );
    shared_word!(
        /// [`ControlPage::records_dropped`](super::layout::ControlPage::records_dropped).
        records_dropped, ctrl, records_dropped, AtomicU64
    );
    shared_word!(
        /// [`ControlPage::records_overwritten`](super::layout::ControlPage::records_overwritten).
        records_overwritten, ctrl, records_overwritten, AtomicU64
    );
    shared_word!(
        /// [`ControlPage::wakeups`](super::layout::ControlPage::wakeups).
        wakeups, ctrl, wakeups, AtomicU64
    );
    shared_word!(
        /// [`ControlPage::consumer_errors`](super::layout::ControlPage::consumer_errors).
        consumer_errors, ctrl, consumer_errors, AtomicU64
    );
    shared_word!(
        /// [`ConsumerPage::consumer_pos`](super::layout::ConsumerPage::consumer_pos).
        consumer_pos, cons, consumer_pos, AtomicU64
    );
    shared_word!(
        /// [`ConsumerPage::need_wakeup`](super::layout::ConsumerPage::need_wakeup).
        need_wakeup, cons, need_wakeup, AtomicU32
    );
    shared_word!(
        /// [`ConsumerPage::wake_token`](super::layout::ConsumerPage::wake_token).
        wake_token, cons, wake_token, AtomicU32
    );
    shared_word!(
        /// [`ConsumerPage::records_consumed`](super::layout::ConsumerPage::records_consumed).
        records_consumed, cons, records_consumed, AtomicU64
    );
    shared_word!(
        /// [`ConsumerPage::bytes_consumed`](super::layout::ConsumerPage::bytes_consumed).
        bytes_consumed, cons, bytes_consumed, AtomicU64
    );
    shared_word!(
        /// [`ConsumerPage::records_lost`](super::layout::ConsumerPage::records_lost).
        records_lost, cons, records_lost, AtomicU64
    );
    shared_word!(
        /// [`ConsumerPage::sleeps`](super::layout::ConsumerPage::sleeps).
        sleeps, cons, sleeps, AtomicU64
    );
}

/// Packs the first eight bytes of a record header.
#[inline]
pub fn header_word0(len: u32, kind: u16, tag: u16) -> u64 {
    u64::from(len) | (u64::from(kind) << 32) | (u64::from(tag) << 48)
}

/// Unpacks the first eight bytes of a record header into `(len, kind, tag)`.
#[inline]
pub fn split_word0(word: u64) -> (u32, u16, u16) {
    (word as u32, (word >> 32) as u16, (word >> 48) as u16)
}

#[cfg(not(loom))]
impl RingView {
    /// The address of the byte at data-area offset `off`.
    ///
    /// # Safety
    ///
    /// `off` must be at most the data size.
    #[inline]
    unsafe fn at(&self, off: u64) -> *mut u8 {
        // SAFETY: The caller keeps `off` within the data area, which by the
        // type invariants is one allocation of `data_size` bytes.
        unsafe { self.data.as_ptr().add(off as usize) }
    }

    /// Hints the CPU to bring the cache line holding data-area offset `off`
    /// closer; reads nothing. A no-op where there is no such hint (and in
    /// the kernel, which is built without SSE).
    #[inline(always)]
    pub fn prefetch(&self, off: u64) {
        #[cfg(all(target_arch = "x86_64", target_feature = "sse"))]
        {
            // Any address would do: a prefetch never faults. This one is
            // even inside the data area.
            let addr = self.data.as_ptr().wrapping_add(self.offset(off) as usize);
            // SAFETY: `_mm_prefetch` only hints the cache hierarchy; it
            // does not access memory, architecturally, and cannot fault.
            unsafe {
                core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
                    addr.cast::<i8>().cast_const(),
                )
            };
        }
        #[cfg(not(all(target_arch = "x86_64", target_feature = "sse")))]
        let _ = off;
    }

    /// Reads the 8-byte word at data-area offset `off` exactly once.
    ///
    /// # Safety
    ///
    /// `off` must be a multiple of 8 and at most `data_size - 8`.
    #[inline]
    pub unsafe fn read_word(&self, off: u64) -> u64 {
        // SAFETY: The caller keeps the word inside the data area; the area is
        // 8-byte aligned by the type invariants and `off` is a multiple of 8.
        // The read is volatile so a value validated once is the value used,
        // however the other side changes the memory meanwhile.
        unsafe { self.at(off).cast::<u64>().read_volatile() }
    }

    /// Writes the 8-byte word at data-area offset `off`.
    ///
    /// # Safety
    ///
    /// `off` must be a multiple of 8 and at most `data_size - 8`, and the
    /// caller must own those bytes under the ring protocol.
    #[inline]
    pub unsafe fn write_word(&self, off: u64, word: u64) {
        // SAFETY: As for `read_word`; an aligned volatile store is also valid
        // on uncached and write-combined mappings.
        unsafe { self.at(off).cast::<u64>().write_volatile(word) }
    }

    /// The address of the payload of the record whose header is at `off`.
    ///
    /// # Safety
    ///
    /// `off + HEADER_SIZE` must be at most the data size.
    #[inline]
    pub unsafe fn payload_ptr(&self, off: u64) -> *mut u8 {
        // SAFETY: The caller keeps the payload start inside the data area.
        unsafe { self.at(off + HEADER_SIZE) }
    }

    /// Copies `len` payload bytes of the record at `off` into `dst`, with
    /// one relaxed atomic load per 8-byte word of the mapping.
    ///
    /// The producer may be writing the source meanwhile (overwrite mode, or
    /// a producer that breaks the protocol): the caller re-checks
    /// `overwrite_pos` afterwards and discards a torn copy, as a seqlock
    /// reader does. Atomic loads make that a race this side is allowed to
    /// lose; a plain `memcpy` would be a data race, undefined behaviour in
    /// Rust's memory model whatever the re-check says. The loads are
    /// relaxed: the caller's fence orders them before the re-check. A
    /// partial last word is loaded whole; its other bytes are the record's
    /// padding.
    ///
    /// # Safety
    ///
    /// `off` must be a multiple of 8, `off + record_stride(len)` at most
    /// the data size, and `dst` valid for `len` bytes of writes and not
    /// inside the data area.
    #[inline]
    pub unsafe fn copy_payload_out(&self, off: u64, dst: *mut u8, len: usize) {
        // SAFETY: `off + HEADER_SIZE <= off + stride <= data_size`.
        let src = unsafe { self.payload_ptr(off) }.cast::<u64>();
        let word = |i: usize| {
            // SAFETY: Word `i` is at most word `len.div_ceil(8) - 1`, which
            // ends at or before `off + stride` (the stride rounds
            // `HEADER_SIZE + len` up to 8), so inside the data area; it is
            // 8-aligned because `off` and `HEADER_SIZE` are multiples of 8.
            // The mapping is only ever accessed atomically, volatilely or
            // by the producer writing its own space.
            unsafe { AtomicU64::from_ptr(src.add(i)) }.load(Ordering::Relaxed)
        };
        let words = len / 8;
        for i in 0..words {
            // SAFETY: `8 * i + 8 <= len` bytes fit in `dst`.
            unsafe { dst.add(8 * i).cast::<u64>().write_unaligned(word(i)) };
        }
        let rest = len % 8;
        if rest != 0 {
            let last = word(words).to_ne_bytes();
            // SAFETY: The last `rest` bytes of `dst`, from a local array.
            unsafe { core::ptr::copy_nonoverlapping(last.as_ptr(), dst.add(8 * words), rest) };
        }
    }
}

#[cfg(loom)]
impl RingView {
    /// Creates a view backed by fresh model memory with a data area of
    /// `data_size` bytes, and a second view of the same memory.
    pub fn new_model(data_size: u64) -> (Self, Self) {
        let model = loom::sync::Arc::new(model::Memory::new(data_size as usize));
        (
            Self {
                model: model.clone(),
                data_size,
            },
            Self { model, data_size },
        )
    }

    /// See the non-loom version; the model has no caches to hint.
    pub fn prefetch(&self, _off: u64) {}

    /// See the non-loom version.
    ///
    /// # Safety
    ///
    /// See the non-loom version.
    pub unsafe fn read_word(&self, off: u64) -> u64 {
        self.model.data[(off / 8) as usize].with(|p| {
            // SAFETY: Loom checks the access for races.
            unsafe { *p }
        })
    }

    /// See the non-loom version.
    ///
    /// # Safety
    ///
    /// See the non-loom version.
    pub unsafe fn write_word(&self, off: u64, word: u64) {
        self.model.data[(off / 8) as usize].with_mut(|p| {
            // SAFETY: Loom checks the access for races.
            unsafe { *p = word }
        })
    }

    /// See the non-loom version.
    ///
    /// # Safety
    ///
    /// See the non-loom version; `off + HEADER_SIZE` and `len` must be
    /// multiples of 8 in the model.
    pub unsafe fn copy_payload_out(&self, off: u64, dst: *mut u8, len: usize) {
        for i in (0..len).step_by(8) {
            // SAFETY: Forwarded caller contract.
            let word = unsafe { self.read_word(off + HEADER_SIZE + i as u64) };
            let n = core::cmp::min(8, len - i);
            // SAFETY: `dst` is valid for `len` bytes.
            unsafe { core::ptr::copy_nonoverlapping(word.to_le_bytes().as_ptr(), dst.add(i), n) };
        }
    }
}

impl RingView {
    /// Reads the sequence number and timestamp of the header at `off`.
    ///
    /// # Safety
    ///
    /// `off` must be a multiple of 8 and `off + HEADER_SIZE` at most the
    /// data size.
    #[inline]
    pub unsafe fn read_seq_ts(&self, off: u64) -> (u64, u64) {
        // SAFETY: The caller keeps both words inside the data area.
        unsafe { (self.read_word(off + 8), self.read_word(off + 16)) }
    }

    /// Writes a whole record header at `off`.
    ///
    /// # Safety
    ///
    /// As for [`Self::read_seq_ts`], and the caller must own the bytes.
    #[inline]
    pub unsafe fn write_header(&self, off: u64, h: &RecordHeader) {
        // SAFETY: The caller keeps the header inside the data area and owns it.
        unsafe {
            self.write_word(off, header_word0(h.len, h.kind, h.tag));
            self.write_word(off + 8, h.seq);
            self.write_word(off + 16, h.timestamp_ns);
        }
    }
}

#[cfg(loom)]
mod model {
    use loom::cell::UnsafeCell;
    use loom::sync::atomic::{
        AtomicU32,
        AtomicU64, //
    };

    /// The shared words and data area of a model ring.
    pub(super) struct Memory {
        pub(super) producer_pos: AtomicU64,
        pub(super) overwrite_pos: AtomicU64,
        pub(super) wake_seq: AtomicU32,
        pub(super) records_produced: AtomicU64,
        pub(super) bytes_produced: AtomicU64,
        pub(super) records_dropped: AtomicU64,
        pub(super) records_overwritten: AtomicU64,
        pub(super) wakeups: AtomicU64,
        pub(super) consumer_errors: AtomicU64,
        pub(super) consumer_pos: AtomicU64,
        pub(super) need_wakeup: AtomicU32,
        pub(super) wake_token: AtomicU32,
        pub(super) records_consumed: AtomicU64,
        pub(super) bytes_consumed: AtomicU64,
        pub(super) records_lost: AtomicU64,
        pub(super) sleeps: AtomicU64,
        pub(super) data: std::vec::Vec<UnsafeCell<u64>>,
    }

    impl Memory {
        pub(super) fn new(data_size: usize) -> Self {
            Self {
                producer_pos: AtomicU64::new(0),
                overwrite_pos: AtomicU64::new(0),
                wake_seq: AtomicU32::new(0),
                records_produced: AtomicU64::new(0),
                bytes_produced: AtomicU64::new(0),
                records_dropped: AtomicU64::new(0),
                records_overwritten: AtomicU64::new(0),
                wakeups: AtomicU64::new(0),
                consumer_errors: AtomicU64::new(0),
                consumer_pos: AtomicU64::new(0),
                need_wakeup: AtomicU32::new(0),
                wake_token: AtomicU32::new(0),
                records_consumed: AtomicU64::new(0),
                bytes_consumed: AtomicU64::new(0),
                records_lost: AtomicU64::new(0),
                sleeps: AtomicU64::new(0),
                data: (0..data_size / 8).map(|_| UnsafeCell::new(0)).collect(),
            }
        }
    }
}
