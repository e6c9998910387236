//! The peers: rmemring, `rtrb` as a byte ring and as a typed ring,
//! crossbeam's `ArrayQueue` (boxed records recycled, and by value), and
//! `memcpy`, in one table ([`PEERS`]).
//!
//! A ring peer is two halves, a [`Produce`] and a [`Consume`], made by a
//! [`Ring`]; the drivers ([`two_threads`], [`one_thread`]) are the same for
//! every ring, so the loop around each peer, its warm-up, its pinning and
//! its clock are too. Adding a ring is implementing the two halves and
//! adding one [`Peer`] entry.

use std::mem::MaybeUninit;
use std::ptr::addr_of_mut;
use std::sync::Arc;
use std::time::{
    Duration,
    Instant, //
};

use crossbeam_queue::ArrayQueue;
use rmemring::layout::RecordHeader;
use rmemring::{
    monotonic_ns,
    CreateOptions,
    Overflow,
    ProduceError,
    Region, //
};
use rtrb::chunks::ChunkError;
use rtrb::RingBuffer;

use crate::threads::{
    self,
    idle,
    Placement, //
};
use crate::workload::{
    check,
    fill,
    header,
    Clock,
    Fixed,
    Shape,
    Timing,
    Workload,
    HEADER, //
};

/// Expands `$run` with `N` the payload size of workload `$w` as a
/// constant, for the peers whose record type has the size in it; `None`
/// for other sizes and for the mixed workload (a fixed-size record would
/// have to be as large as the largest record).
macro_rules! sized {
    ($w:expr, $run:expr) => {
        sized!(@ $w, $run, 8 64 1024 4096 65536)
    };
    (@ $w:expr, $run:expr, $($n:literal)*) => {
        match $w.shape {
            $(Shape { size: $n, mixed: false } => {
                const N: usize = $n;
                $run
            })*
            _ => None,
        }
    };
}

/// A benchmarked ring, or the baseline.
pub struct Peer {
    /// Its name on the command line, in the table and in the JSON lines.
    pub name: &'static str,
    /// Whether it publishes and releases in batches: then it is measured
    /// at every batch size and shown at its best.
    pub batches: bool,
    /// Whether it is in the ring-size table (`ring_sweep` in `main.rs`):
    /// the like-for-like and fixed-size targets' peers, and crossbeam's
    /// zero-copy queue (its one cell, 1 MiB, is the ring size that suits
    /// the others least).
    pub sweep: bool,
    /// Bytes of ring memory each record of `size` payload bytes takes.
    pub ring_bytes: fn(usize) -> usize,
    /// What the producer and the consumer do per record, for the report.
    pub per_record: &'static str,
    /// One two-thread measurement with batches of `batch` records; `None`
    /// if the peer cannot carry the workload's size.
    pub run: fn(Placement, &Workload, usize) -> Option<Timing>,
    /// Each side's cost on one core ([`one_thread`]); `None` for the
    /// baseline, or a size the peer cannot carry.
    pub sides: fn(&Workload, usize) -> Option<Sides>,
}

