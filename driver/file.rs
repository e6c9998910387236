// SPDX-License-Identifier: GPL-2.0

//! What an open `/dev/rmemringN` can do: ioctls, `mmap`, `read` and `poll`.
//!
//! The access mode of `open` picks the file's [`Role`] (what each may do is
//! the protocol's, in `proto/src/roles.rs`): `O_RDWR` the ring's one
//! consumer, `O_WRONLY` a controller, `O_RDONLY` an observer, which becomes
//! the consumer at its first `read()` if no one else is (so that `cat
//! /dev/rmemring0` streams). Everyone may query `INFO` and `STATS`.
//! Closing the file that started the producer stops it; closing the
//! consumer's lets another consumer in.

use core::mem::size_of;
use core::sync::atomic::{
    AtomicBool,
    Ordering, //
};

use kernel::{
    alloc::VVec,
    fs::File,
    mm::virt::VmaNew,
    new_condvar, new_mutex,
    prelude::*,
    sync::{
        poll::PollTable,
        Arc,
        CondVar,
        Mutex,
        MutexGuard, //
    },
    transmute::{
        AsBytes,
        FromBytes, //
    },
    uaccess::{
        UserPtr,
        UserSlice, //
    },
};

use crate::mmap;
use crate::proto::consumer_core::{
    ConsumerCore,
    OverwriteRead, //
};
use crate::proto::layout::{
    max_payload_for,
    record_padding,
    record_stride,
    RecordHeader, //
};
use crate::proto::modes::Overflow;
use crate::proto::roles::Role;
use crate::proto::uapi::{
    ProducerConfig,
    RecoveryInfo,
    ResetConfig,
    RingInfo,
    RingStats,
    IOC_INFO,
    IOC_RECOVERY,
    IOC_RELEASE_RECOVERED,
    IOC_RESET,
    IOC_START,
    IOC_STATS,
    IOC_STOP, //
};
use crate::ring::Ring;
use crate::sys::{
    self,
    poll_mask,
    UserWriter, //
};

/// The most one `read()` copies, unless the next record is larger (see
/// `OpenFile::read_locked`). Large enough that a reader's system calls
/// cost nothing next to its copying.
const READ_CHUNK: usize = 1 << 20;

// The ABI's ioctl numbers are computed in the shared module; they must be
// what the kernel's own macros give.
const _: () = {
    use crate::proto::uapi::IOC_TYPE;
    use kernel::ioctl::{
        _IO,
        _IOR,
        _IOW, //
    };
    assert!(IOC_INFO == _IOR::<RingInfo>(IOC_TYPE, 0));
    assert!(IOC_START == _IOW::<ProducerConfig>(IOC_TYPE, 1));
    assert!(IOC_STOP == _IO(IOC_TYPE, 2));
    assert!(IOC_STATS == _IOR::<RingStats>(IOC_TYPE, 3));
    assert!(IOC_RESET == _IOW::<ResetConfig>(IOC_TYPE, 4));
    assert!(IOC_RECOVERY == _IOR::<RecoveryInfo>(IOC_TYPE, 5));
    assert!(IOC_RELEASE_RECOVERED == _IO(IOC_TYPE, 6));
};

// SAFETY: `repr(C)`, all fields integers or integer arrays, no padding (the
// shared module asserts the sizes), so every bit pattern is valid.
unsafe impl FromBytes for ProducerConfig {}
// SAFETY: As above.
unsafe impl FromBytes for ResetConfig {}
// SAFETY: As above: no padding, so no uninitialised byte reaches user space.
unsafe impl AsBytes for RingInfo {}
// SAFETY: As above.
unsafe impl AsBytes for RingStats {}
// SAFETY: As above.
unsafe impl AsBytes for RecoveryInfo {}
// SAFETY: As above.
unsafe impl AsBytes for RecordHeader {}

/// The kernel-side consumer behind `read()`.
struct Reader {
    /// Attached on the first `read()`, and again after a reset.
    core: Option<ConsumerCore>,
    /// The ring generation `core` was attached in.
    generation: u64,
    /// The overflow mode of the ring `core` was attached to. A reset may
    /// change the ring's; `core` keeps the one it validates the ring for
    /// until it re-attaches.
    overflow: Overflow,
    /// Overwrite mode copies each record here first, to check it was not
    /// overwritten before handing it out.
    bounce: VVec<u8>,
}

