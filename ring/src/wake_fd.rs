//! [`WakeFd`]: a descriptor that becomes readable when the producer wakes
//! the consumer, for every kind of ring, so that epoll, mio and async
//! runtimes can wait on it.

use std::os::fd::{
    AsFd,
    AsRawFd,
    BorrowedFd,
    RawFd, //
};
use std::sync::atomic::{
    AtomicBool,
    Ordering, //
};
use std::sync::{
    mpsc,
    Arc,
    Mutex,
    PoisonError, //
};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sys::eventfd::{
    EfdFlags,
    EventFd, //
};

use crate::region::Region;
use crate::wait;

/// The name of the thread behind a file or memfd ring's [`WakeFd`] (as
/// `/proc/PID/task/TID/comm` shows it).
pub const WAKE_THREAD_NAME: &str = "rmemring-wake";

/// How long [`WakeFd`]'s drop waits for the thread to leave before it wakes
/// the futex again (see `FutexAdapter::drop`).
const STOP_RETRY: Duration = Duration::from_millis(1);

/// A descriptor an event loop can wait on for a [`Consumer`]'s wake-ups,
/// whatever the ring lives in: from [`Consumer::wake_fd`].
///
/// It implements [`AsFd`] and [`AsRawFd`], so it goes into `poll`, epoll,
/// mio's `SourceFd` and tokio's `AsyncFd` like a socket. The consumer
/// keeps the `need_wakeup` handshake: drain the ring, call
/// [`Consumer::arm_wakeup`]; if it returns `true`, wait until this
/// descriptor is readable, then call [`Consumer::disarm_wakeup`] (which
/// also clears the descriptor) and drain again. The producer wakes only a
/// consumer that armed, once per sleep, so a busy consumer costs it no
/// wake-ups and an idle one no CPU.
///
/// # What the descriptor is
///
/// - On a device ring, the device's own descriptor ([`Region::fd`]): the
///   driver's `poll` reports it readable while published records are
///   unreleased, and the producer's wake-up is the wait queue's.
/// - On a file or memfd ring, the producer wakes a futex on the control
///   page's `wake_seq` word (`docs/protocol.md`, section 5), which no event
///   loop can watch. So the `WakeFd` owns an `eventfd` and a thread,
///   [`WAKE_THREAD_NAME`], that sleeps on that futex and signals the
///   eventfd whenever the word changes. The thread sleeps in the kernel
///   without a timeout, so it uses no CPU while the ring is idle, and it
///   runs only when the producer wakes the consumer, which the handshake
///   limits to once per sleep. Dropping the last `WakeFd` of a consumer
///   stops the thread (it wakes the futex until the thread has gone) and
///   joins it.
///
/// # Why a thread, not an eventfd passed with the ring
///
/// An eventfd the producer signals itself would save the thread and one
/// context switch per wake-up, but it needs a way to hand the descriptor
/// to every producer. A memfd travels by inheritance or `SCM_RIGHTS`, and
/// an eventfd could travel with it; a ring file is opened by path, by
/// processes that need not be related or even running at the same time,
/// and nothing passes a descriptor between them. It would also change the
/// protocol: every producer, including ones in other languages written
/// from `docs/protocol.md`, would have to signal it, and a producer that
/// does not (an older one, or the spec's futex wake) would leave the event
/// loop asleep for ever. The futex needs nothing but the shared mapping,
/// so the adapter works with any producer that follows the protocol as it
/// stands, and costs the process one sleeping thread per `WakeFd`.
///
/// # Examples
///
/// A consumer waiting in `poll(2)` on a memfd ring that a producer thread
/// fills (the same loop works on a device ring):
///
/// ```
/// use std::os::fd::AsFd;
/// use std::sync::Arc;
/// use std::time::Duration;
/// use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
/// use rmemring::{CreateOptions, Region};
///
/// let region = Arc::new(Region::memfd(CreateOptions::default())?);
/// let mut consumer = region.consumer()?;
/// let mut producer = region.producer()?;
/// let wake = consumer.wake_fd()?;
///
/// let writer = std::thread::spawn(move || {
///     for i in 0u32..100 {
///         producer.send(&i.to_le_bytes()).unwrap();
///         std::thread::sleep(Duration::from_micros(100));
///     }
/// });
///
/// let mut next = 0u32;
/// while next < 100 {
///     for record in &mut consumer.batch()? {
///         assert_eq!(record?.payload, next.to_le_bytes());
///         next += 1;
///     }
///     if next < 100 && consumer.arm_wakeup() {
///         // Nothing to read and the producer will wake us: sleep.
///         let mut fds = [PollFd::new(wake.as_fd(), PollFlags::POLLIN)];
///         poll(&mut fds, PollTimeout::NONE)?;
///         consumer.disarm_wakeup(); // also clears `wake`
///     }
/// }
/// writer.join().unwrap();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// With tokio, register it with `AsyncFd::with_interest(wake,
/// Interest::READABLE)` and await `readable()` between `arm_wakeup` and
/// `disarm_wakeup` (the repository's `rmemring-async` example).
///
/// [`Consumer`]: crate::Consumer
/// [`Consumer::wake_fd`]: crate::Consumer::wake_fd
/// [`Consumer::arm_wakeup`]: crate::Consumer::arm_wakeup
/// [`Consumer::disarm_wakeup`]: crate::Consumer::disarm_wakeup
pub struct WakeFd {
    inner: Inner,
}

