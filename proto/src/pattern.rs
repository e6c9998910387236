// SPDX-License-Identifier: GPL-2.0-only OR MIT

//! The verifiable test payload the kernel producer writes and consumers check.
//!
//! A record's length (within a configured range) and every payload byte are
//! functions of its sequence number, so a consumer can check each record
//! without any side channel: word `i` of the payload (little-endian `u64`)
//! is `mix(seq) + i`, and a partial last word holds the low bytes of its value.

/// The splitmix64 finaliser: a cheap bijective hash of the sequence number.
#[inline]
pub const fn mix(seq: u64) -> u64 {
    let mut z = seq.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The payload length of record `seq` for lengths in `min..=max`.
#[inline]
pub const fn payload_len(seq: u64, min: u32, max: u32) -> u32 {
    if max <= min {
        return min;
    }
    let span = (max - min) as u64 + 1;
    min + (mix(seq ^ 0x5bd1_e995) % span) as u32
}

/// Word `i` of record `seq`'s payload.
#[inline]
pub const fn word(seq: u64, i: u64) -> u64 {
    mix(seq).wrapping_add(i)
}

/// Fills `buf` with record `seq`'s payload.
pub fn fill(seq: u64, buf: &mut [u8]) {
    let base = mix(seq);
    let mut chunks = buf.chunks_exact_mut(8);
    let mut i = 0u64;
    for chunk in &mut chunks {
        chunk.copy_from_slice(&base.wrapping_add(i).to_le_bytes());
        i += 1;
    }
    let tail = chunks.into_remainder();
    let n = tail.len();
    tail.copy_from_slice(&base.wrapping_add(i).to_le_bytes()[..n]);
}

/// Whether `buf` holds record `seq`'s payload.
pub fn verify(seq: u64, buf: &[u8]) -> bool {
    let base = mix(seq);
    let mut chunks = buf.chunks_exact(8);
    let mut i = 0u64;
    let mut diff = 0u64;
    for chunk in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        diff |= u64::from_le_bytes(w) ^ base.wrapping_add(i);
        i += 1;
    }
    let tail = chunks.remainder();
    let expected = base.wrapping_add(i).to_le_bytes();
    diff == 0 && tail == &expected[..tail.len()]
}
