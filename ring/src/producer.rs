//! The user-space producer (files and memfds; on the device the kernel produces).

use std::ptr::NonNull;
use std::sync::Arc;

use crate::error::{
    Error,
    ProduceError, //
};
use crate::region::Region;
use crate::role::RoleLock;
use crate::wait;
use rmemring_proto::layout::{
    record_stride,
    RecordHeader,
    HEADER_SIZE,
    KIND_DATA, //
};
use rmemring_proto::producer_core::{
    Overflow,
    ProducerCore,
    ProducerStats,
    ReserveError,
    Run,
    Slot,
    Span as SpanToken, //
};
use rmemring_proto::roles::Role;
use rmemring_proto::view::header_words;

/// `CLOCK_MONOTONIC` now, in nanoseconds: the clock of record timestamps.
///
/// # Examples
///
/// ```
/// let before = rmemring::monotonic_ns();
/// assert!(rmemring::monotonic_ns() >= before);
/// ```
pub fn monotonic_ns() -> u64 {
    use nix::time::{
        clock_gettime,
        ClockId, //
    };
    // CLOCK_MONOTONIC always exists: the call cannot fail.
    let Ok(ts) = clock_gettime(ClockId::CLOCK_MONOTONIC) else {
        return 0;
    };
    (ts.tv_sec() as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec() as u64)
}

/// The producer of a ring.
///
/// Records are written with [`Producer::reserve`] (or copied with
/// [`Producer::push`]; records of one size many at a time with
/// [`Producer::reserve_many`]) and become visible together at
/// [`Producer::publish`],
/// with one store of the producer position and, only if the consumer is
/// asleep, one wake-up. Dropping the producer publishes what is left.
///
/// A batch is bounded as the kernel producer's are: when the records
/// committed since the last publication reach
/// [`batch_bytes`](rmemring_proto::producer_core::batch_bytes) (a quarter of the
/// data area, at most 1 MiB), [`Producer::reserve`] publishes them before it
/// reserves the next record. So a batch never holds more than about a
/// quarter of the ring back from the consumer, and in overwrite mode the
/// producer never overwrites records of its own batch before they were
/// published.
///
/// Records committed between two publications share one timestamp, taken
/// at the first reservation after the last publication, unless
/// [`Reservation::set_timestamp`] says otherwise: a record's timestamp says
/// when its batch began. A clock read per record would cost more than the
/// rest of the work for small records: [`monotonic_ns`] takes 27 to 42 ns
/// on the development machine (`cargo bench -p rmemring --bench copy`),
/// a whole 64-byte record 6 to 13 ns at full speed (75 to 170 M records/s,
/// `docs/bench/host.md`). The kernel producer stamps each record at commit.
///
/// # Examples
///
/// ```
/// # use std::sync::Arc;
/// # use rmemring::{CreateOptions, Region};
/// # let region = Arc::new(Region::memfd(CreateOptions::default())?);
/// let mut producer = region.producer()?;
/// let mut record = producer.reserve(8)?;
/// record.write(&42u64.to_le_bytes());
/// record.set_tag(7);
/// record.commit();
/// producer.publish();
/// # let mut consumer = region.consumer()?;
/// # let mut batch = consumer.batch()?;
/// # let r = batch.iter().next().unwrap()?;
/// # assert_eq!((r.tag, r.payload), (7, &42u64.to_le_bytes()[..]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Producer {
    region: Arc<Region>,
    core: ProducerCore,
    batch_timestamp: Option<u64>,
    /// The ring's producer role, released after the last publication (the
    /// `Drop` impl publishes before the fields drop).
    _role: RoleLock,
}

impl Producer {
    /// The producer of `region`, whose producer role `role` holds.
    pub(crate) fn new(region: Arc<Region>, role: RoleLock) -> Self {
        let layout = *region.layout();
        let core = ProducerCore::attach(region.view(), layout.overflow(), layout.max_payload);
        Self {
            region,
            core,
            batch_timestamp: None,
            _role: role,
        }
    }

    /// The region this producer writes.
    pub fn region(&self) -> &Arc<Region> {
        &self.region
    }

