// SPDX-License-Identifier: GPL-2.0

//! The in-kernel producer API: any kernel code writes records into a ring.
//!
//! These are the functions `include/rmemring.h` declares and `api.c`
//! exports (`EXPORT_SYMBOL_GPL`); docs/kernel-api.md is the guide. A
//! client module looks a ring up by name, holds a reference that keeps the
//! ring (and its memory) alive, and writes from any context but NMI, on
//! any CPU. Every function here is a thin shell over [`Ring`]'s producer
//! side, which the built-in producer thread uses too.
//!
//! The C type `struct rmemring` is a [`Ring`] behind `Arc::into_raw`: a
//! reference that `rmemring_put` gives back.

use kernel::{
    ffi::{
        c_char,
        c_int,
        c_void, //
    },
    prelude::*,
    sync::Arc,
};

use crate::ring::{
    Ring,
    WriteError, //
};

/// The most rings the registry holds: the device numbers are bits of a
/// `u64` (see `device.rs`).
const MAX_RINGS: usize = 64;

kernel::sync::global_lock! {
    // SAFETY: Initialised by `init`, from the module's init, before any
    // device registers or any client can call in.
    unsafe(uninit) static RINGS: Mutex<[Option<Arc<Ring>>; MAX_RINGS]> = [const { None }; MAX_RINGS];
}

/// Sets the registry up; once, from the module's init.
pub(crate) fn init() {
    // SAFETY: Called once, before any other use of `RINGS`.
    unsafe { RINGS.init() };
}

/// Makes `ring` findable by its name until [`unregister`].
pub(crate) fn register(ring: &Arc<Ring>) -> Result {
    let mut rings = RINGS.lock();
    let slot = rings.iter_mut().find(|r| r.is_none()).ok_or(ENOSPC)?;
    *slot = Some(ring.clone());
    Ok(())
}

/// Forgets `ring`: no new client finds it. Clients that hold it keep
/// their reference; their writes fail once the device shuts it down.
pub(crate) fn unregister(ring: &Ring) {
    let mut rings = RINGS.lock();
    for slot in rings.iter_mut() {
        if slot.as_deref().is_some_and(|r| core::ptr::eq(r, ring)) {
            *slot = None;
        }
    }
}

/// Turns a `struct rmemring *` back into the ring it refers to.
///
/// # Safety
///
/// `ring` came from [`rmemring_get`] and was not yet given to
/// [`rmemring_put`].
unsafe fn ring_ref<'a>(ring: *const c_void) -> &'a Ring {
    // SAFETY: The caller holds the reference `rmemring_get` made with
    // `Arc::into_raw`, which keeps the ring alive.
    unsafe { &*ring.cast::<Ring>() }
}

/// Finds the ring `/dev/NAME` and takes a reference to it.
///
/// Returns `NULL` if there is none. Process context (it takes a mutex).
///
/// # Safety
///
/// `name` is a NUL-terminated string.
#[no_mangle]
pub(crate) unsafe extern "C" fn rmemring_get(name: *const c_char) -> *const c_void {
    if name.is_null() {
        return core::ptr::null();
    }
    // SAFETY: The caller passes a NUL-terminated string, valid during the
    // call.
    let name = unsafe { CStr::from_char_ptr(name) };
    let rings = RINGS.lock();
    rings
        .iter()
        .flatten()
        .find(|r| r.is_live() && r.name() == name)
        .map_or(core::ptr::null(), |r| Arc::into_raw(r.clone()).cast())
}

/// Gives back a reference from [`rmemring_get`]. Process context: the last
/// reference to a ring whose device is gone releases its memory.
///
/// # Safety
///
/// `ring` came from `rmemring_get` and is not used again (a `NULL` is
/// ignored).
#[no_mangle]
pub(crate) unsafe extern "C" fn rmemring_put(ring: *const c_void) {
    // Even when it is not the last reference: a caller in atomic context
    // is told now, not on the day its put is the last.
    kernel::task::might_sleep();
    if ring.is_null() {
        return;
    }
    // SAFETY: The caller gives back the reference `Arc::into_raw` made.
    drop(unsafe { Arc::from_raw(ring.cast::<Ring>()) });
}

