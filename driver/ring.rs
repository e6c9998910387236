// SPDX-License-Identifier: GPL-2.0

//! One ring: its region, its producers and the consumers waiting on it.
//!
//! Producers are any kernel code: the built-in producer thread and the
//! clients of the in-kernel API (`api.rs`), in any context but NMI, on
//! any CPU at once. They are serialised by `Ring::producer`, a raw
//! spinlock held with interrupts off from reserve to commit, as the BPF
//! ring buffer serialises its producers; the ring stays single-consumer.
//! A producer never wakes a consumer itself (it may hold the runqueue
//! lock, which `wake_up` takes): it queues `Ring::waker`, an `irq_work`.
//!
//! Lock order: `Ring::state` (a mutex) before `Ring::producer` (a raw
//! spinlock, irqs off) and before `Ring::wake_lock` (a spinlock, irqs
//! off); `producer` and `wake_lock` are never held together, since a
//! consumer's wait queue is taken inside `wake_lock` and no spinlock_t may
//! be taken inside a raw spinlock. So the control paths (open, close,
//! STATS, debugfs, START, STOP) never wait for a producer: only RESET and
//! the device's removal take `producer`, each for a few stores.

use core::mem::ManuallyDrop;
use core::sync::atomic::{
    AtomicBool,
    AtomicU32,
    AtomicU64,
    Ordering, //
};

