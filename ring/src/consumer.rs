//! The zero-copy consumer.

use std::sync::{
    Arc,
    Weak, //
};
use std::time::{
    Duration,
    Instant, //
};

use crossbeam_utils::Backoff;

use crate::error::{
    Error,
    IoOp, //
};
use crate::region::{
    Access,
    Backend,
    Region,
    RingLayout, //
};
use crate::role::RoleLock;
use crate::wait;
use crate::wake_fd::{
    FutexAdapter,
    WakeFd, //
};
use rmemring_proto::consumer_core::{
    ConsumerCore,
    ConsumerStats,
    Cursor,
    OverwriteRead,
    ReadError,
    RecordMeta, //
};
use rmemring_proto::producer_core::Overflow;
use rmemring_proto::roles::Role;

/// [`Wait::BusyPoll`] checks its deadline once per this many polls.
const POLLS_PER_CLOCK: u32 = 64;

/// How many lapped attempts one [`Consumer::read_copy`] makes while the
/// producer keeps publishing before it returns `None`.
const LAPPED_READS: u32 = 16;

/// The longest sleep of a lapped reader of a device ring between two looks
/// at the producer position (see `Consumer::nap_until_published`).
const NAP: Duration = Duration::from_millis(1);

/// One record, as the consumer sees it.
///
/// From [`Batch::iter`] the payload is a slice of the mapping itself (zero
/// copy); from [`Consumer::read_copy`] it is the consumer's private copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// The payload bytes.
    pub payload: &'a [u8],
    /// The record's sequence number.
    pub seq: u64,
    /// The producer's timestamp, `CLOCK_MONOTONIC` nanoseconds: when the
    /// kernel producer committed the record, or when the user-space
    /// [`Producer`](crate::Producer)'s batch that holds it began (see
    /// there). Never lower than an earlier record's, unless the producer
    /// set it explicitly.
    pub timestamp_ns: u64,
    /// Application-defined type.
    pub tag: u16,
    /// Records missing from the sequence just before this one (dropped by
    /// the producer or overwritten before this consumer read them).
    pub lost_before: u64,
}

impl<'a> Record<'a> {
    /// The payload as a `T`, in place: typed records without a copy.
    ///
    /// `None` unless the payload is exactly `size_of::<T>()` bytes and
    /// aligned for `T`. Payloads in the ring start 8-byte aligned (a
    /// record starts at a multiple of 8 and its header is 24 bytes), so a
    /// record from [`Batch::iter`] casts to any `T` of alignment up to 8;
    /// one from [`Consumer::read_copy`] lies in the consumer's own buffer,
    /// aligned as that allocation is.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use rmemring::{CreateOptions, Region};
    ///
    /// #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
    /// #[repr(C)]
    /// struct Sample {
    ///     sensor: u32,
    ///     flags: u32,
    ///     value: u64,
    /// }
    ///
    /// let region = Arc::new(Region::memfd(CreateOptions::default())?);
    /// let (mut producer, mut consumer) = (region.producer()?, region.consumer()?);
    /// let sample = Sample { sensor: 7, flags: 0, value: 42 };
    /// producer.send(bytemuck::bytes_of(&sample))?;
    ///
    /// let mut batch = consumer.batch()?;
    /// let record = batch.iter().next().unwrap()?;
    /// let read: &Sample = record.try_cast().expect("a Sample");
    /// assert_eq!((read.sensor, read.value), (7, 42));
    /// assert!(record.try_cast::<u64>().is_none()); // 16 bytes are no u64
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_cast<T: bytemuck::AnyBitPattern>(&self) -> Option<&'a T> {
        bytemuck::try_from_bytes(self.payload).ok()
    }
}

/// What a [`Consumer`] waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Until {
    /// Records published beyond the consumer's position.
    Records,
    /// The producer's next publication, for a reader the producer lapped:
    /// records beyond its position are published already, but retired.
    Publication,
}

