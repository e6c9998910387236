// SPDX-License-Identifier: GPL-2.0

//! Safe wrappers over the C interfaces the kernel crate does not wrap in 7.2.
//!
//! This is the only module (with `fops.rs`, which owns the raw file
//! operations) that calls `bindings::` or the C helpers in `helpers.c`. Each
//! wrapper states what it needs and what it guarantees, so the rest of the
//! driver is safe code.

use core::ptr::NonNull;

use kernel::{
    bindings,
    device::Device,
    error::{
        from_err_ptr,
        to_result, //
    },
    ffi::{
        c_int,
        c_ulong,
        c_void, //
    },
    fs::File,
    mm::virt::VmaNew,
    prelude::*,
    sync::aref::ARef,
    task::Task,
    transmute::AsBytes,
    uaccess::UserPtr, //
};

pub(crate) use crate::proto::modes::CacheMode;

/// The C helpers in `helpers.c`.
mod c {
    use kernel::{
        bindings,
        ffi::{
            c_int,
            c_void, //
        },
    };

    extern "C" {
        pub(super) fn rmemring_ioremap_wc(phys: bindings::phys_addr_t, size: usize) -> *mut c_void;
        pub(super) fn rmemring_ioremap_uc(phys: bindings::phys_addr_t, size: usize) -> *mut c_void;
        pub(super) fn rmemring_iounmap(addr: *mut c_void);
        pub(super) fn rmemring_cond_resched();
        pub(super) fn rmemring_params_locked_down() -> c_int;
        pub(super) fn rmemring_in_reserved_memory(res: *const bindings::resource) -> bool;
        pub(super) fn rmemring_hook_record(
            seq: u64,
            timestamp_ns: u64,
            len: u32,
            payload: *const c_void,
        );
        pub(super) fn rmemring_pgprot_wb(prot: bindings::pgprot_t) -> bindings::pgprot_t;
        pub(super) fn rmemring_pgprot_wc(prot: bindings::pgprot_t) -> bindings::pgprot_t;
        pub(super) fn rmemring_pgprot_uc(prot: bindings::pgprot_t) -> bindings::pgprot_t;
        pub(super) fn rmemring_raw_lock_init(
            lock: *mut super::RawIrqState,
            name: *const kernel::ffi::c_char,
            key: *mut c_void,
        );
        pub(super) fn rmemring_raw_lock(lock: *mut super::RawIrqState);
        pub(super) fn rmemring_raw_trylock(lock: *mut super::RawIrqState) -> bool;
        pub(super) fn rmemring_raw_unlock(lock: *mut super::RawIrqState);
        pub(super) fn rmemring_raw_assert_held(lock: *mut super::RawIrqState);
        pub(super) fn rmemring_spin_lock_init(
            lock: *mut super::SpinIrqState,
            name: *const kernel::ffi::c_char,
            key: *mut c_void,
        );
        pub(super) fn rmemring_spin_lock(lock: *mut super::SpinIrqState);
        pub(super) fn rmemring_spin_trylock(lock: *mut super::SpinIrqState) -> bool;
        pub(super) fn rmemring_spin_unlock(lock: *mut super::SpinIrqState);
        pub(super) fn rmemring_spin_assert_held(lock: *mut super::SpinIrqState);
        // `lock_class_key` and `irq_work` as `void *`: an empty or
        // config-dependent struct, which the FFI lint flags even behind a
        // pointer.
        pub(super) fn rmemring_init_irq_work(
            work: *mut c_void,
            func: unsafe extern "C" fn(*mut c_void),
        );
        pub(super) fn rmemring_this_cpu_outside_nmi() -> kernel::ffi::c_uint;
        pub(super) fn rmemring_raw_lock_producer(
            lock: *mut super::RawIrqState,
        ) -> kernel::ffi::c_uint;
        pub(super) fn rmemring_may_wake_directly() -> bool;
        pub(super) fn rmemring_report_misuse(what: *const kernel::ffi::c_char);
        pub(super) fn rmemring_boot_id(id: *mut u64) -> c_int;
        pub(super) fn rmemring_realtime_offset_ns() -> i64;
        pub(super) fn rmemring_write_back(addr: *mut c_void, size: usize);
        pub(super) fn rmemring_can_write_back() -> bool;
        pub(super) fn rmemring_crash_notifiers_register(
            panic_nb: *mut bindings::notifier_block,
            reboot_nb: *mut bindings::notifier_block,
        );
        pub(super) fn rmemring_crash_notifiers_unregister(
            panic_nb: *mut bindings::notifier_block,
            reboot_nb: *mut bindings::notifier_block,
        );
        pub(super) fn rmemring_of_memory_region(
            dev: *mut c_void,
            base: *mut u64,
            size: *mut u64,
            no_map: *mut bool,
            static_reg: *mut bool,
        ) -> c_int;
    }
}

/// A claim on a range of physical address space in `iomem_resource`
/// (`request_mem_region`), visible in `/proc/iomem`.
///
/// # Invariants
///
/// `res` is the resource `__request_region` returned for `[start, start +
/// size)`; it stays in the resource tree until `Drop` releases it, once.
pub(crate) struct IomemClaim {
    res: NonNull<bindings::resource>,
    start: u64,
    size: u64,
}

// SAFETY: The claim is a token for a range of the global resource tree,
// which `__release_region` takes its own lock to change: any thread may
// release it.
unsafe impl Send for IomemClaim {}
// SAFETY: `&IomemClaim` only reads `res`'s parent, as argued in
// `in_reserved_memory`.
unsafe impl Sync for IomemClaim {}