/// The peers, in the order of the table. The ratios are rmemring's over
/// each peer's, so rmemring comes first.
pub const PEERS: &[Peer] = &[
    Peer {
        name: "rmemring",
        batches: true,
        sweep: true,
        ring_bytes: |size| HEADER + size,
        per_record: "producer: `reserve`, fill in place, `commit`; `publish` per batch. \
                     consumer: `batch()` iterator, validated header, record in place; \
                     one release per batch",
        run: two_threads::<Rmemring<ONE>>,
        sides: one_thread::<Rmemring<ONE>>,
    },
    Peer {
        name: "rmemring-many",
        batches: true,
        sweep: true,
        ring_bytes: |size| HEADER + size,
        per_record: "fixed-size records only. producer: `reserve_many(size, batch)`, the \
                     payloads filled in place, `commit` (the headers written in one loop); \
                     `publish` per batch. consumer: as rmemring's",
        run: |place, w, batch| {
            (!w.shape.mixed).then(|| two_threads::<Rmemring<MANY>>(place, w, batch))?
        },
        sides: |w, batch| (!w.shape.mixed).then(|| one_thread::<Rmemring<MANY>>(w, batch))?,
    },
    Peer {
        name: "rmemring-span",
        batches: true,
        sweep: true,
        ring_bytes: |size| HEADER + size,
        per_record: "records of any sizes. producer: `reserve_span` (the room and the batch \
                     bound checked once for a span, which ends where the room, the data \
                     area or the batch bound does), each record `append`ed (its header \
                     written) and filled in place, `commit` per span (one update of the \
                     position); `publish` per batch. consumer: as rmemring's",
        run: two_threads::<Rmemring<SPAN>>,
        sides: one_thread::<Rmemring<SPAN>>,
    },
    Peer {
        name: "rtrb-bytes",
        batches: true,
        sweep: true,
        ring_bytes: |size| HEADER + size,
        per_record: "`RingBuffer<u8>`, rmemring's 24-byte header then the payload. \
                     producer: `write_chunk_uninit`, header and payload written in place, \
                     `commit_all` per batch. consumer: `read_chunk`, records walked by their \
                     headers in place (copied aside only if one straddles the end), \
                     `commit` per batch",
        run: two_threads::<RtrbBytes>,
        sides: one_thread::<RtrbBytes>,
    },
    Peer {
        name: "rtrb-typed",
        batches: true,
        sweep: true,
        ring_bytes: |size| HEADER + size,
        per_record: "`RingBuffer<Fixed<N>>`, `Fixed<N>` = rmemring's header + `[u8; N]` \
                     (`#[repr(C)]`, an rmemring record's size). producer: \
                     `write_chunk_uninit`, records written in place, `commit_all` per batch. \
                     consumer: `read_chunk`, records in place, `commit_all` per batch",
        run: |place, w, batch| sized!(w, two_threads::<RtrbTyped<N>>(place, w, batch)),
        sides: |w, batch| sized!(w, one_thread::<RtrbTyped<N>>(w, batch)),
    },
    Peer {
        name: "crossbeam",
        batches: false,
        sweep: true,
        // The record in its buffer, and the buffer's pointer and
        // crossbeam's stamp word in a slot of each queue.
        ring_bytes: crossbeam_ring_bytes,
        per_record: "two `ArrayQueue`s of owned buffers (128-byte aligned, sized for the \
                     largest record rounded up to 128 B), recycled; `ArrayQueue` is \
                     multi-producer multi-consumer (a compare-and-swap per push and pop, \
                     where the single-producer rings store). producer: `pop` a free \
                     buffer, header and payload written in it, `push` it to the \
                     consumer. consumer: `pop` it, checked in place, `push` it back. No \
                     allocation or copy per record; no batches; the producer reads the \
                     clock once per 16 KiB of payload, as the others do at that batch \
                     size, and only once a buffer is free",
        run: two_threads::<Crossbeam>,
        sides: one_thread::<Crossbeam>,
    },
    Peer {
        name: "crossbeam-value",
        batches: false,
        sweep: false,
        // A slot is crossbeam's stamp word and the record.
        ring_bytes: |size| queue_slot::<()>() + HEADER + size,
        per_record: "`ArrayQueue<Fixed<N>>`. producer: record built aside, `push`ed by value \
                     (copied in). consumer: `pop` by value (copied out: every byte, unlike \
                     the other consumers), then checked. No batches; clock as crossbeam's",
        run: |place, w, batch| sized!(w, two_threads::<CrossbeamValue<N>>(place, w, batch)),
        sides: |w, batch| sized!(w, one_thread::<CrossbeamValue<N>>(w, batch)),
    },
    Peer {
        name: "memcpy",
        batches: false,
        sweep: false,
        ring_bytes: |size| size,
        per_record: "one thread copies each payload from the source buffer into a \
                     ring-sized destination: the producer's copy without a consumer",
        run: memcpy,
        sides: |_, _| None,
    },
];

/// A ring: a producer half and a consumer half.
pub trait Ring {
    type Producer: Produce + Send;
    type Consumer: Consume + Send;

    /// A ring of the workload's size for its records.
    fn new(w: &Workload) -> (Self::Producer, Self::Consumer);
}

/// The producer half of a ring.
pub trait Produce {
    /// Writes records `seq..seq + max`, or as many of them as fit, and
    /// publishes them; returns how many (0: the ring is full). Every
    /// producer stamps its records with the clock once per call.
    fn produce(&mut self, seq: u64, max: usize) -> usize;
}

/// The consumer half of a ring.
pub trait Consume {
    /// Reads and [`check`]s up to `max` records, the first of them record
    /// `seq`, and releases them; counts failed checks in `bad`; returns
    /// how many it read (0: the ring is empty).
    fn consume(&mut self, seq: u64, max: usize, bad: &mut u64) -> usize;
}

