//! perf as a peer: `perf_event_open` on the `sched_switch` tracepoint, one
//! event per CPU sampling every call with its raw record, each read from its
//! mmap ring as `perf record` does (positions read directly, the tail
//! released once per batch).

use std::os::fd::{
    AsFd,
    AsRawFd,
    BorrowedFd,
    FromRawFd,
    OwnedFd, //
};
use std::ptr::NonNull;
use std::sync::atomic::{
    AtomicU64,
    Ordering, //
};

use anyhow::{
    ensure,
    Context,
    Result, //
};
use nix::errno::Errno;
use nix::sys::mman::{
    MapFlags,
    ProtFlags, //
};

use super::tracefs::SchedSwitchFormat;
use super::{
    Consumed,
    Source,
    WAKE_EVERY, //
};

/// `struct perf_event_attr` up to `PERF_ATTR_SIZE_VER5`
/// (`include/uapi/linux/perf_event.h`); `flags` holds its bit fields.
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    kind: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
    config2: u64,
    branch_sample_type: u64,
    sample_regs_user: u64,
    sample_stack_user: u32,
    clockid: i32,
    sample_regs_intr: u64,
    aux_watermark: u32,
    sample_max_stack: u16,
    reserved: u16,
}

const _: () = assert!(std::mem::size_of::<PerfEventAttr>() == 112);

const PERF_TYPE_TRACEPOINT: u32 = 2;
const PERF_SAMPLE_TIME: u64 = 1 << 2;
const PERF_SAMPLE_CPU: u64 = 1 << 7;
const PERF_SAMPLE_RAW: u64 = 1 << 10;
/// `flags`: `disabled`, and `watermark` (`wakeup_events` is
/// `wakeup_watermark`, in bytes).
const ATTR_DISABLED: u64 = 1 << 0;
const ATTR_WATERMARK: u64 = 1 << 14;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;
const PERF_RECORD_LOST: u32 = 2;
const PERF_RECORD_SAMPLE: u32 = 9;
/// `struct perf_event_mmap_page`: `data_head` and `data_tail`.
const DATA_HEAD: usize = 1024;
const DATA_TAIL: usize = 1032;
/// Where a sample's raw record starts: after the 8-byte record header, the
/// time (8), the CPU and its padding (8) and the raw size (4).
const RAW_AT: u64 = 28;

/// One CPU's event and its mapped ring.
struct CpuRing {
    fd: OwnedFd,
    base: NonNull<u8>,
    /// The whole mapping: one header page and `data` bytes.
    len: usize,
    page: usize,
    /// The data area's size, a power of two.
    data: u64,
}

// SAFETY: The mapping belongs to this value alone; the kernel writes it
// concurrently, which the atomic accesses of `head` and `set_tail` order.
unsafe impl Send for CpuRing {}

impl CpuRing {
    fn head(&self) -> u64 {
        // SAFETY: `data_head` is an aligned u64 in the mapped header page,
        // written by the kernel; reading it atomically with Acquire pairs
        // with the kernel's smp_store_release, so the records it covers
        // are visible.
        unsafe { (*self.base.as_ptr().add(DATA_HEAD).cast::<AtomicU64>()).load(Ordering::Acquire) }
    }

    fn set_tail(&self, tail: u64) {
        // SAFETY: As for `head`: `data_tail` is ours to write; Release
        // orders our reads of the records before the kernel reuses them.
        unsafe {
            (*self.base.as_ptr().add(DATA_TAIL).cast::<AtomicU64>()).store(tail, Ordering::Release)
        }
    }

    fn tail(&self) -> u64 {
        // SAFETY: As for `head`; only we write it.
        unsafe { (*self.base.as_ptr().add(DATA_TAIL).cast::<AtomicU64>()).load(Ordering::Relaxed) }
    }

    /// `N` bytes at position `pos` of the data area, which may wrap.
    fn bytes<const N: usize>(&self, pos: u64) -> [u8; N] {
        let mut out = [0u8; N];
        for (i, byte) in out.iter_mut().enumerate() {
            let at = self.page + ((pos + i as u64) & (self.data - 1)) as usize;
            // SAFETY: `at` is inside the data area of the mapping.
            *byte = unsafe { self.base.as_ptr().add(at).read_volatile() };
        }
        out
    }
}

