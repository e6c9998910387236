//! The producer core against a consumer page that anyone may write, in
//! both overflow modes, next to an honest consumer core.

#![no_main]

libfuzzer_sys::fuzz_target!(|input: rmemring_fuzz::input::ProducerInput| {
    rmemring_fuzz::run_producer(&input);
});
