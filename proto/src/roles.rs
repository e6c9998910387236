// SPDX-License-Identifier: GPL-2.0-only OR MIT

//! Who takes part in a ring and what each may do (`docs/protocol.md`,
//! section 10): the one producer and the one consumer, and on the device
//! also controllers and observers. The driver gives each open file one of
//! these roles from its access mode; user space locks the producer and
//! consumer roles of memfd and file rings.

/// A party to a ring.
///
/// Exhaustive on purpose, as the encodings of `modes` are: the driver
/// gives each role its rights in a `match`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Writes the control page and the data area: the kernel's producer on
    /// the device, a user-space `Producer` on memfd and file rings.
    Producer,
    /// Writes the consumer page and reads records; one at a time. On the
    /// device, a file opened `O_RDWR`: it may map its page writable,
    /// `read()` records, reset the ring, and start and stop the producer.
    Consumer,
    /// On the device, a file opened `O_WRONLY`: starts and stops the
    /// producer (say, `rmemring produce` beside `rmemring cat`).
    Controller,
    /// On the device, a file opened `O_RDONLY`: `INFO`, `STATS` and
    /// read-only mappings. Its first `read()` makes it the consumer, if no
    /// one else is, for as long as it is open: `cat`, `dd` and every other
    /// tool open devices read-only.
    Observer,
}

impl Role {
    /// The role of a device file opened with this access mode (`flags &
    /// O_ACCMODE`: 0 read-only, 1 write-only, 2 read-write); `None` for
    /// access mode 3, which may neither read nor write: such a file could
    /// not read records or map the ring, so it must not take the
    /// consumer's place.
    ///
    /// # Examples
    ///
    /// ```
    /// use rmemring_proto::roles::Role;
    ///
    /// assert_eq!(Role::of_access_mode(2), Some(Role::Consumer));
    /// assert_eq!(Role::of_access_mode(3), None);
    /// ```
    pub const fn of_access_mode(mode: u32) -> Option<Self> {
        match mode {
            0 => Some(Role::Observer),
            1 => Some(Role::Controller),
            2 => Some(Role::Consumer),
            _ => None,
        }
    }

    /// Whether it may start and stop the kernel producer.
    pub const fn may_control(self) -> bool {
        matches!(self, Role::Consumer | Role::Controller)
    }

    /// Whether it may reset the ring (`RMEMRING_IOC_RESET`).
    pub const fn may_reset(self) -> bool {
        matches!(self, Role::Consumer)
    }

    /// Whether it consumes: reads records and writes the consumer page.
    pub const fn consumes(self) -> bool {
        matches!(self, Role::Consumer)
    }

    /// Whether reading records makes it the consumer (while no one else
    /// is; it still maps nothing writable, and may not reset the ring).
    pub const fn consumes_when_reading(self) -> bool {
        matches!(self, Role::Observer)
    }

    /// The role's name in messages.
    pub const fn name(self) -> &'static str {
        match self {
            Role::Producer => "producer",
            Role::Consumer => "consumer",
            Role::Controller => "controller",
            Role::Observer => "observer",
        }
    }
}

/// The role's [`name`](Role::name).
impl core::fmt::Display for Role {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}
