//! Helpers shared by the integration tests: rings to test on, a second
//! mapping to write hostile values through, the core index logic over
//! plain heap memory, and forked children.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::sync::atomic::{
    AtomicU32,
    AtomicU64,
    Ordering, //
};
use std::sync::Arc;

use memmap2::{
    MmapOptions,
    MmapRaw, //
};
use rmemring::layout::{
    max_payload_for,
    ConsumerPage,
    ControlPage,
    CONSUMER_PAGE_INIT,
    OFF_CONSUMER_POS,
    OFF_OVERWRITE_POS,
    OFF_PRODUCER_POS, //
};
use rmemring::{
    pattern,
    CreateOptions,
    Overflow,
    Region, //
};
use rmemring_proto::consumer_core::ConsumerCore;
use rmemring_proto::producer_core::{
    ProducerCore,
    Slot, //
};
use rmemring_proto::view::{
    header_word0,
    MemoryOrdering,
    RingView, //
};

/// A fresh memfd ring with a data area of `data_size` bytes.
pub fn memfd(data_size: u64, overflow: Overflow) -> Arc<Region> {
    Arc::new(
        Region::memfd(CreateOptions::new(data_size).overflow(overflow))
            .expect("creating a memfd ring"),
    )
}

/// A second, read-write mapping of a whole region, to write what a hostile
/// or buggy peer would, or to set up state before a producer or consumer
/// attaches.
pub struct Poke {
    map: MmapRaw,
    consumer_offset: usize,
    data_offset: usize,
    data_size: usize,
}

impl Poke {
    /// Maps all of `region` a second time, read-write and shared.
    pub fn new(region: &Region) -> Self {
        let layout = region.layout();
        let map = MmapOptions::new()
            .len(layout.region_size as usize)
            .map_raw(region.fd().as_raw_fd())
            .expect("mapping the region a second time");
        Self {
            map,
            consumer_offset: layout.consumer_offset as usize,
            data_offset: layout.data_offset as usize,
            data_size: layout.data_size as usize,
        }
    }

    fn word(&self, off: usize) -> &AtomicU64 {
        assert!(off % 8 == 0 && off + 8 <= self.map.len());
        // SAFETY: The word is inside the mapping, which lives as long as
        // `self`, and 8-byte aligned (the mapping is page-aligned). Every
        // other access to shared ring memory is atomic, volatile or a raw
        // copy, never a reference.
        unsafe { AtomicU64::from_ptr(self.map.as_mut_ptr().add(off).cast()) }
    }

    fn word32(&self, off: usize) -> &AtomicU32 {
        assert!(off % 4 == 0 && off + 4 <= self.map.len());
        // SAFETY: As for `word`, for an aligned 4-byte word.
        unsafe { AtomicU32::from_ptr(self.map.as_mut_ptr().add(off).cast()) }
    }

    /// The control page's 8-byte word at byte offset `off`.
    pub fn ctrl(&self, off: usize) -> u64 {
        self.word(off).load(Ordering::SeqCst)
    }

    /// Sets the control page's 8-byte word at byte offset `off`.
    pub fn set_ctrl(&self, off: usize, value: u64) {
        self.word(off).store(value, Ordering::SeqCst);
    }

    /// Sets the control page's 4-byte word at byte offset `off`.
    pub fn set_ctrl32(&self, off: usize, value: u32) {
        self.word32(off).store(value, Ordering::SeqCst);
    }

    /// The consumer page's 8-byte word at byte offset `off`.
    pub fn cons(&self, off: usize) -> u64 {
        self.word(self.consumer_offset + off).load(Ordering::SeqCst)
    }

    /// Sets the consumer page's 8-byte word at byte offset `off`.
    pub fn set_cons(&self, off: usize, value: u64) {
        self.word(self.consumer_offset + off)
            .store(value, Ordering::SeqCst);
    }

    /// The data area's 8-byte word at offset `off`.
    pub fn data(&self, off: u64) -> u64 {
        assert!((off as usize) < self.data_size);
        self.word(self.data_offset + off as usize)
            .load(Ordering::SeqCst)
    }

    /// Sets the data area's 8-byte word at offset `off`.
    pub fn set_data(&self, off: u64, value: u64) {
        assert!((off as usize) < self.data_size);
        self.word(self.data_offset + off as usize)
            .store(value, Ordering::SeqCst);
    }

    /// Writes a record header at data-area offset `off`.
    pub fn header(&self, off: u64, len: u32, kind: u16, seq: u64) {
        self.set_data(off, header_word0(len, kind, 0));
        if off + 8 < self.data_size as u64 {
            self.set_data(off + 8, seq);
        }
        if off + 16 < self.data_size as u64 {
            self.set_data(off + 16, 0);
        }
    }