/// An open file of a ring device.
#[pin_data]
pub(crate) struct OpenFile {
    role: Role,
    /// Whether the file holds the ring's consumer place: from `open` for a
    /// consumer, from its first `read()` for an observer. Only set while
    /// `reader` is held; read when the file closes.
    consuming: AtomicBool,
    /// Whether the opener may see physical addresses (`CAP_SYS_ADMIN`).
    admin: bool,
    /// Held by the thread in `read()`, also while it sleeps there. Its
    /// consumer holds a view of the ring's memory, so it is declared
    /// before `ring`: fields drop in order, and this one must go first.
    #[pin]
    reader: Mutex<Reader>,
    /// Other threads of this file wait here, interruptibly, for `reader`
    /// (see [`Self::lock_reader`]); `reader_gate` guards the wait.
    #[pin]
    reader_free: CondVar,
    #[pin]
    reader_gate: Mutex<()>,
    /// The ring; dropped last (see `reader`).
    ring: Arc<Ring>,
}

impl OpenFile {
    /// Opens the ring for `file`; a writable open is the consumer.
    pub(crate) fn open(ring: Arc<Ring>, file: &File) -> Result<Pin<KBox<Self>>> {
        let role = Role::of_access_mode(sys::access_mode(file)).ok_or(EINVAL)?;
        let consumer = role.consumes();
        ring.open(consumer)?;
        let reader = Reader {
            core: None,
            generation: 0,
            overflow: Overflow::DropNew,
            bounce: VVec::new(),
        };
        let shared = ring.clone();
        let this = KBox::try_pin_init(
            try_pin_init!(Self {
                ring: shared,
                role,
                consuming: AtomicBool::new(consumer),
                admin: sys::opener_is_admin(file),
                reader <- new_mutex!(reader),
                reader_free <- new_condvar!(),
                reader_gate <- new_mutex!(()),
            }),
            GFP_KERNEL,
        );
        if this.is_err() {
            ring.file_closed(0, consumer);
        }
        this
    }

    /// This file's identity for the ring.
    fn id(&self) -> usize {
        core::ptr::from_ref(self).addr()
    }

    /// The file is closed (and unmapped): a producer it started stops, and
    /// the consumer's place is free again if it held it (also as an
    /// observer that read).
    pub(crate) fn release(&self) {
        self.ring
            .file_closed(self.id(), self.consuming.load(Ordering::Acquire));
    }

    /// `EPERM` unless the file's role `may` do what it asks.
    fn require(&self, may: fn(Role) -> bool) -> Result {
        if may(self.role) {
            Ok(())
        } else {
            Err(EPERM)
        }
    }

    /// A recovered ring is the evidence of a crash: only an opener with
    /// `CAP_SYS_ADMIN` may throw it away (a reset or a release), not every
    /// member of the device's group.
    fn require_admin_if_recovered(&self) -> Result {
        if self.ring.serves_recovered() && !self.admin {
            return Err(EPERM);
        }
        Ok(())
    }

    /// The ioctl handler.
    pub(crate) fn ioctl(&self, cmd: u32, arg: usize) -> Result<isize> {
        let user = |size: usize| UserSlice::new(UserPtr::from_addr(arg), size);
        match cmd {
            IOC_INFO => {
                let mut info = self.ring.info();
                // Physical addresses are for `CAP_SYS_ADMIN`, as in
                // /proc/iomem.
                if !self.admin {
                    info.phys_base = 0;
                }
                user(size_of::<RingInfo>()).writer().write(&info)?
            }
            IOC_STATS => user(size_of::<RingStats>())
                .writer()
                .write(&self.ring.stats())?,
            IOC_START => {
                self.require(Role::may_control)?;
                let config: ProducerConfig = user(size_of::<ProducerConfig>()).reader().read()?;
                self.ring.start(config, self.id())?;
            }
            IOC_STOP => {
                self.require(Role::may_control)?;
                self.ring.stop();
            }
            IOC_RESET => {
                self.require(Role::may_reset)?;
                self.require_admin_if_recovered()?;
                let config: ResetConfig = user(size_of::<ResetConfig>()).reader().read()?;
                self.ring.reset(config)?;
            }
            IOC_RECOVERY => user(size_of::<RecoveryInfo>())
                .writer()
                .write(&self.ring.recovery())?,
            IOC_RELEASE_RECOVERED => {
                self.require(Role::may_reset)?;
                self.require_admin_if_recovered()?;
                self.ring.release_recovered()?;
            }
            _ => return Err(ENOTTY),
        }
        Ok(0)
    }

    /// The mmap handler.
    pub(crate) fn mmap(&self, vma: &VmaNew) -> Result {
        mmap::map(&self.ring, self.role.consumes(), vma)
    }