/// Streams the workload through ring `R` on two threads, `batch` records
/// at a time, and times the consumer after the warm-up.
fn two_threads<R: Ring>(place: Placement, w: &Workload, batch: usize) -> Option<Timing> {
    let (mut producer, mut consumer) = R::new(w);
    let total = w.total();
    let left = |done: u64| (total - done).min(batch as u64) as usize;
    Some(threads::two_threads(
        place,
        move |stop| {
            let mut seq = 0u64;
            while seq < total {
                match producer.produce(seq, left(seq)) {
                    0 => idle(stop),
                    n => seq += n as u64,
                }
            }
        },
        move |stop| {
            let mut clock = Clock::new(w.warm);
            let (mut seen, mut bad) = (0u64, 0u64);
            while seen < total {
                match consumer.consume(seen, left(seen), &mut bad) {
                    0 => idle(stop),
                    n => {
                        seen += n as u64;
                        clock.tick(seen);
                    }
                }
            }
            clock.stop(seen, bad)
        },
    ))
}

/// Each side's cost per record on one core.
#[derive(Clone, Copy, Debug)]
pub struct Sides {
    /// The producer's nanoseconds per record.
    pub producer_ns: f64,
    /// The consumer's nanoseconds per record.
    pub consumer_ns: f64,
}

/// Each side's own cost per record, without a second core: one thread
/// fills ring `R` (`batch` records per call) until it is full, then drains
/// it, lap after lap, timing the two phases apart. The ring stays in this
/// core's cache, so what remains is each side's code (the header, the
/// validation, the chunk and index arithmetic), not the cache-line
/// transfers of the two-thread run. A quarter of the timed records, after
/// the same warm-up.
fn one_thread<R: Ring>(w: &Workload, batch: usize) -> Option<Sides> {
    let (mut producer, mut consumer) = R::new(w);
    let total = w.warm + w.timed / 4;
    let (mut seq, mut seen, mut bad) = (0u64, 0u64, 0u64);
    let (mut produced, mut consumed) = (Duration::ZERO, Duration::ZERO);
    let mut timed = 0u64;
    while seen < total {
        let began = Instant::now();
        while seq < total {
            match producer.produce(seq, (total - seq).min(batch as u64) as usize) {
                0 => break,
                n => seq += n as u64,
            }
        }
        let filled = Instant::now();
        let lap = seen;
        while seen < seq {
            let n = consumer.consume(seen, (seq - seen).min(batch as u64) as usize, &mut bad);
            seen += n as u64;
        }
        if lap >= w.warm {
            produced += filled - began;
            consumed += filled.elapsed();
            timed += seen - lap;
        }
    }
    assert_eq!(bad, 0, "records failed the consumer's check");
    let per = |d: Duration| d.as_secs_f64() * 1e9 / timed.max(1) as f64;
    Some(Sides {
        producer_ns: per(produced),
        consumer_ns: per(consumed),
    })
}

/// How rmemring's producer reserves its records, the const parameter of
/// [`Rmemring`]: one at a time (`Producer::reserve`, any sizes).
const ONE: u8 = 0;
/// Fixed-size records many at a time (`Producer::reserve_many`).
const MANY: u8 = 1;
/// Records of any sizes laid out in spans (`Producer::reserve_span`).
const SPAN: u8 = 2;

/// rmemring: a memfd ring (drop-new), records reserved (as `WAY` says)
/// and written in place, published once per call; the consumer reads them
/// in place and releases them with one store per call.
struct Rmemring<const WAY: u8>;

/// rmemring's producer half.
struct RmemringProducer<const WAY: u8> {
    producer: rmemring::Producer,
    shape: Shape,
    src: Vec<u8>,
}

/// rmemring's consumer half, the same whichever way the producer reserves.
struct RmemringConsumer {
    consumer: rmemring::Consumer,
    shape: Shape,
}

impl<const WAY: u8> Ring for Rmemring<WAY> {
    type Producer = RmemringProducer<WAY>;
    type Consumer = RmemringConsumer;

    fn new(w: &Workload) -> (RmemringProducer<WAY>, RmemringConsumer) {
        let options = CreateOptions::new(w.ring_bytes as u64).overflow(Overflow::DropNew);
        let region = Arc::new(Region::memfd(options).expect("memfd ring"));
        let producer = RmemringProducer {
            producer: region.producer().expect("producer"),
            shape: w.shape,
            src: w.src.clone(),
        };
        let consumer = RmemringConsumer {
            consumer: region.consumer().expect("consumer"),
            shape: w.shape,
        };
        (producer, consumer)
    }
}

impl<const WAY: u8> Produce for RmemringProducer<WAY> {
    #[inline]
    fn produce(&mut self, seq: u64, max: usize) -> usize {
        // Resolved at compile time: one loop per peer.
        let n = match WAY {
            MANY => self.produce_many(seq, max),
            SPAN => self.produce_spans(seq, max),
            _ => self.produce_one_by_one(seq, max),
        };
        if n != 0 {
            self.producer.publish();
        }
        n
    }
}

