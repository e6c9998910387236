// SPDX-License-Identifier: GPL-2.0-only OR MIT

//! rmemring's in-kernel producer API for Rust modules: the safe face of
//! the functions `rmemring.h` declares and `rmemring.ko` exports.
//!
//! An out-of-tree Rust module includes this file as a module of its own
//! crate (7.2 has no way for one module's Rust crate to use another's),
//! and is built with `KBUILD_EXTRA_SYMBOLS` pointing at the driver's
//! `Module.symvers`, like a C client (docs/kernel-api.md):
//!
//! ```ignore
//! #[path = "path/to/rmemring/driver/include/rmemring.rs"]
//! mod rmemring;
//!
//! let ring = rmemring::Ring::get(c"rmemring0")?;
//! ring.write(0x100, b"hello")?;
//! ring.reserve(0x100, 8, |record| {
//!     record.fill(&42u64.to_le_bytes());
//!     rmemring::Finish::Commit
//! })?;
//! ```
//!
//! The contexts are the C API's: [`Ring::get`] and dropping a [`Ring`] in
//! process context; writing in any context but NMI, on any CPU.

use core::marker::PhantomData;
use core::ptr::NonNull;

use kernel::{
    ffi::{
        c_char,
        c_int,
        c_void, //
    },
    prelude::*,
};

/// The exported C functions (`rmemring.h`).
mod ffi {
    use kernel::ffi::{
        c_char,
        c_int,
        c_void, //
    };

    extern "C" {
        pub(super) fn rmemring_get(name: *const c_char) -> *mut c_void;
        pub(super) fn rmemring_put(ring: *mut c_void);
        pub(super) fn rmemring_write(
            ring: *mut c_void,
            tag: u16,
            data: *const c_void,
            len: u32,
            flags: u32,
        ) -> c_int;
        pub(super) fn rmemring_reserve(ring: *mut c_void, tag: u16, len: u32) -> *mut c_void;
        pub(super) fn rmemring_commit(ring: *mut c_void, payload: *mut c_void, flags: u32)
            -> c_int;
        pub(super) fn rmemring_discard(ring: *mut c_void, payload: *mut c_void);
        pub(super) fn rmemring_max_payload(ring: *mut c_void) -> u32;
        pub(super) fn rmemring_batch_begin(ring: *mut c_void, seq: *mut u64) -> c_int;
        pub(super) fn rmemring_batch_reserve(
            ring: *mut c_void,
            tag: u16,
            len: u32,
            flags: u32,
        ) -> *mut c_void;
        pub(super) fn rmemring_batch_commit(ring: *mut c_void, payload: *mut c_void) -> c_int;
        pub(super) fn rmemring_batch_end(ring: *mut c_void, flags: u32) -> c_int;
    }
}

/// `RMEMRING_NO_WAKEUP` of `rmemring.h`.
const NO_WAKEUP: u32 = 1;
/// `RMEMRING_NO_DROP` of `rmemring.h`.
const NO_DROP: u32 = 2;

/// Why a record did not go into the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteError {
    /// Drop-new mode and the ring is full: counted in `records_dropped`,
    /// and the consumer sees the sequence gap.
    Dropped,
    /// Larger than [`Ring::max_payload`]: not counted.
    TooLarge,
    /// The device is gone (unbound): counted in `records_refused`.
    Gone,
    /// NMI context, a write nested in a producer's critical section on
    /// this CPU (of any ring), or a reset is rewriting the ring: counted in
    /// `records_refused`.
    Refused,
    /// In a [`Batch`]: the batch is at its bound (64 KiB or 16 384
    /// records); return from the closure, and begin another. Not counted.
    BatchFull,
    /// In a [`Batch`], with [`Batch::reserve_no_drop`]: drop-new mode and
    /// the ring full. Not counted, no sequence number taken.
    NoRoom,
    /// A call the driver refused as a misuse (`-EINVAL`): logged.
    Invalid,
}

