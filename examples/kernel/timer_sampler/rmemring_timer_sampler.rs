// SPDX-License-Identifier: GPL-2.0

//! rmemring_timer_sampler: samples from hard-IRQ context, in Rust.
//!
//! One hrtimer per online CPU, pinned to it, in hard-IRQ mode, fires
//! `rate` times a second; each expiry writes one `TimerSample` record (its
//! CPU, its per-CPU count, how late it fired) into `/dev/rmemring<ring>`
//! in place, through the Rust binding of rmemring's in-kernel API
//! (`driver/include/rmemring.rs`). Every expiry and every outcome is
//! counted, and so is every period that passed without an expiry (a
//! timer that fired more than a period late is forwarded past the periods
//! it missed: `skipped`); the totals go to the kernel log when the module
//! is unloaded (after every timer is cancelled, so they are final).
//!
//! ```text
//! insmod rmemring_timer_sampler.ko ring=0 rate=1000
//! rmemring cat --format jsonl /dev/rmemring0
//! ```

use core::sync::atomic::{
    AtomicU64,
    Ordering, //
};

use kernel::{
    bindings,
    ffi::c_void,
    impl_has_hr_timer,
    prelude::*,
    str::CString,
    sync::{
        Arc,
        ArcBorrow, //
    },
    time::{
        hrtimer::{
            ArcHrTimerHandle,
            HrTimer,
            HrTimerCallback,
            HrTimerCallbackContext,
            HrTimerPointer,
            HrTimerRestart,
            RelativePinnedHardMode, //
        },
        Delta, Instant, Monotonic,
    },
};

/// The binding of the in-kernel API.
#[path = "../../../driver/include/rmemring.rs"]
pub mod rmemring;

/// Record tags and payload layouts, from the protocol's own source.
#[path = "../../../proto/src/events.rs"]
pub mod events;

use events::{
    TimerSample,
    TAG_TIMER_SAMPLE, //
};
use rmemring::{
    Finish,
    Reservation,
    Ring,
    WriteError, //
};

module! {
    type: TimerSampler,
    name: "rmemring_timer_sampler",
    authors: ["rmemring developers"],
    description: "Hard-IRQ timer samples written into an rmemring ring",
    license: "GPL",
    params: {
        ring: u32 {
            default: 0,
            description: "The ring: N of /dev/rmemringN",
        },
        rate: u32 {
            default: 1000,
            description: "Samples per second on each CPU (1..100000)",
        },
    },
}

/// What every CPU's sampler counts, summed at unload.
#[derive(Default)]
struct Counts {
    samples: AtomicU64,
    written: AtomicU64,
    dropped: AtomicU64,
    /// NMI, nested in a producer section, or a reset.
    refused: AtomicU64,
    /// The ring's device is gone (unbound).
    gone: AtomicU64,
    /// Anything else (too large: a bug).
    failed: AtomicU64,
    /// Periods with no expiry, hence no sample: the timer fired more than
    /// a period late and was forwarded past them. `samples + skipped` is
    /// the number of periods the timers ran for.
    skipped: AtomicU64,
}

/// One CPU's timer and what it needs in its callback.
#[pin_data]
struct CpuSampler {
    #[pin]
    timer: HrTimer<Self>,
    cpu: u32,
    period: Delta,
    /// This CPU's expiries so far: the next sample's `count`.
    next: AtomicU64,
    ring: Arc<Ring>,
    counts: Arc<Counts>,
}

impl_has_hr_timer! {
    impl HasHrTimer<Self> for CpuSampler {
        mode: RelativePinnedHardMode<Monotonic>, field: self.timer
    }
}

impl HrTimerCallback for CpuSampler {
    type Pointer<'a> = Arc<Self>;

    /// Hard-IRQ context, on `cpu`.
    fn run(this: ArcBorrow<'_, Self>, mut ctx: HrTimerCallbackContext<'_, Self>) -> HrTimerRestart {
        let lateness = Instant::<Monotonic>::now() - this.timer.expires();
        let count = this.next.fetch_add(1, Ordering::Relaxed);
        this.counts.samples.fetch_add(1, Ordering::Relaxed);
        let sample = TimerSample {
            cpu: this.cpu,
            reserved: 0,
            count,
            lateness_ns: lateness.as_nanos().max(0) as u64,
        };
        let fill = |record: &mut Reservation<'_>| {
            record.fill(&sample_bytes(&sample));
            Finish::Commit
        };
        let outcome = match this.ring.reserve(
            TAG_TIMER_SAMPLE,
            core::mem::size_of::<TimerSample>() as u32,
            fill,
        ) {
            Ok(()) => &this.counts.written,
            Err(WriteError::Dropped) => &this.counts.dropped,
            Err(WriteError::Refused) => &this.counts.refused,
            Err(WriteError::Gone) => &this.counts.gone,
            Err(_) => &this.counts.failed,
        };
        outcome.fetch_add(1, Ordering::Relaxed);
        // The next expiry one period after this one was due (not after
        // now), so the rate holds on average whatever the lateness; the
        // periods that already passed meanwhile are skipped, and counted
        // (`forward_now` returns how many periods it moved the expiry by:
        // one unless it skipped some).
        let periods = ctx.forward_now(this.period);
        if periods > 1 {
            this.counts
                .skipped
                .fetch_add(periods - 1, Ordering::Relaxed);
        }
        HrTimerRestart::Restart
    }
}