    /// Counters so far, including unpublished ones.
    pub fn stats(&self) -> ProducerStats {
        self.core.stats()
    }

    /// The sequence number the next record gets.
    pub fn next_seq(&self) -> u64 {
        self.core.next_seq()
    }

    /// Reserves room for a record of `len` payload bytes, to be written
    /// ([`Reservation::write`], or in place with [`Reservation::payload`]
    /// in drop-new mode) and committed.
    ///
    /// Dropping the reservation without committing writes no record. In
    /// drop-new mode a full ring is [`ProduceError::Full`]: publish, wait
    /// for the consumer and retry, or count the record with
    /// [`Self::drop_record`]. In overwrite mode it never fails for lack of
    /// room.
    ///
    /// If the unpublished records and this one would exceed the batch bound
    /// (see [`Producer`]), it first publishes the unpublished ones.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// use rmemring::{CreateOptions, ProduceError, Region};
    ///
    /// let region = Arc::new(Region::memfd(CreateOptions::new(4096))?);
    /// let mut producer = region.producer()?;
    /// let mut sent = 0u64;
    /// loop {
    ///     match producer.reserve(100) {
    ///         Ok(mut record) => {
    ///             // Drop-new mode: written in place.
    ///             record.payload().expect("drop-new mode").fill(sent as u8);
    ///             record.commit();
    ///             sent += 1;
    ///         }
    ///         Err(ProduceError::Full) => break, // no consumer releases anything here
    ///         Err(e) => return Err(e.into()),
    ///     }
    /// }
    /// producer.publish();
    /// assert_eq!(sent, 4096 / 128); // 24-byte header + 100 bytes, padded to 8
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn reserve(&mut self, len: usize) -> Result<Reservation<'_>, ProduceError> {
        // The common case: the record fits the room and the batch.
        let fast = u32::try_from(len)
            .ok()
            .and_then(|len32| self.core.reserve_in_batch(len32));
        let slot = match fast {
            Some(slot) => slot,
            None => self.reserve_slow(len)?,
        };
        let timestamp = self.timestamp();
        Ok(Reservation {
            producer: self,
            slot,
            tag: 0,
            timestamp,
        })
    }

    /// [`Self::reserve`] beyond its common case: publishes first if the
    /// batch is due, then reserves (padding, refreshing the consumer
    /// position or retiring records).
    #[inline(never)]
    fn reserve_slow(&mut self, len: usize) -> Result<Slot, ProduceError> {
        let Ok(len32) = u32::try_from(len) else {
            return Err(self.reserve_error(ReserveError::TooLarge, len));
        };
        if self.core.publish_due(len32) {
            self.publish();
        }
        self.core
            .reserve(len32)
            .map_err(|e| self.reserve_error(e, len))
    }

    /// The timestamp of the current batch's records, read from the clock
    /// at its first record.
    #[inline]
    fn timestamp(&mut self) -> u64 {
        match self.batch_timestamp {
            Some(timestamp) => timestamp,
            None => self.begin_batch(),
        }
    }

    /// Reserves room for up to `max` records of `len` payload bytes each
    /// (at least one, if there is room for one), one after the other: the
    /// batch form of [`Self::reserve`] for records of one size, which
    /// checks the room and the batch bound once for all of them and writes
    /// their headers in one loop at [`Reservations::commit`].
    ///
    /// It reserves fewer than `max` where the room ends (the consumer has
    /// not released more, or the data area wraps: the records after that
    /// need another call) or where the batch bound (see [`Producer`]) is
    /// reached; [`Reservations::len`] says how many. Errors as
    /// [`Self::reserve`]: [`ProduceError::Full`] if not even one fits (drop-new
    /// mode), [`ProduceError::TooLarge`]. The records get consecutive sequence
    /// numbers, one tag and one timestamp.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use rmemring::{CreateOptions, Region};
    /// # let region = Arc::new(Region::memfd(CreateOptions::default())?);
    /// # let (mut producer, mut consumer) = (region.producer()?, region.consumer()?);
    /// let mut records = producer.reserve_many(8, 100)?;
    /// assert_eq!(records.len(), 100);
    /// let first = records.first_seq();
    /// for (i, payload) in records.payloads().expect("drop-new mode").enumerate() {
    ///     payload.copy_from_slice(&(first + i as u64).to_le_bytes());
    /// }
    /// records.commit();
    /// producer.publish();
    ///
    /// let mut batch = consumer.batch()?;
    /// for record in batch.iter() {
    ///     let record = record?;
    ///     assert_eq!(record.payload, record.seq.to_le_bytes());
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn reserve_many(
        &mut self,
        len: usize,
        max: usize,
    ) -> Result<Reservations<'_>, ProduceError> {
        let Ok(len32) = u32::try_from(len) else {
            return Err(self.reserve_error(ReserveError::TooLarge, len));
        };
        if self.core.publish_due(len32) {
            self.publish();
        }
        let max = u32::try_from(max).unwrap_or(u32::MAX);
        let run = match self.core.reserve_run(len32, max) {
            Ok(run) => run,
            Err(e) => return Err(self.reserve_error(e, len)),
        };
        let timestamp = self.timestamp();
        Ok(Reservations {
            producer: self,
            run,
            tag: 0,
            timestamp,
        })
    }

    /// Reserves contiguous room for records of any payload lengths, laid
    /// out one after the other with [`Span::append`] and committed
    /// together with [`Span::commit`]: for many records of varying sizes,
    /// cheaper than a [`Self::reserve`] and a commit each, since the room
    /// and the batch bound are checked once for the whole span and the
    /// producer's position, sequence number and byte count move once, at
    /// the commit. Drop-new mode only ([`ProduceError::NeedsDropNew`]
    /// otherwise).
    ///
    /// The span holds room for at least one record of `first_len` payload
    /// bytes (so its first `append(first_len)` succeeds), and as much more,
    /// up to `max_bytes` of ring (headers and padding included: a
    /// record's [`record_stride`]), as the ring has free before its end or
    /// the batch bound (see [`Producer`]); it publishes first if the batch
    /// is due. Errors as [`Self::reserve`] for a record of `first_len`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use rmemring::{CreateOptions, Region};
    /// # let region = Arc::new(Region::memfd(CreateOptions::default())?);
    /// # let (mut producer, mut consumer) = (region.producer()?, region.consumer()?);
    /// use rmemring::ProduceError;
    ///
    /// let lines = ["a short record", "and a much longer one", ""];
    /// let mut span = producer.reserve_span(lines[0].len(), 64 * 1024)?;
    /// for line in lines {
    ///     match span.append(line.len()) {
    ///         Ok(payload) => payload.copy_from_slice(line.as_bytes()),
    ///         // The rest of the span is too small: commit it, reserve another.
    ///         Err(ProduceError::Full) => break,
    ///         Err(e) => return Err(e.into()),
    ///     }
    /// }
    /// assert_eq!(span.len(), 3);
    /// span.commit();
    /// producer.publish();
    ///
    /// let mut batch = consumer.batch()?;
    /// let got: Vec<&[u8]> = batch.iter().map(|r| r.map(|r| r.payload)).collect::<Result<_, _>>()?;
    /// assert_eq!(got, [&b"a short record"[..], b"and a much longer one", b""]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn reserve_span(
        &mut self,
        first_len: usize,
        max_bytes: usize,
    ) -> Result<Span<'_>, ProduceError> {
        if self.core.overflow() != Overflow::DropNew {
            return Err(ProduceError::NeedsDropNew);
        }
        let Ok(len32) = u32::try_from(first_len) else {
            return Err(self.reserve_error(ReserveError::TooLarge, first_len));
        };
        if self.core.publish_due(len32) {
            self.publish();
        }
        let token = match self.core.reserve_span(len32, max_bytes as u64) {
            Ok(token) => token,
            Err(e) => return Err(self.reserve_error(e, first_len)),
        };
        // `span_ptr` is null only for a span of another ring; this one is
        // the core's own.
        let base = NonNull::new(self.core.span_ptr(&token)).expect("the core's own span");
        let timestamp = self.timestamp();
        Ok(Span {
            // Bounded by the data area, which is mapped.
            bytes: token.bytes() as usize,
            max_payload: self.region.layout().max_payload as usize,
            first_seq: self.core.next_seq(),
            tag: 0,
            used: 0,
            records: 0,
            payload_bytes: 0,
            timestamp,
            base,
            token,
            producer: self,
        })
    }

    /// The timestamp of the records up to the next publication: one clock
    /// read per batch.
    #[inline(never)]
    fn begin_batch(&mut self) -> u64 {
        let timestamp = monotonic_ns();
        self.batch_timestamp = Some(timestamp);
        timestamp
    }

    #[cold]
    fn reserve_error(&self, e: ReserveError, len: usize) -> ProduceError {
        match e {
            ReserveError::Full => ProduceError::Full,
            ReserveError::TooLarge => ProduceError::TooLarge {
                len,
                max: self.region.layout().max_payload,
            },
        }
    }

    /// Copies `payload` into a new record (published at the next
    /// [`Self::publish`]).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use rmemring::{CreateOptions, Region};
    /// # let region = Arc::new(Region::memfd(CreateOptions::default())?);
    /// # let (mut producer, mut consumer) = (region.producer()?, region.consumer()?);
    /// producer.push(b"first")?;
    /// producer.push(b"second")?;
    /// assert!(consumer.read_copy()?.is_none()); // not published yet
    /// producer.publish();
    /// assert_eq!(consumer.read_copy()?.unwrap().payload, b"first");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn push(&mut self, payload: &[u8]) -> Result<(), ProduceError> {
        let mut record = self.reserve(payload.len())?;
        record.write(payload);
        record.commit();
        Ok(())
    }

    /// [`Self::push`], then [`Self::publish`].
    pub fn send(&mut self, payload: &[u8]) -> Result<(), ProduceError> {
        self.push(payload)?;
        self.publish();
        Ok(())
    }

    /// Counts a record dropped for lack of room; it uses a sequence number,
    /// so the consumer sees the gap.
    pub fn drop_record(&mut self) {
        self.core.drop_record();
    }

    /// Makes every committed record visible with one store, and wakes the
    /// consumer if it is asleep.
    ///
    /// Deciding whether the consumer sleeps takes a full memory barrier (the
    /// wake-up handshake), which waits for every store before it to reach
    /// the cache. That is cheap for a batch of small records but not per
    /// record of a few kilobytes: on the host benchmark (`benches/host/`)
    /// 4 KiB records streamed at 10 GB/s when published one by one and at
    /// 42 GB/s in batches of 64 KiB.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use rmemring::{CreateOptions, Region};
    /// # let region = Arc::new(Region::memfd(CreateOptions::default())?);
    /// # let (mut producer, mut consumer) = (region.producer()?, region.consumer()?);
    /// for i in 0u32..100 {
    ///     producer.push(&i.to_le_bytes())?;
    /// }
    /// assert_eq!(producer.unpublished(), 100 * 32);
    /// producer.publish(); // one store makes all 100 visible
    /// assert_eq!(producer.unpublished(), 0);
    /// assert_eq!(consumer.backlog()?, 100 * 32);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn publish(&mut self) {
        self.batch_timestamp = None;
        if self.core.publish() {
            self.core.bump_wake_seq();
            wait::futex_wake(self.core.view().wake_seq().as_ptr());
        }
    }

    /// Bytes committed but not yet published.
    pub fn unpublished(&self) -> u64 {
        self.core.unpublished()
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.publish();
    }
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("region", &self.region)
            .field("stats", &self.core.stats())
            .finish()
    }
}