impl IomemClaim {
    /// Claims `[start, start + size)` under the name "rmemring".
    ///
    /// Fails with `EBUSY` if any part of it is already claimed.
    pub(crate) fn new(start: u64, size: u64) -> Result<Self> {
        // SAFETY: `iomem_resource` is the global root of the I/O memory
        // tree; `__request_region` takes its own lock. The name is a static
        // C string, as the resource keeps the pointer.
        let res = unsafe {
            bindings::__request_region(
                core::ptr::addr_of_mut!(bindings::iomem_resource),
                start,
                size,
                c"rmemring".as_char_ptr(),
                0,
            )
        };
        let res = NonNull::new(res).ok_or(EBUSY)?;
        // INVARIANT: The request succeeded and returned `res`.
        Ok(Self { res, start, size })
    }

    /// Whether the claimed range lies inside memory the platform reserved
    /// (an x86 e820 `Reserved` range, as `memmap=SIZE$BASE` makes, or an
    /// arm64 no-map reserved-memory region), rather than in a PCI window,
    /// a device's registers or an undescribed hole.
    pub(crate) fn in_reserved_memory(&self) -> bool {
        // SAFETY: By the type invariants `res` is in the resource tree
        // until we release it; the helper only reads its parent, which
        // cannot go away while `res` is its child.
        unsafe { c::rmemring_in_reserved_memory(self.res.as_ptr()) }
    }
}

impl Drop for IomemClaim {
    fn drop(&mut self) {
        // SAFETY: By the type invariants the range was requested and has not
        // been released.
        unsafe {
            bindings::__release_region(
                core::ptr::addr_of_mut!(bindings::iomem_resource),
                self.start,
                self.size,
            )
        };
    }
}

/// Whether any part of `[start, start + size)` is System RAM, that is, memory
/// the kernel's allocator may hand out.
pub(crate) fn overlaps_system_ram(start: u64, size: u64) -> bool {
    let Ok(size) = usize::try_from(size) else {
        return true;
    };
    // SAFETY: `region_intersects` only walks the resource tree under its lock.
    let r = unsafe {
        bindings::region_intersects(
            start,
            size,
            bindings::IORESOURCE_SYSTEM_RAM as c_ulong,
            bindings::IORES_DESC_NONE as c_ulong,
        )
    };
    r != bindings::REGION_DISJOINT as i32
}

/// The kernel's mapping of the region.
///
/// # Invariants
///
/// `addr` is the start of a live mapping of `size` bytes made by `memremap`
/// (write-back) or by `rmemring_ioremap_wc`/`_uc` (the other modes), unmapped once in
/// `Drop` by the matching call.
pub(crate) struct KernelMapping {
    addr: NonNull<u8>,
    size: usize,
    cache: CacheMode,
}

// SAFETY: The mapping is plain memory addresses; it is not tied to a thread.
unsafe impl Send for KernelMapping {}
// SAFETY: `&KernelMapping` only hands out the address; accesses through it
// are the ring protocol's business (atomics and volatile copies).
unsafe impl Sync for KernelMapping {}

impl KernelMapping {
    /// Maps `[phys, phys + size)` with the given cache mode.
    pub(crate) fn new(phys: u64, size: u64, cache: CacheMode) -> Result<Self> {
        let size = usize::try_from(size).map_err(|_| EINVAL)?;
        let addr = match cache {
            // SAFETY: `memremap` validates its arguments and returns null on
            // failure; the range is claimed by the caller.
            CacheMode::WriteBack => unsafe {
                bindings::memremap(phys, size, bindings::MEMREMAP_WB as c_ulong)
            },
            // SAFETY: As above, for the helpers' `ioremap_*` calls.
            CacheMode::WriteCombine => unsafe { c::rmemring_ioremap_wc(phys, size) },
            // SAFETY: As above.
            CacheMode::Uncached => unsafe { c::rmemring_ioremap_uc(phys, size) },
        };
        let addr = NonNull::new(addr.cast::<u8>()).ok_or(ENOMEM)?;
        // INVARIANT: The mapping succeeded with the recorded mode.
        Ok(Self { addr, size, cache })
    }

    /// The kernel virtual address of the region's first byte.
    pub(crate) fn addr(&self) -> NonNull<u8> {
        self.addr
    }

    /// Bytes mapped.
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// Makes everything written through the mapping reach memory: the
    /// dirty cache lines of a write-back mapping are written back (a warm
    /// reset may discard the caches), the write-combining buffers of the
    /// other modes drained. Any context, panic included: it takes no lock.
    pub(crate) fn write_back(&self) {
        match self.cache {
            // SAFETY: By the type invariants `[addr, addr + size)` is a live
            // write-back mapping; cleaning cache lines by address changes no
            // memory contents.
            CacheMode::WriteBack => unsafe {
                c::rmemring_write_back(self.addr.as_ptr().cast(), self.size)
            },
            // Uncached stores go straight to memory; write-combined ones
            // wait in buffers that a write barrier drains.
            _ => crate::proto::sync::io_wmb(),
        }
    }
}

impl Drop for KernelMapping {
    fn drop(&mut self) {
        match self.cache {
            // SAFETY: By the type invariants, `memremap` made this mapping.
            CacheMode::WriteBack => unsafe { bindings::memunmap(self.addr.as_ptr().cast()) },
            // SAFETY: By the type invariants, `rmemring_ioremap_wc`/`_uc` made it.
            _ => unsafe { c::rmemring_iounmap(self.addr.as_ptr().cast()) },
        }
    }
}

/// The access mode `file` was opened with: the `O_ACCMODE` bits of its
/// flags, which [`Role::of_access_mode`](crate::proto::roles::Role::of_access_mode)
/// turns into what the file may do.
pub(crate) fn access_mode(file: &File) -> u32 {
    file.flags() & bindings::O_ACCMODE
}