impl<const WAY: u8> RmemringProducer<WAY> {
    /// `reserve`, fill in place, `commit`, record by record.
    #[inline(always)]
    fn produce_one_by_one(&mut self, seq: u64, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            let (seq, size) = (seq + n as u64, self.shape.len(seq + n as u64));
            match self.producer.reserve(size) {
                Ok(mut record) => {
                    let payload = record.payload().expect("a drop-new ring");
                    // SAFETY: The reservation is `size` writable bytes.
                    unsafe { fill(payload.as_mut_ptr(), size, seq, &self.src) };
                    // The producer stamps the batch's first record with the
                    // clock, and the others with the same time.
                    record.commit();
                    n += 1;
                }
                Err(ProduceError::Full) => break,
                Err(e) => panic!("reserve: {e}"),
            }
        }
        n
    }

    /// `reserve_many` for as many fixed-size records as fit, the payloads
    /// filled in place, one `commit` for all.
    #[inline(always)]
    fn produce_many(&mut self, seq: u64, max: usize) -> usize {
        let size = self.shape.size;
        let mut n = 0;
        // Fewer than asked come back where the room or the data area ends.
        while n < max {
            match self.producer.reserve_many(size, max - n) {
                Ok(mut records) => {
                    let first = seq + n as u64;
                    n += records.len();
                    let payloads = records.payloads().expect("a drop-new ring");
                    for (i, payload) in payloads.enumerate() {
                        // SAFETY: Each payload is `size` writable bytes.
                        unsafe { fill(payload.as_mut_ptr(), size, first + i as u64, &self.src) };
                    }
                    records.commit();
                }
                Err(ProduceError::Full) => break,
                Err(e) => panic!("reserve_many: {e}"),
            }
        }
        n
    }

    /// `reserve_span`, each record appended and filled in place, one
    /// `commit` per span.
    #[inline(always)]
    fn produce_spans(&mut self, seq: u64, max: usize) -> usize {
        let (shape, src) = (self.shape, &self.src);
        let mut n = 0;
        // A span ends where the room, the data area or the batch bound
        // does; then another.
        while n < max {
            let first = shape.len(seq + n as u64);
            let mut span = match self.producer.reserve_span(first, usize::MAX) {
                Ok(span) => span,
                Err(ProduceError::Full) => break,
                Err(e) => panic!("reserve_span: {e}"),
            };
            while n < max {
                let (seq, size) = (seq + n as u64, shape.len(seq + n as u64));
                let Ok(payload) = span.append(size) else {
                    break;
                };
                // SAFETY: The payload is `size` writable bytes.
                unsafe { fill(payload.as_mut_ptr(), size, seq, src) };
                n += 1;
            }
            span.commit();
        }
        n
    }
}

impl Consume for RmemringConsumer {
    #[inline]
    fn consume(&mut self, seq: u64, max: usize, bad: &mut u64) -> usize {
        let mut n = 0;
        let mut records = self.consumer.batch().expect("a drop-new ring");
        for record in records.iter().take(max) {
            let record = record.expect("a valid record");
            let (len, size) = (record.payload.len(), self.shape.len(seq + n));
            *bad += u64::from(!check(record.seq, len, seq + n, record.payload, size));
            n += 1;
        }
        // Dropping the batch releases it with one store.
        n as usize
    }
}

/// `rtrb` as a byte ring: a `RingBuffer<u8>` of variable-length records,
/// each rmemring's header and the payload, written into one
/// `write_chunk_uninit` per call and parsed in place from one `read_chunk`.
struct RtrbBytes;

/// The byte ring's producer half.
struct RtrbBytesProducer {
    producer: rtrb::Producer<u8>,
    shape: Shape,
    src: Vec<u8>,
    /// A record that straddles the end of the buffer is built here.
    scratch: Vec<u8>,
}

/// The byte ring's consumer half.
struct RtrbBytesConsumer {
    consumer: rtrb::Consumer<u8>,
    shape: Shape,
    /// A record that straddles the end of the buffer is copied here.
    scratch: Vec<u8>,
}

impl Ring for RtrbBytes {
    type Producer = RtrbBytesProducer;
    type Consumer = RtrbBytesConsumer;