/// Room for one record, reserved by [`Producer::reserve`].
///
/// Fill it with [`Self::write`] (either overflow mode) or, in drop-new
/// mode, in place through [`Self::payload`]; then [`Self::commit`].
/// Dropping it uncommitted writes nothing. It borrows the producer, so
/// there is at most one at a time.
///
/// # Examples
///
/// ```
/// # use std::sync::Arc;
/// # use rmemring::{CreateOptions, Region};
/// # let region = Arc::new(Region::memfd(CreateOptions::default())?);
/// # let (mut producer, mut consumer) = (region.producer()?, region.consumer()?);
/// let mut record = producer.reserve(16)?;
/// let seq = record.seq();
/// let payload = record.payload().expect("a drop-new ring: written in place");
/// payload[..8].copy_from_slice(&seq.to_le_bytes());
/// payload[8..].copy_from_slice(b"payload!");
/// record.set_tag(3);
/// record.set_timestamp(rmemring::monotonic_ns()); // this record's own time
/// record.commit();
///
/// drop(producer.reserve(8)?); // a reservation abandoned: no record
/// producer.publish();
///
/// let r = consumer.read_copy()?.unwrap();
/// assert_eq!((r.seq, r.tag, &r.payload[8..]), (seq, 3, &b"payload!"[..]));
/// assert!(consumer.read_copy()?.is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a reservation writes no record unless committed"]
pub struct Reservation<'p> {
    producer: &'p mut Producer,
    slot: Slot,
    tag: u16,
    timestamp: u64,
}

