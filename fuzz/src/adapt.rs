//! The few places the harness depends on the shape of the shared API, so
//! that a change of it (a new `RingView::new` parameter, a new return type
//! of `read_overwrite`) is a change here and nowhere else.

use crate::arena::Parts;
use crate::shared::consumer::{
    ConsumerCore,
    ReadError,
    RecordMeta, //
};
use crate::shared::view::RingView;

/// A view of the ring as one party maps it.
///
/// # Safety
///
/// `parts` must stay mapped as long as the view (and any core it is moved
/// into) exists, and `data_size` must be the size of its data area.
pub unsafe fn view(parts: Parts, data_size: u64) -> RingView {
    // SAFETY: The caller keeps the parts mapped; each is page-aligned, holds
    // its page (or `data_size` bytes, a power of two), and is only accessed
    // through raw pointers and atomics.
    unsafe { RingView::new(parts.ctrl, parts.cons, parts.data, data_size) }
}

/// What one overwrite-mode read found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overwrite {
    /// An intact record, its payload in the buffer.
    Record(RecordMeta),
    /// Nothing published beyond the consumer's position.
    Empty,
    /// Records are published, but the producer kept overwriting them (or
    /// had retired them before publishing their successors); try again.
    Lapped,
}

/// `ConsumerCore::read_overwrite`. Its `None` covers both of `Empty` and
/// `Lapped`; the backlog it leaves tells them apart.
pub fn read_overwrite(core: &mut ConsumerCore, dst: &mut [u8]) -> Result<Overwrite, ReadError> {
    Ok(match core.read_overwrite(dst)? {
        Some(meta) => Overwrite::Record(meta),
        None if core.cached_backlog() == 0 => Overwrite::Empty,
        None => Overwrite::Lapped,
    })
}
