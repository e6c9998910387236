/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What the real-event benchmark's BPF programs share
 * (sched_switch.bpf.c, sched_switch_btf.bpf.c): the record, the ring
 * buffer, the counters and the way a record is reserved and submitted, so
 * that the peers differ only in where they read the event's fields.
 *
 * Like the sched_switch tracer of examples/kernel/sched_switch, each
 * program counts every call and every failed reservation, and it wakes a
 * sleeping consumer as the tracer with wake_every=64 does (see submit()),
 * or (the _quiet programs) never, as the tracer with quiet=1.
 */
#ifndef RMEMRING_SCHED_SWITCH_H
#define RMEMRING_SCHED_SWITCH_H

#include "bpf_defs.h"
#include <linux/rmemring.h>

#define WAKE_EVERY 64

/* rmemring's record, as a BPF ring buffer record: the timestamp
 * rmemring's record header carries, then the payload of the tracer's. */
struct record {
	__u64 timestamp_ns;
	struct rmemring_sched_switch event;
};

enum {
	COUNTER_CALLS,
	COUNTER_DROPPED,
	COUNTER_FAULTS,		/* a bpf_probe_read_kernel() failed (raw_tp) */
	COUNTER_NR,
};

/* The sched_switch tracepoint's arguments, as raw_tp and tp_btf programs
 * get them: TP_PROTO(preempt, prev, next, prev_state)
 * (include/trace/events/sched.h). */
enum {
	ARG_PREV = 1,
	ARG_NEXT = 2,
	ARG_PREV_STATE = 3,
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	/* User space sets the size before loading. */
	__uint(max_entries, 16 << 20);
} events SEC(".maps");

/* Global counters, as the tracer's atomic64_t. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, COUNTER_NR);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline __u64 count(__u32 index)
{
	__u64 *value = bpf_map_lookup_elem(&counters, &index);

	return value ? __sync_fetch_and_add(value, 1) + 1 : 0;
}

/* Counts the call and reserves its record, its timestamp and CPU written;
 * NULL (counted as dropped) when the ring is full. @calls: the calls so
 * far, this one included. */
static __always_inline struct record *reserve(__u64 *calls)
{
	struct record *rec;

	*calls = count(COUNTER_CALLS);
	rec = bpf_ringbuf_reserve(&events, sizeof(*rec), 0);
	if (!rec) {
		count(COUNTER_DROPPED);
		return 0;
	}
	rec->timestamp_ns = bpf_ktime_get_ns();
	rec->event.cpu = bpf_get_smp_processor_id();
	return rec;
}

/* Submits @rec with @flags, or (@flags == -1) as the tracer with
 * wake_every=64 does: every WAKE_EVERY-th call may wake the consumer, the
 * others go in quietly (BPF_RB_NO_WAKEUP). That call forces the wake-up
 * (BPF_RB_FORCE_WAKEUP): the default, adaptive, one fires only for a record
 * that finds the consumer caught up, which the 64th record after a quiet
 * one never does, so the consumer would sleep until its poll timed out. */
static __always_inline void submit(struct record *rec, __u64 calls, const __s64 flags)
{
	if (flags >= 0)
		bpf_ringbuf_submit(rec, flags);
	else
		bpf_ringbuf_submit(rec, calls & (WAKE_EVERY - 1) ? BPF_RB_NO_WAKEUP :
				   BPF_RB_FORCE_WAKEUP);
}

#endif
