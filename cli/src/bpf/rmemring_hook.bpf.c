// SPDX-License-Identifier: GPL-2.0-only
/*
 * The benchmark's BPF ring buffer peer: the driver's producer, started with
 * PRODUCER_HOOK_ONLY, hands every record to the tracepoint
 * rmemring_record_tp(seq, timestamp_ns, len, payload) instead of its ring,
 * and this program copies it into a BPF_MAP_TYPE_RINGBUF, the way a user
 * would stream such records to user space with BPF.
 *
 * A record in the BPF ring buffer is struct record_hdr (24 bytes, the same
 * size as an rmemring header) followed by `len` payload bytes, or, from the
 * header-only programs (for a consumer that reads headers only), the header
 * alone. Records that could not be reserved (ring full) or copied are
 * counted in `counters`.
 *
 * bpf_ringbuf_reserve() needs a size the verifier knows as a constant, so
 * records are reserved in power-of-two size classes (8 B .. 64 KiB of
 * payload): exact for power-of-two lengths, at most twice the payload
 * otherwise. The payload copy itself is exactly `len` bytes, bounded for
 * the verifier by the class's comparison.
 *
 * GPL: bpf_probe_read_kernel() is a GPL-only helper.
 */

#include "bpf_defs.h"

/* The largest payload this program carries (a BPF ringbuf record can be
 * larger, but rmemring's benchmark sizes stop here). */
#define MAX_PAYLOAD (64 * 1024)

struct record_hdr {
	__u64 seq;
	__u64 timestamp_ns;
	__u32 len;
	__u32 reserved;
};

/* Indices of `counters`. */
enum {
	COUNTER_DROPPED,	/* bpf_ringbuf_reserve() failed: the ring was full */
	COUNTER_TOO_LONG,	/* len > MAX_PAYLOAD: not carried */
	COUNTER_READ_ERROR,	/* bpf_probe_read_kernel() failed: discarded */
	COUNTER_NR,
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	/* User space sets the size before loading. */
	__uint(max_entries, 16 << 20);
} records SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTER_NR);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 index)
{
	__u64 *value = bpf_map_lookup_elem(&counters, &index);

	if (value)
		*value += 1;
}

/* Emits one record in the size class of @class payload bytes (a constant
 * after inlining); @len <= @class. */
static __always_inline int emit(__u64 seq, __u64 timestamp_ns, __u32 len,
				const void *payload, const __u32 class,
				const __u64 submit_flags)
{
	struct record_hdr *hdr;
	__u64 n = len;

	/*
	 * The verifier needs the copy's size bounded in the very register
	 * passed to bpf_probe_read_kernel(); the caller's comparison may have
	 * been made on a copy. Hide @n from the compiler so that it cannot
	 * drop this (redundant) check.
	 */
	barrier_var(n);
	if (n > class)
		return 0;
	hdr = bpf_ringbuf_reserve(&records, sizeof(*hdr) + class, 0);
	if (!hdr) {
		count(COUNTER_DROPPED);
		return 0;
	}
	hdr->seq = seq;
	hdr->timestamp_ns = timestamp_ns;
	hdr->len = n;
	hdr->reserved = 0;
	if (bpf_probe_read_kernel(hdr + 1, n, payload)) {
		bpf_ringbuf_discard(hdr, BPF_RB_NO_WAKEUP);
		count(COUNTER_READ_ERROR);
		return 0;
	}
	bpf_ringbuf_submit(hdr, submit_flags);
	return 0;
}

#define CLASS(n)							\
	if (len <= (n))							\
		return emit(seq, timestamp_ns, len, payload, (n), submit_flags)

