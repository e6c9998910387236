//! What a fuzz input decodes to (with `arbitrary`): the ring's shape and
//! first contents, then a sequence of steps by the producer, the consumer
//! and hostile writers.
//!
//! Every type here also has an [`Encode`] that writes the bytes
//! `arbitrary` decodes back to the same value, so the seeds of the checked-in
//! corpus are written from readable descriptions (`seeds.rs`).

use arbitrary::Arbitrary;

/// The ring before either side attaches.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct Setup {
    /// The data area is 4, 8 or 16 KiB (`4096 << (size_shift % 3)`).
    pub size_shift: u8,
    /// Overwrite mode instead of drop-new.
    pub overwrite: bool,
    /// The control page says write-combining memory, so both cores add
    /// the barriers of weakly ordered memory (the memory is write-back
    /// all the same).
    pub write_combine: bool,
    /// The producer publishes whenever `publish_due` says so before a
    /// record, as the user-space `Producer` does.
    pub batched: bool,
    /// The ring's `max_payload` if smaller than the largest allowed one.
    pub max_payload: Option<u16>,
    /// Where every position word starts (rounded down to a multiple of 8).
    pub start: u64,
    /// What a previous producer (or a corruption) left in the control page
    /// and the data area.
    pub memory: Vec<ProducerPoke>,
    /// What a previous consumer (or anyone who could write it) left in the
    /// consumer page.
    pub page: Vec<ConsumerPoke>,
}

/// A value for a position word: relative to its current value, or any.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value {
    /// The current value plus this many bytes (so possibly misaligned).
    Rel(i32),
    /// This value.
    Raw(u64),
}

impl Value {
    /// The new value of a word that holds `current`.
    pub fn apply(self, current: u64) -> u64 {
        match self {
            Value::Rel(delta) => current.wrapping_add(i64::from(delta) as u64),
            Value::Raw(value) => value,
        }
    }
}

/// A payload length.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Len {
    /// A small length.
    Small(u8),
    /// Any 16-bit length (often above `max_payload`).
    Any(u16),
    /// Exactly the ring's `max_payload`.
    Max,
    /// A little above the ring's `max_payload`.
    AboveMax(u8),
    /// Any 32-bit length.
    Huge(u32),
}

impl Len {
    /// The length in a ring whose largest payload is `max`.
    pub fn get(self, max: u32) -> u32 {
        match self {
            Len::Small(n) => n.into(),
            Len::Any(n) => n.into(),
            Len::Max => max,
            Len::AboveMax(n) => max.saturating_add(1 + u32::from(n)),
            Len::Huge(n) => n,
        }
    }
}

/// A record header's kind.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `KIND_DATA`.
    Data,
    /// `KIND_PAD`.
    Pad,
    /// `KIND_PAD` with the length it must have: to the end of the area.
    PadToEnd,
    /// Anything.
    Other(u16),
}

/// Where in the data area a hostile header goes.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum At {
    /// At the consumer's next record.
    Consumer,
    /// At the published producer position.
    Published,
    /// At word `n` of the data area (modulo its size).
    Word(u16),
}

/// A write into the producer's memory by someone who is not the producer
/// core: a hostile or buggy producer, as the consumer must expect.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProducerPoke {
    /// `ControlPage::producer_pos`.
    ProducerPos(Value),
    /// `ControlPage::overwrite_pos`.
    OverwritePos(Value),
    /// One of the producer's counters (`records_produced`.., by index).
    Counter(u8, u64),
    /// `ControlPage::wake_seq`.
    WakeSeq(u32),
    /// A data-area word.
    Word(u16, u64),
    /// A record header's first word.
    Header {
        /// Where.
        at: At,
        /// Its length field.
        len: Len,
        /// Its kind field.
        kind: Kind,
    },
}

/// A write into the consumer page by someone who is not the consumer core:
/// user space, as the kernel producer (and the kernel's `read()`) must
/// expect.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsumerPoke {
    /// `ConsumerPage::consumer_pos`.
    ConsumerPos(Value),
    /// `ConsumerPage::need_wakeup`.
    NeedWakeup(u32),
    /// `ConsumerPage::wake_token`.
    WakeToken(u32),
    /// One of the consumer's counters (`records_consumed`.., by index).
    Counter(u8, u64),
}

