// SPDX-License-Identifier: GPL-2.0-only OR MIT

//! What a record's `tag` says its payload is, and the payload layouts of
//! the producers that ship with rmemring.
//!
//! A ring may carry several producers' records at once (the built-in
//! producer thread and any kernel code using the in-kernel API, see
//! docs/kernel-api.md); each writes its own tag, and consumers decode the
//! payload by it. Tags below [`TAG_USER_MIN`] are rmemring's own; kernel
//! code of yours picks one at or above it.
//!
//! The C side of these numbers and layouts is the UAPI header,
//! `driver/include/uapi/linux/rmemring.h` (which the in-kernel API's
//! `driver/include/rmemring.h` includes); `proto/tests/c_header.rs`
//! compiles it and checks every one of them.

/// The built-in producer's test pattern (see [`pattern`](super::pattern)),
/// and records of producers that never set a tag.
pub const TAG_PATTERN: u16 = 0;

/// One context switch: [`SchedSwitch`], from the `sched_switch` tracer
/// example (`examples/kernel/sched_switch`).
pub const TAG_SCHED_SWITCH: u16 = 1;

/// One timer sample: [`TimerSample`], from the hard-IRQ sampler example
/// (`examples/kernel/timer_sampler`).
pub const TAG_TIMER_SAMPLE: u16 = 2;

/// The first tag for producers outside rmemring.
pub const TAG_USER_MIN: u16 = 0x100;

/// Bytes of a task's name (`TASK_COMM_LEN`), NUL-padded.
pub const COMM_LEN: usize = 16;

/// The payload of a [`TAG_SCHED_SWITCH`] record: one call of the
/// `sched_switch` tracepoint. The record's timestamp is the switch's.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedSwitch {
    /// The CPU that switched.
    pub cpu: u32,
    /// The task switched out.
    pub prev_pid: u32,
    /// Its state as it left (`prev_state`: 0 runnable, else the task state
    /// bits, e.g. 1 interruptible sleep).
    pub prev_state: u32,
    /// The task switched in.
    pub next_pid: u32,
    /// The name of the task switched out.
    pub prev_comm: [u8; COMM_LEN],
    /// The name of the task switched in.
    pub next_comm: [u8; COMM_LEN],
}

/// The payload of a [`TAG_TIMER_SAMPLE`] record: one expiry of a per-CPU
/// hard-IRQ timer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimerSample {
    /// The CPU whose timer fired.
    pub cpu: u32,
    /// Zero.
    pub reserved: u32,
    /// This CPU's sample count, from 0: contiguous per CPU unless the ring
    /// dropped one.
    pub count: u64,
    /// How late the timer fired, in nanoseconds after its expiry time.
    pub lateness_ns: u64,
}

const _: () = {
    assert!(core::mem::size_of::<SchedSwitch>() == 48);
    assert!(core::mem::offset_of!(SchedSwitch, prev_comm) == 16);
    assert!(core::mem::offset_of!(SchedSwitch, next_comm) == 32);
    assert!(core::mem::size_of::<TimerSample>() == 24);
    assert!(core::mem::offset_of!(TimerSample, count) == 8);
    assert!(core::mem::offset_of!(TimerSample, lateness_ns) == 16);
};

/// A task name as text: up to its first NUL.
///
/// # Examples
///
/// ```
/// use rmemring_proto::events::comm_str;
///
/// assert_eq!(comm_str(b"sh\0\0\0\0\0\0\0\0\0\0\0\0\0\0"), "sh");
/// ```
pub fn comm_str(comm: &[u8; COMM_LEN]) -> &str {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(COMM_LEN);
    core::str::from_utf8(&comm[..end]).unwrap_or("?")
}