impl Drop for CpuRing {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` are the mapping this value made, unused
        // after this.
        let _ = unsafe { nix::sys::mman::munmap(self.base.cast(), self.len) };
    }
}

/// The `sched_switch` tracepoint sampled on every CPU.
pub(super) struct Perf {
    rings: Vec<CpuRing>,
    format: SchedSwitchFormat,
}

impl Perf {
    /// Opens and maps one event per CPU with `per_cpu_bytes` of ring (a
    /// power of two), and enables them.
    /// With `woken`, a reader waiting in `poll` is woken every
    /// [`WAKE_EVERY`] samples; otherwise only when a ring is full.
    pub(super) fn attach(
        cpus: usize,
        per_cpu_bytes: u64,
        woken: bool,
        format: SchedSwitchFormat,
    ) -> Result<Self> {
        let page =
            nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)?.map_or(4096, |n| n as usize);
        ensure!(
            per_cpu_bytes.is_power_of_two(),
            "the ring size must be a power of two"
        );
        let attr = PerfEventAttr {
            kind: PERF_TYPE_TRACEPOINT,
            size: std::mem::size_of::<PerfEventAttr>() as u32,
            config: u64::from(format.id),
            sample_period: 1,
            sample_type: PERF_SAMPLE_TIME | PERF_SAMPLE_CPU | PERF_SAMPLE_RAW,
            // Wake a sleeping reader every WAKE_EVERY samples, as the
            // tracer wakes it at least every WAKE_EVERY records; or when
            // the ring is full (`wakeup_watermark`, the same field).
            flags: if woken {
                ATTR_DISABLED
            } else {
                ATTR_DISABLED | ATTR_WATERMARK
            },
            wakeup_events: if woken {
                WAKE_EVERY
            } else {
                per_cpu_bytes as u32
            },
            ..Default::default()
        };
        let mut rings = Vec::new();
        for cpu in 0..cpus {
            // nix has no `perf_event_open` (nor libc a wrapper): the raw
            // system call.
            // SAFETY: `attr` is a valid perf_event_attr of the size it says.
            let fd = unsafe {
                libc::syscall(
                    libc::SYS_perf_event_open,
                    &attr as *const PerfEventAttr,
                    -1 as libc::pid_t,
                    cpu as libc::c_int,
                    -1 as libc::c_int,
                    PERF_FLAG_FD_CLOEXEC,
                )
            };
            let fd = Errno::result(fd)
                .with_context(|| format!("perf_event_open on sched:sched_switch, CPU {cpu}"))?;
            // SAFETY: A descriptor perf_event_open just returned, ours alone.
            let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
            let len = page + per_cpu_bytes as usize;
            // SAFETY: A new shared mapping of the event's ring, which the
            // kernel sizes (one header page and a power-of-two data area).
            let base = unsafe {
                nix::sys::mman::mmap(
                    None,
                    std::num::NonZeroUsize::new(len).context("empty ring")?,
                    ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                    MapFlags::MAP_SHARED,
                    &fd,
                    0,
                )
            }
            .with_context(|| format!("mapping the perf ring of CPU {cpu}"))?;
            rings.push(CpuRing {
                fd,
                base: base.cast(),
                len,
                page,
                data: per_cpu_bytes,
            });
        }
        for ring in &rings {
            // SAFETY: A perf ioctl without an argument on a perf event
            // descriptor.
            unsafe { perf_event_ioc_enable(ring.fd.as_raw_fd()) }
                .context("PERF_EVENT_IOC_ENABLE")?;
        }
        Ok(Self { rings, format })
    }
}

impl Source for Perf {
    fn fds(&self) -> Vec<BorrowedFd<'_>> {
        self.rings.iter().map(|r| r.fd.as_fd()).collect()
    }

    fn detach(&mut self) -> Result<()> {
        for ring in &self.rings {
            // SAFETY: As for PERF_EVENT_IOC_ENABLE.
            unsafe { perf_event_ioc_disable(ring.fd.as_raw_fd()) }
                .context("PERF_EVENT_IOC_DISABLE")?;
        }
        Ok(())
    }

    /// Reads every record each ring holds and releases them, once per ring.
    fn drain(&mut self, consumed: &mut Consumed) -> Result<()> {
        for (cpu, ring) in self.rings.iter().enumerate() {
            let head = ring.head();
            let mut pos = ring.tail();
            while pos < head {
                let header: [u8; 8] = ring.bytes(pos);
                let kind = u32::from_ne_bytes(header[..4].try_into()?);
                let size = u16::from_ne_bytes(header[6..8].try_into()?);
                ensure!(size >= 8, "a perf record of {size} bytes");
                match kind {
                    PERF_RECORD_SAMPLE => {
                        let pid = |offset: usize| {
                            u32::from_ne_bytes(ring.bytes(pos + RAW_AT + offset as u64))
                        };
                        consumed.event(cpu, pid(self.format.prev_pid), pid(self.format.next_pid));
                    }
                    PERF_RECORD_LOST => {
                        // After the header: the event id, then the count.
                        let lost: [u8; 8] = ring.bytes(pos + 16);
                        consumed.dropped += u64::from_ne_bytes(lost);
                    }
                    _ => {}
                }
                pos += u64::from(size);
            }
            ring.set_tail(pos);
        }
        Ok(())
    }
}

// `_IO('$', 0)` and `_IO('$', 1)`.
nix::ioctl_none!(perf_event_ioc_enable, b'$', 0);
nix::ioctl_none!(perf_event_ioc_disable, b'$', 1);