/// How a reserved record's payload is written.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fill {
    /// `ProducerCore::write_pattern`, every word.
    Pattern,
    /// `ProducerCore::write_pattern`, the first word only (as the kernel
    /// producer's cheap mode does).
    FirstWord,
    /// This byte, through `ProducerCore::payload_ptr` (drop-new mode;
    /// `write_payload` in overwrite mode, where only atomic stores may
    /// write what a lapped reader may be copying).
    Bytes(u8),
    /// This byte, through `ProducerCore::write_payload`.
    Write(u8),
    /// Nothing: the payload is what the area held.
    Nothing,
}

/// A step of the producer core.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProducerOp {
    /// `reserve`, then write the payload and `commit` (or drop the slot).
    Record {
        /// Payload length.
        len: Len,
        /// Payload contents.
        fill: Fill,
        /// Commit the record, or drop the slot unused.
        commit: bool,
        /// The record's tag.
        tag: u16,
        /// The record's timestamp.
        timestamp: u32,
    },
    /// `drop_record`.
    Drop,
    /// `publish`.
    Publish,
    /// `refresh_consumer`.
    RefreshConsumer,
    /// `bump_wake_seq`.
    BumpWakeSeq,
    /// A new producer core attaches to the ring as it is.
    Reattach,
}

/// A step of the consumer core. The reading steps use `next_record` in
/// drop-new mode and `read_overwrite` in overwrite mode, as both users of
/// the core (the `rmemring` crate and the driver's `read()`) do.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsumerOp {
    /// Read one record.
    Next,
    /// `next_cached_record` (drop-new mode).
    NextCached,
    /// `next_record_if` taking records whose stride fits in `room` bytes
    /// (drop-new mode), as the driver's `read()` does.
    NextIf(u16),
    /// Read one record into a buffer of this length (overwrite mode).
    ReadInto(Len),
    /// Read until there is nothing more (or an error), then release.
    Drain,
    /// `release`.
    Release,
    /// `refresh_head`.
    RefreshHead,
    /// `prepare_sleep`, then `finish_sleep` if asked to and it said sleep.
    PrepareSleep(bool),
    /// `prepare_sleep_until_published`, then `finish_sleep` likewise.
    PrepareSleepUntilPublished(bool),
    /// `skip_to_producer`.
    SkipToProducer,
    /// `checkpoint`, kept for a later rewind.
    Checkpoint,
    /// `rewind` to the checkpoint this many before the last one.
    Rewind(u8),
    /// `wake_seq`.
    WakeSeq,
    /// A new consumer core attaches to the ring as it is.
    Reattach,
}

/// A step of the consumer target: anything may happen to the ring.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The consumer core.
    Consumer(ConsumerOp),
    /// The producer core, writing well-formed records.
    Producer(ProducerOp),
    /// A hostile write to the producer's memory.
    ProducerPoke(ProducerPoke),
    /// A hostile write to the consumer page.
    ConsumerPoke(ConsumerPoke),
}

/// A step of the producer target: the producer's own memory is never
/// written by anyone else, the consumer page by anyone.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProducerStep {
    /// The producer core.
    Producer(ProducerOp),
    /// An honest consumer core reading and releasing.
    Consumer(ConsumerOp),
    /// A hostile write to the consumer page.
    ConsumerPoke(ConsumerPoke),
}

impl From<ProducerStep> for Step {
    fn from(step: ProducerStep) -> Self {
        match step {
            ProducerStep::Producer(op) => Step::Producer(op),
            ProducerStep::Consumer(op) => Step::Consumer(op),
            ProducerStep::ConsumerPoke(poke) => Step::ConsumerPoke(poke),
        }
    }
}

/// The consumer target's input.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct ConsumerInput {
    /// The ring before either side attaches.
    pub setup: Setup,
    /// Then these steps.
    pub steps: Vec<Step>,
}

/// The producer target's input.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct ProducerInput {
    /// The ring before either side attaches.
    pub setup: Setup,
    /// Then these steps.
    pub steps: Vec<ProducerStep>,
}

