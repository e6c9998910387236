//! A ring, its producer and consumer cores, and what the harness knows
//! they must have done: every step of an input runs here, and every
//! promise of the shared API is checked after it.
//!
//! Three kinds of checks, by how much the harness can trust the ring:
//!
//! - Always (whatever anyone wrote): no access outside the ring's parts
//!   (the guard pages of [`Arena`](crate::arena::Arena)); every record the
//!   consumer returns lies inside the data area, inside what some
//!   published producer position covered, with a payload of at most
//!   `max_payload` bytes copied within the buffer it was given; its
//!   counters move by that record.
//! - While nothing but the producer core wrote the control page and the
//!   data area since it attached (the consumer page may hold anything):
//!   in drop-new mode the producer never writes a byte between the
//!   furthest consumer position it can have validated and its published
//!   position (against a shadow copy), never reports full when the
//!   consumer released everything, never writes the control page's
//!   identity line; in overwrite mode `overwrite_pos` only moves forward,
//!   within one data area of the head; its counters count what it did.
//! - While nothing but the two cores wrote anything (pristine): every read
//!   succeeds and returns exactly a record that was committed, with its
//!   payload; in drop-new mode no committed record is skipped; the
//!   producer wakes the consumer once per sleep and never refuses its
//!   position.

use std::collections::HashMap;
use std::mem::offset_of;

use crate::adapt;
use crate::arena::{
    Arena,
    GuardedBuf,
    Party, //
};
use crate::input::{
    At,
    ConsumerOp,
    ConsumerPoke,
    Fill,
    Kind,
    ProducerOp,
    ProducerPoke,
    Setup,
    Step, //
};
use rmemring_proto::consumer_core::{
    Checkpoint,
    ConsumerCore,
    OverwriteRead,
    ReadError,
    RecordMeta, //
};
use rmemring_proto::layout::{
    max_payload_for,
    record_stride,
    ConsumerPage,
    ControlPage,
    Geometry,
    CACHE_WRITE_COMBINE,
    FLAG_CACHE_SHIFT,
    FLAG_OVERWRITE,
    HEADER_SIZE,
    KIND_DATA,
    KIND_PAD,
    OFF_CONSUMER_POS,
    OFF_NEED_WAKEUP,
    OFF_OVERWRITE_POS,
    OFF_PRODUCER_POS,
    OFF_WAKE_SEQ,
    OFF_WAKE_TOKEN, //
};
use rmemring_proto::pattern;
use rmemring_proto::producer_core::{
    Overflow,
    ProducerCore,
    ProducerStats,
    ReserveError, //
};
use rmemring_proto::view::{
    header_word0,
    MemoryOrdering, //
};

/// The producer's counters in the control page, as `ProducerPoke::Counter`
/// numbers them.
const PRODUCER_COUNTERS: [usize; 6] = [
    offset_of!(ControlPage, records_produced),
    offset_of!(ControlPage, bytes_produced),
    offset_of!(ControlPage, records_dropped),
    offset_of!(ControlPage, records_overwritten),
    offset_of!(ControlPage, wakeups),
    offset_of!(ControlPage, consumer_errors),
];

/// The consumer's counters in its page, as `ConsumerPoke::Counter` numbers
/// them.
const CONSUMER_COUNTERS: [usize; 4] = [
    offset_of!(ConsumerPage, records_consumed),
    offset_of!(ConsumerPage, bytes_consumed),
    offset_of!(ConsumerPage, records_lost),
    offset_of!(ConsumerPage, sleeps),
];

/// The control page's identity line: only the producer that lays the ring
/// out writes it, never the producer core.
const IDENTITY_WORDS: usize = OFF_PRODUCER_POS / 8;

/// Checkpoints kept for `ConsumerOp::Rewind`.
const CHECKPOINTS: usize = 8;

/// A record committed while the ring was pristine.
#[derive(Clone, Copy, Debug)]
struct Committed {
    pos: u64,
    len: u32,
    tag: u16,
    timestamp_ns: u64,
    fill: Fill,
}

/// What the harness knows of the producer core since it attached, while
/// nobody else has written its memory.
struct ProducerModel {
    identity: [u64; IDENTITY_WORDS],
    /// The producer position as last published.
    published: u64,
    /// Drop-new mode: the furthest position the producer may have taken
    /// from the consumer page. It may have taken one behind this, never
    /// one beyond, so the bytes from here to `published` are the
    /// consumer's.
    released: u64,
    /// Every record since the last publication followed `publish_due`.
    batched: bool,
    /// The data area as last published.
    shadow: Vec<u8>,
    /// Overwrite mode: `overwrite_pos` as last seen.
    oldest: u64,
    base: ProducerStats,
    commits: u64,
    bytes: u64,
    drops: u64,
    last_woken: u32,
}

/// The consumer's state before a read, to check the read against.
struct Before {
    pos: u64,
    records: u64,
    bytes: u64,
    lost: u64,
}