    fn new(w: &Workload) -> (RtrbBytesProducer, RtrbBytesConsumer) {
        let (producer, consumer) = RingBuffer::<u8>::new(w.ring_bytes);
        let scratch = vec![0u8; HEADER + w.shape.size];
        (
            RtrbBytesProducer {
                producer,
                shape: w.shape,
                src: w.src.clone(),
                scratch: scratch.clone(),
            },
            RtrbBytesConsumer {
                consumer,
                shape: w.shape,
                scratch,
            },
        )
    }
}

impl RtrbBytesProducer {
    /// How many of records `seq..seq + max` fit whole in `free` bytes, and
    /// their bytes.
    #[inline(always)]
    fn fitting(&self, seq: u64, max: usize, free: usize) -> (usize, usize) {
        if !self.shape.mixed {
            let len = HEADER + self.shape.size;
            let records = max.min(free / len);
            return (records, records * len);
        }
        let (mut records, mut bytes) = (0, 0);
        while records < max {
            let len = HEADER + self.shape.len(seq + records as u64);
            if bytes + len > free {
                break;
            }
            (records, bytes) = (records + 1, bytes + len);
        }
        (records, bytes)
    }
}

impl Produce for RtrbBytesProducer {
    #[inline]
    fn produce(&mut self, seq: u64, max: usize) -> usize {
        let (records, bytes) = self.fitting(seq, max, self.producer.slots());
        if records == 0 {
            return 0;
        }
        let mut chunk = self
            .producer
            .write_chunk_uninit(bytes)
            .expect("free slots stay free");
        let now = monotonic_ns();
        let (a, b) = chunk.as_mut_slices();
        let mut off = 0;
        for i in 0..records {
            let seq = seq + i as u64;
            let size = self.shape.len(seq);
            let (len, src) = (HEADER + size, &self.src[..]);
            write_split(a, b, off, len, &mut self.scratch, |dst| {
                // SAFETY: `dst` is valid for `len` bytes: the header and
                // `size` bytes of payload.
                unsafe {
                    dst.cast::<RecordHeader>()
                        .write_unaligned(header(seq, size, now));
                    fill(dst.add(HEADER), size, seq, src);
                }
            });
            off += len;
        }
        // SAFETY: The loop above initialised `bytes` bytes, which is the
        // whole chunk.
        unsafe { chunk.commit_all() };
        records
    }
}

impl Consume for RtrbBytesConsumer {
    #[inline]
    fn consume(&mut self, seq: u64, max: usize, bad: &mut u64) -> usize {
        // The producer commits whole records, so what is there is whole
        // records; the walk below takes `max` of them at most.
        let chunk = match self.consumer.slots() {
            0 => return 0,
            n => self
                .consumer
                .read_chunk(n)
                .expect("written slots stay written"),
        };
        let (a, b) = chunk.as_slices();
        let end = chunk.len();
        let (mut off, mut n) = (0, 0u64);
        // Variable-length records: walk them by their headers.
        while off < end && n < max as u64 {
            let mut raw = [0u8; HEADER];
            match piece(a, b, off, HEADER) {
                Some(bytes) => raw.copy_from_slice(bytes),
                None => gather(a, b, off, &mut raw),
            }
            // SAFETY: `raw` holds `HEADER` bytes, and every bit pattern is
            // a `RecordHeader` (integers only).
            let h = unsafe { raw.as_ptr().cast::<RecordHeader>().read_unaligned() };
            let (start, payload_len) = (off + HEADER, h.len as usize);
            let payload = match piece(a, b, start, payload_len) {
                Some(payload) => payload,
                None => {
                    let payload = &mut self.scratch[..payload_len];
                    gather(a, b, start, payload);
                    payload
                }
            };
            let size = self.shape.len(seq + n);
            *bad += u64::from(!check(h.seq, payload_len, seq + n, payload, size));
            off = start + payload_len;
            n += 1;
        }
        chunk.commit(off);
        n as usize
    }
}

/// Writes one `len`-byte record at byte `off` of a write chunk split in `a`
/// and `b`: `put` writes it in place, or into `scratch` if it straddles the
/// end of the buffer (once per lap), from where it is copied in two parts.
#[inline(always)]
fn write_split(
    a: &mut [MaybeUninit<u8>],
    b: &mut [MaybeUninit<u8>],
    off: usize,
    len: usize,
    scratch: &mut [u8],
    put: impl FnOnce(*mut u8),
) {
    let in_b = off.checked_sub(a.len()).and_then(|o| b.get_mut(o..o + len));
    if let Some(dst) = a.get_mut(off..off + len).or(in_b) {
        put(dst.as_mut_ptr().cast());
        return;
    }
    let scratch = &mut scratch[..len];
    put(scratch.as_mut_ptr());
    let first = a.len() - off;
    let (head, tail) = scratch.split_at(first);
    let (a, b) = (&mut a[off..], &mut b[..tail.len()]);
    // SAFETY: Each destination is exactly as long as its source, and
    // `scratch` is not part of the ring buffer.
    unsafe {
        std::ptr::copy_nonoverlapping(head.as_ptr(), a.as_mut_ptr().cast(), head.len());
        std::ptr::copy_nonoverlapping(tail.as_ptr(), b.as_mut_ptr().cast(), tail.len());
    }
}

