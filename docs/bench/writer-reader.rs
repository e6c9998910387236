// SPDX-License-Identifier: GPL-2.0-only OR MIT

//! Does a reader on the other CPU make a writer's stores dearer? A writer
//! thread on CPU 0 fills 64 KiB records into a ring (16 MiB unless the
//! third argument gives KiB), eight bytes a store, four stores a step, as
//! the driver's producer fills a payload (`pattern::for_each_word`), and
//! publishes each record; a thread on CPU 1 meanwhile does one of:
//!
//! - `none`: looks at the published position only;
//! - `same`: reads every word of each published record through a second
//!   mapping of the same pages (as the zero-copy consumer's mapping is a
//!   second mapping of the kernel's);
//! - `samemap`: the same through the writer's own mapping;
//! - `other`: reads as many words of other memory per record.
//!
//! Printed: the writer's wall and CPU time per record, each mode in turn,
//! for `ROUNDS` rounds of `SECONDS` each. Standalone, built as the guest's
//! binaries are:
//!
//! ```sh
//! rustc --edition 2021 -O -C target-feature=+crt-static \
//!     --target x86_64-unknown-linux-gnu docs/bench/writer-reader.rs -o /tmp/writer-reader
//! cargo xtask vm-run --add /tmp/writer-reader -- '/add/writer-reader 1 3'
//! ```

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

extern "C" {
    fn sched_setaffinity(pid: i32, size: usize, mask: *const u64) -> i32;
    fn clock_gettime(clock: i32, ts: *mut [i64; 2]) -> i32;
    fn memfd_create(name: *const u8, flags: u32) -> i32;
    fn ftruncate(fd: i32, len: i64) -> i32;
    fn mmap(addr: *mut u8, len: usize, prot: i32, flags: i32, fd: i32, off: i64) -> *mut u8;
}

const RECORD: usize = 64 << 10;
/// A header's worth of bytes before each payload, as in the ring.
const STRIDE: usize = RECORD + 24;
const CLOCK_THREAD_CPUTIME_ID: i32 = 3;

fn pin(cpu: u32) {
    let mask = 1u64 << cpu;
    // SAFETY: A one-word CPU mask for the calling thread.
    unsafe { sched_setaffinity(0, 8, &mask) };
}

fn thread_cpu_ns() -> u64 {
    let mut ts = [0i64; 2];
    // SAFETY: `ts` is a `struct timespec`.
    unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (ts[0] * 1_000_000_000 + ts[1]) as u64
}

/// The driver's fill: four 8-byte stores a step.
#[inline(never)]
fn fill(p: *mut u64, words: usize, seq: u64) {
    let base = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut i = 0;
    while i != words & !3 {
        for k in 0..4 {
            // SAFETY: The caller's record holds `words` words from `p`.
            unsafe { AtomicU64::from_ptr(p.add(i + k)) }
                .store(base.wrapping_add((i + k) as u64), Ordering::Relaxed);
        }
        i += 4;
    }
}

/// The consumers' check: one volatile 8-byte load a word.
#[inline(never)]
fn check(p: *const u64, words: usize) -> u64 {
    // SAFETY: The caller's record holds `words` words from `p`.
    (0..words).fold(0, |acc, i| acc | unsafe { p.add(i).read_volatile() })
}

/// Two mappings of the same `len` bytes of a memfd.
fn map_twice(len: usize) -> (usize, usize) {
    // SAFETY: A fresh memfd of `len` bytes, mapped shared, read and write.
    unsafe {
        let fd = memfd_create(c"ring".as_ptr().cast(), 0);
        assert!(fd >= 0 && ftruncate(fd, len as i64) == 0);
        let a = mmap(std::ptr::null_mut(), len, 3, 1, fd, 0);
        let b = mmap(std::ptr::null_mut(), len, 3, 1, fd, 0);
        assert!(a as isize != -1 && b as isize != -1);
        std::ptr::write_bytes(a, 1, len);
        (a as usize, b as usize)
    }
}

/// The writer's wall and CPU time per record, and its records.
fn run(mode: &'static str, ring: usize, seconds: f64) -> (f64, f64, u64) {
    let (writer_map, reader_map) = map_twice(ring);
    let (other, _) = map_twice(ring);
    let published = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let offset = move |seq: u64| (seq as usize * STRIDE) % (ring - STRIDE).max(1) + 24;
    let reader = {
        let (published, stop) = (published.clone(), stop.clone());
        std::thread::spawn(move || {
            pin(1);
            let (mut seen, mut acc) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                let upto = published.load(Ordering::Acquire);
                while seen < upto {
                    let base = match mode {
                        "same" => reader_map,
                        "samemap" => writer_map,
                        "other" => other,
                        _ => 0,
                    };
                    if base != 0 {
                        acc |= check((base + offset(seen)) as *const u64, RECORD / 8);
                    }
                    seen += 1;
                }
                std::hint::spin_loop();
            }
            black_box(acc);
        })
    };
    pin(0);
    let (start, cpu) = (Instant::now(), thread_cpu_ns());
    let mut seq = 0u64;
    while start.elapsed().as_secs_f64() < seconds {
        fill((writer_map + offset(seq)) as *mut u64, RECORD / 8, seq);
        seq += 1;
        published.store(seq, Ordering::Release);
    }
    let (wall, cpu) = (start.elapsed().as_nanos() as f64, (thread_cpu_ns() - cpu) as f64);
    stop.store(true, Ordering::Relaxed);
    reader.join().expect("the reader");
    (wall / seq as f64, cpu / seq as f64, seq)
}

fn main() {
    let arg = |i: usize| std::env::args().nth(i);
    let seconds: f64 = arg(1).map_or(1.0, |s| s.parse().expect("SECONDS"));
    let rounds: u32 = arg(2).map_or(3, |s| s.parse().expect("ROUNDS"));
    let ring = arg(3).map_or(16 << 20, |s| s.parse::<usize>().expect("KiB") << 10);
    println!("ring {} KiB, records of {} KiB", ring >> 10, RECORD >> 10);
    for round in 0..rounds {
        for mode in ["none", "same", "samemap", "other"] {
            let (wall, cpu, n) = run(mode, ring, seconds);
            println!(
                "round {round} reader {mode:8} writer {wall:8.0} ns/record wall {cpu:8.0} ns cpu ({n} records)"
            );
        }
    }
}
