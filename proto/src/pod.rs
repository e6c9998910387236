//! `bytemuck` impls for the ABI structs.
//!
//! Plain `unsafe impl`s rather than derives, in a module the kernel leaves
//! out (`cfg(not(CONFIG_RUST))`): the kernel compiles this crate's sources
//! and has no `bytemuck`. The compile-time size and offset assertions in
//! `layout` and `uapi` prove the structs have no padding, which is what
//! `Pod` needs beyond `repr(C)` integer fields.

use super::events::{
    SchedSwitch,
    TimerSample, //
};
use super::layout::{
    ConsumerPage,
    ControlPage,
    RecordHeader, //
};
use super::uapi::{
    ProducerConfig,
    RecoveryInfo,
    ResetConfig,
    RingInfo,
    RingStats, //
};

macro_rules! pod {
    ($($t:ty),* $(,)?) => {$(
        // SAFETY: `repr(C)`, only integer fields and arrays of integers, no
        // padding (the ABI assertions pin the size to the sum of the
        // fields), so every bit pattern is valid and all-zero is too.
        unsafe impl bytemuck::Zeroable for $t {}
        // SAFETY: As above; the types are also `Copy` and `'static`.
        unsafe impl bytemuck::Pod for $t {}
    )*};
}

pod!(
    ControlPage,
    ConsumerPage,
    RecordHeader,
    RingInfo,
    ProducerConfig,
    ResetConfig,
    RingStats,
    RecoveryInfo,
    SchedSwitch,
    TimerSample
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_structs_round_trip_through_bytes() {
        let header = RecordHeader {
            len: 5,
            kind: 1,
            tag: 2,
            seq: 3,
            timestamp_ns: 4,
        };
        let bytes = bytemuck::bytes_of(&header);
        assert_eq!(bytes.len(), 24);
        assert_eq!(&bytes[..8], &[5, 0, 0, 0, 1, 0, 2, 0]);
        assert_eq!(bytemuck::pod_read_unaligned::<RecordHeader>(bytes), header);
    }
}
