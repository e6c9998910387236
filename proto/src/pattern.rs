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

/// Calls `store(i, word(seq, i))` for every `i` in `0..words`, in order:
/// how a producer writes the pattern into memory of its own, one `u64`
/// store per word.
///
/// Four words per step, with no check between them: the kernel producer
/// writes every payload through this (into the ring, and into the BPF
/// peer's buffer, so both pay the same for their fill), and the kernel is
/// built with overflow checks, which turned a loop of `offset + 8 * i`
/// into two branches per word. Under QEMU's TCG a branch ends a
/// translated block, and in the reference VM the checked loop cost 1.3 to
/// 2.2 times as much per word as this one (`docs/bench/kernel.md`, "The
/// consumer's pass and the producer's fill").
///
/// # Examples
///
/// ```
/// use rmemring_proto::pattern::{for_each_word, word};
///
/// let mut words = [0u64; 6];
/// for_each_word(3, 6, |i, w| words[i as usize] = w);
/// assert!(words.iter().enumerate().all(|(i, &w)| w == word(3, i as u64)));
/// ```
#[inline(always)]
pub fn for_each_word(seq: u64, words: u64, mut store: impl FnMut(u64, u64)) {
    let base = mix(seq);
    let whole = words & !3;
    let mut i = 0u64;
    // Wrapping arithmetic: `i` stays below `words`, so nothing wraps, and
    // none of it is checked (see above).
    while i != whole {
        let w = base.wrapping_add(i);
        store(i, w);
        store(i.wrapping_add(1), w.wrapping_add(1));
        store(i.wrapping_add(2), w.wrapping_add(2));
        store(i.wrapping_add(3), w.wrapping_add(3));
        i = i.wrapping_add(4);
    }
    while i != words {
        store(i, base.wrapping_add(i));
        i = i.wrapping_add(1);
    }
}

/// Fills `buf` with record `seq`'s payload.
///
/// # Examples
///
/// ```
/// use rmemring_proto::pattern::{fill, verify};
///
/// let mut payload = [0u8; 13];
/// fill(9, &mut payload);
/// assert!(verify(9, &payload));
/// assert!(!verify(10, &payload));
/// ```
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
///
/// Every byte is read, once, without a branch per word or byte: where `buf`
/// starts on an 8-byte boundary (every payload in a ring, in a `read()`
/// copy of whole records into an aligned buffer, and in a BPF ring buffer
/// record), one 8-byte volatile load per word, compared by xor and
/// accumulated by or, one look at the result at the end. Volatile so that
/// the pass is neither left out where its result is not needed (the
/// benchmark's blank-payload cells read every byte and keep only the
/// first word's check) nor vectorised: in the reference VM, QEMU's TCG
/// runs the SSE2 loop the compiler made of the plain one at four to five
/// times the cost per word of this one. Without emulation the SSE2 loop is
/// about twice as fast as this one: the loop suits the emulated machine
/// the reference numbers come from (`docs/bench/kernel.md`, "The
/// consumer's pass and the producer's fill", has the measurements). Every
/// consumer the benchmark compares calls this function, so each pays the
/// same per byte. A `buf`
/// that does not start on an 8-byte boundary is checked by a plain loop
/// over copies of its words, which the compiler may vectorise; none of the
/// benchmark's consumers takes that path.
///
/// # Examples
///
/// ```
/// use rmemring_proto::pattern::{fill, verify};
///
/// let mut payload = vec![0u8; 4096];
/// fill(5, &mut payload);
/// assert!(verify(5, &payload));
/// payload[4000] ^= 1;
/// assert!(!verify(5, &payload));
/// ```
pub fn verify(seq: u64, buf: &[u8]) -> bool {
    // SAFETY: Every bit pattern is a valid `u64`, and `align_to` hands out
    // only whole, aligned `u64`s inside `buf`.
    let (head, words, tail) = unsafe { buf.align_to::<u64>() };
    if !head.is_empty() {
        return verify_unaligned(seq, buf);
    }
    let mut expected = mix(seq);
    let mut diff = 0u64;
    for word in words {
        // SAFETY: `word` is a reference, so the pointer is valid, aligned
        // and points to an initialised `u64`.
        let value = unsafe { core::ptr::read_volatile(word) };
        diff |= u64::from_le(value) ^ expected;
        expected = expected.wrapping_add(1);
    }
    diff == 0 && tail == &expected.to_le_bytes()[..tail.len()]
}

/// [`verify`] for a `buf` that does not start on an 8-byte boundary: the
/// plain loop, which the compiler may vectorise. (Crate-visible for
/// `docs/bench/pattern-cost.rs`, which includes this file and measures it.)
pub(crate) fn verify_unaligned(seq: u64, buf: &[u8]) -> bool {
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

    /// Payloads of every length up to three words past an unrolled step,
    /// at every offset from an 8-byte boundary: the aligned path, the
    /// unaligned one, and the partial last word of each.
    fn payloads() -> impl Iterator<Item = (usize, usize)> {
        (0..8).flat_map(|offset| (0..=43).map(move |len| (offset, len)))
    }

    #[test]
    fn verify_accepts_the_pattern_and_rejects_any_changed_byte() {
        let mut backing = [0u64; 8];
        for (offset, len) in payloads() {
            let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut backing);
            let buf = &mut bytes[offset..offset + len];
            fill(77, buf);
            assert!(verify(77, buf), "offset {offset}, {len} bytes");
            if len > 0 {
                assert!(!verify(78, buf), "offset {offset}, {len} bytes");
            }
            for at in 0..len {
                for bit in [0x01, 0x80] {
                    buf[at] ^= bit;
                    assert!(!verify(77, buf), "offset {offset}, {len} bytes, byte {at}");
                    buf[at] ^= bit;
                }
            }
        }
    }

    #[test]
    fn for_each_word_stores_each_word_once_in_order() {
        for words in 0..=13u64 {
            let mut seen = Vec::new();
            for_each_word(5, words, |i, w| seen.push((i, w)));
            let expected: Vec<(u64, u64)> = (0..words).map(|i| (i, word(5, i))).collect();
            assert_eq!(seen, expected, "{words} words");
        }
    }
}