/// How a drop-new read asks for its record.
#[derive(Clone, Copy)]
enum InPlace {
    Next,
    Cached,
    Fits(u16),
}

/// A ring and both cores, and what the harness knows about them.
pub struct World<'a> {
    arena: &'a Arena,
    buf: &'a mut GuardedBuf,
    size: u64,
    overflow: Overflow,
    ordering: MemoryOrdering,
    max_payload: u32,
    /// Publish whenever `publish_due` says so before a record.
    batched: bool,
    producer: ProducerCore,
    model: Option<ProducerModel>,
    consumer: Option<ConsumerCore>,
    checkpoints: Vec<Checkpoint>,
    /// Every value `producer_pos` has had since the consumer attached.
    published_seen: Vec<u64>,
    /// Nothing but the two cores has written the ring.
    pristine: bool,
    /// Nothing but producer cores has written the control page and the
    /// data area: every record there is whole.
    clean: bool,
    /// Records committed while pristine, by sequence number.
    committed: HashMap<u64, Committed>,
}

impl<'a> World<'a> {
    /// Lays a ring out in `arena` as `setup` says, then attaches both
    /// cores. `arena` must be the one for `setup`'s data size.
    pub fn new(arena: &'a Arena, buf: &'a mut GuardedBuf, setup: &Setup) -> Self {
        let size = arena.data_size() as u64;
        let max = max_payload_for(size);
        let max_payload = setup.max_payload.map_or(max, |m| max.min(m.into()));
        let overflow = if setup.overwrite {
            Overflow::OverwriteOldest
        } else {
            Overflow::DropNew
        };
        let mut flags = if setup.overwrite { FLAG_OVERWRITE } else { 0 };
        if setup.write_combine {
            flags |= CACHE_WRITE_COMBINE << FLAG_CACHE_SHIFT;
        }
        let ordering = MemoryOrdering::from_flags(flags);
        arena.clear();
        let page = 4096;
        let mut control = Geometry {
            region_size: 2 * page + size,
            page_size: page as u32,
            consumer_offset: page,
            data_offset: 2 * page,
            data_size: size,
        }
        .control_page(flags, 0);
        control.max_payload = max_payload;
        arena.set_ctrl(0, control);
        let start = setup.start & !7;
        arena.set_ctrl(OFF_PRODUCER_POS, start);
        arena.set_ctrl(OFF_OVERWRITE_POS, start);
        arena.set_cons(OFF_CONSUMER_POS, start);

        // SAFETY: The arena outlives the world, and so every core in it;
        // `size` is its data area's size.
        let view = unsafe { adapt::view(arena.parts(Party::Producer), size, ordering) };
        let mut world = Self {
            arena,
            buf,
            size,
            overflow,
            ordering,
            max_payload,
            batched: setup.batched,
            // Replaced below, once the setup has written the ring.
            producer: ProducerCore::attach(view, overflow, max_payload),
            model: None,
            consumer: None,
            checkpoints: Vec::new(),
            published_seen: Vec::new(),
            pristine: setup.memory.is_empty() && setup.page.is_empty(),
            clean: setup.memory.is_empty(),
            committed: HashMap::new(),
        };
        for poke in &setup.memory {
            world.poke_producer(*poke);
        }
        for poke in &setup.page {
            world.poke_consumer(*poke);
        }
        world.attach_producer();
        world.attach_consumer();
        world
    }

    /// Runs one step and checks what it must have kept.
    pub fn step(&mut self, step: Step) {
        match step {
            Step::Consumer(op) => self.consumer_op(op),
            Step::Producer(op) => {
                self.producer_op(op);
                self.check_producer();
            }
            Step::ProducerPoke(poke) => {
                self.pristine = false;
                self.clean = false;
                self.model = None;
                self.poke_producer(poke);
            }
            Step::ConsumerPoke(poke) => {
                self.pristine = false;
                self.poke_consumer(poke);
            }
        }
        let pp = self.producer_pos();
        if self.published_seen.last() != Some(&pp) {
            self.published_seen.push(pp);
        }
    }

    fn producer_pos(&self) -> u64 {
        self.arena.ctrl(OFF_PRODUCER_POS)
    }

    fn overwrite_pos(&self) -> u64 {
        self.arena.ctrl(OFF_OVERWRITE_POS)
    }

    fn consumer_pos(&self) -> u64 {
        self.arena.cons(OFF_CONSUMER_POS)
    }

    fn offset(&self, pos: u64) -> u64 {
        pos & (self.size - 1)
    }