// The protocol's roles number the access modes as the kernel does.
const _: () = {
    use crate::proto::roles::Role;
    assert!(matches!(
        Role::of_access_mode(bindings::O_RDONLY),
        Some(Role::Observer)
    ));
    assert!(matches!(
        Role::of_access_mode(bindings::O_WRONLY),
        Some(Role::Controller)
    ));
    assert!(matches!(
        Role::of_access_mode(bindings::O_RDWR),
        Some(Role::Consumer)
    ));
};

/// `poll` masks.
pub(crate) mod poll_mask {
    use kernel::bindings;

    /// Records to read: `POLLIN | POLLRDNORM`.
    pub(crate) const READABLE: u32 = bindings::POLLIN | bindings::POLLRDNORM;
    /// The device is gone: `POLLHUP | POLLERR`.
    pub(crate) const GONE: u32 = bindings::POLLHUP | bindings::POLLERR;
}

/// A user-space buffer being filled from its start, like the kernel crate's
/// `UserSliceWriter`, that can also copy from memory no Rust reference may
/// cover (the ring's data area, which others may write during the copy).
pub(crate) struct UserWriter {
    /// The next byte to write.
    ptr: UserPtr,
    /// Bytes left.
    len: usize,
}

impl UserWriter {
    /// The `len` bytes of user space at `ptr` (not yet checked: every copy
    /// is, and a bad address gives `EFAULT`).
    pub(crate) fn new(ptr: UserPtr, len: usize) -> Self {
        Self { ptr, len }
    }

    /// Copies `data` to the front of the buffer and moves past it.
    ///
    /// Fails with `EFAULT` if fewer than `data.len()` bytes are left or
    /// the destination is not writable user memory (then the buffer does
    /// not move, though some bytes may have been written).
    pub(crate) fn write_slice(&mut self, data: &[u8]) -> Result {
        // SAFETY: A slice is valid for reads of its length during the call.
        unsafe { self.write_raw(data.as_ptr(), data.len()) }
    }

    /// Copies `value`'s bytes to the front of the buffer, as
    /// [`Self::write_slice`].
    pub(crate) fn write<T: AsBytes>(&mut self, value: &T) -> Result {
        self.write_slice(value.as_bytes())
    }

    /// Copies `len` bytes at kernel address `src` to the front of the
    /// buffer and moves past them; fails as [`Self::write_slice`] does.
    ///
    /// No Rust reference to the source is formed: `copy_to_user` reads it.
    /// Others (the producer thread on another CPU, user space through a
    /// mapping) may write those bytes during the copy; then user space
    /// receives some mix of their old and new values, which is the
    /// writer's business, and nothing here depends on what they are.
    ///
    /// # Safety
    ///
    /// `[src, src + len)` must be mapped kernel memory, valid for reads for
    /// the duration of the call.
    pub(crate) unsafe fn write_raw(&mut self, src: *const u8, len: usize) -> Result {
        if len > self.len {
            return Err(EFAULT);
        }
        // SAFETY: The caller keeps `src` valid for reads of `len` bytes;
        // `copy_to_user` checks the user range (`access_ok`) and handles
        // faults on it, returning the bytes it could not copy. Concurrent
        // writes to the source are not undefined behaviour: the copy is C
        // (or assembly) reading plain memory, with no reference that could
        // promise Rust the bytes do not change.
        let left =
            unsafe { bindings::copy_to_user(self.ptr.as_mut_ptr(), src.cast(), len as c_ulong) };
        if left != 0 {
            return Err(EFAULT);
        }
        self.ptr = self.ptr.wrapping_byte_add(len);
        self.len -= len;
        Ok(())
    }
}

/// The page offset (`vm_pgoff`) of a mapping being set up.
pub(crate) fn vma_pgoff(vma: &VmaNew) -> usize {
    // SAFETY: `VmaNew` is only handed out during `mmap`, when the VMA is
    // valid and not yet visible to other threads.
    unsafe { (*vma.as_ptr()).vm_pgoff }
}

/// Whether the mapping is shared (`MAP_SHARED`), judged by `VM_MAYSHARE`.
///
/// `bindings::VM_MAYSHARE` has the value of `VM_MAYEXEC` in 7.2, so the bit
/// is built from `VMA_MAYSHARE_BIT`.
pub(crate) fn vma_may_share(vma: &VmaNew) -> bool {
    vma.flags() & (1 << bindings::VMA_MAYSHARE_BIT) != 0
}

/// Maps `len` bytes of physical memory at `phys` at the start of `vma`,
/// with the page protection that matches the kernel's `cache` mode.
///
/// # Safety
///
/// `phys..phys + len` must be memory the caller owns (claimed, not System
/// RAM) and may give user space with `vma`'s permissions, for as long as
/// `vma` can exist; `len` must be the VMA's length; `cache` must be the
/// type the kernel maps that memory with.
pub(crate) unsafe fn remap_pfn_range(
    vma: &VmaNew,
    phys: u64,
    len: usize,
    cache: CacheMode,
) -> Result {
    let pfn = phys >> kernel::page::PAGE_SHIFT;
    let raw = vma.as_ptr();
    // SAFETY: During `mmap` the VMA is valid and exclusively ours to set up.
    // The range is the caller's to hand out at this length and type (the
    // function's safety requirements), so mapping it exposes nothing else;
    // the helper only transforms a `pgprot_t` value.
    let ret = unsafe {
        let prot = (*raw).vm_page_prot;
        let prot = match cache {
            CacheMode::WriteBack => c::rmemring_pgprot_wb(prot),
            CacheMode::WriteCombine => c::rmemring_pgprot_wc(prot),
            CacheMode::Uncached => c::rmemring_pgprot_uc(prot),
        };
        bindings::remap_pfn_range(raw, vma.start(), pfn as c_ulong, len, prot)
    };
    kernel::error::to_result(ret)
}

