//! A ring in guarded mappings: any access outside its parts faults.
//!
//! Without AddressSanitizer (stable Rust has none), an out-of-bounds access
//! would read or scribble on whatever lies next to the ring and go unseen.
//! Here the control page, the consumer page and the data area of one memfd
//! are mapped each on its own, between `PROT_NONE` guard pages, so a
//! single byte outside them is a SIGSEGV, which libFuzzer reports as a
//! crash with the input that caused it. The data area is a whole number of
//! pages, so its guards touch it on both sides.
//!
//! The memfd is mapped three times, once per party, with the permissions
//! that party has in the real system: the producer cannot write the
//! consumer page, the consumer can write nothing but its page (user space
//! maps the rest read-only), and the harness writes everything, as a
//! hostile peer would. A store through the wrong view faults too.

use std::ptr::NonNull;

use rmemring_proto::layout::{
    ConsumerPage,
    ControlPage, //
};

/// The page size the harness lays rings out with (and the guard size).
pub const PAGE: usize = 4096;

/// Who accesses a view of the ring, which decides what it may write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Party {
    /// Writes the control page and the data area, reads the consumer page.
    Producer,
    /// Writes the consumer page, reads the rest.
    Consumer,
    /// Writes everything.
    Harness,
}

/// Where one party sees the three parts of the ring.
#[derive(Clone, Copy, Debug)]
pub struct Parts {
    /// The control page.
    pub ctrl: NonNull<ControlPage>,
    /// The consumer page.
    pub cons: NonNull<ConsumerPage>,
    /// The first byte of the data area.
    pub data: NonNull<u8>,
}

/// An address range this process reserved with `mmap`; unmapped on drop.
struct Reservation {
    base: NonNull<u8>,
    len: usize,
}

impl Reservation {
    /// Reserves `len` bytes of inaccessible address space.
    fn new(len: usize) -> Self {
        // SAFETY: An anonymous mapping at an address of the kernel's
        // choosing touches no existing memory.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED, "mmap: {}", errno());
        Self {
            base: NonNull::new(base.cast()).expect("mmap returned null"),
            len,
        }
    }

