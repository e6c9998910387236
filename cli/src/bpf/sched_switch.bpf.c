// SPDX-License-Identifier: GPL-2.0-only
/*
 * The real-event benchmark's BPF ring buffer peer (`rmemring bench-events`):
 * the same record as the sched_switch tracer of examples/kernel/sched_switch
 * writes through rmemring, from the same tracepoint, as a BPF user without
 * BTF would write it: a `tracepoint/sched/sched_switch` program (the reference
 * kernel has no BTF, so no tp_btf or BTF-typed raw tracepoint) reading the
 * event's fields from its record (layout: events/sched/sched_switch/format,
 * checked by the loader) into a BPF_MAP_TYPE_RINGBUF record.
 *
 * Like the tracer it counts every call and every failed reservation, and it
 * wakes a sleeping consumer as the tracer with wake_every=64 does (see
 * emit()), or (sched_switch_quiet) never, as the tracer with quiet=1.
 */

#include "bpf_defs.h"
#include <linux/rmemring.h>

#define WAKE_EVERY 64

/* The tracepoint's record, as its format file says (x86-64, arm64). */
struct sched_switch_args {
	__u64 common;
	char prev_comm[RMEMRING_COMM_LEN];
	int prev_pid;
	int prev_prio;
	long prev_state;
	char next_comm[RMEMRING_COMM_LEN];
	int next_pid;
	int next_prio;
};

/* rmemring's record, as a BPF ring buffer record: the timestamp
 * rmemring's record header carries, then the payload of the tracer's. */
struct record {
	__u64 timestamp_ns;
	struct rmemring_sched_switch event;
};

enum {
	COUNTER_CALLS,
	COUNTER_DROPPED,
	COUNTER_NR,
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

/* Writes the record; submits it with @flags, or (@flags == -1) as the tracer
 * with wake_every=64 does: every WAKE_EVERY-th call may wake the consumer,
 * the others go in quietly (BPF_RB_NO_WAKEUP). That call forces the wake-up
 * (BPF_RB_FORCE_WAKEUP): the default, adaptive, one fires only for a record
 * that finds the consumer caught up, which the 64th record after a quiet
 * one never does, so the consumer would sleep until its poll timed out. */
static __always_inline int emit(struct sched_switch_args *ctx, const __s64 flags)
{
	__u64 calls = count(COUNTER_CALLS);
	struct record *rec;

	rec = bpf_ringbuf_reserve(&events, sizeof(*rec), 0);
	if (!rec) {
		count(COUNTER_DROPPED);
		return 0;
	}
	rec->timestamp_ns = bpf_ktime_get_ns();
	rec->event.cpu = bpf_get_smp_processor_id();
	rec->event.prev_pid = ctx->prev_pid;
	rec->event.prev_state = ctx->prev_state;
	rec->event.next_pid = ctx->next_pid;
	__builtin_memcpy(rec->event.prev_comm, ctx->prev_comm, RMEMRING_COMM_LEN);
	__builtin_memcpy(rec->event.next_comm, ctx->next_comm, RMEMRING_COMM_LEN);
	if (flags >= 0)
		bpf_ringbuf_submit(rec, flags);
	else
		bpf_ringbuf_submit(rec, calls & (WAKE_EVERY - 1) ? BPF_RB_NO_WAKEUP :
				   BPF_RB_FORCE_WAKEUP);
	return 0;
}

SEC("tracepoint/sched/sched_switch")
int sched_switch(struct sched_switch_args *ctx)
{
	return emit(ctx, -1);
}

/* For a consumer that drains the ring on its own schedule: never wakes it. */
SEC("tracepoint/sched/sched_switch")
int sched_switch_quiet(struct sched_switch_args *ctx)
{
	return emit(ctx, BPF_RB_NO_WAKEUP);
}

char LICENSE[] SEC("license") = "GPL";
