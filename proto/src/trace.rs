// SPDX-License-Identifier: GPL-2.0-only OR MIT

//! Unit tests only: a per-thread log of the ring's ordering-relevant
//! memory accesses and barriers, and a hook into the overwrite reader, so
//! tests can check *where* the barriers are, not only that the ring works
//! on the memory of the machine they run on (which is write-back, and
//! would work without them).
//!
//! Nothing here exists outside `cfg(test)`; the kernel never compiles it.

// The crate is `no_std` outside tests; these are tests, on the host, which
// has `std`.
extern crate std;

use std::boxed::Box;
use std::cell::RefCell;
use std::vec::Vec;

/// One access or barrier, in program order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A store of one 8-byte word of the data area at this offset.
    DataWrite(u64),
    /// A load of one 8-byte word of the data area at this offset.
    DataRead(u64),
    /// A copy of `len` payload bytes out of the record at `offset`.
    CopyOut {
        /// Offset of the record's header.
        offset: u64,
        /// Payload bytes copied.
        len: u64,
    },
    /// The store of `producer_pos`.
    ProducerPosStore(u64),
    /// A load of `producer_pos`.
    ProducerPosLoad,
    /// The store of `overwrite_pos`.
    OverwritePosStore(u64),
    /// A load of `overwrite_pos`.
    OverwritePosLoad,
    /// [`io_wmb`](super::sync::io_wmb).
    Wmb,
    /// [`io_rmb`](super::sync::io_rmb).
    Rmb,
}

std::thread_local! {
    static LOG: RefCell<Option<Vec<Event>>> = const { RefCell::new(None) };
    static AFTER_COPY: RefCell<Option<Box<dyn FnMut()>>> = const { RefCell::new(None) };
}

/// Appends `event` to this thread's log, if [`start`] began one.
pub fn record(event: Event) {
    LOG.with(|log| {
        if let Some(log) = log.borrow_mut().as_mut() {
            log.push(event);
        }
    });
}

/// Starts (or restarts) this thread's log.
pub fn start() {
    LOG.with(|log| *log.borrow_mut() = Some(Vec::new()));
}

/// Ends this thread's log and returns it.
pub fn take() -> Vec<Event> {
    LOG.with(|log| log.borrow_mut().take().unwrap_or_default())
}

/// Makes `hook` run in `ConsumerCore::read_overwrite` after each payload
/// copy and before the re-check that decides whether the copy was torn:
/// where a producer on another CPU would strike.
pub fn set_after_copy(hook: impl FnMut() + 'static) {
    AFTER_COPY.with(|h| *h.borrow_mut() = Some(Box::new(hook)));
}

/// Removes the hook of [`set_after_copy`].
pub fn clear_after_copy() {
    AFTER_COPY.with(|h| *h.borrow_mut() = None);
}

/// Runs the hook of [`set_after_copy`], if any.
pub fn after_copy() {
    // Taken out while it runs, so that it may itself use the ring.
    let hook = AFTER_COPY.with(|h| h.borrow_mut().take());
    if let Some(mut hook) = hook {
        hook();
        AFTER_COPY.with(|h| {
            let mut slot = h.borrow_mut();
            if slot.is_none() {
                *slot = Some(hook);
            }
        });
    }
}

/// A ring in leaked heap memory (a few kilobytes per test) and two views
/// of it, one for a producer and one for a consumer.
pub fn heap_views(
    data_size: u64,
    overflow: super::producer_core::Overflow,
    ordering: super::view::MemoryOrdering,
) -> (super::view::RingView, super::view::RingView) {
    use super::layout::{
        ConsumerPage,
        ControlPage,
        Geometry,
        CONSUMER_PAGE_INIT,
        FLAG_OVERWRITE, //
    };
    use core::ptr::NonNull;

    #[repr(C, align(128))]
    struct Pages {
        ctrl: ControlPage,
        cons: ConsumerPage,
    }
    let flags = match overflow {
        super::producer_core::Overflow::DropNew => 0,
        super::producer_core::Overflow::OverwriteOldest => FLAG_OVERWRITE,
    };
    let ctrl = Geometry {
        region_size: data_size + 8192,
        page_size: 4096,
        consumer_offset: 4096,
        data_offset: 8192,
        data_size,
    }
    .control_page(flags, 0);
    let pages = Box::leak(Box::new(Pages {
        ctrl,
        cons: CONSUMER_PAGE_INIT,
    }));
    let data = Box::leak(std::vec![0u64; (data_size / 8) as usize].into_boxed_slice());
    let (ctrl, cons) = (
        NonNull::from(&mut pages.ctrl),
        NonNull::from(&mut pages.cons),
    );
    let data = NonNull::new(data.as_mut_ptr().cast::<u8>()).unwrap();
    let view = || {
        // SAFETY: The leaked memory lives for the rest of the process, is
        // 128-byte (pages) and 8-byte (data) aligned, holds both pages and
        // `data_size` bytes, and is only reached through views.
        unsafe { super::view::RingView::new(ctrl, cons, data, data_size, ordering) }
    };
    (view(), view())
}