use kernel::{
    ffi::c_void,
    new_mutex, new_poll_condvar,
    prelude::*,
    str::CString,
    sync::{
        poll::PollCondVar,
        Arc,
        Mutex, //
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
    record_stride,
    FLAG_OVERWRITE, //
};
use crate::proto::modes::Overflow;
use crate::proto::producer_core::{
    ProducerCore,
    ReserveError,
    Slot,
    MAX_BATCH_RECORDS, //
};
use crate::proto::recovery::{
    recover,
    Recovered, //
};
use crate::proto::uapi::{
    ProducerConfig,
    RecoveryInfo,
    ResetConfig,
    RingInfo,
    RingStats,
    RECOVERY_RELEASED,
    RESET_FLAGS_KNOWN,
    STATE_LIVE,
    STATE_RECOVERED, //
};
use crate::proto::view::RingView;
use crate::region::Region;
use crate::sys::{
    self,
    new_raw_spinlock_irq,
    new_spinlock_irq,
    CacheMode,
    Crash,
    CrashNotifiers,
    IrqWork,
    Kthread,
    RawSpinLockIrq,
    RawSpinLockIrqGuard,
    SpinLockIrq, //
};

/// The control state of a ring: who produces and who consumes.
struct RingState {
    /// The producer thread, running or finished.
    thread: Option<Kthread<ProducerRun>>,
    /// The open file that started it: closing that file stops it.
    started_by: Option<FileId>,
    /// Whether a consumer has the device open.
    consumer_open: bool,
    /// A previous boot's records, served read-only until released: no
    /// producer writes meanwhile (see [`Ring::release_recovered`]).
    recovered: Option<Recovered>,
    /// What the driver found in the region when it claimed it.
    recovery: RecoveryInfo,
    /// The overflow mode the ring was set up with, which a released
    /// recovered ring gets (the recovered one keeps the mode it was
    /// written in).
    configured: Overflow,
}

/// The producer side of a ring, locked by every producer from reserve to
/// commit (a batch: from `rmemring_batch_begin` to `rmemring_batch_end`).
pub(crate) struct ProducerState {
    /// The index logic and counters.
    core: ProducerCore,
    /// Set by a reset: the next publication wakes every sleeper, whatever
    /// its `need_wakeup` says (the reset wiped the requests of consumers
    /// that were asleep).
    wake_all_next: bool,
    /// A reset is rewriting the ring, a recovered ring is served, or the
    /// ring is kept for a reboot under way: producers keep out of it.
    paused: bool,
    /// The ring was written back for a reboot under way: `paused` for good.
    frozen: bool,
    /// The reservation a client holds between `rmemring_reserve` and
    /// `rmemring_commit`/`rmemring_discard` (see [`Producing::hold`]), or
    /// inside a batch between `rmemring_batch_reserve` and
    /// `rmemring_batch_commit`.
    held: Option<Held>,
    /// The batch a client holds open between `rmemring_batch_begin` and
    /// `rmemring_batch_end` (see [`Ring::batch_begin`]).
    batch: Option<Batch>,
}

/// A batch of the C API, open from `rmemring_batch_begin` to
/// `rmemring_batch_end`: what it has done so far, against its bounds.
struct Batch {
    /// Records committed or dropped: at most [`MAX_BATCH_RECORDS`].
    records: u64,
    /// Bytes of the records committed: at most [`BATCH_HOLD_BYTES`], or
    /// one record larger than that.
    bytes: u64,
}

/// The most record bytes a batch writes with the producer lock held, that
/// is with interrupts off and every other producer of the ring spinning:
/// a batch that reached it takes no more records (`-EAGAIN`), and its
/// producer publishes it, lets go and begins another. About 10 us of
/// copying on current hardware (much more under emulation).
pub(crate) const BATCH_HOLD_BYTES: u64 = 64 << 10;

/// A reservation of the C API, open from `rmemring_reserve` to
/// `rmemring_commit` or `rmemring_discard`.
struct Held {
    slot: Slot,
    tag: u16,
    /// The payload's address as `rmemring_reserve` returned it: the
    /// commit's pointer is checked against it (an address, not a pointer,
    /// so that the state stays `Send`).
    payload: usize,
}

impl ProducerState {
    /// The open reservation, taken if its payload is `payload` (the
    /// commit's pointer checked against the one reserve handed out), or
    /// left as it is.
    #[inline]
    fn take_held(&mut self, payload: *const u8) -> Option<Held> {
        match self.held.take() {
            Some(held) if held.payload == payload as usize => Some(held),
            other => {
                self.held = other;
                None
            }
        }
    }

    /// Publishes what the producer committed, and says whether to wake the
    /// sleepers: when a consumer asked for it, and, after a reset, when
    /// anything was published at all (see [`Ring::reset`]).
    #[inline]
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

/// [`Ring::owner`] when no CPU holds the producer lock.
const NO_CPU: u32 = u32::MAX;

/// Identifies an open file of the device (its address, stable while open).
pub(crate) type FileId = usize;

/// Why a producer's record did not go into the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WriteError {
    /// Drop-new mode and the consumer has not made room: counted in
    /// `records_dropped`, with a sequence number (the consumer sees the
    /// gap).
    Dropped,
    /// Larger than the ring's `max_payload`. Not counted: a caller's bug.
    TooLarge,
    /// The device is gone (unbound, or the module unloading): counted in
    /// `records_refused`.
    Gone,
    /// NMI context, a write nested in a producer's critical section on
    /// this CPU (of any ring), or a reset is rewriting the ring: counted in
    /// `records_refused`.
    Refused,
    /// A batch's bound is reached: end it (publishing it) and begin
    /// another. Not counted, no sequence number taken.
    BatchFull,
    /// Drop-new mode, the ring full, and the caller asked not to drop
    /// (`RMEMRING_NO_DROP`): not counted, no sequence number taken.
    NoRoom,
    /// A batch call with no batch of the ring open on this CPU, or a
    /// commit of a payload that is not the batch's open reservation: a
    /// caller's bug, logged, not counted.
    Misuse,
}

impl WriteError {
    /// The errno the C API returns for it.
    pub(crate) fn to_errno(self) -> Error {
        match self {
            WriteError::Dropped => ENOSPC,
            WriteError::TooLarge => EMSGSIZE,
            WriteError::Gone => ENODEV,
            WriteError::Refused => EBUSY,
            WriteError::BatchFull => EAGAIN,
            WriteError::NoRoom => sys::enobufs(),
            WriteError::Misuse => EINVAL,
        }
    }
}

/// A ring device's shared state, referenced by its registration, its open
/// files, its producers and the in-kernel API's clients.
#[pin_data(PinnedDrop)]
pub(crate) struct Ring {
    /// Writes the ring back to memory before a panic's or a reboot's
    /// reset, when it is kept for the next boot (`retain`; registered
    /// only then). First, so that it is unregistered (waiting for a
    /// running callback) before any field its callback reads is dropped;
    /// and initialised last, so that it is registered once they are all
    /// written.
    #[pin]
    crash: CrashNotifiers,
    /// Wakes consumers on behalf of producers (from any context). Before
    /// the rest, so that when the ring goes its `Drop` waits for a queued
    /// wake-up, which uses the fields below, before any of them is dropped.
    #[pin]
    waker: IrqWork,
    /// The `N` of `/dev/rmemringN`.
    index: u32,
    /// The device name, for messages and the producer thread's name.
    name: CString,
    /// Who produces and who consumes.
    #[pin]
    state: Mutex<RingState>,
    /// The producer side; see the lock order above.
    #[pin]
    producer: RawSpinLockIrq<ProducerState>,
    /// Consumers sleeping in `poll` or `read` wait here.
    #[pin]
    readers: PollCondVar,
    /// Held by a `read()` sleeper from its last check until it is queued on
    /// `readers`, and by the producer to wake it, so no wake-up is lost.
    #[pin]
    wake_lock: SpinLockIrq<()>,
    /// `FLAG_*` bits of the control page. Changed only by `reset`, under
    /// `state`; read without it (`read()` checks the mode on every call).
    flags: AtomicU32,
    /// False once the device is going away. Cleared under `producer`, so
    /// that no producer writes after [`Self::shutdown`] returns.
    live: AtomicBool,
    /// Bumped by every reset, so `read()` consumers re-attach. Changed
    /// only under `state` and `wake_lock` both, so either lock is enough
    /// to read it stable (see [`Self::reset`]).
    generation: AtomicU64,
    /// Records copied out through `read()`.
    records_read: AtomicU64,
    /// Records emitted through the tracepoint (`PRODUCER_HOOK_ONLY`).
    records_hooked: AtomicU64,
    /// Records refused: see [`WriteError::Gone`] and [`WriteError::Refused`].
    records_refused: AtomicU64,
    /// The CPU holding `producer`, or `NO_CPU`: written by the holder
    /// only, under the lock (see [`Self::producing`]).
    owner: AtomicU32,
    /// Whether a recovered ring is served (`RingState::recovered` is
    /// some), for readers that may not take `state`: the panic notifier.
    serving_recovered: AtomicBool,
    /// Keep what the region holds for the next boot: recover a previous
    /// boot's ring at claim, and write it back before a reset.
    retain: bool,
    /// The boot id this boot stamps its rings with (zero if unknown).
    boot_id: [u64; 2],
    /// The memory. Everything else here that holds a [`RingView`] is dropped
    /// before it (fields drop in declaration order, `region` last).
    region: Region,
}

impl Ring {
    /// Lays out a fresh ring in `region` and wraps it for sharing; with
    /// `retain`, serves the records of a previous boot's ring found there
    /// instead, if they verify (docs/flight-recorder.md).
    pub(crate) fn new(
        index: u32,
        name: CString,
        region: Region,
        overflow: Overflow,
        retain: bool,
    ) -> Result<Arc<Self>> {
        // Only a kept ring needs it: the id tells a previous boot's ring
        // from this boot's own. Zero if unknown, which `recover` refuses
        // to judge by.
        let boot_id = if retain {
            sys::boot_id().unwrap_or_else(|e| {
                pr_warn!(
                    "{}: the boot id is unreadable ({:?}): nothing will be recovered, and \
                     this ring will not be recoverable in the next boot\n",
                    &*name,
                    e
                );
                [0; 2]
            })
        } else {
            [0; 2]
        };
        if retain && region.cache() == CacheMode::WriteBack && !sys::can_write_back() {
            pr_err!(
                "{}: retain=1 (rmemring,retain) on a write-back ring needs a kernel that can \
                 write cache lines back before a reset (CONFIG_ARCH_HAS_PMEM_API; on arm64 \
                 CONFIG_ARM64_PMEM): map the ring write-combined or uncached, or enable it\n",
                &*name
            );
            return Err(EINVAL);
        }
        let cache = region.cache().flags();
        let found = if retain {
            recover(
                &region.view(),
                region.geometry(),
                cache,
                boot_id,
                &mut sys::cond_resched,
            )
        } else {
            Err(crate::proto::recovery::Unrecoverable::Blank)
        };
        let (flags, recovered, recovery) = match found {
            Ok(recovered) => {
                region.serve_recovered(&recovered);
                // `recover` serves overwrite-mode rings only.
                let flags = Overflow::OverwriteOldest.flag() | cache;
                pr_info!(
                    "{}: recovered {} records of a previous boot (sequence numbers {}..={}, {} \
                     ns of its clock, {} bytes cut from the tail); served read-only until \
                     released\n",
                    &*name,
                    recovered.records,
                    recovered.first_seq,
                    recovered.last_seq,
                    recovered.last_ns - recovered.first_ns,
                    recovered.bytes_cut()
                );
                (
                    flags,
                    Some(recovered),
                    RecoveryInfo::recovered(&recovered, flags),
                )
            }
            Err(why) => {
                if retain {
                    pr_info!(
                        "{}: nothing recovered: {}; laying out an empty ring\n",
                        &*name,
                        CoreDisplay(why)
                    );
                }
                let flags = overflow.flag() | cache;
                region.zero_data();
                region.initialise(flags, boot_id);
                let recovery = if retain {
                    RecoveryInfo::none(&why)
                } else {
                    RecoveryInfo::default()
                };
                (flags, None, recovery)
            }
        };
        // A recovered ring's producer side stays unused (paused) until it
        // is released; attached in drop-new mode, which writes nothing of
        // the ring it attaches to.
        let producer = ProducerCore::attach(
            region.view(),
            if recovered.is_some() {
                Overflow::DropNew
            } else {
                overflow
            },
            max_payload_for(region.geometry().data_size),
        );
        let paused = recovered.is_some();
        // (Inside the initialiser, `retain` names the field.)
        let register_crash = retain;
        Arc::pin_init(
            try_pin_init!(Self {
                // SAFETY: `wake_from_irq_work` is safe in hard-IRQ context
                // and finds the ring around the `irq_work`, which lives as
                // long as the ring.
                waker <- unsafe { IrqWork::new(wake_from_irq_work) },
                index,
                name,
                state <- new_mutex!(RingState {
                    thread: None,
                    started_by: None,
                    consumer_open: false,
                    recovered,
                    recovery,
                    configured: overflow,
                }),
                producer <- new_raw_spinlock_irq!(
                    ProducerState {
                        core: producer,
                        wake_all_next: false,
                        paused,
                        frozen: false,
                        held: None,
                        batch: None,
                    },
                    "rmemring::producer"
                ),
                readers <- new_poll_condvar!("rmemring::readers"),
                wake_lock <- new_spinlock_irq!((), "rmemring::wake_lock"),
                flags: AtomicU32::new(flags),
                live: AtomicBool::new(true),
                generation: AtomicU64::new(0),
                records_read: AtomicU64::new(0),
                records_hooked: AtomicU64::new(0),
                records_refused: AtomicU64::new(0),
                owner: AtomicU32::new(NO_CPU),
                serving_recovered: AtomicBool::new(paused),
                retain,
                boot_id,
                region,
                // Last: registered, the notifiers may call at once.
                // SAFETY: `keep_for_next_boot` takes no lock for a panic, and
                // finds the ring around the notifiers, which live as long
                // as the ring (they are its first field: dropped first).
                crash <- unsafe { CrashNotifiers::new(keep_for_next_boot, register_crash) },
            }),
            GFP_KERNEL,
        )
        .and_then(|ring| {
            // Before any producer can reach the ring: see the check.
            if sys::producer_lock_found(&ring.producer) {
                Ok(ring)
            } else {
                pr_err!("this kernel's Lock does not keep its state first: see sys.rs\n");
                Err(EINVAL)
            }
        })
    }

    /// The largest payload a record can carry.
    pub(crate) fn max_payload(&self) -> u32 {
        max_payload_for(self.region.geometry().data_size)
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
            // Every reader of a recovered ring reads it whole: reading it
            // twice loses nothing.
            if let Some(recovered) = &state.recovered {
                self.region.rewind_recovered(recovered);
            }
            drop(state);
            // The new consumer continues the previous one's tokens from the
            // consumer page, which that one could write: a token it left
            // there one short of the last one answered would make the new
            // consumer's first sleep look answered already, for ever.
            self.producer.lock().core.forget_woken_token();
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
    /// Once it returns, no producer writes into the ring again: they get
    /// [`WriteError::Gone`].
    pub(crate) fn shutdown(&self) {
        {
            // Under `producer`: a producer checks `live` under it, so it
            // either finished its record before this or sees the device
            // gone. (The ring's memory itself stays claimed and mapped
            // until the last reference goes: open files and clients.)
            let _producer = self.producer.lock();
            self.live.store(false, Ordering::Release);
        }
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
            // A recovered ring is read-only until it is released.
            if state.recovered.is_some() {
                return Err(EBUSY);
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

    /// With the producer thread stopped, empties the ring, zeroes its
    /// counters and sets its overflow mode.
    ///
    /// Other producers (the in-kernel API's clients) may keep writing: the
    /// reset pauses them (their records are refused and counted, as
    /// records of the ring the reset throws away would have been) while
    /// it rewrites the ring, without holding their lock, and lets them in
    /// again on the fresh ring.
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
        self.reset_to(|_| Ok(config.flags))
    }

    /// [`Self::reset`], in the overflow mode (`FLAG_OVERWRITE` or 0) that
    /// `mode` gives from the state it is called under, or not at all if it
    /// fails.
    fn reset_to(&self, mode: impl FnOnce(&RingState) -> Result<u32>) -> Result {
        {
            let mut state = self.state.lock();
            // A finished thread has let go of the ring for good; a
            // running one may not be disturbed.
            if state.thread.as_ref().is_some_and(|t| t.data().is_running()) {
                return Err(EBUSY);
            }
            let mode = mode(&state)?;
            // A recovered ring's records go with the reset (the pause
            // below ends it).
            if state.recovered.take().is_some() {
                state.recovery.verdict = RECOVERY_RELEASED;
                self.serving_recovered.store(false, Ordering::Release);
            }
            // From here until the end no producer touches the ring or the
            // producer core. (`state` keeps other resets out.)
            self.producer.lock().paused = true;
            // Nothing of the old ring survives, not even in padding.
            self.region.zero_data();
            // Nor in the driver's own counters of it.
            self.records_read.store(0, Ordering::Relaxed);
            self.records_hooked.store(0, Ordering::Relaxed);
            let old = self.flags.load(Ordering::Acquire);
            let flags = (old & !FLAG_OVERWRITE) | (mode & FLAG_OVERWRITE);
            {
                // Under `wake_lock`: a `read()` consumer on its way to
                // sleep checks the generation under it before it stores
                // its position and counters, so they either land before
                // these pages are rewritten or are never stored.
                let _wake = self.wake_lock.lock();
                self.region.initialise(flags, self.boot_id);
                self.flags.store(flags, Ordering::Release);
                self.generation.fetch_add(1, Ordering::AcqRel);
            }
            let core = ProducerCore::attach(
                self.region.view(),
                Overflow::from_flags(flags),
                max_payload_for(self.region.geometry().data_size),
            );
            let mut producer = self.producer.lock();
            producer.core = core;
            producer.wake_all_next = true;
            // Not once the ring is kept for a reboot under way: nothing may
            // be written after its write-back.
            producer.paused = producer.frozen;
            // Here, with the pause: what was refused during the reset
            // belongs to the ring it threw away.
            self.records_refused.store(0, Ordering::Relaxed);
        }
        self.wake_readers();
        Ok(())
    }

    /// Lets go of a recovered ring: lays out an empty ring in the mode the
    /// ring was set up with, as a reset does, and lets producers in.
    /// `EINVAL` if no recovered ring is served.
    pub(crate) fn release_recovered(&self) -> Result {
        // Checked under the same hold of `state` as the reset itself: a
        // reset or release in between would otherwise be followed by a
        // second reset, throwing away what producers wrote since.
        self.reset_to(|state| {
            if state.recovered.is_none() {
                return Err(EINVAL);
            }
            Ok(state.configured.flag())
        })
    }

    /// Whether a recovered ring is served (read-only, until released).
    pub(crate) fn serves_recovered(&self) -> bool {
        self.serving_recovered.load(Ordering::Acquire)
    }

    /// What the driver found in the region when it claimed it.
    pub(crate) fn recovery(&self) -> RecoveryInfo {
        self.state.lock().recovery
    }

    /// Called before a reset: with `retain`, writes the ring back to
    /// memory and logs how far it got, for the next boot to compare. A
    /// reboot first pauses the producers, so that nothing is written after
    /// the write-back; a panic cannot (the lock may be held by a CPU it
    /// stopped), and finds the others stopped anyway.
    fn keep(&self, crash: Crash) {
        if !self.retain {
            return;
        }
        if crash == Crash::Reboot {
            // For good: a reset racing the reboot (`reboot -f` leaves
            // processes running) must not let producers in again.
            let mut producer = self.producer.lock();
            producer.paused = true;
            producer.frozen = true;
        }
        self.region.write_back();
        if self.serves_recovered() {
            pr_info!(
                "{}: kept for the next boot: still the recovered ring of an earlier boot\n",
                &*self.name
            );
            return;
        }
        let v = self.view();
        // The counters of the last publication: the next sequence number
        // is one past the last record published or dropped.
        let next = v
            .records_produced()
            .load(Ordering::Relaxed)
            .wrapping_add(v.records_dropped().load(Ordering::Relaxed));
        let published = v.producer_pos().load(Ordering::Relaxed);
        let why = match crash {
            Crash::Panic => "panic",
            Crash::Reboot => "reboot",
        };
        pr_info!(
            "{}: kept for the next boot ({}): next sequence number {}, published up to {:#x}\n",
            &*self.name,
            why,
            next,
            published
        );
    }

    /// Wakes consumers sleeping in `poll` or `read`. Process or interrupt
    /// context, with no producer lock held (producers queue [`Self::waker`]
    /// instead).
    pub(crate) fn wake_readers(&self) {
        let _guard = self.wake_lock.lock();
        self.readers.notify_all();
    }

    /// Locks the producer side for one record or a batch of them, written
    /// by the returned [`Producing`]; it publishes them when dropped.
    ///
    /// Any context but NMI, on any CPU: the lock is a raw spinlock with
    /// interrupts off. Hold it briefly: every other producer of the ring
    /// spins meanwhile, with its interrupts off. A refusal is counted in
    /// `records_refused`: those decided under the lock before it goes, so
    /// that one made during a reset is zeroed with the reset's other
    /// counters (the reset zeroes them under the lock as it ends) rather
    /// than landing in the fresh ring's.
    #[inline]
    fn producing_for_client(&self) -> Result<Producing<'_>, WriteError> {
        let refuse = |error| {
            self.records_refused.fetch_add(1, Ordering::Relaxed);
            Err(error)
        };
        // NMI: the lock may be held by the code the NMI interrupted.
        // Re-entry: a producer that runs inside another's critical section
        // on the same CPU (a probe on a tracepoint the holder fires, the
        // lock's own lockdep and contention tracepoints included) would
        // spin on the lock its CPU holds, with interrupts off, for ever.
        // The flag covers the whole section, the lock's taking and letting
        // go included, which `owner` (set once the lock is held, cleared
        // before it goes) does not.
        let Some((guard, cpu)) = sys::lock_producer(&self.producer) else {
            return refuse(WriteError::Refused);
        };
        if !self.is_live() {
            return refuse(WriteError::Gone);
        }
        if guard.paused {
            return refuse(WriteError::Refused);
        }
        self.owner.store(cpu, Ordering::Relaxed);
        Ok(Producing {
            ring: self,
            guard: ManuallyDrop::new(guard),
            quiet: false,
        })
    }

    /// Writes one record of `payload` with `tag`, and publishes it; with
    /// `quiet`, without waking a sleeping consumer (see
    /// [`ProducerCore::publish_quietly`]).
    pub(crate) fn write(&self, tag: u16, payload: &[u8], quiet: bool) -> Result<(), WriteError> {
        let len = u32::try_from(payload.len()).map_err(|_| WriteError::TooLarge)?;
        let mut producing = self.producing_for_client()?;
        let slot = producing.reserve_or_drop(len)?;
        producing.core().write_payload(&slot, payload);
        producing.commit(slot, tag);
        producing.quiet = quiet;
        Ok(())
    }

    /// Reserves room for a record of `len` payload bytes and keeps the
    /// producer lock held (interrupts off) after it returns, until
    /// [`Self::finish_held`]: the C API's `rmemring_reserve`. Returns the
    /// payload's address.
    pub(crate) fn reserve_held(&self, tag: u16, len: u32) -> Result<*mut u8, WriteError> {
        let mut producing = self.producing_for_client()?;
        let slot = producing.reserve_or_drop(len)?;
        let payload = producing.core().payload_ptr(&slot);
        producing.hold(slot, tag, payload);
        Ok(payload)
    }

    /// Commits (or with `commit` false, discards) the reservation of
    /// [`Self::reserve_held`], publishes (with `quiet`, without waking a
    /// sleeping consumer) and lets go of the producer lock.
    ///
    /// A call from a CPU that does not hold the ring's producer lock, with
    /// a payload that is not its open reservation's, or inside a batch, is
    /// a caller's bug (a commit after a failed reserve, on the wrong ring,
    /// or from a context nested in the reserving one): it is refused
    /// ([`WriteError::Misuse`]) with an error in the log (deferred, once
    /// per boot), and touches nothing (not the reservation another CPU or
    /// context may be filling, not its lock). In NMI context it is refused
    /// and counted in `records_refused` ([`WriteError::Refused`]).
    ///
    /// # Safety
    ///
    /// The caller is the producer that made the reservation, on the same
    /// CPU and in the same context, and has not finished it yet: it holds
    /// the producer lock.
    #[inline(always)]
    pub(crate) unsafe fn finish_held(
        &self,
        payload: *const u8,
        commit: bool,
        quiet: bool,
    ) -> Result<(), WriteError> {
        // The single-record commit is the in-kernel API's hot path (a
        // tracer's every event), so it works on the guard itself rather
        // than through a `Producing`: no value built and dropped around it.
        // SAFETY: Forwarded: the caller holds the lock it took, or is
        // refused.
        let mut guard = unsafe { self.held_by_this_cpu(true) }?;
        let state = &mut *guard;
        // This CPU holds the lock, but for a write in progress rather than
        // a reservation (a commit from inside `rmemring_write`'s critical
        // section), for a batch, or for a reservation of another payload
        // (a commit of a failed reserve's pointer, or from a context nested
        // in the one that reserved): not ours to let go of.
        let held = if state.batch.is_none() {
            state.take_held(payload)
        } else {
            None
        };
        let Some(held) = held else {
            core::mem::forget(guard);
            sys::report_misuse(c"commit or discard without a reservation of that payload");
            return Err(WriteError::Misuse);
        };
        if commit {
            state.core.commit(held.slot, held.tag, sys::monotonic_ns());
        }
        // A discarded slot wrote nothing: it is forgotten, and the room it
        // had goes to the next record. (What its reservation did stays: a
        // pad before it, and in overwrite mode the records it retired,
        // counted as overwritten.)
        self.publish_and_unlock(guard, quiet);
        Ok(())
    }

    /// The producer lock this CPU holds (for a reservation or a batch),
    /// taken back from the guard its taker forgot. The caller forgets the
    /// returned value again to keep holding the lock, or drops it to
    /// publish and let go.
    ///
    /// Refused in NMI context (an NMI that interrupted this CPU's
    /// reservation would finish what the interrupted code half filled,
    /// and the lock's saved interrupt state is that code's): counted in
    /// `records_refused` if `count`. Refused as a misuse, logged, on a CPU
    /// that does not hold the lock.
    ///
    /// # Safety
    ///
    /// If this CPU holds the lock, the caller is the producer that took it
    /// (through [`Self::reserve_held`] or [`Self::batch_begin`]), in the
    /// same context: the ring can tell another CPU, and NMI context, but
    /// not a context nested in the holder's on its CPU.
    #[inline]
    unsafe fn held_by_this_cpu(
        &self,
        count: bool,
    ) -> Result<RawSpinLockIrqGuard<'_, ProducerState>, WriteError> {
        let Some(cpu) = sys::this_cpu_outside_nmi() else {
            if count {
                self.records_refused.fetch_add(1, Ordering::Relaxed);
            }
            return Err(WriteError::Refused);
        };
        if self.owner.load(Ordering::Relaxed) != cpu {
            sys::report_misuse(c"commit, discard or batch call on a CPU that holds no reservation or batch of the ring");
            return Err(WriteError::Misuse);
        }
        // SAFETY: This CPU holds the lock (`owner` says so, and only this
        // CPU can have set it to its own number), taken by `reserve_held`
        // or `batch_begin` whose guard was forgotten; the caller gives it
        // back once (through `publish_and_unlock`) or forgets it again.
        Ok(unsafe { RawSpinLockIrqGuard::new(&self.producer, ()) })
    }

    /// Ends a producer's critical section: publishes what it committed
    /// (with `quiet`, without waking a sleeping consumer; see
    /// [`ProducerCore::publish_quietly`]), lets go of the lock, and then
    /// wakes the consumer if it asked. Every producer path ends here.
    #[inline(always)]
    fn publish_and_unlock(&self, mut guard: RawSpinLockIrqGuard<'_, ProducerState>, quiet: bool) {
        let wake = if quiet {
            guard.core.publish_quietly();
            false
        } else {
            guard.publish()
        };
        self.owner.store(NO_CPU, Ordering::Relaxed);
        drop(guard);
        // After the unlock: `irq_work_queue` may fire tracepoints (an IPI's),
        // whose probes may produce into this ring. Deferred, unless this
        // runs preemptible (a producer in process context holding no
        // spinlock, such as the producer thread, which saves the
        // interrupt's round trip): it may run in hard-IRQ context or under
        // the runqueue lock, where `wake_up` must not be called.
        if wake && sys::may_wake_directly() {
            self.wake_readers();
        } else if wake {
            self.waker.queue();
        }
    }

    /// Begins a batch: takes the producer lock, and keeps it (interrupts
    /// off) until [`Self::batch_end`], for records reserved with
    /// [`Self::batch_reserve`] and committed with [`Self::batch_commit`],
    /// published together by the end. The C API's `rmemring_batch_begin`.
    /// Returns the sequence number the batch's first record gets.
    ///
    /// Refused as [`Self::reserve_held`] is (and counted as its refusal
    /// would be).
    pub(crate) fn batch_begin(&self) -> Result<u64, WriteError> {
        let mut producing = self.producing_for_client()?;
        producing.state().batch = Some(Batch {
            records: 0,
            bytes: 0,
        });
        let seq = producing.core().next_seq();
        core::mem::forget(producing);
        Ok(seq)
    }

    /// Reserves a record of the batch this CPU holds open: its payload's
    /// address, to be filled and given to [`Self::batch_commit`]. An open
    /// reservation of the batch that was not committed is discarded
    /// first. With `no_drop`, a drop-new ring that is full refuses the
    /// record ([`WriteError::NoRoom`]) rather than dropping it.
    ///
    /// # Safety
    ///
    /// As for [`Self::held_by_this_cpu`].
    #[inline]
    pub(crate) unsafe fn batch_reserve(
        &self,
        tag: u16,
        len: u32,
        no_drop: bool,
    ) -> Result<*mut u8, WriteError> {
        // SAFETY: Forwarded.
        let mut producing = unsafe { self.batch_held(true) }?;
        let result = producing.batch_reserve(tag, len, no_drop);
        core::mem::forget(producing);
        result
    }

    /// Commits the batch's open reservation, whose payload is at
    /// `payload`: it takes the next sequence number and a timestamp, and
    /// is published with the batch.
    ///
    /// # Safety
    ///
    /// As for [`Self::held_by_this_cpu`].
    #[inline]
    pub(crate) unsafe fn batch_commit(&self, payload: *const u8) -> Result<(), WriteError> {
        // SAFETY: Forwarded.
        let mut producing = unsafe { self.batch_held(true) }?;
        let result = producing.batch_commit(payload);
        core::mem::forget(producing);
        result
    }

    /// Ends the batch this CPU holds open: discards an open reservation
    /// that was not committed, publishes the batch's records (with
    /// `quiet`, without waking a sleeping consumer) and lets go of the
    /// producer lock.
    ///
    /// # Safety
    ///
    /// As for [`Self::held_by_this_cpu`].
    pub(crate) unsafe fn batch_end(&self, quiet: bool) -> Result<(), WriteError> {
        // SAFETY: Forwarded.
        let mut producing = unsafe { self.batch_held(false) }?;
        let state = producing.state();
        state.held = None;
        state.batch = None;
        producing.quiet = quiet;
        Ok(())
    }

    /// [`Self::held_by_this_cpu`], for a batch: refused as a misuse if the
    /// lock this CPU holds is not a batch's.
    ///
    /// # Safety
    ///
    /// As for [`Self::held_by_this_cpu`].
    #[inline]
    unsafe fn batch_held(&self, count: bool) -> Result<Producing<'_>, WriteError> {
        // SAFETY: Forwarded.
        let guard = unsafe { self.held_by_this_cpu(count) }?;
        let mut producing = Producing {
            ring: self,
            guard: ManuallyDrop::new(guard),
            quiet: false,
        };
        if producing.state().batch.is_none() {
            core::mem::forget(producing);
            sys::report_misuse(c"batch call with no batch of the ring open on this CPU");
            return Err(WriteError::Misuse);
        }
        Ok(producing)
    }

    /// The wait queue `poll` registers on.
    pub(crate) fn readers(&self) -> &PollCondVar {
        &self.readers
    }

    /// The lock a `read()` sleeper holds from its last check until queued.
    pub(crate) fn wake_lock(&self) -> &SpinLockIrq<()> {
        &self.wake_lock
    }

    /// Whether records are published beyond the consumer's position.
    pub(crate) fn readable(&self) -> bool {
        has_unreleased(&self.view())
    }

    /// What `RMEMRING_IOC_INFO` reports.
    pub(crate) fn info(&self) -> RingInfo {
        RingInfo {
            state: if self.serves_recovered() {
                STATE_RECOVERED
            } else {
                STATE_LIVE
            },
            ..self.region.geometry().ring_info(
                self.flags.load(Ordering::Acquire),
                self.index,
                self.region.base(),
            )
        }
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
            records_refused: self.records_refused.load(Ordering::Relaxed),
            reserved: [0; 2],
        }
    }
}