    /// The poll handler: readable while records are published beyond the
    /// consumer's released position.
    pub(crate) fn poll(&self, file: &File, table: PollTable<'_>) -> u32 {
        table.register_wait(file, self.ring.readers());
        if !self.ring.is_live() {
            return poll_mask::GONE;
        }
        if self.ring.readable() || !self.ask_for_wakeup() {
            poll_mask::READABLE
        } else {
            0
        }
    }

    /// A file that consumes through `read()` has no consumer page of its
    /// own to ask the producer for a wake-up with, so `poll` asks for it,
    /// through the same handshake as a sleeping `read()` (registered on
    /// `readers` first, so the wake-up cannot come too early). Returns
    /// `false` if records came meanwhile. A consumer that maps its page
    /// asks for itself, and a thread of this file in `read()` asks too.
    fn ask_for_wakeup(&self) -> bool {
        if !self.consuming.load(Ordering::Acquire) {
            return true;
        }
        let Some(mut reader) = self.reader.try_lock() else {
            return true;
        };
        let generation = reader.generation;
        let Some(core) = reader.core.as_mut() else {
            return true;
        };
        let _wake = self.ring.wake_lock().lock();
        // After a reset the reader attaches again at its next read(); the
        // reset makes the first publication wake every sleeper.
        if self.ring.generation() != generation {
            return true;
        }
        core.prepare_sleep()
    }

    /// The read handler: copies whole records (header, payload, padding to
    /// 8 bytes, as in the ring) into `buf`, and hands their space back to
    /// the producer once per call. Blocks until at least one record fits
    /// unless `nonblock`.
    pub(crate) fn read(&self, nonblock: bool, buf: UserPtr, count: usize) -> Result<usize> {
        self.require(|role| role.consumes() || role.consumes_when_reading())?;
        // As for any file: a read of nothing returns at once.
        if count == 0 {
            return Ok(0);
        }
        let mut reader = self.lock_reader(nonblock)?;
        let result = self
            .take_consumer_place()
            .and_then(|()| self.read_locked(&mut reader, nonblock, buf, count));
        drop(reader);
        // Taking the gate orders this wake-up after the check of a thread
        // in `lock_reader` that found `reader` held.
        let _gate = self.reader_gate.lock();
        self.reader_free.notify_all();
        result
    }

