// SPDX-License-Identifier: GPL-2.0

//! The built-in producer: a kernel thread that writes verifiable records,
//! as one client of the ring's producer API among others (`Ring::producing`,
//! the same path the exported C API takes).
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
    Ordering, //
};

use kernel::{
    alloc::KVVec,
    prelude::*,
    sync::Arc,
    time::{
        delay::fsleep,
        Delta, //
    },
};

use crate::proto::events::TAG_PATTERN;
use crate::proto::layout::record_stride;
use crate::proto::pattern;
use crate::proto::producer_core::{
    batch_bytes,
    Overflow,
    ReserveError,
    MAX_BATCH_RECORDS, //
};
use crate::proto::uapi::{
    ProducerConfig,
    PATTERN_NONE,
    PATTERN_SEQ,
    PRODUCER_FLAGS_KNOWN,
    PRODUCER_HOOK_ONLY,
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
/// The most record bytes the thread writes with the producer lock held,
/// that is with interrupts off and every other producer of the ring
/// spinning: a batch longer than that is published in parts. About 10 us
/// of copying on current hardware (much more under emulation).
const MAX_HOLD_BYTES: u64 = 64 << 10;
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
    let pacer = Pacer::new(config);
    let wait_for_room = config.flags & PRODUCER_WAIT != 0;
    let first_word_only = config.pattern == PATTERN_NONE;
    // Records written or dropped by this run.
    let mut done = 0u64;
    let mut backoff_us = 0i64;

    while !sys::kthread_should_stop() {
        let Some(quota) = pacer.quota(done) else {
            break;
        };
        if quota == 0 {
            continue;
        }
        let full = {
            let Ok(mut producing) = ring.producing() else {
                // The device is going away: `kthread_stop` follows.
                sys::cond_resched();
                continue;
            };
            producing.wake_directly();
            let mut full = false;
            let mut held = 0u64;
            // At most `quota` records, and only while the batch stays within
            // the shared core's bound (`batch_bytes`, `MAX_BATCH_RECORDS`)
            // and the lock's (`MAX_HOLD_BYTES`): the rest of the quota goes
            // in the next batch, after this one is published, the lock was
            // let go and a stop request was looked at. (Without the bounds,
            // a batch of 65 536 records of 4 MiB in overwrite mode, where
            // `reserve` never fails, would write 256 GiB before STOP, a
            // close or rmmod, all waiting in `kthread_stop`, were answered;
            // and it would overwrite its own unpublished records.)
            for _ in 0..quota.min(MAX_BATCH_RECORDS) {
                let seq = producing.core().next_seq();
                let len = pattern::payload_len(seq, config.min_len, config.max_len);
                if producing.core().publish_due(len) || held >= MAX_HOLD_BYTES {
                    break;
                }
                match producing.reserve(len) {
                    Ok(slot) => {
                        producing.core().write_pattern(&slot, seq, first_word_only);
                        producing.commit(slot, TAG_PATTERN);
                        held += record_stride(len);
                    }
                    Err(ReserveError::Full) if wait_for_room => {
                        full = true;
                        break;
                    }
                    // Drop-new and full (or, impossible after `validate`,
                    // too large): count it; the sequence shows the gap.
                    Err(_) => producing.core_mut().drop_record(),
                }
                done += 1;
            }
            // Dropping `producing` publishes the batch and, if the
            // consumer asked, queues its wake-up.
            full
        };
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
/// of words, so that filling it costs this path what it costs the ring's.
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
            let written = if first_word_only {
                len.div_ceil(8).min(1)
            } else {
                len.div_ceil(8)
            };
            let dst = words.as_mut_ptr();
            pattern::for_each_word(seq, written as u64, |i, word| {
                // SAFETY: `i < written <= ceil(max_len / 8)`, the length
                // of `words`, which nothing else refers to meanwhile.
                // Little-endian, as the pattern is defined (a partial last
                // word is its low bytes).
                unsafe { dst.add(i as usize).write(word.to_le()) };
            });
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