/// How [`Consumer::wait`] waits for data, set with [`Consumer::set_wait`].
///
/// # Examples
///
/// ```
/// # use std::sync::Arc;
/// use std::time::Duration;
/// use rmemring::{CreateOptions, Region, Wait};
///
/// # let region = Arc::new(Region::memfd(CreateOptions::default())?);
/// let mut consumer = region.consumer()?;
/// consumer.set_wait(Wait::Spin(1000)); // check 1000 times, then sleep
/// assert!(!consumer.wait(Some(Duration::from_millis(1)))?); // nothing came
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Wait {
    /// Spin briefly, then yield, then sleep (`crossbeam_utils::Backoff`'s
    /// spin / snooze / `is_completed`); the default.
    Backoff,
    /// Check this many times, then sleep.
    Spin(u64),
    /// Never sleep: poll the producer position until data arrives. The
    /// lowest latency, at the price of a core (and, on an SMT core, of
    /// much of its sibling's share).
    ///
    /// The poll loop has no [`std::hint::spin_loop`]: it spends its core on
    /// purpose, and the hint costs latency on every poll. On x86 `PAUSE`
    /// takes up to about 140 cycles on Intel cores since Skylake, makes a KVM guest exit to
    /// the host once pause-loop exiting sees a loop of them, and under QEMU
    /// TCG returns to QEMU's vCPU loop, which takes QEMU's global lock. In
    /// the reference VM, paced 64 B records reached a polling consumer in
    /// 5.6 µs (p50) and 58 µs (p99) with the hint, 0.43 µs and 1.1 µs
    /// without (`docs/bench/kernel.md`). [`Wait::Spin`] and
    /// [`Wait::Backoff`] keep the hint.
    BusyPoll,
}

/// The consumer of a ring: reads records in place and hands their space
/// back to the producer once per batch.
///
/// # Guarantees
///
/// - In drop-new mode a record's payload is a `&[u8]` into the mapping. The
///   producer never writes bytes the consumer has not released, the
///   [`Batch`] that lent the slice releases nothing while it is borrowed,
///   and no second consumer exists to release them: the consumer holds the
///   ring's consumer role until it is dropped ([`Region::consumer`]).
/// - In overwrite mode the producer may lap the consumer at any time, so
///   zero-copy batches are refused; [`Consumer::read_copy`] copies each
///   record and hands it out only if the producer did not touch it meanwhile.
/// - Every header is validated against the data area and the producer
///   position before use; inconsistencies are [`Error::Corrupt`], never an
///   out-of-bounds read.
pub struct Consumer {
    region: Arc<Region>,
    core: ConsumerCore,
    data: *const u8,
    wait: Wait,
    scratch: Vec<u8>,
    /// The last overwrite-mode read found the reader lapped (see
    /// [`Consumer::is_lapped`]).
    lapped: bool,
    /// The thread behind this consumer's [`WakeFd`]s on a file or memfd
    /// ring, while one lives: its eventfd is cleared when a sleep ends.
    wake_adapter: Weak<FutexAdapter>,
    /// The ring's consumer role, released when the consumer is dropped.
    _role: RoleLock,
}

// SAFETY: `data` points into `region`'s mapping, which the `Arc` keeps alive
// wherever the consumer goes; nothing in it is tied to a thread.
unsafe impl Send for Consumer {}

impl Consumer {
    /// The consumer of `region`, whose consumer role `role` holds.
    pub(crate) fn new(region: Arc<Region>, role: RoleLock) -> Result<Self, Error> {
        let layout = *region.layout();
        let core = ConsumerCore::attach(region.view(), layout.overflow(), layout.max_payload)?;
        Ok(Self {
            data: region.data_ptr(),
            core,
            region,
            wait: Wait::Backoff,
            scratch: Vec::new(),
            lapped: false,
            wake_adapter: Weak::new(),
            _role: role,
        })
    }

    /// The region this consumer reads.
    pub fn region(&self) -> &Arc<Region> {
        &self.region
    }

    /// The ring's layout.
    pub fn layout(&self) -> &RingLayout {
        self.region.layout()
    }

    /// How [`Self::wait`] waits.
    pub fn set_wait(&mut self, wait: Wait) {
        self.wait = wait;
    }

    /// The consumer's counters, including those not yet published.
    pub fn stats(&self) -> ConsumerStats {
        self.core.stats()
    }

    /// The position of the next record.
    pub fn position(&self) -> u64 {
        self.core.position()
    }