/* One record, in the smallest size class that holds it. */
static __always_inline int record(__u64 seq, __u64 timestamp_ns, __u32 len,
				  const void *payload, const __u64 submit_flags)
{
	CLASS(8);
	CLASS(16);
	CLASS(32);
	CLASS(64);
	CLASS(128);
	CLASS(256);
	CLASS(512);
	CLASS(1024);
	CLASS(2048);
	CLASS(4096);
	CLASS(8192);
	CLASS(16384);
	CLASS(32768);
	CLASS(MAX_PAYLOAD);
	count(COUNTER_TOO_LONG);
	return 0;
}

/*
 * One record's header only (seq, timestamp, the payload's length), for a
 * consumer that reads headers only: the BPF ring buffer carries what that
 * consumer reads and nothing more, as the zero-copy consumer of rmemring's
 * ring touches no payload byte. The payload is not read at all.
 */
static __always_inline int header(__u64 seq, __u64 timestamp_ns, __u32 len,
				  const void *payload, const __u64 submit_flags)
{
	struct record_hdr *hdr;

	hdr = bpf_ringbuf_reserve(&records, sizeof(*hdr), 0);
	if (!hdr) {
		count(COUNTER_DROPPED);
		return 0;
	}
	hdr->seq = seq;
	hdr->timestamp_ns = timestamp_ns;
	hdr->len = len;
	hdr->reserved = 0;
	bpf_ringbuf_submit(hdr, submit_flags);
	return 0;
}

/*
 * The programs, of which user space loads one: for each hook, each body
 * (record: header and payload; header: the header only) with
 * bpf_ringbuf_submit()'s adaptive wake-up (flags 0: notify only when the
 * consumer has caught up), for a consumer that sleeps in
 * ring_buffer__poll(), and with BPF_RB_NO_WAKEUP, for a consumer that
 * busy-polls. (Not one program and `const volatile` flags: libbpf probes
 * for global data with a socket filter program, which a kernel without
 * CONFIG_NET cannot load, and then refuses to create .rodata.)
 *
 * The hook: the raw tracepoint, which hands the program the arguments
 * directly. The kprobe on the noinline rmemring_hook_record() (x86-64
 * only: it reads the System V argument registers) is there to compare.
 */
#define RAW_TP_ARGS(ctx)						\
	(ctx)->args[0], (ctx)->args[1], (__u32)(ctx)->args[2],		\
	(const void *)(ctx)->args[3]

#define RAW_TP_PROGRAM(name, body, flags)				\
	SEC("raw_tp/rmemring_record_tp")				\
	int name(struct bpf_raw_tracepoint_args *ctx)			\
	{								\
		return body(RAW_TP_ARGS(ctx), (flags));			\
	}

RAW_TP_PROGRAM(rmemring_record, record, 0)
RAW_TP_PROGRAM(rmemring_record_nowake, record, BPF_RB_NO_WAKEUP)
RAW_TP_PROGRAM(rmemring_header, header, 0)
RAW_TP_PROGRAM(rmemring_header_nowake, header, BPF_RB_NO_WAKEUP)

#ifdef __TARGET_ARCH_x86
/* x86-64's struct pt_regs, up to the registers read here. */
struct pt_regs {
	__u64 r15, r14, r13, r12, bp, bx, r11, r10, r9, r8;
	__u64 ax, cx, dx, si, di;
};

#define KPROBE_ARGS(regs)						\
	(regs)->di, (regs)->si, (__u32)(regs)->dx, (const void *)(regs)->cx

#define KPROBE_PROGRAM(name, body, flags)				\
	SEC("kprobe/rmemring_hook_record")				\
	int name(struct pt_regs *regs)					\
	{								\
		return body(KPROBE_ARGS(regs), (flags));		\
	}

KPROBE_PROGRAM(rmemring_record_kprobe, record, 0)
KPROBE_PROGRAM(rmemring_record_kprobe_nowake, record, BPF_RB_NO_WAKEUP)
KPROBE_PROGRAM(rmemring_header_kprobe, header, 0)
KPROBE_PROGRAM(rmemring_header_kprobe_nowake, header, BPF_RB_NO_WAKEUP)
#endif

char LICENSE[] SEC("license") = "GPL";