impl WriteError {
    fn from_errno(errno: c_int) -> Self {
        match -errno {
            e if e == kernel::bindings::ENOSPC as c_int => WriteError::Dropped,
            e if e == kernel::bindings::EMSGSIZE as c_int => WriteError::TooLarge,
            e if e == kernel::bindings::ENODEV as c_int => WriteError::Gone,
            e if e == kernel::bindings::EAGAIN as c_int => WriteError::BatchFull,
            e if e == kernel::bindings::ENOBUFS as c_int => WriteError::NoRoom,
            e if e == kernel::bindings::EINVAL as c_int => WriteError::Invalid,
            _ => WriteError::Refused,
        }
    }

    fn result(ret: c_int) -> Result<(), Self> {
        if ret == 0 {
            Ok(())
        } else {
            Err(Self::from_errno(ret))
        }
    }

    fn from_ptr(ptr: *mut c_void) -> Result<NonNull<u8>, Self> {
        let addr = ptr as isize;
        if (-4095..0).contains(&addr) {
            return Err(Self::from_errno(addr as c_int));
        }
        NonNull::new(ptr.cast::<u8>()).ok_or(WriteError::Refused)
    }
}

/// A reference to a ring (`struct rmemring *`): it keeps the ring alive,
/// and `rmemring.ko` loaded, until dropped.
pub struct Ring {
    raw: NonNull<c_void>,
}

// SAFETY: The C API may be called on a ring from any CPU and context (but
// NMI), concurrently: the driver serialises producers itself.
unsafe impl Send for Ring {}
// SAFETY: As above.
unsafe impl Sync for Ring {}

impl Ring {
    /// The ring `/dev/NAME`; `ENODEV` if there is none. Process context.
    pub fn get(name: &CStr) -> Result<Self> {
        // SAFETY: `name` is a NUL-terminated string, valid during the call.
        let raw = unsafe { ffi::rmemring_get(name.as_ptr().cast::<c_char>()) };
        NonNull::new(raw).map(|raw| Self { raw }).ok_or(ENODEV)
    }

    /// Copies `payload` into one record tagged `tag` and publishes it.
    pub fn write(&self, tag: u16, payload: &[u8]) -> Result<(), WriteError> {
        self.write_flags(tag, payload, 0)
    }

    /// [`Self::write`], without waking a sleeping consumer (its request
    /// stays armed for the next publication): `RMEMRING_NO_WAKEUP`.
    pub fn write_quietly(&self, tag: u16, payload: &[u8]) -> Result<(), WriteError> {
        self.write_flags(tag, payload, NO_WAKEUP)
    }

    fn write_flags(&self, tag: u16, payload: &[u8], flags: u32) -> Result<(), WriteError> {
        let len = u32::try_from(payload.len()).map_err(|_| WriteError::TooLarge)?;
        // SAFETY: `self` holds a reference to the ring; `payload` is valid
        // for reads of `len` bytes during the call.
        let ret = unsafe {
            ffi::rmemring_write(self.raw.as_ptr(), tag, payload.as_ptr().cast(), len, flags)
        };
        WriteError::result(ret)
    }