    /// The records published by now, read in place (drop-new mode only).
    ///
    /// The batch holds the records of the last producer position the
    /// consumer loaded and, once those are used up, of one more load: records
    /// published after that wait for the next batch. Records iterated from the batch are released, with one store,
    /// when the batch is dropped; so the space a batch holds is bounded by
    /// what was published at its start, even under a producer that never
    /// pauses.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use rmemring::{CreateOptions, Region};
    /// # let region = Arc::new(Region::memfd(CreateOptions::default())?);
    /// # let (mut producer, mut consumer) = (region.producer()?, region.consumer()?);
    /// producer.push(b"one")?;
    /// producer.push(b"two")?;
    /// producer.publish();
    ///
    /// let mut batch = consumer.batch()?;
    /// let payloads: Vec<&[u8]> = batch
    ///     .iter()
    ///     .map(|r| r.map(|r| r.payload))
    ///     .collect::<Result<_, _>>()?;
    /// assert_eq!(payloads, [b"one", b"two"]);
    /// drop(batch); // one store hands both records' space back
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn batch(&mut self) -> Result<Batch<'_>, Error> {
        if self.layout().overflow() == Overflow::OverwriteOldest {
            return Err(Error::OverwriteMode);
        }
        Ok(Batch {
            consumer: self,
            refreshed: false,
        })
    }

    /// Reads the next record into the consumer's private buffer, in either
    /// overflow mode. Returns `None` when the ring is empty, after handing
    /// the space of everything read back to the producer.
    ///
    /// In overwrite mode the producer may lap the reader: retire every
    /// published record beyond its position before the reader could copy
    /// one. While the producer keeps publishing, `read_copy` keeps trying
    /// (up to 16 lapped attempts, each bounded by
    /// [`ConsumerCore::read_overwrite`](rmemring_proto::consumer_core::ConsumerCore::read_overwrite)).
    /// If it published nothing since (it is retiring records it has not
    /// published yet, which neither this crate's producer nor the kernel's
    /// does, or it stopped), or after those attempts, `read_copy` returns
    /// `None` with [`Self::is_lapped`] set, and [`Self::wait`] waits for the
    /// producer's next publication instead of returning at once: a lapped
    /// reader that loops on `read_copy` and `wait` does not spin, and never
    /// blocks in `read_copy` on a producer that may not publish again.
    ///
    /// The copy reads the mapping one 8-byte word at a time with relaxed
    /// atomic loads, so it is never a data race, even with a producer that
    /// writes while it copies (overwrite mode discards such a copy; a
    /// producer that breaks the drop-new protocol can only garble it). That
    /// costs bandwidth on large records: with the records in the cache,
    /// payloads of 1000 B to 64 KiB copy at 24-30 GB/s instead of the 34-50
    /// GB/s of `memcpy` (`cargo bench -p rmemring --bench copy` on the
    /// development machine, `docs/bench/host.md`); small records cost the
    /// same. [`Self::batch`] reads in place.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// use rmemring::{CreateOptions, Overflow, Region};
    ///
    /// let options = CreateOptions::new(4096).overflow(Overflow::OverwriteOldest);
    /// let region = Arc::new(Region::memfd(options)?);
    /// let (mut producer, mut consumer) = (region.producer()?, region.consumer()?);
    /// for i in 0u64..1000 {
    ///     producer.push(&i.to_le_bytes())?; // never full: overwrites the oldest
    /// }
    /// producer.publish();
    ///
    /// let first = consumer.read_copy()?.expect("the newest records survive");
    /// assert!(first.lost_before > 0); // the overwritten ones, counted exactly
    /// assert_eq!(first.payload, first.seq.to_le_bytes());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_copy(&mut self) -> Result<Option<Record<'_>>, Error> {
        if self.scratch.is_empty() {
            self.scratch = vec![0; self.layout().max_payload as usize];
        }
        let meta = match self.layout().overflow() {
            Overflow::OverwriteOldest => self.read_overwrite()?,
            Overflow::DropNew => {
                let meta = self.core.next_record()?;
                if let Some(meta) = &meta {
                    // The same word-wise atomic copy as in overwrite mode:
                    // a copy never lends the mapping out, so a producer
                    // that breaks the protocol can garble it, no more.
                    //
                    // SAFETY: `next_record` validated that the record's
                    // stride lies in the data area from its 8-aligned
                    // offset; `scratch` holds `max_payload >= len` bytes.
                    unsafe {
                        self.core.view().copy_payload_out(
                            meta.offset,
                            self.scratch.as_mut_ptr(),
                            meta.len as usize,
                        )
                    };
                }
                meta
            }
        };
        match meta {
            Some(meta) => {
                self.release_if_backlogged();
                Ok(Some(record(&self.scratch[..meta.len as usize], &meta)))
            }
            None => {
                self.core.release();
                Ok(None)
            }
        }
    }

    /// Overwrite mode: the next intact record into `scratch`, or `None`
    /// when there is nothing to read now (see [`Self::read_copy`]).
    fn read_overwrite(&mut self) -> Result<Option<RecordMeta>, Error> {
        for _ in 0..LAPPED_READS {
            match self.core.read_overwrite(&mut self.scratch)? {
                OverwriteRead::Record(meta) => {
                    self.lapped = false;
                    return Ok(Some(meta));
                }
                OverwriteRead::Empty => {
                    self.lapped = false;
                    return Ok(None);
                }
                OverwriteRead::Lapped => {
                    self.lapped = true;
                    // A producer that published meanwhile is lapping us
                    // live: try again at once. One that did not is
                    // retiring records it has not published (or stopped
                    // in the middle): only its next publication helps.
                    if !self.core.published_since_refresh() {
                        return Ok(None);
                    }
                }
            }
        }
        Ok(None)
    }

    /// Whether the last [`Self::read_copy`] that returned `None` found the
    /// reader lapped (overwrite mode) rather than the ring empty: records
    /// were published beyond its position, but the producer retired them
    /// all before it could copy one. [`Self::wait`] then waits for the
    /// producer's next publication.
    pub fn is_lapped(&self) -> bool {
        self.lapped
    }

    /// Hands the space of everything read so far back to the producer.
    pub fn release(&mut self) {
        self.core.release();
    }

    /// Skips everything published so far; the skipped records are not
    /// counted as lost.
    pub fn skip_to_producer(&mut self) -> Result<(), Error> {
        Ok(self.core.skip_to_producer()?)
    }

    /// Bytes published and not yet read, re-reading the producer position.
    pub fn backlog(&mut self) -> Result<u64, Error> {
        Ok(self.core.refresh_head()?)
    }

    /// Waits until records are available or `timeout` passes, and says
    /// whether records are available.
    ///
    /// After a [`Self::read_copy`] that found the reader lapped
    /// ([`Self::is_lapped`]), it waits for the producer's next publication
    /// instead: the records beyond the reader are published already, but
    /// retired.
    ///
    /// Releases what was read first. Then it spins as [`Self::set_wait`]
    /// says and finally sleeps: in `poll(2)` on the device, or on the
    /// control page's futex word for memfd and file rings. It asks the
    /// producer for a wake-up (`need_wakeup`) only just before sleeping, so
    /// a busy consumer costs the producer no wake-ups.
    ///
    /// # Examples
    ///
    /// A consumer thread that sleeps on the futex until a producer thread
    /// publishes:
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use rmemring::{CreateOptions, Region};
    ///
    /// let region = Arc::new(Region::memfd(CreateOptions::default())?);
    /// let mut consumer = region.consumer()?;
    /// let mut producer = region.producer()?;
    /// let writer = std::thread::spawn(move || {
    ///     std::thread::sleep(Duration::from_millis(10));
    ///     producer.send(b"wake up").unwrap(); // wakes the sleeper
    /// });
    /// assert!(consumer.wait(Some(Duration::from_secs(10)))?);
    /// assert_eq!(consumer.read_copy()?.unwrap().payload, b"wake up");
    /// writer.join().unwrap();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait(&mut self, timeout: Option<Duration>) -> Result<bool, Error> {
        self.core.release();
        let deadline = timeout.map(|t| Instant::now() + t);
        // A lapped reader has records published beyond its position
        // already (retired ones): waiting for those would return at once.
        let until = if self.lapped {
            Until::Publication
        } else {
            Until::Records
        };
        self.block(deadline, until)
    }

    /// Whether what `until` waits for has happened.
    #[inline]
    fn ready(&mut self, until: Until) -> Result<bool, Error> {
        Ok(match until {
            Until::Records => self.core.refresh_head()? != 0,
            Until::Publication => self.core.published_since_refresh(),
        })
    }

    /// Waits as [`Self::set_wait`] says until `until` happens or `deadline`
    /// passes, and says whether it happened: [`Self::wait`], and a lapped
    /// reader's wait for the next publication.
    fn block(&mut self, deadline: Option<Instant>, until: Until) -> Result<bool, Error> {
        match self.wait {
            Wait::BusyPoll => {
                let mut polls = 0u32;
                loop {
                    if self.ready(until)? {
                        return Ok(true);
                    }
                    // The clock only now and then: reading it takes longer
                    // than a poll.
                    polls = polls.wrapping_add(1);
                    if polls % POLLS_PER_CLOCK == 0 && deadline.is_some_and(|d| Instant::now() >= d)
                    {
                        return Ok(false);
                    }
                }
            }
            Wait::Spin(n) => {
                for _ in 0..n {
                    if self.ready(until)? {
                        return Ok(true);
                    }
                    std::hint::spin_loop();
                }
            }
            Wait::Backoff => {
                let backoff = Backoff::new();
                while !backoff.is_completed() {
                    if self.ready(until)? {
                        return Ok(true);
                    }
                    backoff.snooze();
                }
            }
        }
        self.sleep(deadline, until)
    }

    /// For event loops (epoll, async runtimes) that sleep on a
    /// [`WakeFd`] ([`Self::wake_fd`]) themselves: releases what was read
    /// and asks the producer for a wake-up.
    ///
    /// Returns `false` if records arrived meanwhile (the request is then
    /// withdrawn and the caller should read instead of sleeping). After a
    /// `true`, sleep until the descriptor is readable, then call
    /// [`Self::disarm_wakeup`]. Without this the producer does not wake a
    /// sleeper: that is what keeps wake-ups off the busy path.
    ///
    /// On a device ring the [`WakeFd`] is [`Region::fd`] itself. After a
    /// [`Self::read_copy`] that found the reader lapped
    /// ([`Self::is_lapped`]) the request is for the producer's next
    /// publication; the device's descriptor is readable while anything
    /// published is unreleased, so a lapped reader of a device ring cannot
    /// sleep in `poll` (a short sleep does). On file and memfd rings the
    /// [`WakeFd`]'s thread signals each wake-up, lapped or not.
    ///
    /// # Examples
    ///
    /// An event loop's step on a device ring (it needs the driver, so this
    /// does not run here):
    ///
    /// ```no_run
    /// use std::os::fd::AsFd;
    /// use std::sync::Arc;
    /// use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    /// use rmemring::{Access, Region};
    ///
    /// let region = Arc::new(Region::open("/dev/rmemring0", Access::Consume)?);
    /// let mut consumer = region.consumer()?;
    /// let wake = consumer.wake_fd()?; // the device's descriptor
    /// loop {
    ///     for record in &mut consumer.batch()? {
    ///         println!("record {}", record?.seq);
    ///     }
    ///     if consumer.arm_wakeup() {
    ///         // Nothing to read, and the producer will wake us: sleep.
    ///         let mut fds = [PollFd::new(wake.as_fd(), PollFlags::POLLIN)];
    ///         poll(&mut fds, PollTimeout::NONE)?;
    ///         consumer.disarm_wakeup();
    ///     }
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// Arming fails while records are waiting:
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use rmemring::{CreateOptions, Region};
    /// # let region = Arc::new(Region::memfd(CreateOptions::default())?);
    /// # let (mut producer, mut consumer) = (region.producer()?, region.consumer()?);
    /// producer.send(b"pending")?;
    /// assert!(!consumer.arm_wakeup()); // read first
    /// assert!(consumer.read_copy()?.is_some());
    /// assert!(consumer.read_copy()?.is_none());
    /// assert!(consumer.arm_wakeup()); // now the producer would wake us
    /// consumer.disarm_wakeup();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn arm_wakeup(&mut self) -> bool {
        if self.lapped {
            // As in `wait`: the wake-up a lapped reader needs is the next
            // publication's.
            self.core.prepare_sleep_until_published()
        } else {
            self.core.prepare_sleep()
        }
    }

    /// Withdraws the wake-up request of [`Self::arm_wakeup`] after sleeping
    /// (see its examples), and clears this consumer's [`WakeFd`] on a file
    /// or memfd ring.
    pub fn disarm_wakeup(&mut self) {
        self.finish_sleep();
    }

    /// A descriptor that an event loop can wait on between
    /// [`Self::arm_wakeup`] and [`Self::disarm_wakeup`], on every kind of
    /// ring: the device's own descriptor, or on file and memfd rings an
    /// eventfd that a thread signals when the producer wakes the futex
    /// (see [`WakeFd`] for why, and what it costs).
    ///
    /// The consumer's [`WakeFd`]s share one thread, which stops when the
    /// last of them is dropped.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the eventfd or the thread cannot be made.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// use std::os::fd::AsRawFd;
    /// use rmemring::{CreateOptions, Region};
    ///
    /// let region = Arc::new(Region::memfd(CreateOptions::default())?);
    /// let mut consumer = region.consumer()?;
    /// let wake = consumer.wake_fd()?;
    /// assert_ne!(wake.as_raw_fd(), region.as_raw_fd()); // an eventfd
    /// assert_eq!(consumer.wake_fd()?.as_raw_fd(), wake.as_raw_fd()); // the same one
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wake_fd(&mut self) -> Result<WakeFd, Error> {
        if self.region.backend() == Backend::Device {
            return Ok(WakeFd::device(self.region.clone()));
        }
        if let Some(adapter) = self.wake_adapter.upgrade() {
            return Ok(WakeFd::futex(adapter));
        }
        let adapter = FutexAdapter::start(self.region.clone())
            .map_err(|e| Error::io(IoOp::StartWakeThread, self.region.path(), e))?;
        let adapter = Arc::new(adapter);
        self.wake_adapter = Arc::downgrade(&adapter);
        Ok(WakeFd::futex(adapter))
    }

    /// Ends a sleep: withdraws the wake-up request and clears the
    /// [`WakeFd`], whose wake-up (if any) this sleep has had.
    fn finish_sleep(&mut self) {
        self.core.finish_sleep();
        if let Some(adapter) = self.wake_adapter.upgrade() {
            adapter.clear();
        }
    }

    /// The blocking half of [`Self::block`].
    fn sleep(&mut self, deadline: Option<Instant>, until: Until) -> Result<bool, Error> {
        if until == Until::Publication && self.region.backend() == Backend::Device {
            return self.nap_until_published(deadline);
        }
        loop {
            // Read the futex word before announcing the sleep: a wake-up
            // after this point changes it and the futex wait returns at once.
            let seq = self.core.wake_seq();
            let armed = match until {
                Until::Records => self.core.prepare_sleep(),
                // Records beyond our position are published (and retired):
                // `prepare_sleep` would decline, and we would spin.
                Until::Publication => self.core.prepare_sleep_until_published(),
            };
            if !armed {
                return Ok(true);
            }
            let remaining = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(r) => Some(r),
                    None => {
                        self.finish_sleep();
                        return self.ready(until);
                    }
                },
                None => None,
            };
            let slept = match self.region.backend() {
                Backend::Device => wait::poll_readable(self.region.fd(), remaining),
                Backend::File | Backend::Memfd => {
                    let word = self.core.view().wake_seq().as_ptr();
                    wait::futex_wait(word, seq, remaining)
                }
            };
            self.finish_sleep();
            slept.map_err(|e| Error::io(IoOp::Wait, self.region.path(), e))?;
            if self.ready(until)? {
                return Ok(true);
            }
        }
    }

    /// [`Self::sleep`] for the next publication on a device ring, whose
    /// `poll(2)` reports readable while anything published is unreleased,
    /// so it cannot wait for a publication: sleeps in steps of at most
    /// [`NAP`] instead. Only a reader the producer laps gets here, and the
    /// kernel producer publishes at least every quarter of the ring, so
    /// this is rare and short.
    fn nap_until_published(&mut self, deadline: Option<Instant>) -> Result<bool, Error> {
        self.core.release();
        loop {
            if self.ready(Until::Publication)? {
                return Ok(true);
            }
            let nap = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(r) => r.min(NAP),
                    None => return Ok(false),
                },
                None => NAP,
            };
            std::thread::sleep(nap);
        }
    }

    fn release_if_backlogged(&mut self) {
        // Long bursts must not starve the producer of room: hand space back
        // every quarter ring even before the reader catches up.
        if self.core.unreleased() > self.layout().data_size / 4 {
            self.core.release();
        }
    }
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("region", &self.region)
            .field("position", &self.core.position())
            .field("stats", &self.core.stats())
            .finish()
    }
}

