//! What a region's control page says, validated: [`RingLayout`].

use crate::error::{
    Error,
    LayoutError, //
};
use rmemring_proto::layout::LayoutDefect;
use rmemring_proto::layout::{
    ControlPage,
    Geometry,
    ABI_VERSION,
    MAGIC, //
};
pub use rmemring_proto::modes::CacheMode;
use rmemring_proto::modes::Overflow;

/// A ring's identity and geometry, validated: its [`Geometry`] (which it
/// dereferences to: `layout.data_size` and the like) and what the control
/// page says beyond it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RingLayout {
    /// Where the ring's parts lie.
    pub geometry: Geometry,
    /// Largest payload of one record.
    pub max_payload: u32,
    /// Control page flags.
    pub flags: u32,
    /// Physical address of the region (0 without one, or when the driver
    /// keeps it from this process).
    pub phys_base: u64,
}

impl std::ops::Deref for RingLayout {
    type Target = Geometry;

    fn deref(&self) -> &Geometry {
        &self.geometry
    }
}

impl RingLayout {
    /// The overflow policy.
    pub fn overflow(&self) -> Overflow {
        Overflow::from_flags(self.flags)
    }

    /// The producer's cache mode (a mode this version does not know is
    /// refused by [`Self::validate`]).
    pub fn cache_mode(&self) -> CacheMode {
        CacheMode::from_flags(self.flags).unwrap_or(CacheMode::Uncached)
    }

    /// Checks a control page a consumer or observer found, for a system with
    /// pages of `system_page` bytes and, where known, `available` bytes of
    /// backing memory: the protocol's checks
    /// ([`ControlPage::geometry`]), then that the region fits its backing.
    ///
    /// # Examples
    ///
    /// ```
    /// use rmemring::layout::{Geometry, MAGIC};
    /// use rmemring::{Error, RingLayout};
    ///
    /// let geometry = Geometry::for_region(1 << 20, 4096).unwrap();
    /// let mut page = geometry.control_page(0, 0);
    /// assert!(RingLayout::validate(&page, 4096, Some(1 << 20)).is_ok());
    ///
    /// page.magic = 0;
    /// assert!(matches!(
    ///     RingLayout::validate(&page, 4096, None),
    ///     Err(Error::BadMagic { .. })
    /// ));
    /// ```
    pub fn validate(
        page: &ControlPage,
        system_page: u32,
        available: Option<u64>,
    ) -> Result<Self, Error> {
        let geometry = page.geometry(system_page).map_err(|defect| match defect {
            LayoutDefect::Magic(found) => Error::BadMagic {
                found,
                expected: MAGIC,
            },
            LayoutDefect::AbiVersion(found) => Error::AbiVersion {
                found,
                supported: ABI_VERSION,
            },
            LayoutDefect::PageSize { found, system } => Error::PageSize { found, system },
            LayoutDefect::UnknownFlags(bits) => Error::UnknownFlags(bits),
            other => Error::Layout(LayoutError::Defect(other)),
        })?;
        if let Some(available) = available {
            if page.region_size > available {
                return Err(Error::Layout(LayoutError::PastBacking {
                    region_size: page.region_size,
                    backing: available,
                }));
            }
        }
        Ok(Self {
            geometry,
            max_payload: page.max_payload,
            flags: page.flags,
            phys_base: page.phys_base,
        })
    }
}
