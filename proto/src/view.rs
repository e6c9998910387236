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

/// How the memory of a ring orders the accesses of one CPU, which decides
/// the barriers the ring needs beyond its atomics' orderings.
///
/// # Examples
///
/// ```
/// use rmemring_proto::layout::{CACHE_UNCACHED, CACHE_WRITE_COMBINE, FLAG_CACHE_SHIFT, FLAG_OVERWRITE};
/// use rmemring_proto::view::MemoryOrdering;
///
/// assert_eq!(MemoryOrdering::from_flags(FLAG_OVERWRITE), MemoryOrdering::WriteBack);
/// let wc = CACHE_WRITE_COMBINE << FLAG_CACHE_SHIFT;
/// assert_eq!(MemoryOrdering::from_flags(wc), MemoryOrdering::Weak);
/// assert_eq!(MemoryOrdering::from_flags(CACHE_UNCACHED << FLAG_CACHE_SHIFT), MemoryOrdering::Weak);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryOrdering {
    /// Cacheable, write-back memory (RAM, files, memfds, the default device
    /// mapping): the atomics' `Release` and `Acquire` orderings are enough,
    /// and the ring pays for no other barrier.
    WriteBack,
    /// Write-combining or uncached memory: stores may leave the CPU out of
    /// order (write-combining buffers) and loads may be weakly ordered, so
    /// the producer adds [`io_wmb`](super::sync::io_wmb) and the consumer
    /// [`io_rmb`](super::sync::io_rmb) where `docs/protocol.md` (section 5,
    /// "Rings that are not write-back") says.
    Weak,
}

