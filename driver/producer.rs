// SPDX-License-Identifier: GPL-2.0

//! The built-in producer: a kernel thread that writes verifiable records,
//! as one client of the in-kernel producer API among others: it writes
//! through the exported batch calls (`rmemring_batch_begin`,
//! `rmemring_batch_reserve`, `rmemring_batch_commit`,
//! `rmemring_batch_end` of `api.rs`), the entry points a client module
//! calls, and touches no ring internals. Its reference to the ring is the
//! `Arc` it runs on, what `rmemring_get` hands a client.
//!
//! Why a kernel thread: it can run flat out (yielding with `cond_resched`),
//! sleep precisely between records for a rate limit, and wait for room when
//! asked to, and its life cycle (start, stop and wait, exit when done) maps
//! onto `kthread_create`/`kthread_stop` with no cancellation races. An
//! hrtimer callback runs in interrupt context and could only produce small
//! bursts; a workqueue item has no cancel API in the 7.2 Rust bindings.
//!
//! The index logic is the shared `ProducerCore`: the consumer's position is
//! untrusted input it validates, so whatever user space writes into its
//! page, this thread writes only inside the data area and never over a
//! record that was published and not released (drop-new mode).

use core::sync::atomic::{
    AtomicBool,
    AtomicU64,
    Ordering, //
};

use kernel::{
    alloc::KVVec,
    ffi::{
        c_int,
        c_void, //
    },
    prelude::*,
    sync::Arc,
    time::{
        delay::fsleep,
        Delta, //
    },
};

use crate::api;
use crate::proto::events::TAG_PATTERN;
use crate::proto::layout::record_stride;
use crate::proto::pattern;
use crate::proto::producer_core::{
    batch_bytes,
    Overflow,
    MAX_BATCH_RECORDS, //
};
use crate::proto::uapi::{
    ProducerConfig,
    PATTERN_NONE,
    PATTERN_SEQ,
    PRODUCER_FLAGS_KNOWN,
    PRODUCER_HOOK_ONLY,
    PRODUCER_STAGED,
    PRODUCER_WAIT, //
};
use crate::ring::Ring;
use crate::sys;

/// Records per publication when the configuration says 0.
const DEFAULT_BATCH: u32 = 64;
/// The largest batch accepted.
const MAX_BATCH: u32 = 1 << 16;
/// Longest single sleep, so `kthread_stop` is answered promptly.
const MAX_SLEEP_US: i64 = 10_000;
/// First sleep while waiting for room, after one plain yield.
const MIN_BACKOFF_US: i64 = 16;
/// Longest back-off while waiting for room.
const MAX_BACKOFF_US: i64 = 1_000;
/// `RMEMRING_NO_DROP` of `rmemring.h`.
const NO_DROP: u32 = 2;
/// Checks a producer configuration from user space.
pub(crate) fn validate(config: &ProducerConfig, overflow: Overflow, max_payload: u32) -> Result {
    // Every field is checked on its own line, with the errno user space sees.
    if config.min_len > config.max_len {
        return Err(EINVAL);
    }
    if config.max_len > max_payload {
        return Err(EINVAL);
    }
    if config.pattern != PATTERN_SEQ && config.pattern != PATTERN_NONE {
        return Err(EINVAL);
    }
    if config.flags & !PRODUCER_FLAGS_KNOWN != 0 {
        return Err(EINVAL);
    }
    // Waiting for room means nothing when the producer overwrites.
    if config.flags & PRODUCER_WAIT != 0 && overflow == Overflow::OverwriteOldest {
        return Err(EINVAL);
    }
    // `scale` needs the rate at most a second's worth of nanoseconds.
    if config.rate > NSEC_PER_SEC {
        return Err(EINVAL);
    }
    // Nothing to wait for when records bypass the ring.
    if config.flags & PRODUCER_WAIT != 0 && config.flags & PRODUCER_HOOK_ONLY != 0 {
        return Err(EINVAL);
    }
    // Nothing to copy into when records bypass the ring.
    if config.flags & PRODUCER_STAGED != 0 && config.flags & PRODUCER_HOOK_ONLY != 0 {
        return Err(EINVAL);
    }
    if config.batch > MAX_BATCH {
        return Err(EINVAL);
    }
    if config.reserved != [0; 7] {
        return Err(EINVAL);
    }
    Ok(())
}

const NSEC_PER_SEC: u64 = 1_000_000_000;