/// The C API's return value for a write's outcome.
fn status(result: Result<(), WriteError>) -> c_int {
    match result {
        Ok(()) => 0,
        Err(e) => e.to_errno().to_errno(),
    }
}

/// `rmemring_write`/`rmemring_commit`/`rmemring_batch_end` flag: publish
/// without waking a sleeping consumer (its request stays armed for the
/// next publication), as the BPF ring buffer's `BPF_RB_NO_WAKEUP`.
const NO_WAKEUP: u32 = 1;

/// The `flags` of a call that ends a producer's critical section
/// (`rmemring_commit`, `rmemring_batch_end`). Unknown flags end it all the
/// same, publishing quietly (never leave the lock held with interrupts
/// off), and the call then fails with `-EINVAL`.
#[derive(Clone, Copy)]
struct Ending {
    /// Every flag is one the call knows.
    known: bool,
    /// Publish without waking a sleeping consumer: [`NO_WAKEUP`], or
    /// flags not known.
    quiet: bool,
}

impl Ending {
    /// What `flags` ask.
    #[inline]
    fn of(flags: u32) -> Self {
        let known = flags & !NO_WAKEUP == 0;
        Ending {
            known,
            quiet: !known || flags & NO_WAKEUP != 0,
        }
    }

    /// The C API's return value for the call, whose section ended with
    /// `result`.
    #[inline]
    fn status(self, result: Result<(), WriteError>) -> c_int {
        match result {
            Ok(()) if self.known => 0,
            Ok(()) => EINVAL.to_errno(),
            Err(e) => e.to_errno().to_errno(),
        }
    }
}

/// `rmemring_batch_reserve` flag: a drop-new ring that is full refuses the
/// record (`-ENOBUFS`, not counted, no sequence number) rather than
/// dropping it, for a producer that can wait for room.
const NO_DROP: u32 = 2;

/// Copies `len` bytes at `data` into one record tagged `tag`, and
/// publishes it (with [`NO_WAKEUP`] in `flags`, quietly). Any context but
/// NMI.
///
/// Returns 0, or `-ENOSPC` (dropped: drop-new mode and the ring is full;
/// counted in `records_dropped`), `-EMSGSIZE` (larger than the ring's
/// `max_payload`), `-ENODEV` (the device is gone; counted in
/// `records_refused`), `-EBUSY` (NMI context, a write from inside a
/// producer section of any ring on this CPU, or a reset is rewriting the
/// ring; counted in `records_refused`), `-EINVAL` (unknown `flags`).
///
/// # Safety
///
/// `ring` is a reference from `rmemring_get`; `data` is valid for reads
/// of `len` bytes (or `len` is 0).
#[no_mangle]
pub(crate) unsafe extern "C" fn rmemring_write(
    ring: *const c_void,
    tag: u16,
    data: *const c_void,
    len: u32,
    flags: u32,
) -> c_int {
    if flags & !NO_WAKEUP != 0 {
        return EINVAL.to_errno();
    }
    // SAFETY: The caller holds a reference.
    let ring = unsafe { ring_ref(ring) };
    // Before `data` is looked at: a caller that passes too large a `len`
    // may not have that many bytes there.
    if len > ring.max_payload() {
        return EMSGSIZE.to_errno();
    }
    let payload: &[u8] = if len == 0 {
        &[]
    } else {
        // SAFETY: The caller gives `len` readable bytes at `data`.
        unsafe { core::slice::from_raw_parts(data.cast::<u8>(), len as usize) }
    };
    status(ring.write(tag, payload, flags & NO_WAKEUP != 0))
}