/// Writes the bytes that `arbitrary` (1.5) decodes back to the value.
pub trait Encode {
    /// Appends the encoding of `self` to `out`.
    fn encode(&self, out: &mut Vec<u8>);

    /// The encoding of `self` alone.
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

macro_rules! encode_int {
    ($($t:ty)*) => {$(
        impl Encode for $t {
            fn encode(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}
encode_int!(u8 u16 u32 u64 i32);

impl Encode for bool {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
}

impl<T: Encode> Encode for Option<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        self.is_some().encode(out);
        if let Some(v) = self {
            v.encode(out);
        }
    }
}

/// A collection is each element behind a "one more" byte, then a "no more"
/// byte (which may be left out at the end of the input).
impl<T: Encode> Encode for Vec<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        for item in self {
            true.encode(out);
            item.encode(out);
        }
        false.encode(out);
    }
}

/// The variant `index` of an enum of `count` variants: `arbitrary` picks
/// variant `(u32 * count) >> 32`.
fn variant(out: &mut Vec<u8>, index: u32, count: u32) {
    let v = (u64::from(index) << 32).div_ceil(u64::from(count));
    debug_assert_eq!((v * u64::from(count)) >> 32, u64::from(index));
    (v as u32).encode(out);
}

/// `Encode` for an enum: the variant, then its fields in order.
macro_rules! encode_enum {
    ($ty:ident { $($variant:ident $( ( $($field:ident),* ) )? $( { $($named:ident),* } )?),* $(,)? }) => {
        impl Encode for $ty {
            #[allow(unused_assignments)]
            fn encode(&self, out: &mut Vec<u8>) {
                let count = [$(stringify!($variant)),*].len() as u32;
                let mut index = 0u32;
                $(
                    if let $ty::$variant $( ( $($field),* ) )? $( { $($named),* } )? = self {
                        variant(out, index, count);
                        $( $( $field.encode(out); )* )?
                        $( $( $named.encode(out); )* )?
                        return;
                    }
                    index += 1;
                )*
            }
        }
    };
}

encode_enum!(Value { Rel(d), Raw(v) });
encode_enum!(Len { Small(n), Any(n), Max, AboveMax(n), Huge(n) });
encode_enum!(Kind { Data, Pad, PadToEnd, Other(k) });
encode_enum!(At { Consumer, Published, Word(n) });
encode_enum!(ProducerPoke {
    ProducerPos(v),
    OverwritePos(v),
    Counter(i, v),
    WakeSeq(v),
    Word(i, v),
    Header { at, len, kind },
});
encode_enum!(ConsumerPoke { ConsumerPos(v), NeedWakeup(v), WakeToken(v), Counter(i, v) });
encode_enum!(Fill { Pattern, FirstWord, Bytes(b), Write(b), Nothing });
encode_enum!(ProducerOp {
    Record { len, fill, commit, tag, timestamp },
    Drop,
    Publish,
    RefreshConsumer,
    BumpWakeSeq,
    Reattach,
});
encode_enum!(ConsumerOp {
    Next,
    NextCached,
    NextIf(room),
    ReadInto(len),
    Drain,
    Release,
    RefreshHead,
    PrepareSleep(finish),
    PrepareSleepUntilPublished(finish),
    SkipToProducer,
    Checkpoint,
    Rewind(back),
    WakeSeq,
    Reattach,
});
encode_enum!(Step { Consumer(op), Producer(op), ProducerPoke(p), ConsumerPoke(p) });
encode_enum!(ProducerStep { Producer(op), Consumer(op), ConsumerPoke(p) });

impl Encode for Setup {
    fn encode(&self, out: &mut Vec<u8>) {
        self.size_shift.encode(out);
        self.overwrite.encode(out);
        self.write_combine.encode(out);
        self.batched.encode(out);
        self.max_payload.encode(out);
        self.start.encode(out);
        self.memory.encode(out);
        self.page.encode(out);
    }
}

impl Encode for ConsumerInput {
    fn encode(&self, out: &mut Vec<u8>) {
        self.setup.encode(out);
        self.steps.encode(out);
    }
}

impl Encode for ProducerInput {
    fn encode(&self, out: &mut Vec<u8>) {
        self.setup.encode(out);
        self.steps.encode(out);
    }
}