    /// An observer's first `read()` (with `reader` held, so two threads
    /// of the file cannot both get here): it takes the consumer's place, or
    /// gets `EBUSY` while another file has it.
    fn take_consumer_place(&self) -> Result {
        if !self.consuming.load(Ordering::Acquire) {
            self.ring.open(true)?;
            self.consuming.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Takes `reader`. Another thread of this file may hold it for long,
    /// asleep in `read()` until records come; waiting for it in
    /// `mutex_lock` would be uninterruptible (and, past two minutes, a
    /// hung-task report), so a blocking reader waits on `reader_free`,
    /// which a signal ends, and a non-blocking one gets `EAGAIN`.
    fn lock_reader(&self, nonblock: bool) -> Result<MutexGuard<'_, Reader>> {
        if let Some(reader) = self.reader.try_lock() {
            return Ok(reader);
        }
        if nonblock {
            return Err(EAGAIN);
        }
        let mut gate = self.reader_gate.lock();
        loop {
            // With the gate held, a holder that lets go of `reader` after
            // this check cannot notify before we are queued.
            if let Some(reader) = self.reader.try_lock() {
                return Ok(reader);
            }
            if self.reader_free.wait_interruptible(&mut gate) {
                return Err(ERESTARTSYS);
            }
        }
    }

    /// `read()` with `reader` held.
    fn read_locked(
        &self,
        reader: &mut Reader,
        nonblock: bool,
        buf: UserPtr,
        count: usize,
    ) -> Result<usize> {
        let ring = &*self.ring;
        // At most one data area per call, and, unless the next record is
        // larger, `READ_CHUNK`: so that no call copies for long without a
        // resched point or a look at signals (gathering 0-byte records from
        // an uncached ring costs several uncached loads each). A short read
        // is what every reader of a stream handles.
        let count = count.min(ring.region().geometry().data_size as usize);
        let chunk = count.min(READ_CHUNK);
        loop {
            if !ring.is_live() {
                return Err(ENODEV);
            }
            // Every pass copies at most one data area (or fails a bounded
            // number of laps), and a reader the producer keeps lapping may
            // pass many times: look at signals and the scheduler on each,
            // or a non-preemptible kernel never delivers a SIGKILL here.
            if kernel::current!().signal_pending() {
                return Err(ERESTARTSYS);
            }
            // Process context; the only lock held is `reader`, a mutex.
            sys::cond_resched();
            if reader.core.is_none() || reader.generation != ring.generation() {
                let (generation, overflow) = ring.attach_point();
                let max_payload = max_payload_for(ring.region().geometry().data_size);
                // Before attaching: if it fails, the next call tries again
                // instead of finding a core without its buffer.
                if overflow == Overflow::OverwriteOldest
                    && reader.bounce.len() < max_payload as usize
                {
                    reader.bounce.resize(max_payload as usize, 0, GFP_KERNEL)?;
                }
                reader.core = Some(
                    ConsumerCore::attach(ring.view(), overflow, max_payload).map_err(|_| EIO)?,
                );
                reader.generation = generation;
                reader.overflow = overflow;
            }
            let generation = reader.generation;
            let overflow = reader.overflow;
            let Reader { core, bounce, .. } = &mut *reader;
            let Some(core) = core.as_mut() else {
                return Err(EIO);
            };
            let mut copy = |limit: usize| {
                let mut writer = UserWriter::new(buf, limit);
                match overflow {
                    Overflow::DropNew => copy_records(ring, core, &mut writer, limit),
                    Overflow::OverwriteOldest => copy_overwrite(core, bounce, &mut writer, limit),
                }
            };
            let mut copied = copy(chunk);
            if let Ok(c) = &copied {
                if c.bytes == 0 && c.declined && c.wanted > chunk && c.wanted <= count {
                    // The next record is larger than a chunk: it goes
                    // alone, whole.
                    copied = copy(c.wanted);
                }
            }
            let copied = match copied {
                Ok(copied) => copied,
                // A reset while we copied: what looked broken (a producer
                // position gone back to 0, zeroed headers) was the reset.
                // Copy the new ring's records instead.
                Err(_) if ring.generation() != generation => continue,
                Err(e) => return Err(e),
            };
            if copied.bytes > 0 {
                if !ring.release_read(core, generation, copied.records) {
                    // A reset came while we copied: the bytes may be its
                    // zeroes. Copy the new ring's records instead.
                    continue;
                }
                return Ok(copied.bytes);
            }
            if copied.declined {
                // The next record does not fit in the buffer.
                return Err(EINVAL);
            }
            // Sleep until the producer publishes; `wake_lock` is held from
            // the last check until we are queued, and the producer takes it
            // to wake us, so its wake-up cannot fall in between.
            let mut wake = ring.wake_lock().lock();
            // A reset takes `wake_lock` to rewrite the consumer page: with
            // it held, either the reset is done and shows in the
            // generation, or it waits until we are asleep. Only in the
            // second case may `core` store its position and counters.
            if ring.generation() != generation {
                continue;
            }
            // Lapped: the ring is not empty, but every record we tried was
            // overwritten as we copied it; wait for the producer to
            // publish more (it will soon) instead of trying again at once.
            let sleeping = if copied.lapped {
                core.prepare_sleep_until_published()
            } else {
                core.prepare_sleep()
            };
            if !sleeping {
                continue;
            }
            if nonblock {
                // The caller will wait in `poll`/`epoll` (every event loop
                // reads until EAGAIN, then waits): the request stays armed,
                // so the next publication wakes it. The next read() that
                // finds records leaves it be; the one after that finds the
                // ring empty re-arms it with a fresh token.
                return Err(EAGAIN);
            }
            let signalled = ring.readers().wait_interruptible(&mut wake);
            // Still under `wake_lock`, so no reset rewrites the page while
            // we withdraw the request, and after one we leave it alone.
            if ring.generation() == generation {
                core.finish_sleep();
            }
            drop(wake);
            if signalled {
                return Err(ERESTARTSYS);
            }
        }
    }
}

/// The outcome of one copy attempt.
#[derive(Default)]
struct Copied {
    bytes: usize,
    records: u64,
    /// A record was available but did not fit.
    declined: bool,
    /// The stride of the record that did not fit, if one did not.
    wanted: usize,
    /// Overwrite mode: records were published, but the producer overwrote
    /// each one we tried while we copied it.
    lapped: bool,
}

impl Copied {
    /// After an error: what was copied before it still goes to the
    /// caller (the error comes back on the next call); with nothing
    /// copied, the error.
    fn or_error(self, e: Error) -> Result<Copied> {
        if self.bytes > 0 {
            Ok(self)
        } else {
            Err(e)
        }
    }
}

/// Drop-new mode: copies as many whole records as fit, one `copy_to_user`
/// per contiguous run of them (runs break only where the ring wraps).
fn copy_records(
    ring: &Ring,
    core: &mut ConsumerCore,
    writer: &mut UserWriter,
    count: usize,
) -> Result<Copied> {
    let mut room = count as u64;
    let mut copied = Copied::default();
    // The run being gathered: data-area offset, length, and the consumer's
    // state before its first record (to give the run back if it cannot be
    // delivered).
    let mut run: Option<(u64, u64)> = None;
    let mut run_start = core.checkpoint();
    let mut run_records = 0u64;
    let mut failed = None;
    loop {
        let before = core.checkpoint();
        let mut wanted = 0;
        let meta = match core.next_record_if(|m| {
            wanted = record_stride(m.len);
            wanted <= room
        }) {
            Ok(Some(meta)) => meta,
            Ok(None) => {
                copied.declined = core.cached_backlog() != 0;
                copied.wanted = usize::try_from(wanted).unwrap_or(usize::MAX);
                break;
            }
            Err(_) => {
                // A broken ring: hand out the records before the bad one.
                failed = Some(EIO);
                break;
            }
        };
        let stride = record_stride(meta.len);
        room -= stride;
        match run {
            Some((offset, len)) if offset + len == meta.offset => {
                run = Some((offset, len + stride));
                run_records += 1;
                continue;
            }
            Some((offset, len)) => {
                if let Err(e) = flush_run(ring, writer, offset, len) {
                    core.rewind(run_start);
                    return copied.or_error(e);
                }
                copied.bytes += len as usize;
                copied.records += run_records;
            }
            None => {}
        }
        run = Some((meta.offset, stride));
        run_start = before;
        run_records = 1;
    }
    if let Some((offset, len)) = run {
        if let Err(e) = flush_run(ring, writer, offset, len) {
            core.rewind(run_start);
            return copied.or_error(e);
        }
        copied.bytes += len as usize;
        copied.records += run_records;
    }
    match failed {
        Some(e) => copied.or_error(e),
        None => Ok(copied),
    }
}

/// Copies `len` bytes of records at data-area `offset` to user space.
fn flush_run(ring: &Ring, writer: &mut UserWriter, offset: u64, len: u64) -> Result {
    // The consumer validated that the run lies inside the data area; a run
    // that does not is a bug, not something to copy.
    let src = ring.region().data_ptr(offset, len).ok_or(EIO)?;
    // SAFETY: `data_ptr` checked that the range lies inside the data area,
    // which is mapped as long as `ring` lives, and we hold `ring`. The
    // bytes are only copied, never borrowed: in drop-new mode the producer
    // does not write records that were read and not released, but this
    // file's consumer page is writable from user space, which may move
    // `consumer_pos` past them during the copy, and the producer may then
    // rewrite them. User space then gets what it asked for (torn records);
    // the kernel reads nothing but plain bytes.
    unsafe { writer.write_raw(src, len as usize) }
}

/// Overwrite mode: copies records one at a time through the bounce buffer,
/// each checked against the producer lapping it. A record that does not fit
/// in what is left of the caller's buffer is given back to the ring (the
/// consumer returns to before it), to be read by the next call if the
/// producer has not overwritten it by then, and counted lost if it has: a
/// record kept aside in this file instead would vanish uncounted if the file
/// closed first, after its position had been released.
fn copy_overwrite(
    core: &mut ConsumerCore,
    bounce: &mut VVec<u8>,
    writer: &mut UserWriter,
    count: usize,
) -> Result<Copied> {
    let mut copied = Copied::default();
    loop {
        let before = core.checkpoint();
        let meta = match core.read_overwrite(bounce) {
            Ok(OverwriteRead::Record(meta)) => meta,
            Ok(OverwriteRead::Empty) => break,
            Ok(OverwriteRead::Lapped) => {
                copied.lapped = true;
                break;
            }
            Err(_) => return copied.or_error(EIO),
        };
        let stride = record_stride(meta.len) as usize;
        if stride > count - copied.bytes {
            copied.declined = copied.bytes == 0;
            copied.wanted = stride;
            core.rewind(before);
            break;
        }
        let header = meta.header();
        let len = meta.len as usize;
        let pad = record_padding(meta.len) as usize;
        // `read_overwrite` only returns records that fit in `bounce`; were
        // that broken, the records already copied still go out.
        let Some(payload) = bounce.get(..len) else {
            core.rewind(before);
            return copied.or_error(EIO);
        };
        let result = writer
            .write(&header)
            .and_then(|()| writer.write_slice(payload))
            .and_then(|()| writer.write_slice(&[0u8; 8][..pad]));
        if let Err(e) = result {
            core.rewind(before);
            return copied.or_error(e);
        }
        copied.bytes += stride;
        copied.records += 1;
    }
    Ok(copied)
}