    fn poke_producer(&mut self, poke: ProducerPoke) {
        let a = self.arena;
        match poke {
            ProducerPoke::ProducerPos(v) => {
                a.set_ctrl(OFF_PRODUCER_POS, v.apply(self.producer_pos()))
            }
            ProducerPoke::OverwritePos(v) => {
                a.set_ctrl(OFF_OVERWRITE_POS, v.apply(self.overwrite_pos()))
            }
            ProducerPoke::Counter(i, v) => a.set_ctrl(
                PRODUCER_COUNTERS[usize::from(i) % PRODUCER_COUNTERS.len()],
                v,
            ),
            ProducerPoke::WakeSeq(v) => a.set_ctrl(OFF_WAKE_SEQ, v),
            ProducerPoke::Word(i, v) => a.set_data(self.offset(u64::from(i) * 8), v),
            ProducerPoke::Header { at, len, kind } => {
                let pos = match at {
                    At::Consumer => self
                        .consumer
                        .as_ref()
                        .map_or_else(|| self.consumer_pos(), |c| c.position()),
                    At::Published => self.producer_pos(),
                    At::Word(n) => u64::from(n) * 8,
                };
                let off = self.offset(pos) & !7;
                let len = len.get(self.max_payload);
                let (len, kind) = match kind {
                    Kind::Data => (len, KIND_DATA),
                    Kind::Pad => (len, KIND_PAD),
                    Kind::PadToEnd => ((self.size - off) as u32, KIND_PAD),
                    Kind::Other(k) => (len, k),
                };
                a.set_data(off, header_word0(len, kind, 0));
            }
        }
    }

    fn poke_consumer(&mut self, poke: ConsumerPoke) {
        let a = self.arena;
        match poke {
            ConsumerPoke::ConsumerPos(v) => {
                a.set_cons(OFF_CONSUMER_POS, v.apply(self.consumer_pos()))
            }
            ConsumerPoke::NeedWakeup(v) => a.set_cons(OFF_NEED_WAKEUP, v),
            ConsumerPoke::WakeToken(v) => a.set_cons(OFF_WAKE_TOKEN, v),
            ConsumerPoke::Counter(i, v) => a.set_cons(
                CONSUMER_COUNTERS[usize::from(i) % CONSUMER_COUNTERS.len()],
                v,
            ),
        }
    }
}

