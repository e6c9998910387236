// SPDX-License-Identifier: GPL-2.0-only OR MIT

//! What the test pattern's fill and check cost per 8-byte word, beside the
//! kernel's copies, in one user thread: run in the reference VM, it shows
//! what QEMU's TCG charges for each loop shape (`docs/bench/kernel.md`,
//! "The consumer's pass and the producer's fill"). Standalone, no
//! dependencies but the pattern module itself, built as the guest's binaries
//! are (release, static):
//!
//! ```sh
//! rustc --edition 2021 -O -C target-feature=+crt-static \
//!     --target x86_64-unknown-linux-gnu docs/bench/pattern-cost.rs -o /tmp/pattern-cost
//! cargo xtask vm-run --add /tmp/pattern-cost -- '/add/pattern-cost 4096 65536'
//! ```
//!
//! Each loop runs on the same buffer for about half a second; the figures
//! are nanoseconds per record and per word.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// The pattern module itself, so that the check measured is the one
/// every consumer calls.
#[allow(dead_code)]
#[path = "../../proto/src/pattern.rs"]
mod pattern;

use pattern::{for_each_word, mix, verify};

/// The check before, as `pattern::verify` was: a plain loop over 8-byte
/// chunks, which the compiler turns into SSE2. `verify` still takes it for
/// a buffer that does not start on an 8-byte boundary; here it runs on the
/// same aligned payload as the check now.
#[inline(never)]
fn verify_plain(seq: u64, buf: &[u8]) -> bool {
    pattern::verify_unaligned(seq, buf)
}

/// The kernel fill before (`write_pattern`): each word's offset computed
/// from the record's, with the overflow checks the kernel's build adds.
#[inline(never)]
fn fill_checked(data: &[AtomicU64], offset: u64, len: u64, seq: u64) {
    let base = mix(seq);
    let p = data.as_ptr().cast_mut().cast::<u8>();
    for i in 0..len.div_ceil(8) {
        // Checked as the kernel's `+` and `*` are (CONFIG_RUST_OVERFLOW_CHECKS).
        let at = offset
            .checked_add(24)
            .and_then(|at| at.checked_add(i.checked_mul(8)?))
            .expect("no overflow");
        // SAFETY: The caller's buffer holds the record.
        let word = unsafe { AtomicU64::from_ptr(p.add(at as usize).cast()) };
        word.store(base.wrapping_add(i), Ordering::Relaxed);
    }
}

/// The kernel fill now (`write_pattern`, through `for_each_word`): four
/// stores per step, wrapping arithmetic.
#[inline(never)]
fn fill_unrolled(data: &[AtomicU64], offset: u64, len: u64, seq: u64) {
    let first = offset.wrapping_add(24);
    let p = data.as_ptr().cast_mut().cast::<u8>();
    for_each_word(seq, len.div_ceil(8), |i, w| {
        // SAFETY: The caller's buffer holds the record.
        let word =
            unsafe { AtomicU64::from_ptr(p.add(first.wrapping_add(i << 3) as usize).cast()) };
        word.store(w, Ordering::Relaxed);
    });
}

/// `copy_to_user` without ERMS or FSRM (`rep_movs_alternative`): `rep movsq`.
#[inline(never)]
fn rep_movsq(dst: &mut [u64], src: &[u64]) {
    assert!(dst.len() >= src.len());
    // SAFETY: `src.len()` words are read from `src` and written to `dst`,
    // which holds at least as many; the direction flag is clear (ABI).
    unsafe {
        std::arch::asm!("rep movsq", inout("rcx") src.len() => _, inout("rsi") src.as_ptr() => _,
            inout("rdi") dst.as_mut_ptr() => _, options(nostack));
    }
}

/// `copy_from_kernel_nofault` (BPF's probe read): an 8-byte load and store
/// per step.
#[inline(never)]
fn copy_words(dst: &[AtomicU64], src: &[AtomicU64]) {
    for (d, s) in dst.iter().zip(src) {
        d.store(s.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

fn time(name: &str, bytes: usize, mut f: impl FnMut(u64)) {
    let mut n = 0u64;
    let start = Instant::now();
    while start.elapsed().as_millis() < 500 {
        for _ in 0..16 {
            f(n);
            n += 1;
        }
    }
    let per = start.elapsed().as_nanos() as f64 / n as f64;
    let words = (bytes / 8) as f64;
    println!(
        "{name:>22} {bytes:>6} B: {per:>9.1} ns/record {:>6.2} ns/word",
        per / words
    );
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .map(|s| s.parse().expect("a size"))
        .collect();
    for size in if sizes.is_empty() {
        vec![4096, 65536]
    } else {
        sizes
    } {
        let words = size / 8;
        let ring: Vec<AtomicU64> = (0..words + 3).map(|_| AtomicU64::new(0)).collect();
        let copy: Vec<AtomicU64> = (0..words + 3).map(|_| AtomicU64::new(0)).collect();
        let mut dst = vec![0u64; words];
        fill_unrolled(&ring, 0, size as u64, 7);
        // SAFETY: The payload starts 24 bytes into `ring`, which holds it
        // whole; nothing writes `ring` while `payload` is read.
        let payload: &[u8] =
            unsafe { std::slice::from_raw_parts(ring.as_ptr().cast::<u8>().add(24), size) };
        assert!(verify_plain(7, payload) && verify(7, payload) && !verify(8, payload));
        time("verify, plain loop", size, |_| {
            black_box(verify_plain(7, black_box(payload)));
        });
        time("verify, volatile words", size, |_| {
            black_box(verify(7, black_box(payload)));
        });
        time("fill, checked offsets", size, |n| {
            fill_checked(black_box(&copy), 0, size as u64, n)
        });
        time("fill, four per step", size, |n| {
            fill_unrolled(black_box(&copy), 0, size as u64, n)
        });
        // SAFETY: As for `payload`; `ring`'s words are plain `u64`s.
        let src: &[u64] = unsafe { std::slice::from_raw_parts(ring.as_ptr().cast(), words) };
        time("rep movsq", size, |_| {
            rep_movsq(black_box(&mut dst), black_box(src))
        });
        time("8-byte load/store loop", size, |_| {
            copy_words(black_box(&copy), &ring[..words])
        });
    }
}