/// The `memory-region` of a device-tree node.
pub(crate) struct OfRegion {
    /// Physical base address.
    pub(crate) base: u64,
    /// Size in bytes.
    pub(crate) size: u64,
    /// Whether the reserved-memory node has `no-map`.
    pub(crate) no_map: bool,
    /// Whether the reserved-memory node has a static `reg` (not a `size`
    /// the kernel allocated at boot).
    pub(crate) static_reg: bool,
}

/// Resolves `dev`'s `memory-region` to a physical range.
///
/// Returns `ENOENT` if the node has none, `EOPNOTSUPP` if the kernel lacks
/// `CONFIG_OF_RESERVED_MEM`. (The call goes through a C helper rather than
/// an `extern "C"` declaration of `of_reserved_mem_region_to_resource`; see
/// `helpers.c` for why.)
pub(crate) fn of_memory_region(dev: &Device) -> Result<OfRegion> {
    let (mut base, mut size, mut no_map, mut static_reg) = (0u64, 0u64, false, false);
    // CAST: `Device` is `repr(transparent)` over `struct device`, which the
    // helper takes as an opaque pointer.
    let raw = core::ptr::from_ref(dev)
        .cast_mut()
        .cast::<kernel::ffi::c_void>();
    // SAFETY: `raw` is a valid bound device for the duration of the call;
    // the helper only reads its `of_node` and the device tree, and writes
    // the four out-parameters, which are valid locals.
    let ret = unsafe {
        c::rmemring_of_memory_region(raw, &mut base, &mut size, &mut no_map, &mut static_reg)
    };
    kernel::error::to_result(ret)?;
    Ok(OfRegion {
        base,
        size,
        no_map,
        static_reg,
    })
}

/// A platform device this module registered, unregistered when dropped:
/// the module-parameter ring's device, which the platform driver binds by
/// name, so that sysfs's `unbind` revokes that ring as it revokes a
/// device-tree node's.
///
/// # Invariants
///
/// `pdev` is the device `platform_device_register_full` returned; it stays
/// registered until `Drop` unregisters it, once.
pub(crate) struct PlatformDevice {
    pdev: NonNull<bindings::platform_device>,
}

// SAFETY: The handle is only a token to unregister the device, and
// `platform_device_unregister` may be called from any thread in process
// context.
unsafe impl Send for PlatformDevice {}
// SAFETY: `&PlatformDevice` only reads whether the device is bound, which
// the driver core allows from any thread.
unsafe impl Sync for PlatformDevice {}

impl PlatformDevice {
    /// Registers the platform device `NAME.ID` with no resources, no
    /// platform data and no firmware node. A registered driver named
    /// `name` binds it before this returns (platform drivers probe
    /// synchronously unless their module asked for asynchronous probing).
    pub(crate) fn register(name: &'static CStr, id: i32) -> Result<Self> {
        let info = bindings::platform_device_info {
            name: name.as_char_ptr(),
            id,
            ..Default::default()
        };
        // SAFETY: `info` is valid for the call, which copies what it keeps;
        // `name` is static (the device keeps a copy of it anyway). The
        // result is a valid device or an `ERR_PTR`.
        let pdev = from_err_ptr(unsafe { bindings::platform_device_register_full(&info) })?;
        let pdev = NonNull::new(pdev).ok_or(ENOMEM)?;
        // INVARIANT: The registration succeeded and returned `pdev`.
        Ok(Self { pdev })
    }

    /// Whether a driver is bound to the device now.
    pub(crate) fn is_bound(&self) -> bool {
        // SAFETY: By the type invariants the device is registered, so its
        // embedded `struct device` is valid; `device_is_bound` only reads
        // whether its driver node is attached.
        unsafe { bindings::device_is_bound(core::ptr::addr_of_mut!((*self.pdev.as_ptr()).dev)) }
    }
}

impl Drop for PlatformDevice {
    fn drop(&mut self) {
        // SAFETY: By the type invariants the device is registered and this
        // is the one unregistration; it unbinds the device (dropping the
        // driver's data) and drops the registration's reference.
        unsafe { bindings::platform_device_unregister(self.pdev.as_ptr()) };
    }
}

/// The kernel's boot id (`/proc/sys/kernel/random/boot_id`) as two
/// little-endian words. Process context; it reads the sysctl.
pub(crate) fn boot_id() -> Result<[u64; 2]> {
    let mut id = [0u64; 2];
    // SAFETY: `id` is valid for writes of two `u64`s, all the helper writes.
    to_result(unsafe { c::rmemring_boot_id(id.as_mut_ptr()) })?;
    Ok(id)
}

/// Whether this kernel can write a write-back mapping's cache lines back
/// to memory ([`KernelMapping::write_back`]); without
/// `CONFIG_ARCH_HAS_PMEM_API` it cannot.
pub(crate) fn can_write_back() -> bool {
    // SAFETY: No preconditions: it returns a configuration constant.
    unsafe { c::rmemring_can_write_back() }
}

/// `CLOCK_REALTIME` minus `CLOCK_MONOTONIC` now, in nanoseconds.
pub(crate) fn realtime_offset_ns() -> i64 {
    // SAFETY: No preconditions: it reads two clocks.
    unsafe { c::rmemring_realtime_offset_ns() }
}

/// What a [`CrashNotifiers`] was called for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Crash {
    /// The kernel panics: the other CPUs are stopped, and the caller may
    /// hold any lock. Take none.
    Panic,
    /// The kernel is about to reboot, halt or kexec: process context,
    /// before the devices shut down.
    Reboot,
}