#[pinned_drop]
impl PinnedDrop for Ring {
    fn drop(self: Pin<&mut Self>) {
        // Nothing to do: `waker`, the first field, is dropped first and
        // waits for a queued wake-up (see its comment). The impl exists
        // because `waker` is pinned and has a `PinnedDrop` of its own.
    }
}

/// The `irq_work` function of [`Ring::waker`]: wakes the consumers.
///
/// # Safety
///
/// `work` is the `irq_work` of a live [`Ring`]'s `waker`.
unsafe extern "C" fn wake_from_irq_work(work: *mut c_void) {
    // SAFETY: `IrqWork` is `repr(transparent)` over its `irq_work`, so
    // `work` is the address of a ring's `waker` field, and that ring is
    // alive: its drop waits for this call (`IrqWork`'s drop).
    let ring = unsafe { &*kernel::container_of!(work.cast::<IrqWork>(), Ring, waker) };
    ring.wake_readers();
}

/// Shows a protocol value (which implements `core`'s `Display`) in a
/// kernel message.
struct CoreDisplay<T>(T);

impl<T: core::fmt::Display> kernel::fmt::Display for CoreDisplay<T> {
    fn fmt(&self, f: &mut kernel::fmt::Formatter<'_>) -> kernel::fmt::Result {
        core::fmt::Display::fmt(&self.0, f)
    }
}