/// The `n` bytes from byte `at` of a read chunk split in `a` and `b`, if
/// they are in one piece.
#[inline(always)]
fn piece<'a>(a: &'a [u8], b: &'a [u8], at: usize, n: usize) -> Option<&'a [u8]> {
    a.get(at..at + n)
        .or_else(|| at.checked_sub(a.len()).and_then(|o| b.get(o..o + n)))
}

/// Copies `out.len()` bytes from byte `off` of a read chunk split in `a` and
/// `b` into `out`.
fn gather(a: &[u8], b: &[u8], off: usize, out: &mut [u8]) {
    let first = a.len().saturating_sub(off).min(out.len());
    let b_off = off + first - a.len().min(off + first);
    let (head, tail) = out.split_at_mut(first);
    head.copy_from_slice(&a[off..off + first]);
    tail.copy_from_slice(&b[b_off..b_off + tail.len()]);
}

/// Writes record `seq` of `N` payload bytes, stamped `now`, into `slot`.
#[inline(always)]
fn write_fixed<const N: usize>(slot: &mut MaybeUninit<Fixed<N>>, seq: u64, now: u64, src: &[u8]) {
    let p = slot.as_mut_ptr();
    // SAFETY: Both fields of `*p` are written through raw pointers to
    // them, in bounds of `slot`, without reading it.
    unsafe {
        addr_of_mut!((*p).header).write(header(seq, N, now));
        fill(addr_of_mut!((*p).payload).cast(), N, seq, src);
    }
}

/// Checks fixed-size record `r`, expected to be record `seq`.
#[inline(always)]
fn check_fixed<const N: usize>(r: &Fixed<N>, seq: u64) -> bool {
    check(r.header.seq, r.header.len as usize, seq, &r.payload, N)
}

/// `rtrb` typed: a `RingBuffer<Fixed<N>>` as many records long as fit in
/// the ring's bytes; the producer writes a batch of records in place into
/// one `write_chunk_uninit`, the consumer checks them in place in one
/// `read_chunk`.
struct RtrbTyped<const N: usize>;

/// The typed ring's producer half.
struct RtrbTypedProducer<const N: usize> {
    producer: rtrb::Producer<Fixed<N>>,
    src: Vec<u8>,
}

impl<const N: usize> Ring for RtrbTyped<N> {
    type Producer = RtrbTypedProducer<N>;
    type Consumer = rtrb::Consumer<Fixed<N>>;

    fn new(w: &Workload) -> (RtrbTypedProducer<N>, rtrb::Consumer<Fixed<N>>) {
        let slots = w.ring_bytes / std::mem::size_of::<Fixed<N>>();
        let (producer, consumer) = RingBuffer::new(slots);
        let src = w.src.clone();
        (RtrbTypedProducer { producer, src }, consumer)
    }
}

impl<const N: usize> Produce for RtrbTypedProducer<N> {
    #[inline]
    fn produce(&mut self, seq: u64, max: usize) -> usize {
        let mut chunk = match self.producer.write_chunk_uninit(max) {
            Ok(chunk) => chunk,
            Err(ChunkError::TooFewSlots(0)) => return 0,
            Err(ChunkError::TooFewSlots(free)) => self
                .producer
                .write_chunk_uninit(free)
                .expect("free slots stay free"),
        };
        let now = monotonic_ns();
        let (a, b) = chunk.as_mut_slices();
        for (i, slot) in a.iter_mut().chain(b).enumerate() {
            write_fixed(slot, seq + i as u64, now, &self.src);
        }
        let n = chunk.len();
        // SAFETY: The loop above initialised every slot of the chunk.
        unsafe { chunk.commit_all() };
        n
    }
}

impl<const N: usize> Consume for rtrb::Consumer<Fixed<N>> {
    #[inline]
    fn consume(&mut self, seq: u64, max: usize, bad: &mut u64) -> usize {
        let chunk = match self.read_chunk(max) {
            Ok(chunk) => chunk,
            Err(ChunkError::TooFewSlots(0)) => return 0,
            Err(ChunkError::TooFewSlots(n)) => {
                self.read_chunk(n).expect("written slots stay written")
            }
        };
        let (a, b) = chunk.as_slices();
        for (i, record) in a.iter().chain(b).enumerate() {
            *bad += u64::from(!check_fixed(record, seq + i as u64));
        }
        let n = chunk.len();
        chunk.commit_all();
        n
    }
}