/// Reserves a record of `len` payload bytes tagged `tag` and returns its
/// payload, to be filled in place and then given to [`rmemring_commit`] or
/// [`rmemring_discard`]. The producer lock stays held, with interrupts
/// off, until then: fill it quickly, do not sleep.
///
/// On failure returns `ERR_PTR` of the errors [`rmemring_write`] returns.
///
/// # Safety
///
/// `ring` is a reference from `rmemring_get`, and the caller holds no
/// other reservation of it.
#[no_mangle]
pub(crate) unsafe extern "C" fn rmemring_reserve(
    ring: *const c_void,
    tag: u16,
    len: u32,
) -> *mut c_void {
    // SAFETY: The caller holds a reference.
    let ring = unsafe { ring_ref(ring) };
    match ring.reserve_held(tag, len) {
        Ok(payload) => payload.cast(),
        Err(e) => e.to_errno().to_ptr(),
    }
}

/// Commits the reservation of [`rmemring_reserve`] and publishes it (with
/// [`NO_WAKEUP`] in `flags`, quietly).
///
/// Returns 0, or `-EINVAL`: unknown `flags` (the reservation is discarded
/// and the lock let go, as [`rmemring_discard`] would), or no reservation
/// of that payload open on this CPU (logged; nothing touched); `-EBUSY`:
/// NMI context (counted in `records_refused`; nothing touched).
///
/// # Safety
///
/// The caller made the reservation of `ring`, on this CPU, in this
/// context, and has not committed or discarded it; `payload` is what
/// `rmemring_reserve` returned. (A call that breaks this is refused where
/// the ring can tell: no reservation of that payload open on this CPU, or
/// NMI context.)
#[no_mangle]
pub(crate) unsafe extern "C" fn rmemring_commit(
    ring: *const c_void,
    payload: *mut c_void,
    flags: u32,
) -> c_int {
    // Unknown flags: the reservation is given back unwritten, as
    // `rmemring_discard` does (see `Ending`). (One call of `finish_held`,
    // which is then inlined here: this is a tracer's every event.)
    let ending = Ending::of(flags);
    // SAFETY: The caller holds a reference.
    let ring = unsafe { ring_ref(ring) };
    // SAFETY: The caller holds the reservation (so the producer lock);
    // `finish_held` refuses a payload it did not hand out.
    ending.status(unsafe { ring.finish_held(payload.cast(), ending.known, ending.quiet) })
}

/// Gives the reservation of [`rmemring_reserve`] back unwritten.
///
/// # Safety
///
/// As for [`rmemring_commit`].
#[no_mangle]
pub(crate) unsafe extern "C" fn rmemring_discard(ring: *const c_void, payload: *mut c_void) {
    // SAFETY: As for `rmemring_commit`. A refusal is logged (or counted,
    // in NMI context) there: a discard has no return value.
    let _ = unsafe { ring_ref(ring).finish_held(payload.cast(), false, true) };
}

/// Begins a batch: takes the ring's producer lock (interrupts off) and
/// keeps it until [`rmemring_batch_end`], for records reserved with
/// [`rmemring_batch_reserve`] and committed with [`rmemring_batch_commit`],
/// published together by the end. Stores the sequence number the batch's
/// next record gets in `*seq` (if `seq` is not NULL): within a batch each
/// record committed or dropped takes the next one. Any context but NMI.
///
/// Returns 0 (the batch is open: end it), or `-ENODEV`, `-EBUSY` as
/// [`rmemring_write`] (counted in `records_refused`, once).
///
/// # Safety
///
/// `ring` is a reference from `rmemring_get`; `seq` is NULL or valid for a
/// write of a `u64`.
#[no_mangle]
pub(crate) unsafe extern "C" fn rmemring_batch_begin(ring: *const c_void, seq: *mut u64) -> c_int {
    // SAFETY: The caller holds a reference.
    match unsafe { ring_ref(ring) }.batch_begin() {
        Ok(next) => {
            if !seq.is_null() {
                // SAFETY: The caller gives a writable `u64` at `seq`.
                unsafe { seq.write(next) };
            }
            0
        }
        Err(e) => e.to_errno().to_errno(),
    }
}