/// The producer side.
impl World<'_> {
    /// A new producer core takes over the ring as it is; from now on the
    /// harness checks it against what it found.
    fn attach_producer(&mut self) {
        let size = self.size;
        // What the producer core adopts at attach, by its documented rules:
        // an aligned-down head, and a consumer position between a data area
        // behind it and itself (or nothing released at all).
        let head = self.producer_pos() & !7;
        let consumer = self.consumer_pos();
        let released = if head.wrapping_sub(consumer) <= size {
            consumer
        } else {
            head.wrapping_sub(size)
        };
        // SAFETY: As in `new`.
        let view = unsafe { adapt::view(self.arena.parts(Party::Producer), size, self.ordering) };
        self.producer = ProducerCore::attach(view, self.overflow, self.max_payload);
        let mut identity = [0; IDENTITY_WORDS];
        for (i, word) in identity.iter_mut().enumerate() {
            *word = self.arena.ctrl(8 * i);
        }
        self.model = Some(ProducerModel {
            identity,
            published: head,
            released,
            batched: true,
            shadow: self.arena.data(),
            oldest: self.overwrite_pos(),
            base: self.producer.stats(),
            commits: 0,
            bytes: 0,
            drops: 0,
            last_woken: 0,
        });
        // A producer continues the sequence from the published counters;
        // what was committed and not published is gone.
        let next = self.producer.next_seq();
        self.committed.retain(|&seq, _| seq < next);
        if self.pristine {
            assert_eq!(
                self.producer.stats().consumer_errors,
                0,
                "the producer refused a fresh ring's consumer position"
            );
        }
    }

    /// The producer's head, if the harness knows it.
    fn producer_head(&self) -> Option<u64> {
        let m = self.model.as_ref()?;
        Some(m.published.wrapping_add(self.producer.unpublished()))
    }

    /// Before a step that may read the consumer page: follows the furthest
    /// consumer position the producer can validate (drop-new mode). It
    /// takes a position from the one it holds up to the published one (a
    /// consumer cannot release what it could not see); the one it holds is
    /// never beyond `released`, so a position from `released` to the
    /// published one is the new furthest.
    fn note_consumer_pos(&mut self) {
        let pos = self.consumer_pos();
        let Some(m) = self.model.as_mut() else {
            return;
        };
        if pos.wrapping_sub(m.released) <= m.published.wrapping_sub(m.released) {
            m.released = pos;
        }
    }

    fn producer_op(&mut self, op: ProducerOp) {
        match op {
            ProducerOp::Record {
                len,
                fill,
                commit,
                tag,
                timestamp,
            } => self.record(
                len.get(self.max_payload),
                fill,
                commit,
                tag,
                timestamp.into(),
            ),
            ProducerOp::Drop => {
                self.producer.drop_record();
                if let Some(m) = &mut self.model {
                    m.drops += 1;
                }
            }
            ProducerOp::Publish => self.publish(),
            ProducerOp::RefreshConsumer => {
                self.note_consumer_pos();
                let pos = self.consumer_pos();
                let valid = self.producer.refresh_consumer();
                let Some(published) = self.model.as_ref().map(|m| m.published) else {
                    return;
                };
                let behind = published.wrapping_sub(pos);
                match self.overflow {
                    Overflow::DropNew => {
                        assert!(
                            behind <= self.size || !valid,
                            "took consumer position {pos:#x}, published {published:#x}"
                        );
                        assert!(
                            pos != published || valid,
                            "refused consumer position {pos:#x} at the published one"
                        );
                    }
                    Overflow::OverwriteOldest => assert_eq!(
                        valid,
                        behind <= i64::MAX as u64,
                        "consumer position {pos:#x}, published {published:#x}"
                    ),
                }
            }
            ProducerOp::BumpWakeSeq => {
                let before: u32 = self.arena.ctrl(OFF_WAKE_SEQ);
                self.producer.bump_wake_seq();
                let after: u32 = self.arena.ctrl(OFF_WAKE_SEQ);
                assert_eq!(after, before.wrapping_add(1));
            }
            ProducerOp::Reattach => self.attach_producer(),
        }
    }

    fn record(&mut self, len: u32, fill: Fill, commit: bool, tag: u16, timestamp_ns: u64) {
        if self.producer.publish_due(len) {
            if self.batched {
                self.publish();
            } else if let Some(m) = &mut self.model {
                m.batched = false;
            }
        }
        let head = self.producer_head();
        let published = self.model.as_ref().map(|m| m.published);
        self.note_consumer_pos();
        let consumer = self.consumer_pos();
        let slot = match self.producer.reserve(len) {
            Ok(slot) => slot,
            Err(ReserveError::TooLarge) => {
                assert!(len > self.max_payload, "refused {len} bytes as too large");
                return;
            }
            Err(ReserveError::Full) => {
                assert!(
                    len <= self.max_payload,
                    "{len} bytes are too large, not full"
                );
                assert_eq!(
                    self.overflow,
                    Overflow::DropNew,
                    "overwrite mode is never full"
                );
                assert!(
                    head.is_none_or(|head| head != consumer || published != Some(head)),
                    "full although the consumer released everything"
                );
                return;
            }
        };
        assert!(len <= self.max_payload, "took {len} bytes");
        assert_eq!(slot.len(), len);
        let (size, offset, stride) = (self.size, slot.offset(), record_stride(len));
        assert!(
            offset.is_multiple_of(8) && offset + stride <= size,
            "slot at {offset:#x} of {stride} bytes"
        );
        // Where the record goes: at the head, or at the start of the area
        // after a pad to its end.
        let pos = head.map(|head| {
            if offset == self.offset(head) {
                head
            } else {
                assert_eq!(offset, 0, "a slot neither at the head nor after a pad");
                head.wrapping_add(size - self.offset(head))
            }
        });
        if let (Some(pos), Some(m), Overflow::DropNew) = (pos, &self.model, self.overflow) {
            assert!(
                pos.wrapping_add(stride).wrapping_sub(m.released) <= size,
                "a slot at {pos:#x} of {stride} bytes overwrites what a consumer at {:#x} \
                 has not released",
                m.released
            );
        }

        let seq = self.producer.next_seq();
        match fill {
            Fill::Pattern => self.producer.write_pattern(&slot, seq, false),
            Fill::FirstWord => self.producer.write_pattern(&slot, seq, true),
            Fill::Bytes(byte) if self.overflow == Overflow::DropNew => {
                let ptr = self.producer.payload_ptr(&slot);
                let data = self.arena.parts(Party::Producer).data.as_ptr();
                assert_eq!(
                    ptr as usize - data as usize,
                    (offset + HEADER_SIZE) as usize
                );
                // SAFETY: `reserve` handed out `len` writable payload bytes
                // at `ptr` (checked to lie in the slot just above); nothing
                // reads them before the commit.
                unsafe { ptr.write_bytes(byte, len as usize) };
            }
            Fill::Bytes(byte) | Fill::Write(byte) => {
                self.producer
                    .write_payload(&slot, &vec![byte; len as usize]);
            }
            Fill::Nothing => {}
        }
        if !commit {
            drop(slot);
            return;
        }
        self.producer.commit(slot, tag, timestamp_ns);
        if let Some(m) = &mut self.model {
            m.commits += 1;
            m.bytes += u64::from(len);
        }
        if let (true, Some(pos)) = (self.pristine, pos) {
            let record = Committed {
                pos,
                len,
                tag,
                timestamp_ns,
                fill,
            };
            self.committed.insert(seq, record);
        }
    }

    fn publish(&mut self) {
        let token: u32 = self.arena.cons(OFF_NEED_WAKEUP);
        let head = self.producer_head();
        let woke = self.producer.publish();
        let (Some(head), Some(_)) = (head, &self.model) else {
            return;
        };
        // `publish` writes no data: the step before checked the bytes it
        // publishes over the old shadow, and the new shadow takes them.
        let pp = self.producer_pos();
        let m = self.model.as_mut().expect("checked above");
        if head != m.published {
            assert_eq!(pp, head, "published {pp:#x}, head {head:#x}");
            m.published = head;
        }
        // One wake-up per sleep attempt, and none missed: the consumer
        // stores a fresh non-zero token each time. None for a request armed
        // with everything published released: that consumer sleeps until
        // the next publication.
        let consumer = self.consumer_pos();
        let m = self.model.as_mut().expect("checked above");
        let wanted = token != 0 && token != m.last_woken && consumer != m.published;
        assert_eq!(
            woke, wanted,
            "need_wakeup {token}, last woken {}",
            m.last_woken
        );
        if woke {
            m.last_woken = token;
        }
        m.batched = true;
        let stats = self.producer.stats();
        let a = self.arena;
        let counters = [
            stats.records,
            stats.bytes,
            stats.dropped,
            stats.overwritten,
            stats.wakeups,
            stats.consumer_errors,
        ];
        for (off, value) in PRODUCER_COUNTERS.iter().zip(counters) {
            assert_eq!(a.ctrl::<u64>(*off), value, "counter at {off}");
        }
        a.with_data(|data| m.shadow.copy_from_slice(data));
    }

    /// The producer's promises while nobody else wrote its memory.
    fn check_producer(&mut self) {
        let Some(head) = self.producer_head() else {
            return;
        };
        let (size, a) = (self.size, self.arena);
        let m = self.model.as_mut().expect("a head implies a model");
        for (i, word) in m.identity.iter().enumerate() {
            assert_eq!(a.ctrl::<u64>(8 * i), *word, "the identity line changed");
        }
        match self.overflow {
            Overflow::DropNew => {
                let held = m.published.wrapping_sub(m.released);
                assert!(
                    held <= size,
                    "the model lost the consumer: released {:#x}, published {:#x}, head {head:#x}",
                    m.released,
                    m.published
                );
                // The held bytes, in at most two pieces around the end.
                let start = (m.released & (size - 1)) as usize;
                let first = held.min(size - start as u64) as usize;
                let pieces = [(start, first), (0, held as usize - first)];
                a.with_data(|data| {
                    for (off, len) in pieces {
                        let range = off..off + len;
                        if data[range.clone()] != m.shadow[range.clone()] {
                            let wrote = range.clone().find(|&i| data[i] != m.shadow[i]);
                            panic!(
                                "the producer wrote offset {wrote:#x?}, between the released \
                                 {:#x} and the published {:#x}",
                                m.released, m.published
                            );
                        }
                    }
                });
            }
            Overflow::OverwriteOldest => {
                // Readers follow `overwrite_pos` to the oldest intact record,
                // so it always names one: never ahead of the head, at most a
                // data area behind it, only moving forward.
                let oldest = a.ctrl::<u64>(OFF_OVERWRITE_POS);
                assert!(
                    head.wrapping_sub(oldest) <= size && oldest.is_multiple_of(8),
                    "overwrite_pos {oldest:#x} for head {head:#x}"
                );
                assert!(
                    oldest.wrapping_sub(m.oldest) <= size,
                    "overwrite_pos went back from {:#x} to {oldest:#x}",
                    m.oldest
                );
                m.oldest = oldest;
                // A producer that publishes when `publish_due` says so never
                // retires records of its own batch (unless it found records
                // that are not whole, which it gives up on at once).
                assert!(
                    !(m.batched && self.clean) || m.published.wrapping_sub(oldest) <= size,
                    "retired up to {oldest:#x}, beyond the published {:#x}",
                    m.published
                );
            }
        }
        let stats = self.producer.stats();
        assert_eq!(stats.records, m.base.records.wrapping_add(m.commits));
        assert_eq!(stats.bytes, m.base.bytes.wrapping_add(m.bytes));
        assert_eq!(stats.dropped, m.base.dropped.wrapping_add(m.drops));
        if self.pristine {
            assert_eq!(
                stats.consumer_errors, m.base.consumer_errors,
                "the producer refused an honest consumer's position"
            );
            if self.overflow == Overflow::OverwriteOldest {
                self.check_chain();
            }
        }
    }

    /// Overwrite mode, pristine: the records from the oldest to the
    /// published position are whole, valid records, as readers need.
    fn check_chain(&self) {
        let m = self.model.as_ref().expect("checked by the caller");
        let (size, published) = (self.size, m.published);
        if published.wrapping_sub(m.oldest) > size {
            // The oldest is ahead: retired before the records replacing
            // them were published.
            return;
        }
        self.arena.with_data(|data| self.walk_chain(data));
    }

    fn walk_chain(&self, data: &[u8]) {
        let m = self.model.as_ref().expect("checked by the caller");
        let (size, published) = (self.size, m.published);
        let mut pos = m.oldest;
        while pos != published {
            let off = self.offset(pos) as usize;
            let word = u64::from_le_bytes(data[off..off + 8].try_into().expect("8 bytes"));
            let (len, kind) = (word as u32, (word >> 32) as u16);
            let stride = match kind {
                KIND_PAD => {
                    assert_eq!(u64::from(len), size - off as u64, "a pad at {pos:#x}");
                    u64::from(len)
                }
                KIND_DATA => {
                    assert!(len <= self.max_payload, "length {len} at {pos:#x}");
                    record_stride(len)
                }
                other => panic!("kind {other} at {pos:#x}"),
            };
            assert!(
                stride <= published.wrapping_sub(pos) && stride <= size - off as u64,
                "the record at {pos:#x} runs past the published {published:#x}"
            );
            pos = pos.wrapping_add(stride);
        }
    }
}