/// Ring bytes per record of [`Crossbeam`]: the record's buffer, and the
/// buffer's pointer and crossbeam's stamp word in a slot of each queue.
fn crossbeam_ring_bytes(size: usize) -> usize {
    Buffer::size(HEADER + size) + 2 * queue_slot::<Buffer>()
}

/// Bytes of one `ArrayQueue` slot that carries a `T`: crossbeam's stamp
/// word and the value.
const fn queue_slot<T>() -> usize {
    std::mem::size_of::<usize>() + std::mem::size_of::<T>()
}

/// [`Buffer`]'s unit: 128 bytes (`crossbeam_utils::CachePadded`'s size on
/// x86-64), aligned as long.
#[derive(Clone, Copy, bytemuck::Zeroable, bytemuck::Pod)]
#[repr(C, align(128))]
struct Lines([u8; 128]);

/// A record buffer of [`Crossbeam`]: owned, sized for the largest record,
/// and aligned and rounded up to 128 bytes, so that the producer writing
/// one buffer and the consumer reading another never share a cache line
/// (or an adjacent-line prefetch pair).
struct Buffer(Box<[Lines]>);

impl Buffer {
    /// Bytes a buffer for records of up to `largest` bytes takes.
    fn size(largest: usize) -> usize {
        largest.next_multiple_of(std::mem::size_of::<Lines>())
    }

    fn new(largest: usize) -> Self {
        let lines = Self::size(largest) / std::mem::size_of::<Lines>();
        Self(vec![Lines([0; 128]); lines].into_boxed_slice())
    }

    fn bytes(&self) -> &[u8] {
        bytemuck::cast_slice(&self.0)
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        bytemuck::cast_slice_mut(&mut self.0)
    }
}

/// crossbeam as a user moving variable-length records would use it: owned
/// buffers, each sized for the largest record, go to the consumer through
/// one `ArrayQueue<Box<[u8]>>` and come back through a second one, so no
/// record is allocated or copied: the producer writes the header and the
/// payload into a free buffer, the consumer checks it in place. As many
/// buffers as fit in the ring's bytes with their slot in each queue.
struct Crossbeam;

/// The queues' producer half.
struct CrossbeamProducer {
    /// Written records, to the consumer.
    full: Arc<ArrayQueue<Buffer>>,
    /// Read records' buffers, back from the consumer.
    free: Arc<ArrayQueue<Buffer>>,
    shape: Shape,
    src: Vec<u8>,
}

/// The queues' consumer half.
struct CrossbeamConsumer {
    full: Arc<ArrayQueue<Buffer>>,
    free: Arc<ArrayQueue<Buffer>>,
    shape: Shape,
}

impl Ring for Crossbeam {
    type Producer = CrossbeamProducer;
    type Consumer = CrossbeamConsumer;

    fn new(w: &Workload) -> (CrossbeamProducer, CrossbeamConsumer) {
        // As many buffers as fit in the ring's bytes with their slot in each
        // queue (`crossbeam_ring_bytes`).
        let buffers = w.ring_bytes / crossbeam_ring_bytes(w.shape.size);
        let (full, free) = (ArrayQueue::new(buffers), ArrayQueue::new(buffers));
        for _ in 0..buffers {
            free.push(Buffer::new(HEADER + w.shape.size))
                .ok()
                .expect("a slot for every buffer");
        }
        let (full, free) = (Arc::new(full), Arc::new(free));
        (
            CrossbeamProducer {
                full: full.clone(),
                free: free.clone(),
                shape: w.shape,
                src: w.src.clone(),
            },
            CrossbeamConsumer {
                full,
                free,
                shape: w.shape,
            },
        )
    }
}

impl Produce for CrossbeamProducer {
    #[inline]
    fn produce(&mut self, seq: u64, max: usize) -> usize {
        // Read once a buffer is free, as the rings read it once they have
        // room: a producer spinning on a full queue pays no clock read.
        let mut now = None;
        for i in 0..max {
            let Some(mut buffer) = self.free.pop() else {
                return i;
            };
            let now = *now.get_or_insert_with(monotonic_ns);
            let seq = seq + i as u64;
            let size = self.shape.len(seq);
            let bytes = buffer.bytes_mut();
            assert!(HEADER + size <= bytes.len());
            let dst = bytes.as_mut_ptr();
            // SAFETY: The buffer holds the header and `size` bytes of
            // payload (checked above).
            unsafe {
                dst.cast::<RecordHeader>()
                    .write_unaligned(header(seq, size, now));
                fill(dst.add(HEADER), size, seq, &self.src);
            }
            // Never full: there are as many slots as buffers.
            self.full
                .push(buffer)
                .ok()
                .expect("a slot for every buffer");
        }
        max
    }
}