fn record<'a>(payload: &'a [u8], meta: &RecordMeta) -> Record<'a> {
    Record {
        payload,
        seq: meta.seq,
        timestamp_ns: meta.timestamp_ns,
        tag: meta.tag,
        lost_before: meta.lost_before,
    }
}

/// The payload of a validated record as a slice of the mapping.
fn payload_slice<'a>(data: *const u8, meta: &RecordMeta) -> &'a [u8] {
    // SAFETY: `ConsumerCore` validated that the header and `len` payload
    // bytes lie inside the data area that `data` maps, and in drop-new mode
    // the producer does not write them until they are released; callers
    // bound `'a` by a borrow that prevents the release.
    unsafe {
        std::slice::from_raw_parts(data.add(meta.payload_offset() as usize), meta.len as usize)
    }
}

/// The records available to a [`Consumer`] at one moment, read in place.
///
/// Dropping the batch releases every record its iterators yielded, with a
/// single store of the consumer position. (An iterator that is leaked
/// rather than dropped before it ends, say by [`std::mem::forget`], leaves
/// the records it yielded unread: they come again.)
pub struct Batch<'c> {
    consumer: &'c mut Consumer,
    /// Whether the batch has loaded the producer position (it does at most
    /// once, which bounds it).
    refreshed: bool,
}