/// The consumer side.
impl World<'_> {
    fn attach_consumer(&mut self) {
        // SAFETY: As for the producer's view in `new`.
        let view =
            unsafe { adapt::view(self.arena.parts(Party::Consumer), self.size, self.ordering) };
        let core = ConsumerCore::attach(view, self.overflow, self.max_payload);
        if let Err(e) = &core {
            assert!(!self.pristine, "attaching to a well-formed ring: {e}");
        }
        self.consumer = core.ok();
        self.checkpoints.clear();
        self.published_seen = vec![self.producer_pos()];
    }

    fn consumer_op(&mut self, op: ConsumerOp) {
        let drop_new = self.overflow == Overflow::DropNew;
        let Some(core) = self.consumer.as_mut() else {
            if op == ConsumerOp::Reattach {
                self.attach_consumer();
            }
            return;
        };
        match op {
            ConsumerOp::Next => {
                self.read_one();
            }
            ConsumerOp::NextCached if drop_new => {
                self.read_in_place(InPlace::Cached);
            }
            ConsumerOp::NextIf(room) if drop_new => {
                self.read_in_place(InPlace::Fits(room));
            }
            ConsumerOp::ReadInto(len) if !drop_new => {
                self.read_overwrite(len.get(self.max_payload) as usize);
            }
            ConsumerOp::NextCached | ConsumerOp::NextIf(_) | ConsumerOp::ReadInto(_) => {
                self.read_one();
            }
            ConsumerOp::Drain => {
                // Enough for every record of the largest ring.
                for _ in 0..self.size / HEADER_SIZE + 1 {
                    if !self.read_one() {
                        break;
                    }
                }
                self.release();
            }
            ConsumerOp::Release => self.release(),
            ConsumerOp::RefreshHead => {
                let result = core.refresh_head();
                let (pos, pp) = (core.position(), self.arena.ctrl::<u64>(OFF_PRODUCER_POS));
                match result {
                    Ok(backlog) => {
                        assert_eq!(backlog, pp.wrapping_sub(pos));
                        assert_eq!(core.cached_backlog(), backlog);
                        assert!(
                            pp.is_multiple_of(8) && pos.is_multiple_of(8),
                            "positions {pos:#x}, {pp:#x}"
                        );
                        assert!(!drop_new || backlog <= self.size, "backlog {backlog}");
                    }
                    Err(e) => self.read_failed(e),
                }
            }
            ConsumerOp::PrepareSleep(finish) => {
                let sleep = core.prepare_sleep();
                let (pos, pp) = (core.position(), self.arena.ctrl::<u64>(OFF_PRODUCER_POS));
                let need: u32 = self.arena.cons(OFF_NEED_WAKEUP);
                if sleep {
                    assert_eq!(pp, pos, "asleep with records to read");
                    let token: u32 = self.arena.cons(OFF_WAKE_TOKEN);
                    assert!(
                        need != 0 && need == token,
                        "need_wakeup {need}, token {token}"
                    );
                    if finish {
                        core.finish_sleep();
                        assert_eq!(self.arena.cons::<u32>(OFF_NEED_WAKEUP), 0);
                    }
                } else {
                    assert_ne!(pp, pos, "awake with nothing to read");
                    assert_eq!(need, 0, "a withdrawn request left need_wakeup set");
                }
                self.check_released();
            }
            ConsumerOp::PrepareSleepUntilPublished(finish) => {
                // It sleeps until the producer position moves from the one
                // the consumer last loaded.
                let loaded = core.position().wrapping_add(core.cached_backlog());
                let sleep = core.prepare_sleep_until_published();
                let pp = self.arena.ctrl::<u64>(OFF_PRODUCER_POS);
                let need: u32 = self.arena.cons(OFF_NEED_WAKEUP);
                if sleep {
                    assert_eq!(pp, loaded, "asleep though the producer moved");
                    assert_ne!(need, 0);
                    if finish {
                        core.finish_sleep();
                    }
                } else {
                    assert_ne!(pp, loaded, "awake though the producer did not move");
                    assert_eq!(need, 0, "a withdrawn request left need_wakeup set");
                }
                self.check_released();
            }
            ConsumerOp::SkipToProducer => match core.skip_to_producer() {
                Ok(()) => {
                    let pos = core.position();
                    assert_eq!(pos, self.producer_pos());
                    self.check_released();
                }
                Err(e) => self.read_failed(e),
            },
            ConsumerOp::Checkpoint => {
                if self.checkpoints.len() == CHECKPOINTS {
                    self.checkpoints.remove(0);
                }
                self.checkpoints.push(core.checkpoint());
            }
            ConsumerOp::Rewind(back) => {
                let n = self.checkpoints.len();
                if n == 0 {
                    return;
                }
                let checkpoint = self.checkpoints[n - 1 - usize::from(back) % n];
                let unreleased = core.unreleased();
                core.rewind(checkpoint);
                assert!(core.unreleased() <= unreleased, "rewound past the release");
            }
            ConsumerOp::WakeSeq => {
                assert_eq!(core.wake_seq(), self.arena.ctrl::<u32>(OFF_WAKE_SEQ));
            }
            ConsumerOp::Reattach => self.attach_consumer(),
        }
    }

    /// Reads one record as the mode's readers do; whether there was one.
    fn read_one(&mut self) -> bool {
        match self.overflow {
            Overflow::DropNew => self.read_in_place(InPlace::Next),
            Overflow::OverwriteOldest => self.read_overwrite(self.max_payload as usize),
        }
    }

    fn before(&self) -> Before {
        let core = self.consumer.as_ref().expect("a read needs a consumer");
        let stats = core.stats();
        Before {
            pos: core.position(),
            records: stats.records,
            bytes: stats.bytes,
            lost: stats.lost,
        }
    }

    fn read_in_place(&mut self, how: InPlace) -> bool {
        let before = self.before();
        let core = self.consumer.as_mut().expect("checked by the caller");
        let result = match how {
            InPlace::Next => core.next_record(),
            InPlace::Cached => core.next_cached_record(),
            InPlace::Fits(room) => core.next_record_if(|m| record_stride(m.len) <= u64::from(room)),
        };
        let meta = match result {
            Ok(Some(meta)) => meta,
            Ok(None) => {
                let declined = matches!(how, InPlace::Fits(_)) && core.cached_backlog() != 0;
                assert!(
                    declined || core.cached_backlog() == 0,
                    "no record, and {} bytes to read",
                    core.cached_backlog()
                );
                assert_eq!(core.stats().records, before.records);
                return false;
            }
            Err(e) => {
                self.read_failed(e);
                return false;
            }
        };
        if let InPlace::Fits(room) = how {
            assert!(record_stride(meta.len) <= u64::from(room));
        }
        let stride = record_stride(meta.len);
        assert_eq!(core.position(), meta.pos.wrapping_add(stride));
        assert!(
            meta.pos.wrapping_sub(before.pos) < self.size,
            "skipped from {:#x} to {:#x}",
            before.pos,
            meta.pos
        );
        self.check_bounds(&meta);
        // Copy the payload as a zero-copy reader would read it: any byte
        // outside the data area faults on a guard page.
        let len = meta.len as usize;
        let dst = self.buf.tail(len);
        let core = self.consumer.as_ref().expect("checked by the caller");
        // SAFETY: `check_bounds` proved the record's stride lies inside the
        // data area from its 8-aligned offset, and `dst` holds `len` bytes
        // of the harness's own memory.
        unsafe {
            core.view()
                .copy_payload_out(meta.offset, dst.as_mut_ptr(), len)
        };
        let payload = dst.to_vec();
        self.check_record(&meta, &before, &payload);
        true
    }

    fn read_overwrite(&mut self, buf_len: usize) -> bool {
        let before = self.before();
        let core = self.consumer.as_mut().expect("checked by the caller");
        // The buffer ends at a guard page: a copy past its length faults.
        let dst = self.buf.tail(buf_len);
        let buf_len = dst.len();
        let meta = match adapt::read_overwrite(core, dst) {
            Ok(OverwriteRead::Record(meta)) => meta,
            Ok(OverwriteRead::Empty) => {
                assert_eq!(core.stats().records, before.records);
                let (pos, pp) = (core.position(), self.arena.ctrl::<u64>(OFF_PRODUCER_POS));
                assert_eq!(
                    pos,
                    pp,
                    "empty with {:#x} bytes published",
                    pp.wrapping_sub(pos)
                );
                return false;
            }
            Ok(OverwriteRead::Lapped) => {
                assert_eq!(core.stats().records, before.records);
                return false;
            }
            Err(ReadError::BufferTooSmall { needed }) => {
                assert!(needed as usize > buf_len, "{needed} bytes fit in {buf_len}");
                assert!(needed <= self.max_payload, "a {needed}-byte record");
                return false;
            }
            Err(e) => {
                self.read_failed(e);
                return false;
            }
        };
        let len = meta.len as usize;
        assert!(
            len <= buf_len,
            "a {len}-byte record in a {buf_len}-byte buffer"
        );
        let payload = self.buf.tail(buf_len)[..len].to_vec();
        self.check_bounds(&meta);
        // Not overwritten while it was read (here nothing runs meanwhile).
        let oldest = self.overwrite_pos().wrapping_sub(meta.pos);
        assert!(
            oldest == 0 || oldest > i64::MAX as u64,
            "returned {:#x}, which the producer retired (overwrite_pos {:#x})",
            meta.pos,
            self.overwrite_pos()
        );
        // And what was copied is what is there.
        let start = (meta.offset + HEADER_SIZE) as usize;
        let intact = self
            .arena
            .with_data(|data| payload == data[start..start + len]);
        assert!(intact, "a torn copy");
        self.check_record(&meta, &before, &payload);
        true
    }

    /// Where a returned record may lie, whatever the ring holds.
    fn check_bounds(&self, meta: &RecordMeta) {
        let size = self.size;
        let stride = record_stride(meta.len);
        assert!(meta.len <= self.max_payload, "a {}-byte payload", meta.len);
        assert_eq!(meta.offset, self.offset(meta.pos));
        assert!(
            meta.offset.is_multiple_of(8) && meta.offset + stride <= size,
            "a record at offset {:#x} of {stride} bytes",
            meta.offset
        );
        // Inside what one producer position that the consumer may have
        // loaded covered, and no more than a data area before it.
        assert!(
            self.published_seen.iter().any(|&pp| {
                let ahead = pp.wrapping_sub(meta.pos);
                stride <= ahead && ahead <= size
            }),
            "a record at {:#x} of {stride} bytes, not published (positions {:x?})",
            meta.pos,
            self.published_seen
        );
    }

    /// The consumer's counters after a read, and in a pristine ring, the
    /// record against what was committed.
    fn check_record(&mut self, meta: &RecordMeta, before: &Before, payload: &[u8]) {
        let core = self.consumer.as_ref().expect("checked by the caller");
        let stats = core.stats();
        assert_eq!(stats.records, before.records.wrapping_add(1));
        assert_eq!(stats.bytes, before.bytes.wrapping_add(meta.len.into()));
        assert_eq!(stats.lost, before.lost.wrapping_add(meta.lost_before));
        assert_eq!(core.expected_seq(), meta.seq.wrapping_add(1));
        if !self.pristine {
            return;
        }
        let Some(c) = self.committed.get(&meta.seq) else {
            panic!(
                "read record {} at {:#x}, never committed",
                meta.seq, meta.pos
            );
        };
        assert_eq!(
            (c.pos, c.len, c.tag, c.timestamp_ns),
            (meta.pos, meta.len, meta.tag, meta.timestamp_ns),
            "record {}",
            meta.seq
        );
        let intact = match c.fill {
            Fill::Pattern => pattern::verify(meta.seq, payload),
            Fill::FirstWord => {
                let word = pattern::word(meta.seq, 0).to_le_bytes();
                payload[..payload.len().min(8)] == word[..payload.len().min(8)]
            }
            Fill::Bytes(b) | Fill::Write(b) => payload.iter().all(|&x| x == b),
            Fill::Nothing => true,
        };
        assert!(intact, "record {}'s payload", meta.seq);
        if self.overflow == Overflow::DropNew {
            // Drop-new mode loses nothing the producer committed: records
            // lie back to back, and a reader skips only a pad to the end.
            let to_end = self.size - self.offset(before.pos);
            assert!(
                meta.pos == before.pos
                    || (to_end < self.size && meta.pos == before.pos.wrapping_add(to_end)),
                "went from {:#x} to the record at {:#x}",
                before.pos,
                meta.pos
            );
        }
    }

    /// A read that failed; only a ring someone else wrote may fail one.
    fn read_failed(&self, e: ReadError) {
        // The message renders, whatever the values.
        assert!(!e.to_string().is_empty());
        assert!(!self.pristine, "a well-formed ring: {e}");
    }

    fn release(&mut self) {
        let core = self.consumer.as_mut().expect("checked by the caller");
        core.release();
        assert_eq!(core.unreleased(), 0);
        self.check_released();
    }

    /// After a release: the consumer page says what the consumer did.
    fn check_released(&self) {
        let core = self.consumer.as_ref().expect("checked by the caller");
        let stats = core.stats();
        let a = self.arena;
        let counters = [stats.records, stats.bytes, stats.lost, stats.sleeps];
        for (off, value) in CONSUMER_COUNTERS.iter().zip(counters) {
            assert_eq!(a.cons::<u64>(*off), value, "counter at {off}");
        }
        if self.pristine {
            assert_eq!(self.consumer_pos(), core.position());
        }
    }
}