/// `value * mul / div` without 128-bit division (which the kernel lacks),
/// exact while `mul` and `div` are at most `NSEC_PER_SEC`.
/// A zero `div` gives `u64::MAX` (never due); no path of this function
/// panics, so none ends in a call objtool would see the function fall
/// through after.
fn scale(value: u64, mul: u64, div: u64) -> u64 {
    let (Some(whole), Some(rest)) = (value.checked_div(div), value.checked_rem(div)) else {
        return u64::MAX;
    };
    let part = rest
        .saturating_mul(mul)
        .checked_div(div)
        .unwrap_or(u64::MAX);
    whole.saturating_mul(mul).saturating_add(part)
}

/// What the producer thread runs on.
pub(crate) struct ProducerRun {
    ring: Arc<Ring>,
    config: ProducerConfig,
    running: AtomicBool,
}

impl ProducerRun {
    /// A run of `config` on `ring`; it counts as running until it finishes.
    pub(crate) fn new(ring: Arc<Ring>, config: ProducerConfig) -> Self {
        Self {
            ring,
            config,
            running: AtomicBool::new(true),
        }
    }

    /// Whether the thread is still producing.
    pub(crate) fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }
}

/// The producer thread's body.
pub(crate) fn run(run: &ProducerRun) {
    produce(&run.ring, &run.config);
    run.running.store(false, Ordering::Release);
}

fn produce(ring: &Ring, config: &ProducerConfig) {
    if config.flags & PRODUCER_HOOK_ONLY != 0 {
        emit(ring, config);
        return;
    }
    // `PRODUCER_STAGED`: each payload is written into these words first,
    // as `emit` writes it, then copied into the reservation.
    let mut staging = KVVec::new();
    if config.flags & PRODUCER_STAGED != 0
        && staging
            .resize(config.max_len.div_ceil(8) as usize, 0u64, GFP_KERNEL)
            .is_err()
    {
        return;
    }
    let pacer = Pacer::new(config);
    let wait_for_room = config.flags & PRODUCER_WAIT != 0;
    let first_word_only = config.pattern == PATTERN_NONE;
    // Records written or dropped by this run.
    let mut done = 0u64;
    let mut backoff_us = 0i64;
    // The record `staging` holds, and its words.
    let mut staged_seq = None;
    let mut staged_words = 0;

    // The thread's reference, as `rmemring_get` would hand it out: the
    // `Arc` it runs on keeps the ring alive until the thread is reaped.
    let raw = core::ptr::from_ref(ring).cast::<c_void>();
    let flags = if wait_for_room { NO_DROP } else { 0 };

    while !sys::kthread_should_stop() {
        let Some(quota) = pacer.quota(done) else {
            break;
        };
        if quota == 0 {
            continue;
        }
        let mut seq = 0u64;
        // SAFETY: `raw` is a live reference (above); `seq` is writable.
        match unsafe { api::rmemring_batch_begin(raw, &mut seq) } {
            0 => {}
            // The device is gone, for good (a rebind makes another ring):
            // the thread is done; `kthread_stop` reaps it.
            e if e == ENODEV.to_errno() => break,
            // A reboot froze the ring: nothing more goes in.
            _ => {
                fsleep(Delta::from_micros(MAX_BACKOFF_US));
                continue;
            }
        }
        let mut full = false;
        // At most `quota` records, and only while the batch stays within
        // its bounds (the API's `-EAGAIN`: 64 KiB of records, the shared
        // core's `batch_bytes`, `MAX_BATCH_RECORDS`): the rest of the quota
        // goes in the next batch, after this one is published, the lock
        // was let go and a stop request was looked at. (Without the
        // bounds, a batch of 65 536 records of 4 MiB in overwrite mode,
        // where a reservation never fails, would write 256 GiB before
        // STOP, a close or rmmod, all waiting in `kthread_stop`, were
        // answered; and it would overwrite its own unpublished records.)
        for _ in 0..quota.min(MAX_BATCH_RECORDS) {
            let len = pattern::payload_len(seq, config.min_len, config.max_len);
            // The staged payload is written before the reservation, as
            // `emit`'s is before its tracepoint (and, as there, for a
            // record that is then dropped too); once per record, even if
            // it waits for room (`len` is a function of `seq`).
            let staged = if staging.is_empty() {
                None
            } else {
                if staged_seq != Some(seq) {
                    staged_words = stage(&mut staging, seq, len as usize, first_word_only).len();
                    staged_seq = Some(seq);
                }
                Some(&staging[..staged_words])
            };
            // SAFETY: The thread began the batch on this CPU (interrupts
            // are off: it stays here) and has not ended it.
            let payload = unsafe { api::rmemring_batch_reserve(raw, TAG_PATTERN, len, flags) };
            match err_of(payload) {
                None => {
                    match staged {
                        // SAFETY: The reservation's `len` bytes at
                        // `payload`, 8-byte aligned in a record padded to
                        // 8, are this producer's to write until it commits
                        // them; `words` holds at most `ceil(len / 8)`.
                        Some(words) => unsafe { copy_words(payload.cast(), words) },
                        // SAFETY: As above.
                        None => unsafe { write_pattern(payload.cast(), len, seq, first_word_only) },
                    }
                    // SAFETY: As for the reservation: its payload. It
                    // cannot fail: the batch and the reservation are open.
                    let _ = unsafe { api::rmemring_batch_commit(raw, payload) };
                }
                // Drop-new and full: dropped and counted; the sequence
                // shows the gap.
                Some(e) if e == ENOSPC.to_errno() => {}
                // Full, and asked to wait for room (`RMEMRING_NO_DROP`).
                Some(e) if e == sys::enobufs().to_errno() => {
                    full = true;
                    break;
                }
                // The batch's bound (`-EAGAIN`), or (impossible after
                // `validate`) too large: publish and begin again.
                Some(_) => break,
            }
            seq += 1;
            done += 1;
        }
        // Publishes the batch and, if the consumer asked, wakes it: here,
        // preemptible, directly.
        // SAFETY: The thread's batch, on this CPU, still open.
        let _ = unsafe { api::rmemring_batch_end(raw, 0) };
        if full && backoff_us > 0 {
            // Sleep, not spin: fsleep() busy-waits below 10 us.
            fsleep(Delta::from_micros(backoff_us));
            backoff_us = (backoff_us * 2).min(MAX_BACKOFF_US);
        } else {
            backoff_us = if full { MIN_BACKOFF_US } else { 0 };
            sys::cond_resched();
        }
    }
}

