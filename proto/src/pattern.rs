// SPDX-License-Identifier: GPL-2.0-only OR MIT

//! The verifiable test payload the kernel producer writes and consumers check.
//!
//! A record's length (within a configured range) and every payload byte are
//! functions of its sequence number, so a consumer can check each record
//! without any side channel: word `i` of the payload (little-endian `u64`)
//! is `mix(seq) + i`, and a partial last word holds the low bytes of its value.
//! `docs/protocol.md` (section 4) specifies the same, with test vectors.

/// A cheap bijective hash of the sequence number: the first output of a
/// splitmix64 generator seeded with `seq`, that is, splitmix64's finaliser
/// applied to `seq + 0x9e3779b97f4a7c15` (the finaliser alone would map 0
/// to 0).
///
/// # Examples
///
/// ```
/// // splitmix64's well-known first output for the seed 0.
/// assert_eq!(rmemring_proto::pattern::mix(0), 0xe220_a839_7b1d_cdaf);
/// ```
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vectors of docs/protocol.md, section 4.
    const PROTOCOL_MD: &str = include_str!("../../docs/protocol.md");

    #[test]
    fn the_documented_test_vectors_hold() {
        assert_eq!(mix(0), 0xe220_a839_7b1d_cdaf);
        assert_eq!(mix(1), 0x910a_2dec_8902_5cc1);
        let lens: Vec<u32> = (0..4).map(|seq| payload_len(seq, 8, 4096)).collect();
        assert_eq!(lens, [1149, 2736, 996, 1077]);
        let mut payload = [0u8; 12];
        fill(0, &mut payload);
        let hex: String = payload.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "afcd1d7b39a820e2b0cd1d7b");
        assert!(verify(0, &payload));
        for vector in [
            "0xe220a8397b1dcdaf",
            "0x910a2dec89025cc1",
            "1149, 2736, 996, 1077",
            "af cd 1d 7b 39 a8 20 e2 b0 cd 1d 7b",
        ] {
            assert!(
                PROTOCOL_MD.contains(vector),
                "docs/protocol.md lacks {vector}"
            );
        }
    }
}