impl Batch<'_> {
    /// Iterates over the records, zero-copy.
    ///
    /// Each item borrows the batch, so no record outlives the space it
    /// lives in. After an error the iterator ends.
    ///
    /// The iterator reads on a copy of the consumer's position and
    /// counters, which it keeps in registers, and hands them back when it
    /// is dropped (and at its end): drop it before the batch.
    pub fn iter(&mut self) -> BatchIter<'_> {
        BatchIter {
            data: self.consumer.data,
            core: self.consumer.core.cursor(),
            refreshed: &mut self.refreshed,
            failed: false,
        }
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        self.consumer.core.release();
    }
}

impl<'b> IntoIterator for &'b mut Batch<'_> {
    type Item = Result<Record<'b>, Error>;
    type IntoIter = BatchIter<'b>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Iterator over a [`Batch`]'s records.
pub struct BatchIter<'b> {
    data: *const u8,
    core: Cursor<'b>,
    refreshed: &'b mut bool,
    failed: bool,
}

impl<'b> Iterator for BatchIter<'b> {
    type Item = Result<Record<'b>, Error>;

    // Always inlined: a consumer's loop is a few instructions a record,
    // and a call returning the record through memory would add a third.
    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        // The common case on its own path, its record straight from the
        // header checks: joined with the others, the record would go
        // through memory.
        if let Some(meta) = self.core.next_common() {
            return Some(Ok(record(payload_slice(self.data, &meta), &meta)));
        }
        let next = match self.core.next_by_core(false) {
            Ok(None) if !*self.refreshed => {
                *self.refreshed = true;
                self.core.next_by_core(true)
            }
            other => other,
        };
        self.deliver(next)
    }
}