/// A panic notifier and a reboot notifier that call one function, with a
/// pointer to this value: how a ring kept for the next boot gets its
/// memory written back before a reset.
///
/// # Invariants
///
/// Once initialised with `registered`, both `blocks` are registered (the
/// panic one on `panic_notifier_list`, the reboot one with
/// `register_reboot_notifier`) until `Drop` unregisters them; `func` is
/// set before they are. Without it, nothing is registered.
#[repr(C)]
#[pin_data(PinnedDrop)]
pub(crate) struct CrashNotifiers {
    /// First, so that the panic block's address is this value's.
    #[pin]
    blocks: kernel::types::Opaque<[bindings::notifier_block; 2]>,
    func: unsafe fn(*const CrashNotifiers, Crash),
    registered: bool,
}

// SAFETY: The notifier chains may call from any CPU; `&CrashNotifiers`
// only lets them.
unsafe impl Sync for CrashNotifiers {}
// SAFETY: As above; nothing in it is tied to a thread.
unsafe impl Send for CrashNotifiers {}

impl CrashNotifiers {
    /// Registers both notifiers, if `register`, to call `func` with this
    /// value's address.
    ///
    /// # Safety
    ///
    /// `func` must be safe to call with this value's address as long as it
    /// exists: with [`Crash::Panic`] in panic context (any CPU, interrupts
    /// possibly off, other CPUs stopped wherever they were), with
    /// [`Crash::Reboot`] in process context.
    pub(crate) unsafe fn new(
        func: unsafe fn(*const CrashNotifiers, Crash),
        register: bool,
    ) -> impl PinInit<Self> {
        pin_init!(Self {
            // Before `blocks`: a panic may call it as soon as they are
            // registered.
            func,
            registered: register,
            blocks <- kernel::types::Opaque::ffi_init(
                // SAFETY: `slot` is valid for writes of both blocks, and
                // pinned: it stays where it is until `Drop` unregisters
                // them. An all-zero `notifier_block` (no function, no next,
                // priority 0) is a valid one.
                |slot: *mut [bindings::notifier_block; 2]| unsafe {
                    let panic = slot.cast::<bindings::notifier_block>();
                    let reboot = panic.add(1);
                    panic.write(core::mem::zeroed());
                    (*panic).notifier_call = Some(crash_on_panic);
                    reboot.write(core::mem::zeroed());
                    (*reboot).notifier_call = Some(crash_on_reboot);
                    if register {
                        c::rmemring_crash_notifiers_register(panic, reboot);
                    }
                }
            ),
        })
    }
}

#[pinned_drop]
impl PinnedDrop for CrashNotifiers {
    fn drop(self: Pin<&mut Self>) {
        if !self.registered {
            return;
        }
        let panic = self.blocks.get().cast::<bindings::notifier_block>();
        // SAFETY: By the type invariants both blocks are registered; this
        // unregisters them once. The chains wait for running callbacks
        // (the atomic one with `synchronize_rcu`).
        unsafe { c::rmemring_crash_notifiers_unregister(panic, panic.add(1)) };
    }
}

/// The panic block's callback.
///
/// # Safety
///
/// `nb` is the first block of a live [`CrashNotifiers`].
unsafe extern "C" fn crash_on_panic(
    nb: *mut bindings::notifier_block,
    _action: c_ulong,
    _data: *mut c_void,
) -> c_int {
    // SAFETY: Only `CrashNotifiers::new` registers this callback, on its
    // first block, which is at the address of the `repr(C)` struct; the
    // struct lives while registered, and its `func` was set before.
    unsafe {
        let this = nb.cast::<CrashNotifiers>().cast_const();
        ((*this).func)(this, Crash::Panic);
    }
    bindings::NOTIFY_DONE as c_int
}

/// The reboot block's callback.
///
/// # Safety
///
/// `nb` is the second block of a live [`CrashNotifiers`].
unsafe extern "C" fn crash_on_reboot(
    nb: *mut bindings::notifier_block,
    _action: c_ulong,
    _data: *mut c_void,
) -> c_int {
    // SAFETY: As for `crash_on_panic`; the reboot block is the second, so
    // the struct starts one block before it.
    unsafe {
        let this = nb.sub(1).cast::<CrashNotifiers>().cast_const();
        ((*this).func)(this, Crash::Reboot);
    }
    bindings::NOTIFY_DONE as c_int
}

/// `CLOCK_MONOTONIC` now, in nanoseconds (the record timestamp clock).
#[inline]
pub(crate) fn monotonic_ns() -> u64 {
    // SAFETY: `ktime_get` has no preconditions.
    unsafe { bindings::ktime_get() as u64 }
}

/// Yields the CPU if the scheduler wants it.
///
/// Process context only (the producer thread, `read()`, `ioctl()`); it may
/// sleep.
#[inline]
pub(crate) fn cond_resched() {
    // SAFETY: `cond_resched` may sleep; every caller is a process-context
    // path that holds no spinlock (see the callers' comments).
    unsafe { c::rmemring_cond_resched() };
}

/// Whether the kernel is locked down against module parameters that name
/// physical addresses (`LOCKDOWN_MODULE_PARAMETERS`; the kernel logs the
/// refusal itself).
pub(crate) fn params_locked_down() -> bool {
    // SAFETY: `security_locked_down` has no preconditions.
    unsafe { c::rmemring_params_locked_down() != 0 }
}

/// Whether whoever opened `file` holds `CAP_SYS_ADMIN` in the initial user
/// namespace: judged by the opener's credentials (`f_cred`), as
/// `/proc/iomem` judges who may see physical addresses, so a descriptor
/// handed to a more privileged process does not gain what its opener
/// lacked.
pub(crate) fn opener_is_admin(file: &File) -> bool {
    // SAFETY: `file` is a valid open file for the duration of the call;
    // `init_user_ns` is the kernel's static initial namespace.
    unsafe {
        bindings::file_ns_capable(
            file.as_ptr(),
            core::ptr::addr_of_mut!(bindings::init_user_ns),
            bindings::CAP_SYS_ADMIN as c_int,
        )
    }
}