    /// Copies out the data area's bytes at `off..off + len`.
    pub fn data_bytes(&self, off: u64, len: usize) -> Vec<u8> {
        assert!(off as usize + len <= self.data_size);
        let mut out = vec![0u8; len];
        // SAFETY: The range is inside the mapping (checked above); `out` is
        // ours. A raw copy tolerates concurrent writers.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.map.as_ptr().add(self.data_offset + off as usize),
                out.as_mut_ptr(),
                len,
            )
        };
        out
    }

    /// Copies out the consumer page.
    pub fn consumer_page(&self) -> ConsumerPage {
        // SAFETY: The page is inside the mapping and aligned; a volatile
        // copy tolerates concurrent writers.
        unsafe {
            self.map
                .as_ptr()
                .add(self.consumer_offset)
                .cast::<ConsumerPage>()
                .read_volatile()
        }
    }

    /// Every byte of the region outside the data area, to check that a
    /// producer wrote nothing there.
    pub fn outside_data(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.data_offset];
        // SAFETY: As for `data_bytes`.
        unsafe { std::ptr::copy_nonoverlapping(self.map.as_ptr(), out.as_mut_ptr(), out.len()) };
        out
    }

    /// Makes a fresh, empty ring start at byte position `pos`: every
    /// position word the producer and consumer attach from says `pos`.
    /// Call before either side attaches.
    pub fn start_at(&self, pos: u64) {
        self.set_ctrl(OFF_PRODUCER_POS, pos);
        self.set_ctrl(OFF_OVERWRITE_POS, pos);
        self.set_cons(OFF_CONSUMER_POS, pos);
    }
}

/// Control and consumer pages plus a data area, in plain heap memory, for
/// driving [`ProducerCore`] and [`ConsumerCore`] directly.
#[repr(C, align(128))]
struct HeapPages {
    ctrl: ControlPage,
    cons: ConsumerPage,
}

/// A ring in leaked heap memory, whose positions all start at a chosen
/// value: as many views of it as a test wants.
#[derive(Clone, Copy)]
pub struct HeapRing {
    ctrl: NonNull<ControlPage>,
    cons: NonNull<ConsumerPage>,
    data: NonNull<u8>,
    data_size: u64,
}

impl HeapRing {
    /// A new ring with a data area of `data_size` bytes whose positions all
    /// start at `start` (a multiple of 8).
    ///
    /// The memory is leaked, so views stay valid for the rest of the test
    /// process: a few kilobytes per ring.
    pub fn new(data_size: u64, overflow: Overflow, start: u64) -> Self {
        assert!(data_size.is_power_of_two() && data_size >= 64);
        let flags = overflow.flag();
        let mut ctrl = rmemring::layout::Geometry {
            region_size: data_size + 8192,
            page_size: 4096,
            consumer_offset: 4096,
            data_offset: 8192,
            data_size,
        }
        .control_page(flags, 0);
        ctrl.producer_pos = start;
        ctrl.overwrite_pos = start;
        let mut cons = CONSUMER_PAGE_INIT;
        cons.consumer_pos = start;
        let pages: &'static mut HeapPages = Box::leak(Box::new(HeapPages { ctrl, cons }));
        let data: &'static mut [u64] =
            Box::leak(vec![0u64; (data_size / 8) as usize].into_boxed_slice());
        Self {
            ctrl: NonNull::from(&mut pages.ctrl),
            cons: NonNull::from(&mut pages.cons),
            data: NonNull::new(data.as_mut_ptr().cast::<u8>()).unwrap(),
            data_size,
        }
    }

    /// A view of the ring.
    pub fn view(&self) -> RingView {
        // SAFETY: The leaked memory lives for the rest of the process, is
        // 8-byte aligned, holds both pages and `data_size` bytes (a power of
        // two), and is only reached through views after `new`.
        unsafe {
            RingView::new(
                self.ctrl,
                self.cons,
                self.data,
                self.data_size,
                MemoryOrdering::WriteBack,
            )
        }
    }
}

/// Two views of a new heap ring (see [`HeapRing::new`]).
pub fn heap_views(data_size: u64, overflow: Overflow, start: u64) -> (RingView, RingView) {
    let ring = HeapRing::new(data_size, overflow, start);
    (ring.view(), ring.view())
}