    /// Reserves a record of `len` payload bytes tagged `tag` and lends it
    /// to `fill`, which writes it in place (zero-copy) and says what
    /// becomes of it: committed, committed quietly, or discarded. The
    /// ring's producer lock is held, interrupts off, while `fill` runs:
    /// be quick and do not sleep. A write to any ring meanwhile, on this
    /// CPU, is refused (`Refused`), so is a second reservation. `fill` is
    /// not called if the reservation fails.
    ///
    /// The reservation is only lent: `fill` cannot keep it or
    /// `mem::forget` it, so the lock is always let go when `fill`
    /// returns (a `Reservation` that safe code could forget would leave
    /// the lock held, with this CPU's interrupts off, for ever).
    pub fn reserve(
        &self,
        tag: u16,
        len: u32,
        fill: impl FnOnce(&mut Reservation<'_>) -> Finish,
    ) -> Result<(), WriteError> {
        // SAFETY: `self` holds a reference to the ring; the reservation is
        // finished exactly once, below, on this CPU and in this context.
        let payload = unsafe { ffi::rmemring_reserve(self.raw.as_ptr(), tag, len) };
        let payload = WriteError::from_ptr(payload)?;
        let mut reservation = Reservation {
            payload,
            len: len as usize,
            _here: PhantomData,
        };
        let finish = fill(&mut reservation);
        let raw = self.raw.as_ptr();
        let payload = payload.as_ptr().cast();
        let ret = match finish {
            // SAFETY: The reservation is open (`fill` only borrowed it), and
            // is finished here once.
            Finish::Commit => unsafe { ffi::rmemring_commit(raw, payload, 0) },
            // SAFETY: As above.
            Finish::CommitQuietly => unsafe { ffi::rmemring_commit(raw, payload, NO_WAKEUP) },
            Finish::Discard => {
                // SAFETY: As above.
                unsafe { ffi::rmemring_discard(raw, payload) };
                0
            }
        };
        WriteError::result(ret)
    }

    /// Begins a batch and lends it to `fill`, which reserves, fills and
    /// commits records with [`Batch::reserve`]; when `fill` returns, the
    /// batch's records are published together (with `quiet`, without
    /// waking a sleeping consumer) and the lock is let go: one lock hold
    /// and one publication for many records. The lock is held, interrupts
    /// off, while `fill` runs, as for [`Self::reserve`]; the driver bounds
    /// the batch (64 KiB of records or 16 384 of them, then
    /// [`WriteError::BatchFull`]). `fill` gets the sequence number of the
    /// batch's first record; each record committed or dropped takes the
    /// next. `fill` is not called if the batch cannot begin
    /// ([`WriteError::Gone`], [`WriteError::Refused`], counted once).
    pub fn batch<R>(
        &self,
        quiet: bool,
        fill: impl FnOnce(&mut Batch<'_>, u64) -> R,
    ) -> Result<R, WriteError> {
        let mut seq = 0u64;
        // SAFETY: `self` holds a reference; `seq` is writable; the batch is
        // ended below, once, on this CPU (interrupts are off meanwhile).
        WriteError::result(unsafe { ffi::rmemring_batch_begin(self.raw.as_ptr(), &mut seq) })?;
        let mut batch = Batch {
            ring: self,
            _here: PhantomData,
        };
        let result = fill(&mut batch, seq);
        // SAFETY: The batch is open (`fill` only borrowed it) and ended
        // here once.
        let _ = unsafe {
            ffi::rmemring_batch_end(self.raw.as_ptr(), if quiet { NO_WAKEUP } else { 0 })
        };
        Ok(result)
    }

    /// The largest payload a record can carry.
    pub fn max_payload(&self) -> u32 {
        // SAFETY: `self` holds a reference to the ring.
        unsafe { ffi::rmemring_max_payload(self.raw.as_ptr()) }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: The reference came from `rmemring_get` and is given back
        // once.
        unsafe { ffi::rmemring_put(self.raw.as_ptr()) };
    }
}

/// A batch open on a ring, lent to the closure of [`Ring::batch`]. It
/// stays on the CPU that began it (not `Send`), as the lock it holds must.
pub struct Batch<'a> {
    ring: &'a Ring,
    /// Not `Send`.
    _here: PhantomData<*mut ()>,
}

impl Batch<'_> {
    /// Reserves a record of `len` payload bytes tagged `tag` in the batch
    /// and lends it to `fill`, which writes it; it is committed when
    /// `fill` returns true, and discarded otherwise. Errors as
    /// `rmemring_batch_reserve`'s: [`WriteError::Dropped`] (counted, a
    /// sequence number taken), [`WriteError::TooLarge`],
    /// [`WriteError::BatchFull`] (return from the batch's closure).
    pub fn reserve(
        &mut self,
        tag: u16,
        len: u32,
        fill: impl FnOnce(&mut Reservation<'_>) -> bool,
    ) -> Result<(), WriteError> {
        self.reserve_flags(tag, len, 0, fill)
    }

    /// [`Self::reserve`], but a full drop-new ring refuses the record
    /// ([`WriteError::NoRoom`]: not counted, no sequence number taken)
    /// rather than dropping it: `RMEMRING_NO_DROP`.
    pub fn reserve_no_drop(
        &mut self,
        tag: u16,
        len: u32,
        fill: impl FnOnce(&mut Reservation<'_>) -> bool,
    ) -> Result<(), WriteError> {
        self.reserve_flags(tag, len, NO_DROP, fill)
    }

    fn reserve_flags(
        &mut self,
        tag: u16,
        len: u32,
        flags: u32,
        fill: impl FnOnce(&mut Reservation<'_>) -> bool,
    ) -> Result<(), WriteError> {
        let raw = self.ring.raw.as_ptr();
        // SAFETY: The batch is open on this CPU, lent by `Ring::batch`.
        let payload =
            WriteError::from_ptr(unsafe { ffi::rmemring_batch_reserve(raw, tag, len, flags) })?;
        let mut reservation = Reservation {
            payload,
            len: len as usize,
            _here: PhantomData,
        };
        if !fill(&mut reservation) {
            // Discarded by the next reservation or the batch's end.
            return Ok(());
        }
        // SAFETY: The batch's open reservation, of this payload.
        WriteError::result(unsafe { ffi::rmemring_batch_commit(raw, payload.as_ptr().cast()) })
    }
}

/// What [`Ring::reserve`] does with the reservation its closure filled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// Make it a record and publish it.
    Commit,
    /// [`Finish::Commit`], without waking a sleeping consumer (its request
    /// stays armed for the next publication): `RMEMRING_NO_WAKEUP`.
    CommitQuietly,
    /// Give it back unwritten: it takes no sequence number.
    Discard,
}

/// An open reservation, lent to the closure of [`Ring::reserve`]:
/// [`Self::fill`] it. It stays on the CPU that made it (not `Send`), as
/// the lock it holds must.
///
/// It lends no `&mut [u8]`: in overwrite mode a consumer that lapped the
/// producer may read these bytes while they are written (it discards what
/// it read), which a Rust reference would make a data race; and a ring
/// mapped uncached takes only aligned stores on arm64. So the payload is
/// written by [`Self::fill`], with aligned 8-byte relaxed atomic stores,
/// as the driver writes its own.
pub struct Reservation<'a> {
    payload: NonNull<u8>,
    len: usize,
    /// Not `Send`, and tied to the ring it was reserved from.
    _here: PhantomData<(*mut (), &'a Ring)>,
}

impl Reservation<'_> {
    /// The reserved payload length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the payload has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes `bytes` as the payload, from its start (at most the
    /// reserved length; a partial last word is padded with zeroes, which
    /// stay within the record's padding).
    pub fn fill(&mut self, bytes: &[u8]) {
        let bytes = bytes.get(..self.len).unwrap_or(bytes);
        for (i, chunk) in bytes.chunks(8).enumerate() {
            let mut word = [0u8; 8];
            if let Some(to) = word.get_mut(..chunk.len()) {
                to.copy_from_slice(chunk);
            }
            // SAFETY: The payload is 8-byte aligned and its record is
            // padded to 8 bytes, so word `i` (below `ceil(len / 8)`) lies
            // in the reservation, which is this producer's to write until
            // it is finished; others only read it, with atomic loads. It
            // stays valid for the reservation's life, beyond this call.
            let atomic = unsafe {
                core::sync::atomic::AtomicU64::from_ptr(self.payload.as_ptr().add(8 * i).cast())
            };
            atomic.store(
                u64::from_ne_bytes(word),
                core::sync::atomic::Ordering::Relaxed,
            );
        }
    }
}