/// Reserves a record of `len` payload bytes tagged `tag` in the batch this
/// CPU holds open on `ring`, and returns its payload, to be filled in
/// place and given to [`rmemring_batch_commit`]. A reservation of the
/// batch not committed before the next one or the end is discarded.
///
/// On failure returns `ERR_PTR` of: `-ENOSPC` (dropped, as by
/// [`rmemring_write`]: it took a sequence number and counts in
/// `records_dropped`), `-EMSGSIZE`, `-EAGAIN` (the batch is at its bound:
/// end it and begin another; nothing counted), `-ENOBUFS` (with
/// [`NO_DROP`], drop-new and full: nothing counted, no sequence number
/// taken), `-EBUSY` (NMI context; counted), `-EINVAL` (unknown `flags`,
/// or no batch of `ring` open on this CPU: logged). The batch stays open
/// whatever it returns.
///
/// # Safety
///
/// `ring` is a reference from `rmemring_get` whose batch the caller began
/// on this CPU, in this context, and has not ended.
#[no_mangle]
pub(crate) unsafe extern "C" fn rmemring_batch_reserve(
    ring: *const c_void,
    tag: u16,
    len: u32,
    flags: u32,
) -> *mut c_void {
    if flags & !NO_DROP != 0 {
        return EINVAL.to_ptr();
    }
    // SAFETY: The caller holds a reference and the batch.
    match unsafe { ring_ref(ring).batch_reserve(tag, len, flags & NO_DROP != 0) } {
        Ok(payload) => payload.cast(),
        Err(e) => e.to_errno().to_ptr(),
    }
}

/// Commits the batch's open reservation, whose payload is `payload`: the
/// record takes the next sequence number and a timestamp, and is published
/// with the batch by [`rmemring_batch_end`].
///
/// Returns 0, or `-EINVAL` (no reservation of that payload open in a
/// batch of `ring` on this CPU: logged, nothing touched), `-EBUSY` (NMI
/// context; counted).
///
/// # Safety
///
/// As for [`rmemring_batch_reserve`].
#[no_mangle]
pub(crate) unsafe extern "C" fn rmemring_batch_commit(
    ring: *const c_void,
    payload: *mut c_void,
) -> c_int {
    // SAFETY: The caller holds a reference and the batch.
    status(unsafe { ring_ref(ring).batch_commit(payload.cast()) })
}

/// Ends the batch this CPU holds open on `ring`: discards a reservation
/// not committed, publishes the batch's records (with [`NO_WAKEUP`] in
/// `flags`, without waking a sleeping consumer) and lets go of the lock.
///
/// Returns 0, or `-EINVAL` (unknown `flags`: the batch is ended all the
/// same, published quietly; or no batch of `ring` open on this CPU:
/// logged, nothing touched), `-EBUSY` (NMI context: nothing touched).
///
/// # Safety
///
/// As for [`rmemring_batch_reserve`].
#[no_mangle]
pub(crate) unsafe extern "C" fn rmemring_batch_end(ring: *const c_void, flags: u32) -> c_int {
    let ending = Ending::of(flags);
    // SAFETY: The caller holds a reference and the batch.
    ending.status(unsafe { ring_ref(ring).batch_end(ending.quiet) })
}

/// The largest payload a record of `ring` can carry.
///
/// # Safety
///
/// `ring` is a reference from `rmemring_get`.
#[no_mangle]
pub(crate) unsafe extern "C" fn rmemring_max_payload(ring: *const c_void) -> u32 {
    // SAFETY: The caller holds a reference.
    unsafe { ring_ref(ring) }.max_payload()
}
