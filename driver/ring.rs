// SPDX-License-Identifier: GPL-2.0

//! One ring: its region, its kernel producer and the consumers waiting on it.
//!
//! Lock order: `Ring::state` before `Ring::producer` before
//! `Ring::wake_lock`. The producer thread takes `producer` once per batch
//! (never `state`) and `wake_lock` only to wake a sleeping consumer;
//! `read()` takes `state` to attach and to hand space back, and
//! `wake_lock` alone to sleep. So the control paths (open, close, STATS,
//! debugfs, START, STOP) never wait for a batch to end: only RESET takes
//! `producer`, and only while no producer runs; it takes `wake_lock` last,
//! only to rewrite the two pages.

use core::sync::atomic::{
    AtomicBool,
    AtomicU32,
    AtomicU64,
    Ordering, //
};

use kernel::{
    new_mutex, new_poll_condvar, new_spinlock,
    prelude::*,
    str::CString,
    sync::{
        poll::PollCondVar,
        Arc,
        Mutex,
        SpinLock, //
    },
};

use crate::producer::{
    self,
    ProducerRun, //
};
use crate::proto::consumer_core::{
    has_unreleased,
    ConsumerCore, //
};
use crate::proto::layout::{
    max_payload_for,
    FLAG_OVERWRITE, //
};
use crate::proto::modes::Overflow;
use crate::proto::producer_core::ProducerCore;
use crate::proto::uapi::{
    ProducerConfig,
    ResetConfig,
    RingInfo,
    RingStats,
    RESET_FLAGS_KNOWN, //
};
use crate::proto::view::RingView;
use crate::region::Region;
use crate::sys::Kthread;

/// The control state of a ring: who produces and who consumes.
struct RingState {
    /// The producer thread, running or finished.
    thread: Option<Kthread<ProducerRun>>,
    /// The open file that started it: closing that file stops it.
    started_by: Option<FileId>,
    /// Whether a consumer has the device open.
    consumer_open: bool,
}

/// The producer side of a ring, which the producer thread locks once per
/// batch.
pub(crate) struct ProducerState {
    /// The index logic and counters.
    pub(crate) core: ProducerCore,
    /// Set by a reset: the next publication wakes every sleeper, whatever
    /// its `need_wakeup` says (the reset wiped the requests of consumers
    /// that were asleep).
    wake_all_next: bool,
}

impl ProducerState {
    /// Publishes what the producer committed, and says whether to wake the
    /// sleepers: when a consumer asked for it, and, after a reset, when
    /// anything was published at all (see [`Ring::reset`]).
    pub(crate) fn publish(&mut self) -> bool {
        let published = self.core.unpublished() != 0;
        let requested = self.core.publish();
        if published && self.wake_all_next {
            self.wake_all_next = false;
            return true;
        }
        requested
    }
}

/// Identifies an open file of the device (its address, stable while open).
pub(crate) type FileId = usize;

/// A ring device's shared state, referenced by its registration, its open
/// files and its producer thread.
#[pin_data]
pub(crate) struct Ring {
    /// The `N` of `/dev/rmemringN`.
    index: u32,
    /// The device name, for messages and the producer thread's name.
    name: CString,
    /// Who produces and who consumes.
    #[pin]
    state: Mutex<RingState>,
    /// The producer side; see the lock order above.
    #[pin]
    pub(crate) producer: Mutex<ProducerState>,
    /// Consumers sleeping in `poll` or `read` wait here.
    #[pin]
    readers: PollCondVar,
    /// Held by a `read()` sleeper from its last check until it is queued on
    /// `readers`, and by the producer to wake it, so no wake-up is lost.
    #[pin]
    wake_lock: SpinLock<()>,
    /// `FLAG_*` bits of the control page. Changed only by `reset`, under
    /// `state`; read without it (`read()` checks the mode on every call).
    flags: AtomicU32,
    /// False once the device is going away.
    live: AtomicBool,
    /// Bumped by every reset, so `read()` consumers re-attach. Changed
    /// only under `state` and `wake_lock` both, so either lock is enough
    /// to read it stable (see [`Self::reset`]).
    generation: AtomicU64,
    /// Records copied out through `read()`.
    records_read: AtomicU64,
    /// Records emitted through the tracepoint (`PRODUCER_HOOK_ONLY`).
    records_hooked: AtomicU64,
    /// The memory. Everything else here that holds a [`RingView`] is dropped
    /// before it (fields drop in declaration order, `region` last).
    region: Region,
}