/// The `-errno` of an `ERR_PTR`, or `None` for a pointer.
fn err_of(ptr: *mut c_void) -> Option<c_int> {
    let addr = ptr as isize;
    (-4095..0).contains(&addr).then_some(addr as c_int)
}

/// Writes record `seq`'s test pattern (see [`pattern`]) into the `len`
/// bytes at `payload`, or only its first word if `first_word_only`: one
/// relaxed atomic store of an aligned word each, valid on every cache
/// mode of the ring, as `rmemring_fill` and the shared core write. A
/// partial last word is written whole: its extra bytes are the record's
/// padding.
///
/// # Safety
///
/// `payload` is 8-byte aligned and the `len` bytes there, rounded up to
/// 8, are the caller's to write (a reservation's payload).
#[inline]
unsafe fn write_pattern(payload: *mut u64, len: u32, seq: u64, first_word_only: bool) {
    let words = u64::from(len).div_ceil(8);
    let words = if first_word_only { words.min(1) } else { words };
    pattern::for_each_word(seq, words, |i, word| {
        // SAFETY: `i < ceil(len / 8)`: the word lies in the reservation,
        // which the caller owns; aligned as `payload` is.
        unsafe { AtomicU64::from_ptr(payload.add(i as usize)) }.store(word, Ordering::Relaxed);
    });
}

/// Writes record `seq`'s pattern for a payload of `len` bytes into the
/// first words of `staging`, or only its first word if `first_word_only`,
/// one `u64` store each, little-endian as the pattern is defined (a
/// partial last word is its low bytes); returns the words written (never
/// more than `staging` holds). The private buffer of [`emit`] (which hands
/// it to the tracepoint) and of [`PRODUCER_STAGED`] (which copies it into
/// the reservation) is filled by this one function, so both pay the same
/// for it.
#[inline]
fn stage(staging: &mut [u64], seq: u64, len: usize, first_word_only: bool) -> &[u64] {
    let words = len.div_ceil(8);
    let words = if first_word_only { words.min(1) } else { words };
    let words = words.min(staging.len());
    let dst = staging.as_mut_ptr();
    pattern::for_each_word(seq, words as u64, |i, word| {
        // SAFETY: `i < words <= staging.len()`, and `staging` is borrowed
        // mutably for this call: nothing else refers to it meanwhile.
        unsafe { dst.add(i as usize).write(word.to_le()) };
    });
    &staging[..words]
}