impl Reservation<'_> {
    /// The payload bytes, to fill in place: drop-new mode only, `None` in
    /// overwrite mode (use [`Self::write`]). They hold whatever the ring
    /// held before.
    ///
    /// In overwrite mode a reader the producer laps may be copying these
    /// very bytes (and will discard what it copied), so a `&mut [u8]` to
    /// them would be a data race, undefined behaviour; in drop-new mode no
    /// reader looks at them before they are published.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// use rmemring::{CreateOptions, Overflow, Region};
    ///
    /// let options = CreateOptions::default().overflow(Overflow::OverwriteOldest);
    /// let region = Arc::new(Region::memfd(options)?);
    /// let mut producer = region.producer()?;
    /// let mut record = producer.reserve(4)?;
    /// assert!(record.payload().is_none()); // a reader may be lapped onto it
    /// record.write(b"safe");
    /// record.commit();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn payload(&mut self) -> Option<&mut [u8]> {
        if self.producer.core.overflow() != Overflow::DropNew {
            return None;
        }
        // SAFETY: `Producer::reserve` made the slot with this producer's
        // core (the fields are private to this module, which makes a
        // `Reservation` nowhere else).
        let ptr = unsafe { self.producer.core.own_payload_ptr(&self.slot) };
        // SAFETY: `reserve` handed out `len` bytes at `ptr` inside the data
        // area, which in drop-new mode no reader looks at until the record
        // is published (the producer never writes past the released
        // position, and readers read only up to the published one), and
        // `&mut self` makes this slice unique here.
        Some(unsafe { std::slice::from_raw_parts_mut(ptr, self.slot.len() as usize) })
    }

    /// Copies `payload` into the record: in drop-new mode a plain copy, in
    /// overwrite mode one relaxed atomic store per 8-byte word, which a
    /// lapped reader may race without undefined behaviour (its copy is
    /// discarded). A partial last word is written whole; its extra bytes
    /// are the record's padding.
    ///
    /// # Panics
    ///
    /// If `payload` is not exactly [`Self::len`] bytes long.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use rmemring::{CreateOptions, Region};
    /// # let region = Arc::new(Region::memfd(CreateOptions::default())?);
    /// # let (mut producer, mut consumer) = (region.producer()?, region.consumer()?);
    /// let mut record = producer.reserve(5)?;
    /// record.write(b"hello");
    /// record.commit();
    /// producer.publish();
    /// assert_eq!(consumer.read_copy()?.unwrap().payload, b"hello");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn write(&mut self, payload: &[u8]) {
        assert_eq!(
            payload.len(),
            self.len(),
            "the payload must fill the reservation"
        );
        if let Some(dst) = self.payload() {
            dst.copy_from_slice(payload);
            return;
        }
        self.producer.core.write_payload(&self.slot, payload);
    }

    /// Payload bytes reserved.
    #[inline]
    pub fn len(&self) -> usize {
        self.slot.len() as usize
    }

    /// Whether the reservation holds no payload bytes.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.slot.is_empty()
    }

    /// The sequence number the record will have.
    pub fn seq(&self) -> u64 {
        self.producer.core.next_seq()
    }

    /// Sets the application-defined record type (default 0).
    pub fn set_tag(&mut self, tag: u16) {
        self.tag = tag;
    }

    /// Sets the timestamp (default: when the current batch began).
    pub fn set_timestamp(&mut self, ns: u64) {
        self.timestamp = ns;
    }

    /// Writes the header; the record becomes visible at the next publish.
    #[inline]
    pub fn commit(self) {
        // SAFETY: As in `Self::payload`: the slot is this core's.
        unsafe {
            self.producer
                .core
                .commit_own(self.slot, self.tag, self.timestamp)
        };
    }
}

