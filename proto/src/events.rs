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
//! The C side of these numbers and layouts is `driver/include/rmemring.h`;
//! a test of this crate reads that header and checks every one of them.

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

#[cfg(test)]
mod tests {
    use super::*;

    /// The C header the in-kernel API's clients compile against.
    const HEADER: &str = include_str!("../../driver/include/rmemring.h");

    /// The value of `#define NAME VALUE` in the header.
    fn define(name: &str) -> u64 {
        let line = HEADER
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name) && l.starts_with("#define"))
            .unwrap_or_else(|| panic!("no #define {name} in rmemring.h"));
        let value = line.split_whitespace().nth(2).unwrap();
        match value.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).unwrap(),
            None => value.parse().unwrap(),
        }
    }

    /// The fields of `struct NAME` in the header: name, offset, size.
    fn fields(name: &str) -> Vec<(String, usize, usize)> {
        let start = HEADER
            .find(&format!("struct {name} {{"))
            .unwrap_or_else(|| panic!("no struct {name} in rmemring.h"));
        let body = &HEADER[start..];
        let body = &body[body.find('{').unwrap() + 1..body.find("};").unwrap()];
        let mut offset = 0;
        let mut out = Vec::new();
        for decl in body.split(';').map(str::trim).filter(|d| !d.is_empty()) {
            let (ty, field) = decl.rsplit_once(' ').unwrap();
            let (field, size) = match field.split_once('[') {
                Some((field, len)) => {
                    let len = len.trim_end_matches(']');
                    let len = len.parse().unwrap_or_else(|_| define(len) as usize);
                    assert_eq!(ty, "char", "{name}.{field}");
                    (field, len)
                }
                None => match ty {
                    "__u32" => (field, 4),
                    "__u64" => (field, 8),
                    _ => panic!("{name}.{field}: unexpected type {ty}"),
                },
            };
            out.push((field.to_owned(), offset, size));
            offset += size;
        }
        out
    }

    #[test]
    fn the_c_header_has_the_same_tags() {
        assert_eq!(define("RMEMRING_TAG_PATTERN"), u64::from(TAG_PATTERN));
        assert_eq!(
            define("RMEMRING_TAG_SCHED_SWITCH"),
            u64::from(TAG_SCHED_SWITCH)
        );
        assert_eq!(
            define("RMEMRING_TAG_TIMER_SAMPLE"),
            u64::from(TAG_TIMER_SAMPLE)
        );
        assert_eq!(define("RMEMRING_TAG_USER_MIN"), u64::from(TAG_USER_MIN));
        assert_eq!(define("RMEMRING_COMM_LEN"), COMM_LEN as u64);
    }

    #[test]
    fn the_c_header_has_the_same_layouts() {
        use core::mem::{
            offset_of,
            size_of, //
        };
        let expect = |name: &str, rust: &[(&str, usize, usize)], size: usize| {
            let c = fields(name);
            let rust: Vec<_> = rust.iter().map(|&(f, o, s)| (f.to_owned(), o, s)).collect();
            assert_eq!(c, rust, "struct {name}");
            assert_eq!(c.iter().map(|f| f.2).sum::<usize>(), size, "struct {name}");
        };
        expect(
            "rmemring_sched_switch",
            &[
                ("cpu", offset_of!(SchedSwitch, cpu), 4),
                ("prev_pid", offset_of!(SchedSwitch, prev_pid), 4),
                ("prev_state", offset_of!(SchedSwitch, prev_state), 4),
                ("next_pid", offset_of!(SchedSwitch, next_pid), 4),
                ("prev_comm", offset_of!(SchedSwitch, prev_comm), COMM_LEN),
                ("next_comm", offset_of!(SchedSwitch, next_comm), COMM_LEN),
            ],
            size_of::<SchedSwitch>(),
        );
        expect(
            "rmemring_timer_sample",
            &[
                ("cpu", offset_of!(TimerSample, cpu), 4),
                ("reserved", offset_of!(TimerSample, reserved), 4),
                ("count", offset_of!(TimerSample, count), 8),
                ("lateness_ns", offset_of!(TimerSample, lateness_ns), 8),
            ],
            size_of::<TimerSample>(),
        );
    }
}