    /// Maps `len` bytes of `fd` from `file_offset` at `offset` in the
    /// reservation, with protection `prot`.
    fn map(
        &self,
        offset: usize,
        len: usize,
        prot: i32,
        fd: i32,
        file_offset: usize,
    ) -> NonNull<u8> {
        assert!(offset + len <= self.len);
        // SAFETY: `MAP_FIXED` replaces pages of our own reservation only
        // (checked above), which nothing else uses.
        let addr = unsafe {
            libc::mmap(
                self.base.as_ptr().add(offset).cast(),
                len,
                prot,
                libc::MAP_SHARED | libc::MAP_FIXED,
                fd,
                file_offset as libc::off_t,
            )
        };
        assert_ne!(addr, libc::MAP_FAILED, "mmap: {}", errno());
        NonNull::new(addr.cast()).expect("mmap returned null")
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // SAFETY: The range is ours, and no view of it outlives the arena.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

fn errno() -> std::io::Error {
    std::io::Error::last_os_error()
}

/// A ring with a data area of `data_size` bytes, mapped once per party.
pub struct Arena {
    data_size: usize,
    producer: Parts,
    consumer: Parts,
    harness: Parts,
    _maps: [Reservation; 3],
}

impl Arena {
    /// A fresh, all-zero ring. `data_size` must be a power of two of at
    /// least one page.
    pub fn new(data_size: usize) -> Self {
        assert!(data_size.is_power_of_two() && data_size >= PAGE);
        // SAFETY: The name is a NUL-terminated string.
        let fd = unsafe { libc::memfd_create(c"rmemring-fuzz".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0, "memfd_create: {}", errno());
        // SAFETY: `fd` is the memfd just created.
        let sized = unsafe { libc::ftruncate(fd, (2 * PAGE + data_size) as libc::off_t) };
        assert_eq!(sized, 0, "ftruncate: {}", errno());
        let mut maps = Vec::new();
        let mut view = |party| {
            use libc::{
                PROT_READ as R,
                PROT_WRITE as W, //
            };
            let (ctrl, cons, data) = match party {
                Party::Producer => (R | W, R, R | W),
                Party::Consumer => (R, R | W, R),
                Party::Harness => (R | W, R | W, R | W),
            };
            // guard, control page, guard, consumer page, guard, data, guard.
            let res = Reservation::new(5 * PAGE + 2 * PAGE + data_size);
            let parts = Parts {
                ctrl: res.map(PAGE, PAGE, ctrl, fd, 0).cast(),
                cons: res.map(3 * PAGE, PAGE, cons, fd, PAGE).cast(),
                data: res.map(5 * PAGE, data_size, data, fd, 2 * PAGE),
            };
            maps.push(res);
            parts
        };
        let producer = view(Party::Producer);
        let consumer = view(Party::Consumer);
        let harness = view(Party::Harness);
        // SAFETY: The mappings hold their own references to the memfd.
        unsafe { libc::close(fd) };
        let Ok(maps) = <[Reservation; 3]>::try_from(maps) else {
            unreachable!("three views")
        };
        Self {
            data_size,
            producer,
            consumer,
            harness,
            _maps: maps,
        }
    }

    /// Bytes in the data area.
    pub fn data_size(&self) -> usize {
        self.data_size
    }

    /// Where `party` sees the ring.
    pub fn parts(&self, party: Party) -> Parts {
        match party {
            Party::Producer => self.producer,
            Party::Consumer => self.consumer,
            Party::Harness => self.harness,
        }
    }

    /// Zeroes the whole ring.
    pub fn clear(&self) {
        let h = self.harness;
        // SAFETY: The harness view of each part is writable and this long;
        // no view's reference is held across this call (every access to
        // the ring goes through raw pointers).
        unsafe {
            h.ctrl.cast::<u8>().write_bytes(0, PAGE);
            h.cons.cast::<u8>().write_bytes(0, PAGE);
            h.data.write_bytes(0, self.data_size);
        }
    }

    /// Reads the `T` at byte offset `off` of the control page.
    pub fn ctrl<T: Copy>(&self, off: usize) -> T {
        self.read(self.harness.ctrl.cast(), PAGE, off)
    }

    /// Writes the `T` at byte offset `off` of the control page.
    pub fn set_ctrl<T: Copy>(&self, off: usize, value: T) {
        self.write(self.harness.ctrl.cast(), PAGE, off, value)
    }

    /// Reads the `T` at byte offset `off` of the consumer page.
    pub fn cons<T: Copy>(&self, off: usize) -> T {
        self.read(self.harness.cons.cast(), PAGE, off)
    }

    /// Writes the `T` at byte offset `off` of the consumer page.
    pub fn set_cons<T: Copy>(&self, off: usize, value: T) {
        self.write(self.harness.cons.cast(), PAGE, off, value)
    }

    /// Writes the 8-byte word at data-area offset `off`.
    pub fn set_data(&self, off: u64, value: u64) {
        self.write(self.harness.data, self.data_size, off as usize, value)
    }

    /// Copies the data area out.
    pub fn data(&self) -> Vec<u8> {
        let mut out = vec![0; self.data_size];
        // SAFETY: The harness view of the data area is readable and this
        // long; `out` is ours. Nothing runs concurrently with the harness.
        unsafe {
            std::ptr::copy_nonoverlapping(self.harness.data.as_ptr(), out.as_mut_ptr(), out.len())
        };
        out
    }

    /// Runs `f` on the data area as it is now, without copying it.
    pub fn with_data<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        // SAFETY: The harness view of the data area is readable and this
        // long. The slice lives only during `f`, which gets no way to run a
        // party (they all run on this thread, between the harness's
        // steps), so nothing writes the bytes while it exists.
        let data =
            unsafe { std::slice::from_raw_parts(self.harness.data.as_ptr(), self.data_size) };
        f(data)
    }

    fn read<T: Copy>(&self, base: NonNull<u8>, len: usize, off: usize) -> T {
        assert!(off.is_multiple_of(align_of::<T>()) && off + size_of::<T>() <= len);
        // SAFETY: Inside the harness view of the part (checked above) and
        // aligned, as the part is page-aligned. Volatile, because the
        // parties write the same memory through other mappings.
        unsafe { base.as_ptr().add(off).cast::<T>().read_volatile() }
    }

    fn write<T: Copy>(&self, base: NonNull<u8>, len: usize, off: usize, value: T) {
        assert!(off.is_multiple_of(align_of::<T>()) && off + size_of::<T>() <= len);
        // SAFETY: As for `read`; the harness view is writable.
        unsafe { base.as_ptr().add(off).cast::<T>().write_volatile(value) }
    }
}

/// A buffer whose end touches a guard page, so a copy that runs past the
/// length it was given faults.
pub struct GuardedBuf {
    res: Reservation,
    capacity: usize,
}

impl GuardedBuf {
    /// A buffer for copies of up to `capacity` bytes (a multiple of the page).
    pub fn new(capacity: usize) -> Self {
        assert!(capacity.is_multiple_of(PAGE));
        let res = Reservation::new(capacity + PAGE);
        // SAFETY: Our own reservation; the last page stays `PROT_NONE`.
        let ok = unsafe {
            libc::mprotect(
                res.base.as_ptr().cast(),
                capacity,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        };
        assert_eq!(ok, 0, "mprotect: {}", errno());
        Self { res, capacity }
    }

    /// The last `len` bytes before the guard (at most the capacity).
    pub fn tail(&mut self, len: usize) -> &mut [u8] {
        let len = len.min(self.capacity);
        // SAFETY: The `len` bytes before the guard are readable and
        // writable memory of this buffer alone, and `&mut self` makes the
        // slice the only reference to them.
        unsafe {
            std::slice::from_raw_parts_mut(self.res.base.as_ptr().add(self.capacity - len), len)
        }
    }
}