/// Room for several records of one size, reserved by
/// [`Producer::reserve_many`].
///
/// Fill the payloads in place with [`Self::payloads`] (drop-new mode) or
/// with [`Self::write`] (either mode), then [`Self::commit`] them all, or
/// the first few with [`Self::commit_first`]. Dropping it uncommitted writes
/// no record.
///
/// # Examples
///
/// ```
/// # use std::sync::Arc;
/// use rmemring::{CreateOptions, Overflow, Region};
///
/// let options = CreateOptions::default().overflow(Overflow::OverwriteOldest);
/// let region = Arc::new(Region::memfd(options)?);
/// let mut producer = region.producer()?;
/// let mut records = producer.reserve_many(4, 3)?;
/// assert!(records.payloads().is_none()); // overwrite mode: copy them in
/// for i in 0..records.len() {
///     records.write(i, b"word");
/// }
/// records.set_tag(9);
/// records.commit_first(2); // the third is abandoned
/// producer.publish();
/// assert_eq!(producer.next_seq(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "reservations write no record unless committed"]
pub struct Reservations<'p> {
    producer: &'p mut Producer,
    run: Run,
    tag: u16,
    timestamp: u64,
}

impl Reservations<'_> {
    /// Records reserved (at least one).
    #[inline]
    pub fn len(&self) -> usize {
        self.run.count() as usize
    }

    /// Always `false`: a reservation holds at least one record.
    #[inline]
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Payload bytes of each record.
    #[inline]
    pub fn record_len(&self) -> usize {
        self.run.len() as usize
    }

    /// The sequence number the first record will have; the others follow
    /// it.
    pub fn first_seq(&self) -> u64 {
        self.producer.core.next_seq()
    }

    /// Sets the application-defined record type of every record (default 0).
    pub fn set_tag(&mut self, tag: u16) {
        self.tag = tag;
    }

    /// Sets every record's timestamp (default: when the current batch
    /// began).
    pub fn set_timestamp(&mut self, ns: u64) {
        self.timestamp = ns;
    }

    /// The records' payloads, in order, to fill in place: drop-new mode
    /// only, `None` in overwrite mode (use [`Self::write`]), as
    /// [`Reservation::payload`]. They hold whatever the ring held before.
    #[inline]
    pub fn payloads(&mut self) -> Option<Payloads<'_>> {
        if self.producer.core.overflow() != Overflow::DropNew {
            return None;
        }
        let first = self.producer.core.run_payload_ptr(&self.run);
        if first.is_null() {
            return None;
        }
        let (stride, count) = (self.run.stride() as usize, self.len());
        // SAFETY: `reserve_run` handed out `count` records of `stride`
        // bytes from the first one's header, inside the data area; the
        // payloads start `HEADER_SIZE` bytes in, so the `count - 1` strides
        // from the first payload and the last payload's `len` bytes end
        // within the run. In drop-new mode no reader looks at them before
        // they are published, and `&mut self` makes this slice unique; the
        // headers between the payloads are written only at commit, after
        // this borrow ends.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(first, (count - 1) * stride + self.record_len())
        };
        Some(Payloads {
            bytes,
            stride,
            len: self.record_len(),
            left: count,
        })
    }

    /// Copies `payload` into record `i`, as [`Reservation::write`] does
    /// (in overwrite mode one relaxed atomic store per 8-byte word).
    ///
    /// # Panics
    ///
    /// If `i` is not below [`Self::len`] or `payload` is not exactly
    /// [`Self::record_len`] bytes long.
    pub fn write(&mut self, i: usize, payload: &[u8]) {
        assert!(i < self.len(), "record {i} of {}", self.len());
        assert_eq!(
            payload.len(),
            self.record_len(),
            "the payload must fill the record"
        );
        let stride = self.run.stride() as usize;
        if let Some(payloads) = self.payloads() {
            // Straight to record `i`: `i` strides on from the first payload.
            let dst = &mut payloads.bytes[i * stride..i * stride + payload.len()];
            dst.copy_from_slice(payload);
            return;
        }
        // `i < len`, a `u32`.
        self.producer
            .core
            .write_run_payload(&self.run, i as u32, payload);
    }

    /// Writes every record's header; they become visible at the next
    /// publish.
    #[inline]
    pub fn commit(self) {
        let n = self.run.count();
        self.producer
            .core
            .commit_run(self.run, n, self.tag, self.timestamp);
    }

    /// Writes the headers of the first `n` records (all of them if `n` is
    /// larger) and abandons the rest, which the next reservation reuses.
    #[inline]
    pub fn commit_first(self, n: usize) {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.producer
            .core
            .commit_run(self.run, n, self.tag, self.timestamp);
    }
}