impl MemoryOrdering {
    /// The ordering of a ring whose control page has these `flags`: its
    /// cache mode (`FLAG_CACHE_MASK`) is write-back or not. A cache mode
    /// this version does not know counts as weak, the safe side.
    pub const fn from_flags(flags: u32) -> Self {
        match super::modes::CacheMode::from_flags(flags) {
            Some(mode) => mode.ordering(),
            None => MemoryOrdering::Weak,
        }
    }
}

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
    ordering: MemoryOrdering,
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
    ///
    /// `ordering` must describe the memory (a [`MemoryOrdering::WriteBack`]
    /// view of write-combining memory publishes records before their bytes
    /// are visible); that is a matter of correct records, not of memory
    /// safety.
    #[cfg(not(loom))]
    pub unsafe fn new(
        ctrl: NonNull<ControlPage>,
        cons: NonNull<ConsumerPage>,
        data: NonNull<u8>,
        data_size: u64,
        ordering: MemoryOrdering,
    ) -> Self {
        // INVARIANT: The caller guarantees validity, alignment and lifetime.
        Self {
            ctrl,
            cons,
            data,
            data_size,
            ordering,
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

    /// How the ring's memory orders accesses.
    #[inline]
    pub fn ordering(&self) -> MemoryOrdering {
        self.ordering
    }

    /// [`io_wmb`](super::sync::io_wmb) if the memory is not write-back;
    /// nothing otherwise.
    #[inline(always)]
    pub fn io_wmb(&self) {
        if self.ordering == MemoryOrdering::Weak {
            super::sync::io_wmb();
        }
    }

    /// [`io_rmb`](super::sync::io_rmb) if the memory is not write-back;
    /// nothing otherwise.
    #[inline(always)]
    pub fn io_rmb(&self) {
        if self.ordering == MemoryOrdering::Weak {
            super::sync::io_rmb();
        }
    }

    /// A second view of the same ring, for a consumer's
    /// [`Cursor`](super::consumer_core::Cursor), which reads through it
    /// only while it holds the consumer's own view borrowed.
    #[inline(always)]
    pub(crate) fn another(&self) -> Self {
        Self {
            #[cfg(not(loom))]
            ctrl: self.ctrl,
            #[cfg(not(loom))]
            cons: self.cons,
            #[cfg(not(loom))]
            data: self.data,
            #[cfg(loom)]
            model: self.model.clone(),
            data_size: self.data_size,
            ordering: self.ordering,
        }
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

/// A record header as the three 8-byte words it is in the data area, in
/// order: the packed first word ([`header_word0`]), the sequence number,
/// the timestamp.
#[inline]
pub fn header_words(h: &RecordHeader) -> [u64; 3] {
    [header_word0(h.len, h.kind, h.tag), h.seq, h.timestamp_ns]
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
        trace!(super::trace::Event::DataRead(off));
        // SAFETY: The caller keeps the word inside the data area; the area is
        // 8-byte aligned by the type invariants and `off` is a multiple of 8,
        // and the data area is only ever accessed atomically (or, by the
        // side that owns the bytes under the protocol, through plain
        // copies no one else may look at). An atomic load is read exactly
        // once, so a value validated once is the value used, however the
        // other side changes the memory meanwhile; and a load that races a
        // producer lapping a reader (overwrite mode) is not a data race. It
        // is the same `mov`/`ldr` as a volatile load.
        unsafe { AtomicU64::from_ptr(self.at(off).cast::<u64>()) }.load(Ordering::Relaxed)
    }

    /// Writes the 8-byte word at data-area offset `off`.
    ///
    /// # Safety
    ///
    /// `off` must be a multiple of 8 and at most `data_size - 8`, and the
    /// caller must own those bytes under the ring protocol.
    #[inline]
    pub unsafe fn write_word(&self, off: u64, word: u64) {
        trace!(super::trace::Event::DataWrite(off));
        // SAFETY: As for `read_word`; a relaxed atomic store of an aligned
        // word is a plain store, valid on uncached and write-combined
        // mappings too.
        unsafe { AtomicU64::from_ptr(self.at(off).cast::<u64>()) }.store(word, Ordering::Relaxed)
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
        trace!(super::trace::Event::CopyOut {
            offset: off,
            len: len as u64
        });
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

    /// Copies `src` into the payload of the record whose header is at
    /// `off`, with one relaxed atomic store per 8-byte word: the producer's
    /// write path in overwrite mode, where a lapped reader may be copying
    /// the same bytes out (see [`Self::copy_payload_out`]; it discards such
    /// a copy). A partial last word is written whole: its other bytes are
    /// the record's padding, and become zero.
    ///
    /// # Safety
    ///
    /// `off` must be a multiple of 8, `off + record_stride(src.len())` at
    /// most the data size, and the caller must own those bytes under the
    /// ring protocol.
    #[inline]
    pub unsafe fn copy_payload_in(&self, off: u64, src: &[u8]) {
        let base = off + HEADER_SIZE;
        let mut chunks = src.chunks_exact(8);
        let mut word_off = base;
        for chunk in &mut chunks {
            // An array from the exact chunk is one load (`copy_from_slice`
            // into one was a call a word in the kernel's build); the
            // fallback is never taken.
            debug_assert_eq!(chunk.len(), 8);
            let word = <[u8; 8]>::try_from(chunk).unwrap_or_default();
            // SAFETY: The word ends at or before `off + stride`, inside the
            // data area, 8-aligned; the caller owns it.
            unsafe { self.write_word(word_off, u64::from_ne_bytes(word)) };
            word_off += 8;
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            // SAFETY: As above: the stride rounds the payload up to whole
            // words, so the last partial one is the record's too.
            unsafe { self.write_word(word_off, u64::from_ne_bytes(word)) };
        }
    }

    /// Writes `words` to the 8-byte words from `first` on with relaxed
    /// atomic stores.
    ///
    /// # Safety
    ///
    /// `first` must be 8-byte aligned and valid for atomic writes of
    /// `words.len()` words, which nothing accesses but atomically.
    unsafe fn store_words(first: *mut u64, words: &[u64]) {
        for (i, word) in words.iter().enumerate() {
            // SAFETY: Forwarded caller contract.
            unsafe { AtomicU64::from_ptr(first.add(i)) }.store(*word, Ordering::Relaxed);
        }
    }

    /// Loads `N` 8-byte words from `first` on with relaxed atomic loads.
    ///
    /// # Safety
    ///
    /// `first` must be 8-byte aligned and valid for reads of `N` words,
    /// which nothing accesses but atomically.
    unsafe fn load_words<const N: usize>(first: *mut u64) -> [u64; N] {
        let mut words = [0u64; N];
        for (i, word) in words.iter_mut().enumerate() {
            // SAFETY: Forwarded caller contract.
            *word = unsafe { AtomicU64::from_ptr(first.add(i)) }.load(Ordering::Relaxed);
        }
        words
    }

    /// Writes a whole control page, one relaxed atomic store per 8-byte
    /// word, as a producer initialises a ring: the same kind of access as
    /// every other one to the page, so that a reader mapping it meanwhile
    /// (a consumer that opened the ring early, an observer) races nothing.
    ///
    /// The words go in address order, so `magic` (word 0) goes first: a
    /// producer that publishes the ring by its magic stores the real magic
    /// afterwards, with release ordering (as `Region::create` does).
    pub fn write_control_page(&self, page: &ControlPage) {
        let words = control_words(page);
        // SAFETY: By the type invariants the page is valid, 8-aligned and
        // only accessed atomically (or volatilely, by readers).
        unsafe { Self::store_words(self.ctrl.as_ptr().cast(), &words) };
    }

    /// Writes a whole consumer page as [`Self::write_control_page`] writes
    /// the control page.
    pub fn write_consumer_page(&self, page: &ConsumerPage) {
        let words = consumer_words(page);
        // SAFETY: As for `write_control_page`.
        unsafe { Self::store_words(self.cons.as_ptr().cast(), &words) };
    }

    /// A copy of the control page, one relaxed atomic load per word (fields
    /// that change meanwhile may be from slightly different moments).
    pub fn read_control_page(&self) -> ControlPage {
        // SAFETY: By the type invariants the page is valid, 8-aligned and
        // only accessed atomically.
        unsafe { load_control_page(self.ctrl) }
    }

    /// A copy of the consumer page, as [`Self::read_control_page`].
    pub fn read_consumer_page(&self) -> ConsumerPage {
        // SAFETY: As for `write_control_page`.
        let words = unsafe { Self::load_words::<CONSUMER_WORDS>(self.cons.as_ptr().cast()) };
        // SAFETY: As for `read_control_page`.
        unsafe { core::mem::transmute::<[u64; CONSUMER_WORDS], ConsumerPage>(words) }
    }

    /// Zeroes the data area's bytes `[off, off + len)`, rounded out to
    /// whole 8-byte words and clipped to the data area, with relaxed atomic
    /// stores: clearing a ring a reader may map (a reset, a new boot).
    ///
    /// Only for a producer that owns the bytes: with no record published in
    /// them, or with the producer stopped.
    pub fn zero_data(&self, off: u64, len: u64) {
        let start = off.min(self.data_size) & !7;
        let end = off
            .saturating_add(len)
            .min(self.data_size)
            .next_multiple_of(8);
        let mut at = start;
        while at < end {
            // SAFETY: `at` is a multiple of 8 below `data_size`, which is a
            // multiple of 8, so the word is inside the data area.
            unsafe { self.write_word(at, 0) };
            at += 8;
        }
    }
}

/// A copy of the control page at `ctrl`, one relaxed atomic load per word,
/// for code that has no [`RingView`] yet (opening a ring maps its control
/// page alone first, read-only, to learn the layout).
///
/// # Safety
///
/// `ctrl` must be 8-byte aligned and valid for reads of a whole
/// [`ControlPage`], which nothing accesses but atomically (or volatilely).
#[cfg(not(loom))]
pub unsafe fn load_control_page(ctrl: NonNull<ControlPage>) -> ControlPage {
    // SAFETY: Forwarded caller contract; an atomic load only reads, so a
    // read-only mapping is fine.
    let words = unsafe { RingView::load_words::<CONTROL_WORDS>(ctrl.as_ptr().cast()) };
    // SAFETY: `ControlPage` is plain integers without padding (asserted in
    // `layout`), so every bit pattern of its size is one.
    unsafe { core::mem::transmute::<[u64; CONTROL_WORDS], ControlPage>(words) }
}

/// Words in a [`ControlPage`].
#[cfg(not(loom))]
const CONTROL_WORDS: usize = core::mem::size_of::<ControlPage>() / 8;
/// Words in a [`ConsumerPage`].
#[cfg(not(loom))]
const CONSUMER_WORDS: usize = core::mem::size_of::<ConsumerPage>() / 8;

/// A control page as the 8-byte words it occupies in memory.
#[cfg(not(loom))]
fn control_words(page: &ControlPage) -> [u64; CONTROL_WORDS] {
    // SAFETY: `ControlPage` is `repr(C)`, `CONTROL_WORDS` words long and
    // without padding (asserted in `layout`), so all its bytes are
    // initialised integers, as the array's are.
    unsafe { core::mem::transmute::<ControlPage, [u64; CONTROL_WORDS]>(*page) }
}

/// A consumer page as the 8-byte words it occupies in memory.
#[cfg(not(loom))]
fn consumer_words(page: &ConsumerPage) -> [u64; CONSUMER_WORDS] {
    // SAFETY: As for `control_words`.
    unsafe { core::mem::transmute::<ConsumerPage, [u64; CONSUMER_WORDS]>(*page) }
}

#[cfg(loom)]
impl RingView {
    /// Creates a view backed by fresh model memory with a data area of
    /// `data_size` bytes, and a second view of the same memory.
    pub fn new_model(data_size: u64) -> (Self, Self) {
        let model = loom::sync::Arc::new(model::Memory::new(data_size as usize));
        // Loom models the C++ memory model, which knows no memory types.
        let ordering = MemoryOrdering::WriteBack;
        (
            Self {
                model: model.clone(),
                data_size,
                ordering,
            },
            Self {
                model,
                data_size,
                ordering,
            },
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
        let [word0, seq, timestamp] = header_words(h);
        // SAFETY: The caller keeps the header inside the data area and owns it.
        unsafe {
            self.write_word(off, word0);
            self.write_word(off + 8, seq);
            self.write_word(off + 16, timestamp);
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
