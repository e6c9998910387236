//! The harness behind the fuzz targets in `fuzz_targets/`: a ring in
//! guarded mappings ([`arena`]), inputs that `arbitrary` decodes into
//! steps ([`input`]), and a world that runs the steps on the producer and
//! consumer cores of the protocol crate (`proto/`) and checks every promise of theirs
//! after each ([`world`]). `fuzz/README.md` says how to run it.

pub mod adapt;
pub mod arena;
pub mod input;
pub mod seeds;
pub mod world;

use std::cell::RefCell;

/// The protocol crate, built `no_std` as the kernel compiles it.
pub use rmemring_proto as proto;

use arena::{
    Arena,
    GuardedBuf,
    PAGE, //
};
use input::{
    ConsumerInput,
    ProducerInput,
    Setup,
    Step, //
};
use world::World;

/// The data area sizes an input can choose (`Setup::size_shift`).
const SIZES: [usize; 3] = [PAGE, 2 * PAGE, 4 * PAGE];

/// The rings and the copy buffer, made once per process: mapping them
/// costs more than a whole run of most inputs.
struct Fixture {
    arenas: [Arena; 3],
    buf: GuardedBuf,
}

thread_local! {
    static FIXTURE: RefCell<Option<Fixture>> = const { RefCell::new(None) };
}

/// Runs `steps` on a ring laid out as `setup` says.
fn run(setup: &Setup, steps: impl IntoIterator<Item = Step>) {
    FIXTURE.with_borrow_mut(|fixture| {
        let fixture = fixture.get_or_insert_with(|| Fixture {
            arenas: SIZES.map(Arena::new),
            // A quarter of the largest data area bounds every payload;
            // buffers up to twice that test the buffer-size checks.
            buf: GuardedBuf::new(SIZES[2] / 2),
        });
        let arena = &fixture.arenas[usize::from(setup.size_shift) % SIZES.len()];
        let mut world = World::new(arena, &mut fixture.buf, setup);
        for step in steps {
            world.step(step);
        }
    });
}

/// The consumer target: a consumer over a ring that anyone may write.
pub fn run_consumer(input: &ConsumerInput) {
    run(&input.setup, input.steps.iter().copied());
}

/// The producer target: a producer against a consumer page that anyone
/// may write.
pub fn run_producer(input: &ProducerInput) {
    run(&input.setup, input.steps.iter().copied().map(Step::from));
}