/// `sample`'s bytes, as `repr(C)` lays them out.
fn sample_bytes(sample: &TimerSample) -> [u8; 24] {
    let mut bytes = [0u8; 24];
    let fields: [(usize, &[u8]); 4] = [
        (0, &sample.cpu.to_ne_bytes()),
        (4, &sample.reserved.to_ne_bytes()),
        (8, &sample.count.to_ne_bytes()),
        (16, &sample.lateness_ns.to_ne_bytes()),
    ];
    for (offset, field) in fields {
        // Every field fits (the layout is asserted in `events`); `get_mut`
        // keeps a panic out of interrupt context.
        if let Some(to) = bytes.get_mut(offset..offset + field.len()) {
            to.copy_from_slice(field);
        }
    }
    bytes
}

/// A sampler and the handle of its started timer, which cancels it when
/// dropped.
struct Started {
    _handle: ArcHrTimerHandle<CpuSampler>,
}

/// Starts `sampler`'s timer on its CPU: a pinned timer stays on the CPU
/// that started it, so the start runs there (an IPI, waited for).
fn start_on(sampler: &Arc<CpuSampler>) -> Result<Started> {
    struct Start {
        sampler: Arc<CpuSampler>,
        handle: Option<ArcHrTimerHandle<CpuSampler>>,
    }
    unsafe extern "C" fn start_here(info: *mut c_void) {
        // SAFETY: `info` is the `Start` below, which `start_on` keeps alive
        // and does not touch until this returns (`wait` is 1).
        let start = unsafe { &mut *info.cast::<Start>() };
        start.handle = Some(start.sampler.clone().start(start.sampler.period));
    }
    let mut start = Start {
        sampler: sampler.clone(),
        handle: None,
    };
    // SAFETY: `start_here` matches `smp_call_func_t`; `info` points to
    // `start`, alive until the call returns, as it waits (`wait` 1).
    let ret = unsafe {
        bindings::smp_call_function_single(
            sampler.cpu as i32,
            Some(start_here),
            core::ptr::from_mut(&mut start).cast(),
            1,
        )
    };
    kernel::error::to_result(ret)?;
    let handle = start.handle.take().ok_or(EINVAL)?;
    Ok(Started { _handle: handle })
}

struct TimerSampler {
    /// Dropped first: cancels every timer (waiting for running callbacks)
    /// before the counts are read and the ring is let go.
    timers: KVec<Started>,
    counts: Arc<Counts>,
}

impl kernel::Module for TimerSampler {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let rate = *module_parameters::rate.value();
        if !(1..=100_000).contains(&rate) {
            pr_err!("rate={rate}: must be 1..100000\n");
            return Err(EINVAL);
        }
        let index = *module_parameters::ring.value();
        let name = CString::try_from_fmt(fmt!("rmemring{index}"))?;
        let ring = Arc::new(
            Ring::get(&name).inspect_err(|_| {
                pr_err!("no ring named rmemring{index}\n");
            })?,
            GFP_KERNEL,
        )?;
        let counts = Arc::new(Counts::default(), GFP_KERNEL)?;
        // (`checked_div`: a plain division keeps a panic path, which
        // objtool reports as falling through, though `rate` is not 0.)
        let period_ns = 1_000_000_000i64
            .checked_div(i64::from(rate))
            .unwrap_or(1_000_000);
        let period = Delta::from_nanos(period_ns);
        // SAFETY: `nr_cpu_ids` is set once at boot.
        let cpus = unsafe { bindings::nr_cpu_ids };
        let mut timers = KVec::new();
        for cpu in 0..cpus {
            // Clones outside the initialiser, which moves what it names.
            let (ring, counts) = (ring.clone(), counts.clone());
            let sampler = Arc::pin_init(
                pin_init!(CpuSampler {
                    timer <- HrTimer::new(),
                    cpu,
                    period,
                    next: AtomicU64::new(0),
                    ring,
                    counts,
                }),
                GFP_KERNEL,
            )?;
            match start_on(&sampler) {
                Ok(started) => timers.push(started, GFP_KERNEL)?,
                // An offline CPU: nothing to sample there.
                Err(e) if e == ENXIO => {}
                Err(e) => return Err(e),
            }
        }
        pr_info!(
            "sampling {rate}/s on {} CPUs into rmemring{index}\n",
            timers.len()
        );
        Ok(Self { timers, counts })
    }
}

impl Drop for TimerSampler {
    fn drop(&mut self) {
        self.timers.clear();
        let c = &self.counts;
        pr_info!(
            "samples={} written={} dropped={} refused={} gone={} failed={} skipped={}\n",
            c.samples.load(Ordering::Relaxed),
            c.written.load(Ordering::Relaxed),
            c.dropped.load(Ordering::Relaxed),
            c.refused.load(Ordering::Relaxed),
            c.gone.load(Ordering::Relaxed),
            c.failed.load(Ordering::Relaxed),
            c.skipped.load(Ordering::Relaxed)
        );
    }
}