/// Emits one record through the `rmemring_record_tp` tracepoint.
#[inline]
pub(crate) fn hook_record(seq: u64, timestamp_ns: u64, payload: &[u8]) {
    // SAFETY: The helper passes the arguments to the tracepoint; `payload`
    // is valid for `len` bytes for the duration of the call, which is all
    // an attached program may read.
    unsafe {
        c::rmemring_hook_record(
            seq,
            timestamp_ns,
            payload.len() as u32,
            payload.as_ptr().cast(),
        )
    };
}

/// Whether `kthread_stop` was called on the current kernel thread.
#[inline]
pub(crate) fn kthread_should_stop() -> bool {
    // SAFETY: Called from kernel threads made by `Kthread::spawn` only.
    unsafe { bindings::kthread_should_stop() }
}

/// A kernel thread running `f(&data)`.
///
/// # Invariants
///
/// - `task` is a kernel thread created by `kthread_create_on_node` and
///   woken, whose `task_struct` this handle holds a reference to, so it
///   stays valid even after the thread exits.
/// - The thread reads `data` through a pointer until it exits; `Drop` stops
///   the thread (waiting for it to exit) before `data` is freed.
pub(crate) struct Kthread<T: Send + Sync + 'static> {
    task: ARef<Task>,
    data: Pin<KBox<ThreadData<T>>>,
}

/// What a [`Kthread`] runs: its data and the function run on it.
type ThreadData<T> = (T, fn(&T));

impl<T: Send + Sync + 'static> Kthread<T> {
    /// Starts a kernel thread named `name` that runs `f(&data)` and exits
    /// when `f` returns. `f` should return soon after
    /// [`kthread_should_stop`] turns true.
    pub(crate) fn spawn(name: &CStr, data: T, f: fn(&T)) -> Result<Self> {
        let data = KBox::pin((data, f), GFP_KERNEL)?;
        let arg = core::ptr::from_ref::<ThreadData<T>>(&data)
            .cast_mut()
            .cast();
        // SAFETY: `trampoline::<T>` matches the thread function signature
        // and `arg` points to the pinned box, which outlives the thread (see
        // `Drop`). The format string is a valid C string without `%`
        // conversions beyond "%s", with a matching C-string argument.
        let task = unsafe {
            bindings::kthread_create_on_node(
                Some(Self::trampoline),
                arg,
                bindings::NUMA_NO_NODE,
                c"%s".as_char_ptr(),
                name.as_char_ptr(),
            )
        };
        let task = from_err_ptr(task)?;
        // SAFETY: `task` is a live task just created; `Task` is a
        // transparent wrapper of `task_struct`, and converting the reference
        // to `ARef` takes a reference count (`get_task_struct`).
        let task: ARef<Task> = unsafe { ARef::from(&*task.cast::<Task>()) };
        // SAFETY: The task is a newly created kernel thread, not yet woken.
        unsafe { bindings::wake_up_process(task.as_ptr()) };
        // INVARIANT: Created, woken, referenced; `data` outlives it (Drop).
        Ok(Self { task, data })
    }

    /// The thread function: runs the closure on the data.
    ///
    /// # Safety
    ///
    /// `arg` points to a `(T, fn(&T))` that stays valid until the thread exits.
    unsafe extern "C" fn trampoline(arg: *mut kernel::ffi::c_void) -> kernel::ffi::c_int {
        // SAFETY: Guaranteed by the caller (`spawn` passes the pinned box,
        // which `Drop` frees only after the thread has exited).
        let (data, f) = unsafe { &*arg.cast::<ThreadData<T>>() };
        f(data);
        0
    }

    /// The data the thread runs on.
    pub(crate) fn data(&self) -> &T {
        &self.data.0
    }
}

impl<T: Send + Sync + 'static> Drop for Kthread<T> {
    fn drop(&mut self) {
        // SAFETY: By the type invariants the task is a kernel thread whose
        // `task_struct` we hold a reference to; `kthread_stop` on a thread
        // that has already exited just collects its result. It returns only
        // once the thread has exited, after which freeing `data` is safe.
        unsafe { bindings::kthread_stop(self.task.as_ptr()) };
    }
}

/// `struct rmemring_raw_irq` of `helpers.h`: a raw spinlock and the
/// interrupt flags its holder saved.
#[repr(C)]
pub(crate) struct RawIrqState {
    lock: bindings::raw_spinlock_t,
    flags: c_ulong,
    was_producing: bool,
    /// Its own address, set by `rmemring_raw_lock_init`: see
    /// [`producer_lock_found`].
    this: *mut c_void,
}

/// `struct rmemring_spin_irq` of `helpers.h`: a `spinlock_t` and the
/// interrupt flags its holder saved.
#[repr(C)]
pub(crate) struct SpinIrqState {
    lock: bindings::spinlock_t,
    flags: c_ulong,
}

/// The backend of [`RawSpinLockIrq`]: `raw_spin_lock_irqsave`, with this
/// CPU marked as producing from before the lock is taken until after it
/// is let go of (see [`lock_producer`]).
pub(crate) struct RawSpinLockIrqBackend;

/// A raw spinlock held with interrupts off: usable in any context but NMI,
/// including hard-IRQ handlers and under the scheduler's runqueue lock.
/// Only other raw spinlocks may be taken inside it.
pub(crate) type RawSpinLockIrq<T> = kernel::sync::lock::Lock<T, RawSpinLockIrqBackend>;

/// A guard of [`RawSpinLockIrq`].
pub(crate) type RawSpinLockIrqGuard<'a, T> =
    kernel::sync::lock::Guard<'a, T, RawSpinLockIrqBackend>;