/// A producer and a consumer core over a new heap ring (see [`heap_views`]),
/// with the largest payload the data area allows.
pub fn heap_ring(data_size: u64, overflow: Overflow, start: u64) -> (ProducerCore, ConsumerCore) {
    let (pv, cv) = heap_views(data_size, overflow, start);
    let max = max_payload_for(data_size);
    let producer = ProducerCore::attach(pv, overflow, max);
    let consumer = ConsumerCore::attach(cv, overflow, max).expect("a fresh ring is consistent");
    (producer, consumer)
}

/// Fills `slot` with record `seq`'s pattern through the producer's payload
/// pointer.
pub fn fill_slot(producer: &ProducerCore, slot: &Slot, seq: u64) {
    let ptr = producer.payload_ptr(slot);
    // SAFETY: `reserve` handed out `slot.len` writable bytes at `ptr`, and no
    // reader looks at them before the record is committed and published.
    let payload = unsafe { std::slice::from_raw_parts_mut(ptr, slot.len() as usize) };
    pattern::fill(seq, payload);
}

/// Fills a reservation with record `seq`'s pattern: in place in drop-new
/// mode, through [`rmemring::Reservation::write`] in overwrite mode.
pub fn fill(record: &mut rmemring::Reservation<'_>, seq: u64) {
    if let Some(payload) = record.payload() {
        pattern::fill(seq, payload);
        return;
    }
    let mut payload = vec![0u8; record.len()];
    pattern::fill(seq, &mut payload);
    record.write(&payload);
}

/// Writes record `seq`: `len` bytes of the test pattern, tag `seq as u16`,
/// committed (not published); while the ring is full (drop-new mode),
/// publishes and yields until the consumer makes room.
pub fn push_waiting(producer: &mut rmemring::Producer, seq: u64, len: usize) -> Result<(), String> {
    loop {
        match producer.reserve(len) {
            Ok(mut record) => {
                fill(&mut record, seq);
                record.set_tag(seq as u16);
                record.commit();
                return Ok(());
            }
            Err(rmemring::ProduceError::Full) => {
                // Let the consumer catch up; it may be asleep.
                producer.publish();
                std::thread::yield_now();
            }
            Err(e) => return Err(format!("record {seq}: {e}")),
        }
    }
}

/// Checks that `record` is what [`push_waiting`] wrote as record `seq`
/// with `len` bytes, and that nothing was lost before it.
pub fn check_record(record: &rmemring::Record<'_>, seq: u64, len: usize) -> Result<(), String> {
    if record.seq != seq || record.lost_before != 0 {
        return Err(format!(
            "expected record {seq}, got {} ({} lost before)",
            record.seq, record.lost_before
        ));
    }
    if record.payload.len() != len || record.tag != seq as u16 {
        return Err(format!(
            "record {seq}: {} bytes, tag {}",
            record.payload.len(),
            record.tag
        ));
    }
    if !pattern::verify(seq, record.payload) {
        return Err(format!("record {seq}: payload corrupt"));
    }
    Ok(())
}

/// Copies out the payload of a record the consumer core found.
pub fn payload_of(consumer: &ConsumerCore, offset: u64, len: u32) -> Vec<u8> {
    let mut out = vec![0u8; len as usize];
    // SAFETY: `ConsumerCore` validated that the record's stride lies inside
    // the data area from its 8-aligned offset; `out` holds `len` bytes.
    unsafe {
        consumer
            .view()
            .copy_payload_out(offset, out.as_mut_ptr(), len as usize)
    };
    out
}

/// Runs `body` in a forked child process and returns its pid. The child
/// reports an error on stderr (not through the test harness's capture,
/// which the child would never print) and exits without unwinding into the
/// harness: status 0 on success, 1 on an error, 101 on a panic.
///
/// # Safety
///
/// The calling test binary must have a single test, so that the only
/// other thread is the harness's main thread, which holds no lock the
/// child needs. `body` may allocate (glibc resets its malloc locks in the
/// child), make system calls and write to stderr.
pub unsafe fn fork_child(body: impl FnOnce() -> Result<(), String>) -> nix::unistd::Pid {
    use nix::unistd::ForkResult;
    use std::io::Write;
    // SAFETY: The caller guarantees that the process is single-threaded
    // but for a thread that holds nothing the child uses.
    match unsafe { nix::unistd::fork() }.expect("fork") {
        ForkResult::Parent { child } => child,
        ForkResult::Child => {
            let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
                Ok(Ok(())) => 0,
                Ok(Err(message)) => {
                    let _ = writeln!(std::io::stderr(), "child {}: {message}", std::process::id());
                    1
                }
                Err(_) => 101,
            };
            // SAFETY: `_exit` ends the process at once, running nothing of
            // the harness's; it has no preconditions.
            unsafe { libc::_exit(code) }
        }
    }
}