/// Room for records of any payload lengths, laid out one after the other:
/// [`Producer::reserve_span`].
///
/// Each [`Self::append`] writes a record's header (the next sequence
/// number, the span's tag and timestamp) and lends its payload to fill in
/// place; [`Self::commit`] makes every appended record part of the next
/// publication. Dropping the span uncommitted writes no record (the bytes
/// are reused by the next reservation).
#[must_use = "a span writes no record unless committed"]
pub struct Span<'p> {
    producer: &'p mut Producer,
    token: SpanToken,
    /// The first header's address; `bytes` from it are this span's.
    base: NonNull<u8>,
    bytes: usize,
    max_payload: usize,
    /// Bytes of the span laid out so far.
    used: usize,
    records: u64,
    payload_bytes: u64,
    /// The first record's sequence number; the others follow it.
    first_seq: u64,
    tag: u16,
    timestamp: u64,
}

// SAFETY: A `Span` is the producer's exclusive borrow and a pointer into
// the ring's mapping, which the producer's region keeps mapped; sending it
// to another thread sends that exclusive access, as sending the
// `&mut Producer` (which is `Send`) would.
unsafe impl Send for Span<'_> {}

impl Span<'_> {
    /// Appends a record of `len` payload bytes and lends its payload, to
    /// fill in place: it holds whatever the ring held before, and the
    /// record is in the span whether it is filled or not. Nothing is
    /// appended on an error: [`ProduceError::Full`] if the record does not
    /// fit the rest of the span (commit it and reserve another),
    /// [`ProduceError::TooLarge`] if it is larger than the ring's largest
    /// payload.
    #[inline]
    #[must_use = "the record is appended: fill its payload"]
    pub fn append(&mut self, len: usize) -> Result<&mut [u8], ProduceError> {
        if len > self.max_payload {
            return Err(self.too_large(len));
        }
        // `len` is at most a `u32`'s `max_payload`: no overflow.
        let stride = record_stride(len as u32) as usize;
        if stride > self.bytes - self.used {
            return Err(ProduceError::Full);
        }
        let header = self.used;
        let [word0, seq, timestamp] = header_words(&RecordHeader {
            // At most `max_payload`, a `u32`.
            len: len as u32,
            kind: KIND_DATA,
            tag: self.tag,
            seq: self.next_seq(),
            timestamp_ns: self.timestamp,
        });
        self.used += stride;
        // SAFETY: `header + stride <= bytes`, and the span's `bytes` from
        // `base` are this producer's, inside the data area, 8-byte aligned
        // (the data area is page-aligned and records start at multiples of
        // `RECORD_ALIGN`): the header's three words and the `len` payload
        // bytes after them are in bounds. In drop-new mode no reader looks
        // at them before they are published, which the span's borrow of
        // the producer keeps from happening until it is committed, and
        // `&mut self` makes the returned slice unique.
        unsafe {
            let words = self.base.as_ptr().add(header).cast::<u64>();
            words.write(word0);
            words.add(1).write(seq);
            words.add(2).write(timestamp);
            self.records += 1;
            self.payload_bytes += len as u64;
            Ok(std::slice::from_raw_parts_mut(
                self.base.add(header + HEADER_SIZE as usize).as_ptr(),
                len,
            ))
        }
    }

    #[cold]
    fn too_large(&self, len: usize) -> ProduceError {
        ProduceError::TooLarge {
            len,
            // `max_payload` came from a `u32`.
            max: self.max_payload as u32,
        }
    }

    /// The sequence number the next appended record gets.
    #[inline]
    pub fn next_seq(&self) -> u64 {
        // Sequence numbers continue from the ring's counters, and wrap.
        self.first_seq.wrapping_add(self.records)
    }

    /// Records appended.
    #[inline]
    pub fn len(&self) -> usize {
        self.records as usize
    }

    /// Whether no record has been appended.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Ring bytes left for records (a record takes its
    /// [`record_stride`]: header and padding included).
    #[inline]
    pub fn remaining(&self) -> usize {
        self.bytes - self.used
    }

    /// Sets the application-defined record type of the records appended
    /// from now on (default 0).
    pub fn set_tag(&mut self, tag: u16) {
        self.tag = tag;
    }

    /// Sets the timestamp of the records appended from now on (default:
    /// when the current batch began).
    pub fn set_timestamp(&mut self, ns: u64) {
        self.timestamp = ns;
    }

    /// Makes every appended record part of the next publication; the rest
    /// of the span is reused by the next reservation.
    #[inline]
    pub fn commit(self) {
        self.producer.core.commit_span(
            self.token,
            self.used as u64,
            self.records,
            self.payload_bytes,
        );
    }
}

