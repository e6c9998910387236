// SPDX-License-Identifier: GPL-2.0

//! The raw `file_operations` of a ring device and its misc registration.
//!
//! The 7.2 `MiscDevice` abstraction has no `poll` hook and never sets
//! `owner` (so `rmmod` while a file is open would free the code under it).
//! Like binder's `rust_binder_main.rs`, this module therefore owns the one
//! `static` `file_operations`, with `owner: THIS_MODULE`, and registers the
//! misc device itself. Every callback converts its raw pointers at the top,
//! one `// SAFETY:` line each, calls a safe method of [`OpenFile`], and maps
//! errors to errnos.

use kernel::{
    bindings, container_of,
    error::to_result,
    ffi::{
        c_char,
        c_int,
        c_long,
        c_uint,
        c_ulong,
        c_void, //
    },
    fs::File,
    mm::virt::VmaNew,
    prelude::*,
    sync::{
        poll::PollTable,
        Arc, //
    },
    types::{
        ForeignOwnable,
        Opaque, //
    },
    uaccess::UserPtr,
};

use crate::file::OpenFile;
use crate::ring::Ring;

/// Makes a C type usable in a `static`.
#[repr(transparent)]
struct AssertSync<T>(T);

// SAFETY: Only used for the immutable `file_operations` table below, which
// the kernel reads concurrently and nobody writes.
unsafe impl<T> Sync for AssertSync<T> {}

/// The file operations of every ring device.
static RING_FOPS: AssertSync<bindings::file_operations> = AssertSync(bindings::file_operations {
    owner: crate::THIS_MODULE.as_ptr(),
    open: Some(ring_open),
    release: Some(ring_release),
    read: Some(ring_read),
    poll: Some(ring_poll),
    mmap: Some(ring_mmap),
    unlocked_ioctl: Some(ring_ioctl),
    // The ioctl structs have the same layout for 32-bit callers. (The
    // reference kernels lack CONFIG_COMPAT; this line was last built
    // against a debug kernel with IA32_EMULATION on 2026-12-01. The binding
    // is already an `Option`.)
    #[cfg(CONFIG_COMPAT)]
    compat_ioctl: bindings::compat_ptr_ioctl,
    llseek: Some(bindings::noop_llseek),
    // SAFETY: All zeroes is a valid `file_operations` (no operations).
    ..unsafe { core::mem::MaybeUninit::zeroed().assume_init() }
});

/// A misc device `/dev/NAME` backed by a [`Ring`].
///
/// # Invariants
///
/// `misc` is registered with `misc_register` for the whole life of the
/// registration and deregistered once in `drop`; its `name` points into
/// `ring`'s name, which `ring` keeps alive.
#[pin_data(PinnedDrop)]
pub(crate) struct MiscRegistration {
    ring: Arc<Ring>,
    #[pin]
    misc: Opaque<bindings::miscdevice>,
}

impl MiscRegistration {
    /// Registers `/dev/<ring name>` with permissions `mode`.
    pub(crate) fn register(ring: Arc<Ring>, mode: u16) -> impl PinInit<Self, Error> {
        let name = ring.name().as_char_ptr();
        // `ring` is initialised before `misc`: an open may arrive as soon as
        // `misc_register` returns, and it reads `ring`.
        try_pin_init!(Self {
            ring,
            misc <- Opaque::try_ffi_init(move |slot: *mut bindings::miscdevice| {
                // SAFETY: All zeroes is a valid `miscdevice` to fill in.
                let mut misc: bindings::miscdevice = unsafe { core::mem::zeroed() };
                misc.minor = bindings::MISC_DYNAMIC_MINOR as c_int;
                misc.name = name;
                misc.fops = &RING_FOPS.0;
                misc.mode = mode;
                // SAFETY: `slot` is valid for writes during initialisation.
                unsafe { slot.write(misc) };
                // SAFETY: `slot` holds a filled-in `miscdevice` in pinned
                // memory that `drop` deregisters before it is freed.
                // INVARIANT: On success the device is registered.
                to_result(unsafe { bindings::misc_register(slot) })
            }),
        })
    }
}

// SAFETY: The registration may be dropped (deregistered) on any thread.
unsafe impl Send for MiscRegistration {}
// SAFETY: `&MiscRegistration` exposes nothing; the C side synchronises its
// own use of the `miscdevice`.
unsafe impl Sync for MiscRegistration {}

#[pinned_drop]
impl PinnedDrop for MiscRegistration {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: By the type invariants the device is registered.
        unsafe { bindings::misc_deregister(self.misc.get()) };
    }
}

