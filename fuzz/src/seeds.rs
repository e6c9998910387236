//! The seeds of the checked-in corpus: one input per shape of ring worth
//! starting from, written out by `examples/seeds.rs`. The fuzzer finds
//! the rest (`cargo xtask fuzz --update-corpus`).

use crate::input::{
    At,
    ConsumerInput,
    ConsumerOp,
    ConsumerPoke,
    Fill,
    Kind,
    Len,
    ProducerInput,
    ProducerOp,
    ProducerPoke,
    ProducerStep,
    Setup,
    Step,
    Value, //
};

/// A ring of `4096 << size_shift` bytes with nothing in it yet.
fn setup(size_shift: u8, overwrite: bool, start: u64) -> Setup {
    Setup {
        size_shift,
        overwrite,
        write_combine: false,
        batched: false,
        max_payload: None,
        start,
        memory: Vec::new(),
        page: Vec::new(),
    }
}

/// A committed record of `len` bytes with the test pattern.
fn record(len: Len) -> ProducerOp {
    ProducerOp::Record {
        len,
        fill: Fill::Pattern,
        commit: true,
        tag: 7,
        timestamp: 1000,
    }
}

/// `n` records of `len` bytes, published.
fn burst(n: usize, len: Len) -> Vec<ProducerOp> {
    let mut ops = vec![record(len); n];
    ops.push(ProducerOp::Publish);
    ops
}

fn consumer_steps(producer: Vec<ProducerOp>, consumer: &[ConsumerOp]) -> Vec<Step> {
    let mut steps: Vec<Step> = producer.into_iter().map(Step::Producer).collect();
    steps.extend(consumer.iter().copied().map(Step::Consumer));
    steps
}

/// The consumer target's seeds, by name.
pub fn consumer() -> Vec<(&'static str, ConsumerInput)> {
    use ConsumerOp::*;
    let laps = || {
        let mut ops = burst(3, Len::Small(40));
        // Records of a quarter of the area: a pad at its end every lap.
        for _ in 0..3 {
            ops.extend(burst(3, Len::Max));
        }
        ops
    };
    let mut hostile = consumer_steps(burst(4, Len::Small(16)), &[Next]);
    hostile.push(Step::ProducerPoke(ProducerPoke::Header {
        at: At::Consumer,
        len: Len::AboveMax(0),
        kind: Kind::Data,
    }));
    hostile.extend([Step::Consumer(Next), Step::Consumer(Reattach)]);
    let mut wrong_positions = consumer_steps(burst(4, Len::Small(16)), &[Next]);
    wrong_positions.extend([
        Step::ProducerPoke(ProducerPoke::ProducerPos(Value::Rel(8 * 4096))),
        Step::Consumer(Next),
        Step::ProducerPoke(ProducerPoke::OverwritePos(Value::Rel(3))),
        Step::ConsumerPoke(ConsumerPoke::ConsumerPos(Value::Rel(-8))),
        Step::Consumer(Reattach),
        Step::Consumer(Drain),
    ]);
    vec![
        (
            "records",
            ConsumerInput {
                setup: setup(0, false, 0),
                steps: consumer_steps(
                    burst(5, Len::Small(13)),
                    &[Next, Checkpoint, Next, Rewind(0), Drain, PrepareSleep(true)],
                ),
            },
        ),
        (
            "pad-at-end",
            ConsumerInput {
                setup: setup(0, false, 0),
                steps: laps()
                    .into_iter()
                    .flat_map(|op| [Step::Producer(op), Step::Consumer(NextIf(2048))])
                    .chain([Step::Consumer(Drain)])
                    .collect(),
            },
        ),
        (
            "lapped-overwrite",
            ConsumerInput {
                setup: setup(0, true, 0),
                steps: consumer_steps(
                    [burst(2, Len::Small(8)), laps()].concat(),
                    &[ReadInto(Len::Small(8)), Next, Drain],
                ),
            },
        ),
        (
            "corrupt-header",
            ConsumerInput {
                setup: setup(0, false, 0),
                steps: hostile,
            },
        ),
        (
            "wrong-positions",
            ConsumerInput {
                setup: setup(1, false, 0),
                steps: wrong_positions,
            },
        ),
        (
            "write-combining",
            ConsumerInput {
                setup: Setup {
                    write_combine: true,
                    ..setup(0, true, 0)
                },
                steps: consumer_steps(laps(), &[ReadInto(Len::Max), Drain]),
            },
        ),
        (
            "position-wraps",
            ConsumerInput {
                setup: setup(0, false, u64::MAX - 4095),
                steps: consumer_steps(laps(), &[Drain, SkipToProducer, RefreshHead]),
            },
        ),
    ]
}