/// The payloads of [`Reservations`], in order: [`Reservations::payloads`].
pub struct Payloads<'r> {
    /// From the next payload to the end of the last one.
    bytes: &'r mut [u8],
    stride: usize,
    len: usize,
    /// Payloads not yet handed out.
    left: usize,
}

impl<'r> Iterator for Payloads<'r> {
    type Item = &'r mut [u8];

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        self.left = self.left.checked_sub(1)?;
        let bytes = std::mem::take(&mut self.bytes);
        // The next payload is a stride on; after the last one nothing is
        // left (`left` is 0 then and ends the iteration).
        let (payload, rest) = bytes.split_at_mut(self.len.min(bytes.len()));
        self.bytes = rest.get_mut(self.stride - self.len..).unwrap_or_default();
        Some(payload)
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Payloads<'_> {}

/// Handing out the ring's producer role.
impl Region {
    /// The ring's producer (files and memfds): takes the producer role
    /// until the [`Producer`] is dropped.
    ///
    /// Fails with [`Error::Taken`] while another producer of the ring
    /// exists, in this process or another, and with [`Error::Access`] if
    /// the region was not opened to produce (devices never are: their
    /// producer is the kernel).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use rmemring::{CreateOptions, Error, Region, Role};
    ///
    /// let region = Arc::new(Region::memfd(CreateOptions::default())?);
    /// let mut producer = region.producer()?;
    /// assert!(matches!(region.producer(), Err(Error::Taken(Role::Producer))));
    /// producer.send(b"one")?;
    /// drop(producer);
    ///
    /// // A later producer continues where the last one stopped.
    /// let producer = region.producer()?;
    /// assert_eq!(producer.next_seq(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn producer(self: &Arc<Self>) -> Result<Producer, Error> {
        if !self.access().writes_producer_parts() {
            return Err(Error::Access {
                opened: self.access(),
                wanted: crate::Access::Produce,
            });
        }
        let role = RoleLock::acquire(&self.ring_file(), Role::Producer)?;
        Ok(Producer::new(self.clone(), role))
    }
}
