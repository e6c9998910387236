// SPDX-License-Identifier: GPL-2.0-only
/*
 * The real-event benchmark's BPF ring buffer peer `bpf-btf`
 * (`rmemring bench-events`): the record of sched_switch.bpf.c's programs
 * (sched_switch.h), from a `tp_btf/sched_switch` program, the way a BPF
 * user on a kernel with BTF (CONFIG_DEBUG_INFO_BTF) attaches to the
 * tracepoint: like `raw_tp/`, the program gets the tracepoint's arguments
 * as they are, but typed by the kernel's BTF, so the verifier lets it load
 * the tasks' fields directly (prev->pid: a plain load, which the JIT guards
 * with an exception table entry, no helper call), and the field offsets are
 * CO-RE relocations that libbpf resolves against the running kernel's BTF
 * (/sys/kernel/btf/vmlinux) as it loads the program: no offsets from the
 * loader, no map lookup, no bpf_probe_read_kernel().
 *
 * An object of its own: libbpf loads the kernel's BTF for any object with
 * CO-RE relocations, and fails where there is none, which would take the
 * `bpf` and `bpf-raw` peers down with this one on such kernels.
 */

#include "sched_switch.h"

#define __core __attribute__((preserve_access_index))

/* The fields of the kernel's task_struct the program reads. Only their
 * names and types matter: CO-RE finds them in the running kernel's BTF. */
struct task_struct {
	int pid;
	char comm[RMEMRING_COMM_LEN];
} __core;

/* The fields from the tasks, as the tracer reads them. */
static __always_inline int emit(const __u64 *ctx, const __s64 flags)
{
	const struct task_struct *prev = (const struct task_struct *)ctx[ARG_PREV];
	const struct task_struct *next = (const struct task_struct *)ctx[ARG_NEXT];
	__u64 calls;
	struct record *rec = reserve(&calls);

	if (!rec)
		return 0;
	rec->event.prev_state = ctx[ARG_PREV_STATE];
	rec->event.prev_pid = prev->pid;
	rec->event.next_pid = next->pid;
	__builtin_memcpy(rec->event.prev_comm, prev->comm, RMEMRING_COMM_LEN);
	__builtin_memcpy(rec->event.next_comm, next->comm, RMEMRING_COMM_LEN);
	submit(rec, calls, flags);
	return 0;
}

SEC("tp_btf/sched_switch")
int sched_switch_btf(__u64 *ctx)
{
	return emit(ctx, -1);
}

/* For a consumer that drains the ring on its own schedule: never wakes it. */
SEC("tp_btf/sched_switch")
int sched_switch_btf_quiet(__u64 *ctx)
{
	return emit(ctx, BPF_RB_NO_WAKEUP);
}

char LICENSE[] SEC("license") = "GPL";
