/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * The few definitions the BPF programs (rmemring_hook.bpf.c, sched_switch.bpf.c,
 * sched_switch_btf.bpf.c) need from the kernel's UAPI and libbpf's
 * bpf_helpers.h, spelled out so that the build needs clang alone (no kernel
 * or libbpf headers, no vmlinux.h: most reference kernels have no BTF, and
 * the tp_btf program declares the kernel fields it reads itself).
 * rmemring's own UAPI header, <linux/rmemring.h> (driver/include/uapi),
 * takes its __u* types from here when it is compiled for BPF.
 * The helper numbers are the stable ones of include/uapi/linux/bpf.h.
 */
#ifndef RMEMRING_BPF_DEFS_H
#define RMEMRING_BPF_DEFS_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef long long __s64;

#define SEC(name) __attribute__((section(name), used))
#define __always_inline inline __attribute__((always_inline))
/* Makes the compiler forget what it knows about @var's value. */
#define barrier_var(var) asm volatile("" : "+r"(var))
/* BTF-defined maps, as libbpf reads them. */
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name

enum {
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_RINGBUF = 27,
};

/* bpf_ringbuf_submit() and bpf_ringbuf_discard() flags. */
#define BPF_RB_NO_WAKEUP	(1ULL << 0)
#define BPF_RB_FORCE_WAKEUP	(1ULL << 1)

/* What a raw tracepoint program gets: the tracepoint's arguments as u64. */
struct bpf_raw_tracepoint_args {
	__u64 args[0];
};

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)5;
static __u32 (*bpf_get_smp_processor_id)(void) = (void *)8;
static long (*bpf_probe_read_kernel)(void *dst, __u32 size, const void *unsafe_ptr) = (void *)113;
static void *(*bpf_ringbuf_reserve)(void *ringbuf, __u64 size, __u64 flags) = (void *)131;
static void (*bpf_ringbuf_submit)(void *data, __u64 flags) = (void *)132;
static void (*bpf_ringbuf_discard)(void *data, __u64 flags) = (void *)133;

#endif