impl<'b> BatchIter<'b> {
    /// The iterator's item for what [`ConsumerCore`] found.
    fn deliver(
        &mut self,
        next: Result<Option<RecordMeta>, ReadError>,
    ) -> Option<Result<Record<'b>, Error>> {
        match next {
            Ok(Some(meta)) => Some(Ok(record(payload_slice(self.data, &meta), &meta))),
            Ok(None) => None,
            Err(e) => {
                self.failed = true;
                Some(Err(e.into()))
            }
        }
    }
}

/// Handing out the ring's consumer role.
impl Region {
    /// The ring's consumer: takes the consumer role until the [`Consumer`]
    /// is dropped.
    ///
    /// Fails with [`Error::Taken`] while another consumer of the ring
    /// exists, whether made by this region, another region of the same
    /// ring (say, from [`Region::from_fd`] of a duplicated descriptor, or a
    /// second [`Region::open`] of the file) or another process; with
    /// [`Error::Access`] if the region was not opened to consume; and with
    /// [`Error::Corrupt`] if the ring's positions are impossible.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use rmemring::{Access, CreateOptions, Error, Region, Role};
    ///
    /// let region = Arc::new(Region::memfd(CreateOptions::default())?);
    /// let consumer = region.consumer()?;
    ///
    /// // The same memfd through another descriptor is the same ring.
    /// let again = Arc::new(Region::from_fd(region.fd().try_clone_to_owned()?, Access::Full)?);
    /// assert!(matches!(again.consumer(), Err(Error::Taken(Role::Consumer))));
    ///
    /// drop(consumer); // gives the role back
    /// let consumer = again.consumer()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn consumer(self: &Arc<Self>) -> Result<Consumer, Error> {
        if !self.access().writes_consumer_page() {
            return Err(Error::Access {
                opened: self.access(),
                wanted: Access::Consume,
            });
        }
        let role = RoleLock::acquire(&self.ring_file(), Role::Consumer)?;
        // On failure the lock is dropped, so a later call may try again.
        Consumer::new(self.clone(), role)
    }
}