// SAFETY: `raw_spinlock_t` gives mutual exclusion between `lock` (or a
// successful `try_lock`) and `unlock`; `relock` is the default, `lock`.
// The saved flags are written by the new holder after it took the lock and
// read by it before it lets go, so no two CPUs use them at once.
unsafe impl kernel::sync::lock::Backend for RawSpinLockIrqBackend {
    type State = RawIrqState;
    type GuardState = ();

    unsafe fn init(
        ptr: *mut Self::State,
        name: *const kernel::ffi::c_char,
        key: *mut bindings::lock_class_key,
    ) {
        // SAFETY: The caller gives a `ptr` valid for writes and `name` and
        // `key` valid for ever.
        unsafe { c::rmemring_raw_lock_init(ptr, name, key.cast()) }
    }

    unsafe fn lock(ptr: *mut Self::State) -> Self::GuardState {
        // SAFETY: The caller initialised the lock.
        unsafe { c::rmemring_raw_lock(ptr) }
    }

    unsafe fn try_lock(ptr: *mut Self::State) -> Option<Self::GuardState> {
        // SAFETY: The caller initialised the lock.
        unsafe { c::rmemring_raw_trylock(ptr) }.then_some(())
    }

    unsafe fn unlock(ptr: *mut Self::State, _guard_state: &Self::GuardState) {
        // SAFETY: The caller holds the lock, so the flags are its own.
        unsafe { c::rmemring_raw_unlock(ptr) }
    }

    #[inline]
    unsafe fn assert_is_held(ptr: *mut Self::State) {
        // `lockdep_assert_held` checks nothing without lockdep: no call
        // then (a producer's lock and commit each come through here).
        if cfg!(CONFIG_LOCKDEP) {
            // SAFETY: The caller initialised the lock.
            unsafe { c::rmemring_raw_assert_held(ptr) }
        }
    }
}

/// The backend of [`SpinLockIrq`]: `spin_lock_irqsave`.
pub(crate) struct SpinLockIrqBackend;

/// A spinlock held with interrupts off: the kernel crate's `SpinLock`, but
/// also takeable from interrupt context (the consumer wake-up's
/// `irq_work`). `CondVar` waits on its guard as on any lock's.
pub(crate) type SpinLockIrq<T> = kernel::sync::lock::Lock<T, SpinLockIrqBackend>;

// SAFETY: As for `RawSpinLockIrqBackend`, with a `spinlock_t`.
unsafe impl kernel::sync::lock::Backend for SpinLockIrqBackend {
    type State = SpinIrqState;
    type GuardState = ();

    unsafe fn init(
        ptr: *mut Self::State,
        name: *const kernel::ffi::c_char,
        key: *mut bindings::lock_class_key,
    ) {
        // SAFETY: The caller gives a `ptr` valid for writes and `name` and
        // `key` valid for ever.
        unsafe { c::rmemring_spin_lock_init(ptr, name, key.cast()) }
    }

    unsafe fn lock(ptr: *mut Self::State) -> Self::GuardState {
        // SAFETY: The caller initialised the lock.
        unsafe { c::rmemring_spin_lock(ptr) }
    }

    unsafe fn try_lock(ptr: *mut Self::State) -> Option<Self::GuardState> {
        // SAFETY: The caller initialised the lock.
        unsafe { c::rmemring_spin_trylock(ptr) }.then_some(())
    }

    unsafe fn unlock(ptr: *mut Self::State, _guard_state: &Self::GuardState) {
        // SAFETY: The caller holds the lock, so the flags are its own.
        unsafe { c::rmemring_spin_unlock(ptr) }
    }

    #[inline]
    unsafe fn assert_is_held(ptr: *mut Self::State) {
        // As for `RawSpinLockIrqBackend`.
        if cfg!(CONFIG_LOCKDEP) {
            // SAFETY: The caller initialised the lock.
            unsafe { c::rmemring_spin_assert_held(ptr) }
        }
    }
}

/// A [`RawSpinLockIrq`] initialiser, named and with a lock class of its
/// own, as `new_spinlock!` makes one.
macro_rules! new_raw_spinlock_irq {
    ($inner:expr, $name:literal) => {
        $crate::sys::RawSpinLockIrq::new(
            $inner,
            ::kernel::optional_name!($name),
            ::kernel::static_lock_class!(),
        )
    };
}
pub(crate) use new_raw_spinlock_irq;

/// A [`SpinLockIrq`] initialiser; see [`new_raw_spinlock_irq`].
macro_rules! new_spinlock_irq {
    ($inner:expr, $name:literal) => {
        $crate::sys::SpinLockIrq::new(
            $inner,
            ::kernel::optional_name!($name),
            ::kernel::static_lock_class!(),
        )
    };
}
pub(crate) use new_spinlock_irq;

/// The number of the CPU this runs on, or `None` if it runs an NMI handler, where
/// no lock may be taken or let go of: one call for a commit's two checks.
#[inline]
pub(crate) fn this_cpu_outside_nmi() -> Option<u32> {
    // SAFETY: Reads the preempt count and the CPU number; no
    // preconditions.
    let cpu = unsafe { c::rmemring_this_cpu_outside_nmi() };
    (cpu != u32::MAX).then_some(cpu)
}

/// Where [`lock_producer`] takes `lock`'s backend state: at the start of
/// the `Lock`, which is `repr(C)` and declares its `state` first. The
/// kernel crate gives no pointer to it; [`producer_lock_found`] checks it.
#[inline]
fn producer_lock_state<T>(lock: &RawSpinLockIrq<T>) -> *mut RawIrqState {
    core::ptr::from_ref(lock).cast::<RawIrqState>().cast_mut()
}

