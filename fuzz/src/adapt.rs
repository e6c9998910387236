//! The few places the harness depends on the shape of the shared API, so
//! that a change of it (a new `RingView::new` parameter, a new return type
//! of `read_overwrite`) is a change here and nowhere else.

use crate::arena::Parts;
use rmemring_proto::consumer_core::{
    ConsumerCore,
    OverwriteRead,
    ReadError, //
};
use rmemring_proto::view::{
    MemoryOrdering,
    RingView, //
};

/// A view of the ring as one party maps it.
///
/// # Safety
///
/// `parts` must stay mapped as long as the view (and any core it is moved
/// into) exists, and `data_size` must be the size of its data area.
pub unsafe fn view(parts: Parts, data_size: u64, ordering: MemoryOrdering) -> RingView {
    // SAFETY: The caller keeps the parts mapped; each is page-aligned, holds
    // its page (or `data_size` bytes, a power of two), and is only accessed
    // through raw pointers and atomics. (The memory is write-back whatever
    // `ordering` says: a weak one only adds barriers.)
    unsafe { RingView::new(parts.ctrl, parts.cons, parts.data, data_size, ordering) }
}

/// `ConsumerCore::read_overwrite`.
pub fn read_overwrite(core: &mut ConsumerCore, dst: &mut [u8]) -> Result<OverwriteRead, ReadError> {
    core.read_overwrite(dst)
}