/// # Safety
///
/// Called by the VFS through `misc_open` for a file being opened on a
/// device registered by [`MiscRegistration`].
unsafe extern "C" fn ring_open(inode: *mut bindings::inode, raw: *mut bindings::file) -> c_int {
    // SAFETY: `inode` and `raw` are the inode and file being opened.
    let ret = unsafe { bindings::generic_file_open(inode, raw) };
    if ret != 0 {
        return ret;
    }
    // SAFETY: `misc_open` stored the `miscdevice` in `private_data` and holds
    // `misc_mtx`, so the registration cannot go away during this call.
    let misc = unsafe { (*raw).private_data }.cast::<Opaque<bindings::miscdevice>>();
    // SAFETY: Every misc device using `RING_FOPS` is the `misc` field of a
    // live `MiscRegistration`.
    let registration = unsafe { &*container_of!(misc, MiscRegistration, misc) };
    // SAFETY: The file is valid and being opened, with no `fdget_pos` active.
    let file = unsafe { File::from_raw_file(raw) };
    match OpenFile::open(registration.ring.clone(), file) {
        Ok(open) => {
            // SAFETY: The open call owns `private_data`; from here on it holds
            // the `OpenFile`, which `ring_release` takes back.
            unsafe { (*raw).private_data = open.into_foreign() };
            0
        }
        Err(e) => e.to_errno(),
    }
}

/// # Safety
///
/// Called by the VFS once, for a file `ring_open` succeeded on.
unsafe extern "C" fn ring_release(_inode: *mut bindings::inode, raw: *mut bindings::file) -> c_int {
    // SAFETY: `ring_open` stored an `OpenFile` there; release owns it now.
    let open = unsafe { Pin::<KBox<OpenFile>>::from_foreign((*raw).private_data) };
    open.release();
    0
}

/// # Safety
///
/// Called by the VFS for a file `ring_open` succeeded on, with a user buffer
/// of `count` bytes.
unsafe extern "C" fn ring_read(
    raw: *mut bindings::file,
    buf: *mut c_char,
    count: usize,
    _pos: *mut bindings::loff_t,
) -> isize {
    // SAFETY: `private_data` holds the `OpenFile` until release.
    let open = unsafe { Pin::<KBox<OpenFile>>::borrow((*raw).private_data) };
    // SAFETY: The file is valid for the duration of the call.
    let file = unsafe { File::from_raw_file(raw) };
    let nonblock = file.flags() & bindings::O_NONBLOCK != 0;
    match open.read(nonblock, UserPtr::from_ptr(buf.cast::<c_void>()), count) {
        Ok(n) => n as isize,
        Err(e) => e.to_errno() as isize,
    }
}

/// # Safety
///
/// Called by the VFS for a file `ring_open` succeeded on, with a valid (or
/// null) poll table.
unsafe extern "C" fn ring_poll(
    raw: *mut bindings::file,
    wait: *mut bindings::poll_table_struct,
) -> bindings::__poll_t {
    // SAFETY: `private_data` holds the `OpenFile` until release.
    let open = unsafe { Pin::<KBox<OpenFile>>::borrow((*raw).private_data) };
    // SAFETY: The file is valid for the duration of the call.
    let file = unsafe { File::from_raw_file(raw) };
    // SAFETY: The table is null or valid for the duration of the call.
    let table = unsafe { PollTable::from_raw(wait) };
    open.poll(file, table)
}

/// # Safety
///
/// Called by the VFS for a file `ring_open` succeeded on, with a VMA being
/// set up.
unsafe extern "C" fn ring_mmap(
    raw: *mut bindings::file,
    vma: *mut bindings::vm_area_struct,
) -> c_int {
    // SAFETY: `private_data` holds the `OpenFile` until release.
    let open = unsafe { Pin::<KBox<OpenFile>>::borrow((*raw).private_data) };
    // SAFETY: The VMA is undergoing its initial setup in `mmap`.
    let vma = unsafe { VmaNew::from_raw(vma) };
    match open.mmap(vma) {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// # Safety
///
/// Called by the VFS for a file `ring_open` succeeded on.
unsafe extern "C" fn ring_ioctl(raw: *mut bindings::file, cmd: c_uint, arg: c_ulong) -> c_long {
    // SAFETY: `private_data` holds the `OpenFile` until release.
    let open = unsafe { Pin::<KBox<OpenFile>>::borrow((*raw).private_data) };
    match open.ioctl(cmd, arg) {
        Ok(ret) => ret as c_long,
        Err(e) => e.to_errno() as c_long,
    }
}