/// Whether [`lock_producer`] finds `lock`'s state where it looks: the
/// address it computes holds the one `rmemring_raw_lock_init` stored in
/// the state it initialised. Checked once for every ring as it is made,
/// before any producer can reach it, so that a kernel whose `Lock` put
/// another field first refuses the ring rather than spin on, and write
/// into, the bytes of that field.
pub(crate) fn producer_lock_found<T>(lock: &RawSpinLockIrq<T>) -> bool {
    let state = producer_lock_state(lock);
    // SAFETY: The word read lies inside `lock` (a `Lock` holds a whole
    // `RawIrqState`, wherever it puts it), which nothing writes meanwhile
    // (the ring is not yet reachable), and it is read as an integer, which
    // any bit pattern its constructor left there is.
    let found =
        unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*state).this).cast::<usize>()) };
    found == state as usize
}

/// Takes a producer lock, if this CPU may produce here, in one call for
/// the two checks every write makes and the CPU number it needs: not in
/// NMI context, where no lock may be taken (the lock may be held by the
/// code the NMI interrupted), and this CPU not inside a producer lock's
/// critical section, which lasts from before the lock is taken until after
/// it is let go of (see `rmemring_raw_lock` in helpers.c). The second is
/// exact when it matters: code that finds this CPU's flag set runs on that
/// CPU inside the section (it cannot have migrated there, interrupts being
/// off), so it is nested in it.
///
/// Returns the guard and the number of the CPU that holds the lock (the
/// producer stays on it until the guard goes, interrupts being off), or
/// `None`, the lock not taken.
#[inline]
pub(crate) fn lock_producer<T>(
    lock: &RawSpinLockIrq<T>,
) -> Option<(RawSpinLockIrqGuard<'_, T>, u32)> {
    let state = producer_lock_state(lock);
    // SAFETY: `state` is the lock's state (checked for every producer lock
    // as its ring is made: `producer_lock_found`), which its constructor
    // initialised (`RawSpinLockIrqBackend::init`) and which lives as long
    // as `lock`; the C function takes it as the backend's `lock` does, or
    // not at all.
    let cpu = unsafe { c::rmemring_raw_lock_producer(state) };
    if cpu == u32::MAX {
        return None;
    }
    // SAFETY: This CPU has just taken the lock, with the backend's own
    // state and protocol; the guard lets go of it with the backend's
    // `unlock`.
    Some((unsafe { RawSpinLockIrqGuard::new(lock, ()) }, cpu))
}

/// `ENOBUFS`, which the kernel crate's `error::code` does not name: the
/// in-kernel API's "full, not dropped" (`RMEMRING_NO_DROP`).
pub(crate) fn enobufs() -> kernel::error::Error {
    kernel::error::Error::from_errno(-(bindings::ENOBUFS as c_int))
}

/// Whether a producer that let go of its lock may wake a sleeping
/// consumer itself (`wake_up`) rather than through an `irq_work`: in
/// preemptible context only, which holds no spinlock (not the runqueue
/// lock a `sched_switch` probe runs under) and has interrupts on; never
/// on PREEMPT_RT, where a `spinlock_t` holder is preemptible.
#[inline]
pub(crate) fn may_wake_directly() -> bool {
    // SAFETY: Reads the preempt count and the interrupt flag; no
    // preconditions.
    unsafe { c::rmemring_may_wake_directly() }
}

/// Reports a client's misuse of the in-kernel API in the kernel log, from
/// any context but NMI (deferred, as `printk_deferred` is, and once per
/// boot).
pub(crate) fn report_misuse(what: &'static CStr) {
    // SAFETY: `what` is a NUL-terminated string that outlives the call.
    unsafe { c::rmemring_report_misuse(what.as_char_ptr()) }
}

/// A deferred call from any context: an `irq_work`, run soon after it is
/// queued, in interrupt context, on the CPU that queued it.
///
/// # Invariants
///
/// `work` is initialised (`init_irq_work`) with the function given to
/// [`IrqWork::new`], and is idle when the `IrqWork` is dropped.
#[repr(transparent)]
#[pin_data(PinnedDrop)]
pub(crate) struct IrqWork {
    #[pin]
    work: kernel::types::Opaque<bindings::irq_work>,
}

// SAFETY: `irq_work_queue` and `irq_work_sync` may be called from any CPU.
unsafe impl Send for IrqWork {}
// SAFETY: As above; `&IrqWork` only queues.
unsafe impl Sync for IrqWork {}

impl IrqWork {
    /// An `irq_work` that runs `func` on the `irq_work` itself (find the
    /// structure around it with `container_of!`).
    ///
    /// # Safety
    ///
    /// `func` must be safe to call in hard-IRQ context with a pointer to
    /// this `IrqWork` (which is `repr(transparent)` over its `irq_work`),
    /// as long as the `IrqWork` exists.
    pub(crate) unsafe fn new(func: unsafe extern "C" fn(*mut c_void)) -> impl PinInit<Self> {
        pin_init!(Self {
            // SAFETY: `slot` is valid for writes during the call; the
            // caller vouches for `func`.
            work <- kernel::types::Opaque::ffi_init(|slot: *mut bindings::irq_work| unsafe {
                c::rmemring_init_irq_work(slot.cast(), func)
            }),
        })
    }

    /// Queues the call on this CPU; nothing if it is already queued. Any
    /// context, NMI included.
    #[inline]
    pub(crate) fn queue(&self) {
        // SAFETY: By the type invariants `work` is initialised; it stays
        // valid until `Drop`, which waits for it to be idle.
        unsafe { bindings::irq_work_queue(self.work.get()) };
    }
}

#[pinned_drop]
impl PinnedDrop for IrqWork {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: `work` is initialised; `irq_work_sync` waits until a
        // queued or running call has finished. May sleep: an `IrqWork` is
        // dropped in process context (with the ring that holds it).
        unsafe { bindings::irq_work_sync(self.work.get()) };
    }
}
