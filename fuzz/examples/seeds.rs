//! Writes the seeds of `src/seeds.rs` into `corpus/<target>/seed-<name>`,
//! after checking that each decodes back to itself and passes:
//! `cargo run --manifest-path fuzz/Cargo.toml --example seeds`.

use std::path::Path;

use arbitrary::{
    Arbitrary,
    Unstructured, //
};
use rmemring_fuzz::input::Encode;

fn write<T>(target: &str, seeds: Vec<(&str, T)>, run: fn(&T))
where
    T: Encode + for<'a> Arbitrary<'a> + PartialEq + std::fmt::Debug,
{
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&dir).expect("creating the corpus directory");
    for (name, input) in seeds {
        let bytes = input.to_bytes();
        let decoded = T::arbitrary_take_rest(Unstructured::new(&bytes)).expect("decoding");
        assert_eq!(
            decoded, input,
            "seed {target}/{name} does not decode to itself"
        );
        run(&input);
        let path = dir.join(format!("seed-{name}"));
        std::fs::write(&path, &bytes).expect("writing a seed");
        println!("{} ({} bytes)", path.display(), bytes.len());
    }
}

fn main() {
    write(
        "consumer",
        rmemring_fuzz::seeds::consumer(),
        rmemring_fuzz::run_consumer,
    );
    write(
        "producer",
        rmemring_fuzz::seeds::producer(),
        rmemring_fuzz::run_producer,
    );
}