/// The function of [`Ring::crash`]: see [`Ring::keep`].
///
/// # Safety
///
/// `notifiers` is the `crash` field of a live [`Ring`].
unsafe fn keep_for_next_boot(notifiers: *const CrashNotifiers, crash: Crash) {
    // SAFETY: The caller's `notifiers` lies in a live ring's `crash` field,
    // and the ring lives at least as long (its drop unregisters them).
    let ring = unsafe { &*kernel::container_of!(notifiers, Ring, crash) };
    ring.keep(crash);
}

/// The producer side of a ring, locked: see [`Ring::producing_for_client`]. What it
/// commits is published, and the consumer woken if it asked, when it is
/// dropped.
pub(crate) struct Producing<'a> {
    ring: &'a Ring,
    /// Taken only by `drop` (or forgotten with `self` by `hold`).
    guard: ManuallyDrop<RawSpinLockIrqGuard<'a, ProducerState>>,
    /// Publish without waking a sleeping consumer.
    quiet: bool,
}

impl Producing<'_> {
    /// The locked state.
    #[inline]
    fn state(&mut self) -> &mut ProducerState {
        &mut self.guard
    }

    /// The index logic, for what needs no lock-specific care (the next
    /// sequence number, writing a payload into a reserved slot).
    #[inline]
    fn core(&self) -> &ProducerCore {
        &self.guard.core
    }

    /// Reserves room, or counts the record as dropped if the ring is full.
    #[inline]
    fn reserve_or_drop(&mut self, len: u32) -> Result<Slot, WriteError> {
        let core = &mut self.state().core;
        match core.reserve(len) {
            Ok(slot) => Ok(slot),
            Err(ReserveError::TooLarge) => Err(WriteError::TooLarge),
            Err(ReserveError::Full) => {
                core.drop_record();
                Err(WriteError::Dropped)
            }
        }
    }

    /// Commits `slot` with `tag`, stamped now: timestamps taken under the
    /// lock never go backwards in ring order, whichever CPUs produce.
    #[inline]
    fn commit(&mut self, slot: Slot, tag: u16) {
        let now = sys::monotonic_ns();
        self.state().core.commit(slot, tag, now);
    }

    /// [`Ring::batch_reserve`], with the lock held and a batch open.
    #[inline]
    fn batch_reserve(&mut self, tag: u16, len: u32, no_drop: bool) -> Result<*mut u8, WriteError> {
        if len > self.ring.max_payload() {
            return Err(WriteError::TooLarge);
        }
        let state = self.state();
        state.held = None;
        let Some(batch) = state.batch.as_mut() else {
            return Err(WriteError::Misuse);
        };
        // The bounds of one hold of the lock: at most `MAX_BATCH_RECORDS`
        // records, `BATCH_HOLD_BYTES` of them (or one larger record), and
        // within the shared core's batch (`publish_due`), so that in
        // overwrite mode a batch never retires its own unpublished
        // records. The first record of a batch always passes.
        if batch.records >= MAX_BATCH_RECORDS
            || batch.bytes >= BATCH_HOLD_BYTES
            || state.core.publish_due(len)
        {
            return Err(WriteError::BatchFull);
        }
        match state.core.reserve(len) {
            Ok(slot) => {
                let payload = state.core.payload_ptr(&slot);
                state.held = Some(Held {
                    slot,
                    tag,
                    payload: payload as usize,
                });
                Ok(payload)
            }
            Err(ReserveError::TooLarge) => Err(WriteError::TooLarge),
            Err(ReserveError::Full) if no_drop => Err(WriteError::NoRoom),
            Err(ReserveError::Full) => {
                state.core.drop_record();
                batch.records += 1;
                Err(WriteError::Dropped)
            }
        }
    }

    /// [`Ring::batch_commit`], with the lock held and a batch open.
    #[inline]
    fn batch_commit(&mut self, payload: *const u8) -> Result<(), WriteError> {
        let Some(Held { slot, tag, .. }) = self.state().take_held(payload) else {
            sys::report_misuse(c"batch commit without a reservation of that payload");
            return Err(WriteError::Misuse);
        };
        let stride = record_stride(slot.len());
        self.commit(slot, tag);
        if let Some(batch) = self.state().batch.as_mut() {
            batch.records += 1;
            batch.bytes += stride;
        }
        Ok(())
    }

    /// Keeps the lock held past this value's end, for the C API's
    /// reserve/commit pair; [`Ring::finish_held`] takes it back.
    fn hold(mut self, slot: Slot, tag: u16, payload: *mut u8) {
        self.state().held = Some(Held {
            slot,
            tag,
            payload: payload as usize,
        });
        core::mem::forget(self);
    }
}

impl Drop for Producing<'_> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: `guard` is taken here only, once, and not used after.
        let guard = unsafe { ManuallyDrop::take(&mut self.guard) };
        self.ring.publish_and_unlock(guard, self.quiet);
    }
}
