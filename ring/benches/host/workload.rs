//! What every peer does: the records, their payload, the consumer's check,
//! and the clock.

use std::time::{
    Duration,
    Instant, //
};

use rmemring::layout::{
    RecordHeader,
    KIND_DATA, //
};

/// The payload sizes of the issue, in bytes.
pub const SIZES: [usize; 5] = [8, 64, 1024, 4096, 65536];

/// The default bytes of every ring: the rmemring data area, the `rtrb`
/// buffers, the `ArrayQueue` slots (stamps included), and the `memcpy`
/// destination (`--ring` chooses another).
///
/// 1 MiB fits, with the source buffer, in one core's 2 MiB L2, so the
/// benchmark measures the rings rather than DRAM; it is the smallest power
/// of two that holds several 64 KiB records in rmemring (a record may fill
/// at most a quarter of the data area); and it is the crate's default.
pub const RING_BYTES: usize = 1 << 20;

/// Bytes of the header in front of every record of every peer but
/// `memcpy`: rmemring's own [`RecordHeader`] (length, kind, tag, sequence
/// number, timestamp), so that every ring carries the same bytes.
pub const HEADER: usize = std::mem::size_of::<RecordHeader>();

/// A fixed-size record of `N` payload bytes, as a user with fixed-size
/// records would declare it: rmemring's header and the payload, so it is
/// exactly as large as an rmemring record of `N` bytes (`N` a multiple of
/// 8). The typed `rtrb` ring and crossbeam's queue carry it.
#[repr(C)]
pub struct Fixed<const N: usize> {
    pub header: RecordHeader,
    pub payload: [u8; N],
}

// No padding: a fixed-size record is exactly an rmemring record's bytes.
const _: () = assert!(HEADER == 24 && std::mem::size_of::<Fixed<64>>() == HEADER + 64);

/// The mixed workload's payload sizes: multiples of 8 from 8 to this,
/// equally likely.
pub const MIXED_MAX: usize = 1024;

/// The mixed workload's mean payload size (`(8 + MIXED_MAX) / 2`).
pub const MIXED_MEAN: usize = (8 + MIXED_MAX) / 2;

/// The payload sizes of a workload's records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// The payload size of every record, or the largest of the mixed ones.
    pub size: usize,
    /// Whether record sizes vary, [`MIXED_MAX`] at most.
    pub mixed: bool,
}

impl Shape {
    /// The payload bytes of record `seq`: a pseudo-random multiple of 8 for
    /// a mixed workload, so that the consumer can check every length.
    #[inline(always)]
    pub fn len(self, seq: u64) -> usize {
        if self.mixed {
            let draw = (seq.wrapping_mul(0xd6e8_feb8_6659_fd93) >> 40) as usize;
            8 * (1 + draw % (MIXED_MAX / 8))
        } else {
            self.size
        }
    }

    /// The workload's name in the report.
    pub fn label(self) -> String {
        if self.mixed {
            format!("mixed 8-{MIXED_MAX} B")
        } else {
            crate::report::human_size(self.size)
        }
    }

    /// The mean payload bytes per record.
    pub fn mean(self) -> usize {
        if self.mixed {
            MIXED_MEAN
        } else {
            self.size
        }
    }
}

/// One measurement's workload.
pub struct Workload {
    /// Payload bytes per record: [`Shape::len`].
    pub shape: Shape,
    /// The mean of them.
    pub size: usize,
    /// Bytes of the ring.
    pub ring_bytes: usize,
    /// Records before the clock starts.
    pub warm: u64,
    /// Records the clock covers (at least).
    pub timed: u64,
    /// What the producer copies the middle of every payload from.
    pub src: Vec<u8>,
}

impl Workload {
    pub fn new(shape: Shape, ring_bytes: usize, quick: bool) -> Self {
        let size = shape.mean();
        // Enough records for about 0.1-0.5 s of the fastest implementation
        // (0.03-0.1 s with `--quick`), the same number for all of them.
        let (budget, max_records) = if quick {
            (256u64 << 20, 8u64 << 20)
        } else {
            (2u64 << 30, 48u64 << 20)
        };
        let timed = (budget / size as u64).min(max_records);
        // Two laps of the ring, at least.
        let warm = (2 * ring_bytes / size).max(1024) as u64;
        let src = (0..shape.size).map(|i| i as u8).collect();
        Self {
            shape,
            size,
            ring_bytes,
            warm,
            timed,
            src,
        }
    }