/// Copies `words` into the words at `payload`, one relaxed atomic store of
/// an aligned word each, as [`write_pattern`] stores them (valid on every
/// cache mode of the ring). It is the one copy `bpf_probe_read_kernel`
/// makes of the payload in the benchmark's BPF program: its
/// `copy_from_kernel_nofault` copies aligned memory one `u64` at a time
/// too.
///
/// # Safety
///
/// `payload` is 8-byte aligned and the `8 * words.len()` bytes there are
/// the caller's to write (a reservation's payload, rounded up to 8).
#[inline]
unsafe fn copy_words(payload: *mut u64, words: &[u64]) {
    for (i, &word) in words.iter().enumerate() {
        // SAFETY: `i < words.len()`: the word lies in the reservation,
        // which the caller owns; aligned as `payload` is. `word` is
        // little-endian already: stored as the bytes `stage` laid out.
        unsafe { AtomicU64::from_ptr(payload.add(i)) }.store(word, Ordering::Relaxed);
    }
}

/// How many records a run may produce when: its batch size, its count and
/// its rate.
struct Pacer<'a> {
    config: &'a ProducerConfig,
    start: u64,
    batch: u64,
}

impl<'a> Pacer<'a> {
    fn new(config: &'a ProducerConfig) -> Self {
        let batch = if config.batch == 0 {
            DEFAULT_BATCH
        } else {
            config.batch
        };
        Self {
            config,
            start: sys::monotonic_ns(),
            batch: u64::from(batch),
        }
    }

    /// How many records may go now, `None` once `count` are done; sleeps
    /// first if none are due yet.
    fn quota(&self, done: u64) -> Option<u64> {
        let config = self.config;
        let mut quota = self.batch;
        if config.count != 0 {
            if done >= config.count {
                return None;
            }
            quota = quota.min(config.count - done);
        }
        if config.rate != 0 {
            let elapsed = sys::monotonic_ns().saturating_sub(self.start);
            let due = scale(elapsed, config.rate, NSEC_PER_SEC);
            if due <= done {
                let next_ns = scale(done + 1, NSEC_PER_SEC, config.rate);
                let wait_us = (next_ns.saturating_sub(elapsed) / 1000) as i64;
                if wait_us > 0 {
                    fsleep(Delta::from_micros(wait_us.min(MAX_SLEEP_US)));
                } else {
                    sys::cond_resched();
                }
                return Some(0);
            }
            quota = quota.min(due - done);
        }
        Some(quota)
    }
}

/// [`PRODUCER_HOOK_ONLY`]: the same records, paced the same way, handed to
/// the `rmemring_record_tp` tracepoint instead of the ring.
///
/// The payload is written as the ring's is (`write_pattern`): one `u64`
/// store per word through the same `pattern::for_each_word`, into a buffer
/// of words ([`stage`], as [`PRODUCER_STAGED`] fills it), so that filling
/// it costs this path what it costs the ring's.
/// (Filled through `pattern::fill`, byte slices of 8, it cost about ten
/// times as much per byte in the reference VM, which charged the BPF peer
/// for the benchmark's producer.)
fn emit(ring: &Ring, config: &ProducerConfig) {
    let mut words = KVVec::new();
    if words
        .resize(config.max_len.div_ceil(8) as usize, 0u64, GFP_KERNEL)
        .is_err()
    {
        return;
    }
    let pacer = Pacer::new(config);
    let first_word_only = config.pattern == PATTERN_NONE;
    let budget = batch_bytes(ring.region().geometry().data_size);
    let mut seq = 0u64;
    while !sys::kthread_should_stop() {
        let Some(quota) = pacer.quota(seq) else {
            break;
        };
        // As in `produce`: a batch ends early once `budget` bytes are
        // filled, so a stop request is seen soon whatever the batch size.
        let mut filled = 0u64;
        let mut emitted = 0u64;
        while emitted < quota.min(MAX_BATCH_RECORDS) && filled < budget {
            let len = pattern::payload_len(seq, config.min_len, config.max_len) as usize;
            stage(&mut words, seq, len, first_word_only);
            // SAFETY: `words` holds `ceil(max_len / 8)` initialised `u64`s
            // and `len <= max_len`, so its first `len` bytes are
            // initialised memory it owns; any byte is a valid `u8`; the
            // slice lives until the end of this iteration, and `words` is
            // not written meanwhile.
            let bytes = unsafe { core::slice::from_raw_parts(words.as_ptr().cast::<u8>(), len) };
            sys::hook_record(seq, sys::monotonic_ns(), bytes);
            filled += record_stride(len as u32);
            emitted += 1;
            seq += 1;
        }
        ring.count_hooked(emitted);
        sys::cond_resched();
    }
}