impl Ring {
    /// Lays out a fresh ring in `region` and wraps it for sharing.
    pub(crate) fn new(
        index: u32,
        name: CString,
        region: Region,
        overflow: Overflow,
    ) -> Result<Arc<Self>> {
        let flags = overflow.flag() | (region.cache().flags());
        region.zero_data();
        region.initialise(flags);
        let producer = ProducerCore::attach(
            region.view(),
            overflow,
            max_payload_for(region.geometry().data_size),
        );
        Arc::pin_init(
            try_pin_init!(Self {
                index,
                name,
                state <- new_mutex!(RingState {
                    thread: None,
                    started_by: None,
                    consumer_open: false,
                }),
                producer <- new_mutex!(ProducerState {
                    core: producer,
                    wake_all_next: false,
                }),
                readers <- new_poll_condvar!("rmemring::readers"),
                wake_lock <- new_spinlock!(()),
                flags: AtomicU32::new(flags),
                live: AtomicBool::new(true),
                generation: AtomicU64::new(0),
                records_read: AtomicU64::new(0),
                records_hooked: AtomicU64::new(0),
                region,
            }),
            GFP_KERNEL,
        )
    }

    /// The device name.
    pub(crate) fn name(&self) -> &CStr {
        &self.name
    }

    /// The memory.
    pub(crate) fn region(&self) -> &Region {
        &self.region
    }

    /// A fresh view of the ring's memory, valid while `self` lives.
    pub(crate) fn view(&self) -> RingView {
        self.region.view()
    }

    /// The current overflow policy.
    pub(crate) fn overflow(&self) -> Overflow {
        Overflow::from_flags(self.flags.load(Ordering::Acquire))
    }

    /// The reset generation; see [`Self::reset`].
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether the device still exists.
    pub(crate) fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    /// The reset generation and the overflow mode of the ring in it, for
    /// a `read()` consumer to attach with. Read under `state`, under which
    /// a reset changes both, so the pair always describes one ring.
    pub(crate) fn attach_point(&self) -> (u64, Overflow) {
        let _state = self.state.lock();
        (self.generation.load(Ordering::Relaxed), self.overflow())
    }

    /// After `read()` copied records with `core` (attached in
    /// `generation`): hands their space back to the producer and returns
    /// true, unless a reset came since `core` attached. Then it returns
    /// false and stores nothing: what was copied may be the reset's zeroes
    /// rather than records, and the position and counters `core` would
    /// store belong to the ring before the reset (stored into the fresh
    /// consumer page, they would make every later `read()` fail). `state`
    /// is held, as by a whole reset, so a reset either finished before the
    /// check or starts after the store; copies made before the check were
    /// made before the reset touched the ring.
    /// The `records` copied are counted in `records_read` under the same
    /// check, so that a reset's zeroed counters never start with records
    /// of the ring before it.
    #[must_use = "false means the copy is void"]
    pub(crate) fn release_read(
        &self,
        core: &mut ConsumerCore,
        generation: u64,
        records: u64,
    ) -> bool {
        let _state = self.state.lock();
        if self.generation() != generation {
            return false;
        }
        core.release();
        self.records_read.fetch_add(records, Ordering::Relaxed);
        true
    }

    /// Counts records emitted through the tracepoint.
    pub(crate) fn count_hooked(&self, records: u64) {
        self.records_hooked.fetch_add(records, Ordering::Relaxed);
    }

    /// Registers a new open file; only one may consume at a time.
    pub(crate) fn open(&self, consumer: bool) -> Result {
        if !self.is_live() {
            return Err(ENODEV);
        }
        if consumer {
            let mut state = self.state.lock();
            if state.consumer_open {
                return Err(EBUSY);
            }
            state.consumer_open = true;
        }
        Ok(())
    }

    /// An open file closed: stop the producer if it started it, and let
    /// another consumer in if it was the consumer.
    pub(crate) fn file_closed(&self, file: FileId, consumer: bool) {
        let thread = {
            let mut state = self.state.lock();
            if consumer {
                state.consumer_open = false;
            }
            if state.started_by == Some(file) {
                state.started_by = None;
                state.thread.take()
            } else {
                None
            }
        };
        // `kthread_stop` outside the lock the thread takes.
        drop(thread);
    }

    /// The device is going away: refuse new work, stop the producer, wake
    /// every sleeper so it sees the end.
    pub(crate) fn shutdown(&self) {
        self.live.store(false, Ordering::Release);
        self.stop();
        self.wake_readers();
    }

    /// Starts the producer thread on behalf of open file `by`.
    pub(crate) fn start(self: &Arc<Self>, config: ProducerConfig, by: FileId) -> Result {
        let finished = {
            let mut state = self.state.lock();
            // Under the lock: `shutdown` clears `live` before it takes the
            // lock to stop the producer, so either it sees the thread
            // started here and stops it, or this sees the device gone.
            // (Checked outside the lock, a shutdown could run its `stop`
            // between the check and the spawn, and leave a producer
            // running on a device that is going away.)
            if !self.is_live() {
                return Err(ENODEV);
            }
            producer::validate(
                &config,
                Overflow::from_flags(self.flags.load(Ordering::Acquire)),
                max_payload_for(self.region.geometry().data_size),
            )?;
            if state.thread.as_ref().is_some_and(|t| t.data().is_running()) {
                return Err(EBUSY);
            }
            let finished = state.thread.take();
            let run = ProducerRun::new(self.clone(), config);
            state.thread = Some(Kthread::spawn(&self.name, run, producer::run)?);
            state.started_by = Some(by);
            finished
        };
        // Reap a previous run outside the lock (it has already exited).
        drop(finished);
        Ok(())
    }