    pub fn total(&self) -> u64 {
        self.warm + self.timed
    }

    /// Records per publication and release for batches of about `bytes` of
    /// payload.
    pub fn records_per_batch(&self, bytes: usize) -> usize {
        (bytes / self.size).max(1)
    }
}

/// The header of record `seq` of `size` payload bytes, stamped `now`.
#[inline(always)]
pub fn header(seq: u64, size: usize, now: u64) -> RecordHeader {
    RecordHeader {
        len: size as u32,
        kind: KIND_DATA,
        tag: 0,
        seq,
        timestamp_ns: now,
    }
}

/// The first stamp word of record `seq`.
#[inline(always)]
fn first_word(seq: u64) -> u64 {
    seq.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// The last stamp word of record `seq` of `size` bytes (the first one
/// again when the payload is a single word).
#[inline(always)]
fn last_word(seq: u64, size: usize) -> u64 {
    if size > 8 {
        !seq
    } else {
        first_word(seq)
    }
}

/// Writes record `seq`'s `size`-byte payload at `dst`: a stamp word, the
/// middle copied from `src`, a closing stamp word. Every peer writes its
/// payloads with this, so every producer writes every payload byte.
///
/// # Safety
///
/// `dst` must be valid for `size` bytes of writes; `size` must be a
/// multiple of 8 of at least 8, and `src` at least `size` bytes long.
#[inline(always)]
pub unsafe fn fill(dst: *mut u8, size: usize, seq: u64, src: &[u8]) {
    debug_assert!(size >= 8 && size % 8 == 0 && src.len() >= size);
    // SAFETY: The caller provides `size >= 8` writable bytes at `dst`.
    unsafe { dst.cast::<u64>().write_unaligned(first_word(seq).to_le()) };
    if size > 8 {
        // SAFETY: `8 + (size - 16) + 8 == size` bytes, all inside `dst` and
        // `src`; `src` is the caller's own buffer, so they cannot overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr().add(8), dst.add(8), size - 16);
            dst.add(size - 8)
                .cast::<u64>()
                .write_unaligned(last_word(seq, size).to_le());
        }
    }
}

/// The check every consumer applies to every record: its sequence number
/// `seq` is the `expected` one, its length `len` and its payload's are
/// `size`, and both stamp words are right. It reads the first and the last
/// payload word, not every byte.
#[inline(always)]
pub fn check(seq: u64, len: usize, expected: u64, payload: &[u8], size: usize) -> bool {
    if len != size || payload.len() != size || size < 8 {
        return false;
    }
    let word = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&payload[at..at + 8]);
        u64::from_le_bytes(w)
    };
    (seq == expected)
        & (word(0) == first_word(expected))
        & (word(size - 8) == last_word(expected, size))
}

/// Starts the clock when the consumer has seen the warm-up records.
pub struct Clock {
    warm: u64,
    start: Option<(Instant, u64)>,
}

impl Clock {
    pub fn new(warm: u64) -> Self {
        Self { warm, start: None }
    }

    /// Notes that `seen` records have been consumed so far.
    #[inline(always)]
    pub fn tick(&mut self, seen: u64) {
        if self.start.is_none() && seen >= self.warm {
            self.start = Some((Instant::now(), seen));
        }
    }

    /// Stops the clock after `seen` records and `bad` failed checks.
    pub fn stop(self, seen: u64, bad: u64) -> Timing {
        let end = Instant::now();
        let (start, at) = self.start.expect("the clock started");
        assert_eq!(bad, 0, "records failed the consumer's check");
        Timing {
            records: seen - at,
            elapsed: end - start,
        }
    }
}

/// What one measurement took.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub records: u64,
    pub elapsed: Duration,
}

impl Timing {
    pub fn records_per_s(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }
}
