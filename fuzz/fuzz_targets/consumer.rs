//! The consumer core over rings that anyone may have written: arbitrary
//! control-page words, consumer page and data area, changed between the
//! consumer's steps, next to a producer core writing well-formed records.

#![no_main]

libfuzzer_sys::fuzz_target!(|input: rmemring_fuzz::input::ConsumerInput| {
    rmemring_fuzz::run_consumer(&input);
});
