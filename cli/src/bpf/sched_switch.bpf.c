// SPDX-License-Identifier: GPL-2.0-only
/*
 * The real-event benchmark's BPF ring buffer peer (`rmemring bench-events`):
 * the same record as the sched_switch tracer of examples/kernel/sched_switch
 * writes through rmemring, from the same tracepoint, into a
 * BPF_MAP_TYPE_RINGBUF record (sched_switch.h), in the two ways a BPF user
 * can attach to it on a kernel without BTF (the tp_btf program, which needs
 * BTF, is sched_switch_btf.bpf.c, an object of its own: libbpf refuses to
 * load an object with CO-RE relocations where the kernel has no BTF):
 *
 * - `tracepoint/sched/sched_switch` (peer `bpf`): the program reads the
 *   event's fields from the record the kernel's perf trace buffer builds for
 *   it first (layout: events/sched/sched_switch/format, checked by the
 *   loader);
 * - `raw_tp/sched_switch` (peer `bpf-raw`): the program gets the
 *   tracepoint's arguments as they are, (preempt, prev, next, prev_state)
 *   (include/trace/events/sched.h), and reads pid and comm from the two
 *   task_structs with bpf_probe_read_kernel() at offsets the loader sets in
 *   a map before attaching: the running kernel's own, which the tracer
 *   module (built against the same tree) reports as parameters.
 */

#include "sched_switch.h"

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

/*
 * Where task_struct has the fields the raw_tp programs read, in the running
 * kernel: set by the loader before attaching, from the tracer module's
 * task_pid_offset and task_comm_offset parameters. A one-entry array map,
 * whose lookup the verifier inlines (a few instructions), rather than a
 * .rodata constant: libbpf creates global data maps only where its probe,
 * a socket filter program, loads, and the reference kernel has no
 * networking.
 */
struct task_offsets {
	__u32 pid;
	__u32 comm;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct task_offsets);
} task_offsets SEC(".maps");

/* The fields from the tracepoint's record, which the kernel has filled. */
static __always_inline void fill_from_record(struct rmemring_sched_switch *event,
					     const struct sched_switch_args *ctx)
{
	event->prev_pid = ctx->prev_pid;
	event->prev_state = ctx->prev_state;
	event->next_pid = ctx->next_pid;
	__builtin_memcpy(event->prev_comm, ctx->prev_comm, RMEMRING_COMM_LEN);
	__builtin_memcpy(event->next_comm, ctx->next_comm, RMEMRING_COMM_LEN);
}

/* The fields from the task_structs themselves, as the tracer reads them. */
static __always_inline void fill_from_tasks(struct rmemring_sched_switch *event,
					    const struct bpf_raw_tracepoint_args *ctx)
{
	const char *prev = (const char *)ctx->args[ARG_PREV];
	const char *next = (const char *)ctx->args[ARG_NEXT];
	__u32 zero = 0;
	const struct task_offsets *offsets = bpf_map_lookup_elem(&task_offsets, &zero);
	long err = 0;

	if (!offsets) {
		count(COUNTER_FAULTS);
		return;
	}
	event->prev_state = ctx->args[ARG_PREV_STATE];
	err |= bpf_probe_read_kernel(&event->prev_pid, sizeof(event->prev_pid),
				     prev + offsets->pid);
	err |= bpf_probe_read_kernel(&event->next_pid, sizeof(event->next_pid),
				     next + offsets->pid);
	err |= bpf_probe_read_kernel(event->prev_comm, RMEMRING_COMM_LEN,
				     prev + offsets->comm);
	err |= bpf_probe_read_kernel(event->next_comm, RMEMRING_COMM_LEN,
				     next + offsets->comm);
	if (err)
		count(COUNTER_FAULTS);
}

/* Writes the record, from the tracepoint's record (@raw 0) or from its raw
 * arguments (@raw 1), and submits it with @flags (see submit()). */
static __always_inline int emit(void *ctx, const int raw, const __s64 flags)
{
	__u64 calls;
	struct record *rec = reserve(&calls);

	if (!rec)
		return 0;
	if (raw)
		fill_from_tasks(&rec->event, ctx);
	else
		fill_from_record(&rec->event, ctx);
	submit(rec, calls, flags);
	return 0;
}

SEC("tracepoint/sched/sched_switch")
int sched_switch(struct sched_switch_args *ctx)
{
	return emit(ctx, 0, -1);
}

/* For a consumer that drains the ring on its own schedule: never wakes it. */
SEC("tracepoint/sched/sched_switch")
int sched_switch_quiet(struct sched_switch_args *ctx)
{
	return emit(ctx, 0, BPF_RB_NO_WAKEUP);
}

SEC("raw_tp/sched_switch")
int sched_switch_raw(struct bpf_raw_tracepoint_args *ctx)
{
	return emit(ctx, 1, -1);
}

SEC("raw_tp/sched_switch")
int sched_switch_raw_quiet(struct bpf_raw_tracepoint_args *ctx)
{
	return emit(ctx, 1, BPF_RB_NO_WAKEUP);
}

char LICENSE[] SEC("license") = "GPL";