/// The producer target's seeds, by name.
pub fn producer() -> Vec<(&'static str, ProducerInput)> {
    use ConsumerOp::{
        Drain,
        PrepareSleep,
        Release, //
    };
    let fill_and_drain = |rounds: usize| {
        let mut steps = Vec::new();
        for _ in 0..rounds {
            steps.extend(burst(6, Len::Max).into_iter().map(ProducerStep::Producer));
            steps.push(ProducerStep::Consumer(Drain));
        }
        steps
    };
    let mut sleeper = vec![
        ProducerStep::Consumer(PrepareSleep(false)),
        ProducerStep::Producer(record(Len::Small(1))),
        ProducerStep::Producer(ProducerOp::Publish),
        ProducerStep::Producer(ProducerOp::Publish),
        ProducerStep::Consumer(Drain),
        ProducerStep::Consumer(PrepareSleep(true)),
    ];
    sleeper.push(ProducerStep::Producer(ProducerOp::BumpWakeSeq));
    let mut hostile = fill_and_drain(1);
    for value in [
        Value::Rel(4096),
        Value::Rel(-8),
        Value::Raw(3),
        Value::Rel(-2 * 4096),
    ] {
        hostile.push(ProducerStep::ConsumerPoke(ConsumerPoke::ConsumerPos(value)));
        hostile.extend(burst(2, Len::Max).into_iter().map(ProducerStep::Producer));
        hostile.push(ProducerStep::Producer(ProducerOp::RefreshConsumer));
    }
    hostile.push(ProducerStep::Consumer(Release));
    let mut reboot = setup(0, false, 4096);
    reboot.memory = vec![
        ProducerPoke::ProducerPos(Value::Rel(99)),
        ProducerPoke::Header {
            at: At::Word(0),
            len: Len::Small(16),
            kind: Kind::PadToEnd,
        },
    ];
    vec![
        (
            "fill-and-drain",
            ProducerInput {
                setup: setup(0, false, 0),
                steps: fill_and_drain(4),
            },
        ),
        (
            "overwrite-laps",
            ProducerInput {
                setup: setup(0, true, 0),
                steps: fill_and_drain(4),
            },
        ),
        (
            // As the user-space producer writes: publishing whenever a
            // batch would pass a quarter of the ring.
            "batched-overwrite",
            ProducerInput {
                setup: Setup {
                    batched: true,
                    ..setup(0, true, 0)
                },
                steps: fill_and_drain(4),
            },
        ),
        (
            "sleep-and-wake",
            ProducerInput {
                setup: setup(0, false, 0),
                steps: sleeper,
            },
        ),
        (
            "hostile-consumer",
            ProducerInput {
                setup: setup(0, false, 0),
                steps: hostile,
            },
        ),
        (
            "warm-reboot",
            ProducerInput {
                setup: reboot,
                steps: [
                    fill_and_drain(1),
                    vec![ProducerStep::Producer(ProducerOp::Reattach)],
                ]
                .concat(),
            },
        ),
        (
            // A producer that retired records and stopped before publishing
            // their successors left `overwrite_pos` ahead of the published
            // position; the next one starts from the published position and
            // lays records out anew (72-byte strides), so that stale value
            // falls inside one of them.
            "stale-overwrite-pos",
            ProducerInput {
                setup: setup(0, true, 0),
                steps: [
                    burst(2, Len::Small(8)),
                    vec![record(Len::Max); 4],
                    vec![ProducerOp::Reattach],
                    burst(20, Len::Small(48)),
                ]
                .concat()
                .into_iter()
                .map(ProducerStep::Producer)
                .chain([ProducerStep::Consumer(Drain)])
                .collect(),
            },
        ),
        (
            "position-wraps",
            ProducerInput {
                setup: setup(0, true, u64::MAX - 4095),
                steps: fill_and_drain(3),
            },
        ),
    ]
}