impl Consume for CrossbeamConsumer {
    #[inline]
    fn consume(&mut self, seq: u64, max: usize, bad: &mut u64) -> usize {
        for i in 0..max {
            let Some(buffer) = self.full.pop() else {
                return i;
            };
            let seq = seq + i as u64;
            let bytes = buffer.bytes();
            // SAFETY: Every buffer is longer than a header, and every bit
            // pattern is a `RecordHeader` (integers only).
            let h = unsafe { bytes.as_ptr().cast::<RecordHeader>().read_unaligned() };
            let len = h.len as usize;
            // A length past the buffer fails the check.
            let payload = bytes.get(HEADER..HEADER + len).unwrap_or_default();
            *bad += u64::from(!check(h.seq, len, seq, payload, self.shape.len(seq)));
            self.free
                .push(buffer)
                .ok()
                .expect("a slot for every buffer");
        }
        max
    }
}

/// crossbeam by value: an `ArrayQueue<Fixed<N>>` as many slots long as fit
/// in the ring's bytes, one record pushed and popped by value at a time
/// (copied in and out whole).
struct CrossbeamValue<const N: usize>;

/// The by-value queue's producer half.
struct CrossbeamValueProducer<const N: usize> {
    queue: Arc<ArrayQueue<Fixed<N>>>,
    src: Vec<u8>,
    /// The record the full queue gave back, pushed again on the next call.
    pending: Option<Fixed<N>>,
}

impl<const N: usize> Ring for CrossbeamValue<N> {
    type Producer = CrossbeamValueProducer<N>;
    type Consumer = Arc<ArrayQueue<Fixed<N>>>;

    fn new(w: &Workload) -> (CrossbeamValueProducer<N>, Arc<ArrayQueue<Fixed<N>>>) {
        let queue = Arc::new(ArrayQueue::new(w.ring_bytes / queue_slot::<Fixed<N>>()));
        let src = w.src.clone();
        (
            CrossbeamValueProducer {
                queue: queue.clone(),
                src,
                pending: None,
            },
            queue,
        )
    }
}

impl<const N: usize> Produce for CrossbeamValueProducer<N> {
    #[inline]
    fn produce(&mut self, seq: u64, max: usize) -> usize {
        let now = monotonic_ns();
        for i in 0..max {
            let record = self.pending.take().unwrap_or_else(|| {
                let mut record = MaybeUninit::<Fixed<N>>::uninit();
                write_fixed(&mut record, seq + i as u64, now, &self.src);
                // SAFETY: `write_fixed` initialised every field.
                unsafe { record.assume_init() }
            });
            if let Err(back) = self.queue.push(record) {
                self.pending = Some(back);
                return i;
            }
        }
        max
    }
}

impl<const N: usize> Consume for Arc<ArrayQueue<Fixed<N>>> {
    #[inline]
    fn consume(&mut self, seq: u64, max: usize, bad: &mut u64) -> usize {
        for i in 0..max {
            match self.pop() {
                Some(record) => *bad += u64::from(!check_fixed(&record, seq + i as u64)),
                None => return i,
            }
        }
        max
    }
}

/// memcpy: one thread copies each record's bytes from the source buffer
/// into a ring-sized destination, round and round.
fn memcpy(place: Placement, w: &Workload, _batch: usize) -> Option<Timing> {
    if place.pin {
        threads::pin(place.cpus.0);
    }
    let mut dst = vec![1u8; w.ring_bytes];
    dst.iter_mut().for_each(|b| *b = std::hint::black_box(0));
    let src = &w.src[..];
    let mut clock = Clock::new(w.warm);
    let mut off = 0;
    for seen in 0..w.total() {
        if seen == w.warm {
            clock.tick(seen);
        }
        let size = w.shape.len(seen);
        if off + size > w.ring_bytes {
            off = 0;
            std::hint::black_box(&mut dst);
        }
        // SAFETY: `off + size <= ring_bytes` (it wraps above) and `src`
        // holds `size` bytes (the largest); the buffers are distinct.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_mut_ptr().add(off), size) };
        off += size;
    }
    std::hint::black_box(&dst);
    Some(clock.stop(w.total(), 0))
}