    /// Stops the producer thread, if any, and waits until it has exited.
    pub(crate) fn stop(&self) {
        let thread = {
            let mut state = self.state.lock();
            state.started_by = None;
            state.thread.take()
        };
        // `kthread_stop` runs in `Drop`, outside the lock the thread takes.
        drop(thread);
    }

    /// With the producer stopped, empties the ring, zeroes its counters and
    /// sets its overflow mode.
    ///
    /// Consumers asleep in `poll` or `read()` are woken so that they look
    /// at the new ring (`read()` re-attaches to it). The reset also wipes
    /// their `need_wakeup` requests, so the first publication after it
    /// wakes every sleeper regardless (see [`ProducerState::publish`]);
    /// otherwise a consumer that went back to sleep in `poll` before the
    /// reset would never be woken by the records that follow it.
    pub(crate) fn reset(&self, config: ResetConfig) -> Result {
        if config.flags & !RESET_FLAGS_KNOWN != 0 || config.reserved != [0; 3] {
            return Err(EINVAL);
        }
        {
            let state = self.state.lock();
            // A finished thread has let go of `producer` for good; a
            // running one may not be disturbed.
            if state.thread.as_ref().is_some_and(|t| t.data().is_running()) {
                return Err(EBUSY);
            }
            let mut producer = self.producer.lock();
            // Nothing of the old ring survives, not even in padding.
            self.region.zero_data();
            // Nor in the driver's own counters of it.
            self.records_read.store(0, Ordering::Relaxed);
            self.records_hooked.store(0, Ordering::Relaxed);
            let old = self.flags.load(Ordering::Acquire);
            let flags = (old & !FLAG_OVERWRITE) | (config.flags & FLAG_OVERWRITE);
            {
                // Under `wake_lock` too: a `read()` consumer on its way to
                // sleep checks the generation under it before it stores
                // its position and counters, so they either land before
                // these pages are rewritten or are never stored.
                let _wake = self.wake_lock.lock();
                self.region.initialise(flags);
                self.flags.store(flags, Ordering::Release);
                self.generation.fetch_add(1, Ordering::AcqRel);
            }
            producer.core = ProducerCore::attach(
                self.region.view(),
                Overflow::from_flags(flags),
                max_payload_for(self.region.geometry().data_size),
            );
            producer.wake_all_next = true;
        }
        self.wake_readers();
        Ok(())
    }

    /// Wakes consumers sleeping in `poll` or `read`.
    pub(crate) fn wake_readers(&self) {
        let _guard = self.wake_lock.lock();
        self.readers.notify_all();
    }

    /// The wait queue `poll` registers on.
    pub(crate) fn readers(&self) -> &PollCondVar {
        &self.readers
    }

    /// The lock a `read()` sleeper holds from its last check until queued.
    pub(crate) fn wake_lock(&self) -> &SpinLock<()> {
        &self.wake_lock
    }

    /// Whether records are published beyond the consumer's position.
    pub(crate) fn readable(&self) -> bool {
        has_unreleased(&self.view())
    }

    /// What `RMEMRING_IOC_INFO` reports.
    pub(crate) fn info(&self) -> RingInfo {
        self.region.geometry().ring_info(
            self.flags.load(Ordering::Acquire),
            self.index,
            self.region.base(),
        )
    }

    /// What `RMEMRING_IOC_STATS` reports.
    pub(crate) fn stats(&self) -> RingStats {
        let (producer_running, consumer_open) = {
            let state = self.state.lock();
            let running = state.thread.as_ref().is_some_and(|t| t.data().is_running());
            (running, state.consumer_open)
        };
        let v = self.view();
        let load = |a: &crate::proto::sync::AtomicU64| a.load(Ordering::Relaxed);
        RingStats {
            producer_pos: load(v.producer_pos()),
            consumer_pos: load(v.consumer_pos()),
            records_produced: load(v.records_produced()),
            bytes_produced: load(v.bytes_produced()),
            records_dropped: load(v.records_dropped()),
            records_overwritten: load(v.records_overwritten()),
            wakeups: load(v.wakeups()),
            consumer_errors: load(v.consumer_errors()),
            records_consumed: load(v.records_consumed()),
            bytes_consumed: load(v.bytes_consumed()),
            records_lost: load(v.records_lost()),
            sleeps: load(v.sleeps()),
            records_read: self.records_read.load(Ordering::Relaxed),
            producer_running: producer_running.into(),
            consumer_open: consumer_open.into(),
            records_hooked: self.records_hooked.load(Ordering::Relaxed),
            reserved: [0; 3],
        }
    }
}