enum Inner {
    /// A device ring: its own descriptor.
    Device(Arc<Region>),
    /// A file or memfd ring: the futex adapter's eventfd.
    Futex(Arc<FutexAdapter>),
}

impl WakeFd {
    pub(crate) fn device(region: Arc<Region>) -> Self {
        Self {
            inner: Inner::Device(region),
        }
    }

    pub(crate) fn futex(adapter: Arc<FutexAdapter>) -> Self {
        Self {
            inner: Inner::Futex(adapter),
        }
    }

    /// Whether a thread turns the ring's futex into this descriptor's
    /// readiness (file and memfd rings), rather than the descriptor being
    /// the device's own.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use rmemring::{CreateOptions, Region};
    /// let region = Arc::new(Region::memfd(CreateOptions::default())?);
    /// let mut consumer = region.consumer()?;
    /// assert!(consumer.wake_fd()?.is_thread_backed());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_thread_backed(&self) -> bool {
        matches!(self.inner, Inner::Futex(_))
    }
}

impl AsFd for WakeFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.inner {
            Inner::Device(region) => region.fd(),
            Inner::Futex(adapter) => adapter.shared.event.as_fd(),
        }
    }
}

impl AsRawFd for WakeFd {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

impl std::fmt::Debug for WakeFd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WakeFd")
            .field("fd", &self.as_raw_fd())
            .field("thread_backed", &self.is_thread_backed())
            .finish()
    }
}

/// What the adapter thread shares with its owner.
struct Shared {
    /// Non-blocking; the thread adds one per change of `wake_seq`.
    event: EventFd,
    /// Set by the owner's drop; the thread leaves when it sees it.
    stop: AtomicBool,
}

/// A thread that signals an eventfd whenever a ring's `wake_seq` changes.
pub(crate) struct FutexAdapter {
    shared: Arc<Shared>,
    region: Arc<Region>,
    thread: Option<JoinHandle<()>>,
    /// Disconnected when the thread returns (in a mutex only so that the
    /// adapter is `Sync`: only the drop, with `&mut self`, reads it).
    gone: Mutex<mpsc::Receiver<()>>,
}

impl FutexAdapter {
    /// Starts the thread for `region`'s futex word. Changes of the word
    /// from now on signal the eventfd: the caller's next `arm_wakeup`
    /// comes after this, so its wake-up is not missed.
    pub(crate) fn start(region: Arc<Region>) -> std::io::Result<Self> {
        let event = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
        let shared = Arc::new(Shared {
            event,
            stop: AtomicBool::new(false),
        });
        // Read here, not in the thread: a wake-up between this call and
        // the thread's first look must count as a change.
        let seen = region.view().wake_seq().load(Ordering::Acquire);
        let (done, gone) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(WAKE_THREAD_NAME.into())
            .spawn({
                let (region, shared) = (region.clone(), shared.clone());
                move || {
                    run(&region, &shared, seen);
                    drop(done);
                }
            })?;
        Ok(Self {
            shared,
            region,
            thread: Some(thread),
            gone: Mutex::new(gone),
        })
    }

    /// Clears the eventfd: the wake-ups it counted are handled.
    pub(crate) fn clear(&self) {
        // EAGAIN when it was clear already; nothing else can fail on a
        // non-blocking eventfd of ours.
        let _ = self.shared.event.read();
    }
}

/// The adapter thread: signal the eventfd at each change of `wake_seq`,
/// sleep on the futex in between.
fn run(region: &Region, shared: &Shared, mut seen: u32) {
    let view = region.view();
    let word = view.wake_seq();
    // ORDERING: Acquire; pairs with the Release store in `Drop`, though
    // the thread reads nothing else the owner wrote.
    while !shared.stop.load(Ordering::Acquire) {
        // ORDERING: Acquire; as the consumer's own futex sleep reads it.
        let now = word.load(Ordering::Acquire);
        if now != seen {
            seen = now;
            // Cannot block (non-blocking) and cannot overflow in practice:
            // the count would need 2^64 wake-ups without a clear.
            let _ = shared.event.write(1);
            continue;
        }
        // Returns at once if the word is no longer `seen`, so a change
        // after the load above is not slept through; EINTR and spurious
        // wake-ups loop. An error (none is expected on a live mapping)
        // must not turn into a spin: it ends the thread.
        if wait::futex_wait(word.as_ptr(), seen, None).is_err() {
            return;
        }
    }
}

impl Drop for FutexAdapter {
    fn drop(&mut self) {
        // ORDERING: Release; pairs with the thread's Acquire load.
        self.shared.stop.store(true, Ordering::Release);
        let word = self.region.view().wake_seq().as_ptr();
        // A wake-up between the thread's look at `stop` and its futex wait
        // would be lost, and the word is the producer's (the consumer may
        // not write it), so wake the futex until the thread has gone. A
        // spurious futex wake-up is harmless to any other sleeper.
        let gone = self.gone.get_mut().unwrap_or_else(PoisonError::into_inner);
        loop {
            wait::futex_wake(word);
            match gone.recv_timeout(STOP_RETRY) {
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
