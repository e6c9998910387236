/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * rmemring: the user-space ABI of a ring and of /dev/rmemringN.
 *
 * A ring is one region: the control page (the producer's, mapped read-only),
 * the consumer page (the consumer's, the only part user space writes) and
 * the data area of records, each page-aligned, at these region offsets,
 * which are also the mmap() offsets on the device:
 *
 *   0                page_size          2 * page_size            + data_size
 *   +----------------+------------------+-------------------------+
 *   | control_page   | consumer_page    | data area: records      |
 *   +----------------+------------------+-------------------------+
 *
 * docs/protocol.md is the protocol: the ordering of the loads and stores,
 * the wake-up handshake, what a consumer must validate. This header is its
 * layout, constants and ioctls; the Rust definitions it mirrors are
 * proto/src/{layout,uapi,events}.rs, and proto/tests/c_header.rs compiles
 * this header and checks every offset, size, constant and ioctl number
 * against them.
 *
 * All integers are little-endian; the ABI is defined for little-endian
 * 64-bit machines (x86-64, arm64, riscv64). Every field one side writes
 * while the other reads has its own 128-byte line (RMEMRING_LINE).
 *
 * User space: #include <linux/rmemring.h> with -I driver/include/uapi.
 * Kernel: the in-kernel producer API, driver/include/rmemring.h, includes it.
 */
#ifndef _UAPI_LINUX_RMEMRING_H
#define _UAPI_LINUX_RMEMRING_H

/*
 * A BPF program (clang -target bpf) has no kernel or libc headers: it
 * defines the __u* types itself (cli/src/bpf/bpf_defs.h) and
 * uses no ioctl.
 */
#ifndef __bpf__
#include <linux/ioctl.h>
#include <linux/types.h>
#endif

/* --- The shared-memory layout (proto/src/layout.rs) --- */

/* The first eight bytes of every ring: "RMEMRING" read as a little-endian u64. */
#define RMEMRING_MAGIC			0x474e49524d454d52ULL
/* The layout and protocol version; refuse any other. */
#define RMEMRING_ABI_VERSION		1

/* The spacing between fields written by different sides, in bytes. */
#define RMEMRING_LINE			128
/* Every record starts at a multiple of this many bytes in the data area. */
#define RMEMRING_RECORD_ALIGN		8
/* sizeof(struct rmemring_record_header). */
#define RMEMRING_HEADER_SIZE		24
/* The smallest page size a ring may be laid out with. */
#define RMEMRING_MIN_PAGE_SIZE		4096
/* The data area: a power of two in this range. */
#define RMEMRING_MIN_DATA_SIZE		4096ULL
#define RMEMRING_MAX_DATA_SIZE		(1ULL << 31)

/* rmemring_record_header.kind */
#define RMEMRING_KIND_DATA		1	/* a record with a payload */
#define RMEMRING_KIND_PAD		2	/* the rest of the data area is unused */

/* rmemring_control_page.flags (and rmemring_info.flags) */
#define RMEMRING_FLAG_OVERWRITE		(1U << 0)	/* overwrite-oldest, not drop-new */
#define RMEMRING_FLAG_CACHE_SHIFT	8		/* bits 8-11: RMEMRING_CACHE_* */
#define RMEMRING_FLAG_CACHE_MASK	(0xfU << RMEMRING_FLAG_CACHE_SHIFT)
#define RMEMRING_FLAGS_KNOWN		(RMEMRING_FLAG_OVERWRITE | RMEMRING_FLAG_CACHE_MASK)

/* How the producer maps the region; user space maps it the same way. */
#define RMEMRING_CACHE_WRITE_BACK	0
#define RMEMRING_CACHE_WRITE_COMBINE	1
#define RMEMRING_CACHE_UNCACHED		2

/*
 * The first page: written by the producer, read-only to user space. The
 * identity fields (up to phys_base) change only through RMEMRING_IOC_RESET.
 */
struct rmemring_control_page {
	/* Line 0: identity. */
	__u64 magic;			/* RMEMRING_MAGIC */
	__u32 abi_version;		/* RMEMRING_ABI_VERSION */
	__u32 page_size;		/* the page size the layout was made for */
	__u64 region_size;		/* bytes in the region, unused tail included */
	__u64 consumer_offset;		/* page_size */
	__u64 data_offset;		/* 2 * page_size */
	__u64 data_size;		/* a power of two */
	__u32 max_payload;		/* at most data_size / 4 - RMEMRING_HEADER_SIZE */
	__u32 flags;			/* RMEMRING_FLAG_* */
	__u64 phys_base;		/* 0 (RMEMRING_IOC_INFO has it, for CAP_SYS_ADMIN) */
	__u64 boot_id[2];		/* the boot that laid it out (boot_id's 16 bytes); 0: none */
	__s64 realtime_offset_ns;	/* CLOCK_REALTIME - CLOCK_MONOTONIC then; 0: unknown */
	__u64 identity_sum;		/* FNV-1a of the identity: see docs/protocol.md */
	__u64 reserved0[4];		/* zero */
	/* Line 1. */
	__u64 producer_pos;		/* one past the last published record */
	__u64 pad1[15];
	/* Line 2. */
	__u64 overwrite_pos;		/* oldest record not being overwritten (overwrite mode) */
	__u64 pad2[15];
	/* Line 3: wake-ups and statistics. */
	__u32 wake_seq;			/* futex word of memfd and file rings */
	__u32 reserved1;		/* zero */
	__u64 records_produced;
	__u64 bytes_produced;		/* payload bytes */
	__u64 records_dropped;		/* drop-new: refused, the ring was full */
	__u64 records_overwritten;	/* overwrite: retired, read or not */
	__u64 wakeups;
	__u64 consumer_errors;		/* impossible consumer_pos values ignored */
	__u64 pad3[9];
};

/* The second page: written by the consumer; the producer trusts none of it. */
struct rmemring_consumer_page {
	/* Line 0. */
	__u64 consumer_pos;		/* released up to here */
	__u64 pad0[15];
	/* Line 1. */
	__u32 need_wakeup;		/* non-zero token: wake me after the next publication */
	__u32 wake_token;		/* the last token stored in need_wakeup */
	__u64 pad1[15];
	/* Line 2: statistics, which the next consumer continues. */
	__u64 records_consumed;
	__u64 bytes_consumed;		/* payload bytes */
	__u64 records_lost;		/* missing from the sequence */
	__u64 sleeps;
	__u64 pad2[12];
};

/*
 * In front of every record of the data area. A pad record
 * (RMEMRING_KIND_PAD) has only len, kind and tag: as little as 8 bytes may
 * be left before the end of the data area, which its len reaches exactly.
 */
struct rmemring_record_header {
	__u32 len;			/* payload bytes, or bytes to the end (pad) */
	__u16 kind;			/* RMEMRING_KIND_* */
	__u16 tag;			/* RMEMRING_TAG_* or an application's */
	__u64 seq;			/* one more per record written or dropped */
	__u64 timestamp_ns;		/* CLOCK_MONOTONIC */
};

/* --- Record tags and the payloads of rmemring's producers (proto/src/events.rs) --- */

#define RMEMRING_TAG_PATTERN		0	/* the built-in producer's test pattern */
#define RMEMRING_TAG_SCHED_SWITCH	1	/* struct rmemring_sched_switch */
#define RMEMRING_TAG_TIMER_SAMPLE	2	/* struct rmemring_timer_sample */
#define RMEMRING_TAG_USER_MIN		0x100	/* the first tag for your own records */

#define RMEMRING_COMM_LEN		16

/* RMEMRING_TAG_SCHED_SWITCH: one call of the sched_switch tracepoint. */
struct rmemring_sched_switch {
	__u32 cpu;
	__u32 prev_pid;
	__u32 prev_state;
	__u32 next_pid;
	char prev_comm[RMEMRING_COMM_LEN];
	char next_comm[RMEMRING_COMM_LEN];
};

/* RMEMRING_TAG_TIMER_SAMPLE: one expiry of a per-CPU hard-IRQ timer. */
struct rmemring_timer_sample {
	__u32 cpu;
	__u32 reserved;
	__u64 count;
	__u64 lateness_ns;
};

/* --- The device's ioctls (proto/src/uapi.rs) --- */

/* What RMEMRING_IOC_INFO returns. */
struct rmemring_info {
	__u32 abi_version;
	__u32 page_size;		/* the kernel's */
	__u64 phys_base;		/* for CAP_SYS_ADMIN openers, else 0 */
	__u64 region_size;
	__u64 consumer_offset;
	__u64 data_offset;
	__u64 data_size;
	__u32 max_payload;
	__u32 flags;			/* RMEMRING_FLAG_* */
	__u32 index;			/* the N of /dev/rmemringN */
	__u32 state;			/* RMEMRING_STATE_* */
	__u32 reserved[8];
};

/* rmemring_info.state */
#define RMEMRING_STATE_LIVE		0	/* producers write it */
#define RMEMRING_STATE_RECOVERED	1	/* a previous boot's, read-only until released */

/* rmemring_recovery_info.verdict */
#define RMEMRING_RECOVERY_NOT_ASKED	0	/* retain=0 */
#define RMEMRING_RECOVERY_RECOVERED	1	/* served: RMEMRING_STATE_RECOVERED */
#define RMEMRING_RECOVERY_NONE		2	/* nothing to recover: see reason */
#define RMEMRING_RECOVERY_RELEASED	3	/* was recovered, since released */

/* rmemring_recovery_info.reason, with RMEMRING_RECOVERY_NONE */
#define RMEMRING_RECOVERY_REASON_BLANK		1	/* zeroed memory */
#define RMEMRING_RECOVERY_REASON_LAYOUT		2	/* not a ring of this version */
#define RMEMRING_RECOVERY_REASON_CHECKSUM	3	/* identity_sum mismatch */
#define RMEMRING_RECOVERY_REASON_GEOMETRY	4	/* another region size */
#define RMEMRING_RECOVERY_REASON_CACHE_MODE	5	/* another cache mode */
#define RMEMRING_RECOVERY_REASON_NO_BOOT_ID	6	/* no boot id */
#define RMEMRING_RECOVERY_REASON_THIS_BOOT	7	/* this boot's own ring */
#define RMEMRING_RECOVERY_REASON_POSITIONS	8	/* impossible positions */
#define RMEMRING_RECOVERY_REASON_NO_RECORDS	9	/* intact, but no record */
#define RMEMRING_RECOVERY_REASON_BOOT_ID_UNKNOWN	10	/* this boot's id unreadable */
#define RMEMRING_RECOVERY_REASON_DROP_NEW	11	/* a drop-new ring: only overwrite is kept */

/* What RMEMRING_IOC_RECOVERY returns (docs/flight-recorder.md). */
struct rmemring_recovery_info {
	__u32 verdict;			/* RMEMRING_RECOVERY_* */
	__u32 reason;			/* RMEMRING_RECOVERY_REASON_* */
	__u64 boot_id[2];		/* the boot that wrote the ring */
	__s64 realtime_offset_ns;	/* its CLOCK_REALTIME - CLOCK_MONOTONIC */
	__u32 flags;			/* RMEMRING_FLAG_* of the recovered ring */
	__u32 reserved0;
	__u64 start_pos;		/* the oldest recovered record */
	__u64 end_pos;			/* one past the last */
	__u64 published_pos;		/* what the ring had published */
	__u64 records;
	__u64 first_seq;
	__u64 last_seq;
	__u64 first_ns;			/* that boot's CLOCK_MONOTONIC */
	__u64 last_ns;
	__u64 bytes_cut;		/* published bytes cut from a torn tail */
	__u64 reserved[5];
};

/* rmemring_producer_config.pattern */
#define RMEMRING_PATTERN_SEQ		0	/* every byte from the sequence number */
#define RMEMRING_PATTERN_NONE		1	/* only the first word; no fill cost */

/* rmemring_producer_config.flags */
#define RMEMRING_PRODUCER_WAIT		(1U << 0)	/* ring full: wait, do not drop */
#define RMEMRING_PRODUCER_HOOK_ONLY	(1U << 1)	/* only the rmemring_record_tp tracepoint */
#define RMEMRING_PRODUCER_STAGED	(1U << 2)	/* payload staged in a kernel buffer, then copied in */
#define RMEMRING_PRODUCER_FLAGS_KNOWN	(RMEMRING_PRODUCER_WAIT | RMEMRING_PRODUCER_HOOK_ONLY | \
					 RMEMRING_PRODUCER_STAGED)

/* What RMEMRING_IOC_START takes: the built-in test producer's run. */
struct rmemring_producer_config {
	__u32 min_len;			/* payload bytes, smallest */
	__u32 max_len;			/* and largest: see docs/protocol.md */
	__u64 count;			/* records, dropped ones included; 0: no limit */
	__u64 rate;			/* records per second; 0: as fast as possible */
	__u32 pattern;			/* RMEMRING_PATTERN_* */
	__u32 flags;			/* RMEMRING_PRODUCER_* */
	__u32 batch;			/* records per publication; 0: the default */
	__u32 reserved[7];		/* zero */
};

/* rmemring_reset_config.flags */
#define RMEMRING_RESET_FLAGS_KNOWN	RMEMRING_FLAG_OVERWRITE

/* What RMEMRING_IOC_RESET takes. */
struct rmemring_reset_config {
	__u32 flags;			/* RMEMRING_FLAG_OVERWRITE or 0 */
	__u32 reserved[3];		/* zero */
};

/* What RMEMRING_IOC_STATS returns. */
struct rmemring_stats {
	/* The producer's, from the control page. */
	__u64 producer_pos;
	__u64 consumer_pos;		/* as the consumer last released */
	__u64 records_produced;
	__u64 bytes_produced;
	__u64 records_dropped;
	__u64 records_overwritten;
	__u64 wakeups;
	__u64 consumer_errors;
	/* The consumer's, as it reported them in its page. */
	__u64 records_consumed;
	__u64 bytes_consumed;
	__u64 records_lost;
	__u64 sleeps;
	/* The driver's. */
	__u64 records_read;		/* copied out by read() */
	__u32 producer_running;		/* 1 while the built-in producer runs */
	__u32 consumer_open;		/* 1 while a file holds the consumer's place */
	__u64 records_hooked;		/* RMEMRING_PRODUCER_HOOK_ONLY records */
	__u64 records_refused;		/* in-kernel producers' writes refused */
	__u64 reserved[2];
};

#define RMEMRING_IOC_TYPE		0xBB

#define RMEMRING_IOC_INFO	_IOR(RMEMRING_IOC_TYPE, 0, struct rmemring_info)
#define RMEMRING_IOC_START	_IOW(RMEMRING_IOC_TYPE, 1, struct rmemring_producer_config)
#define RMEMRING_IOC_STOP	_IO(RMEMRING_IOC_TYPE, 2)
#define RMEMRING_IOC_STATS	_IOR(RMEMRING_IOC_TYPE, 3, struct rmemring_stats)
#define RMEMRING_IOC_RESET	_IOW(RMEMRING_IOC_TYPE, 4, struct rmemring_reset_config)
#define RMEMRING_IOC_RECOVERY	_IOR(RMEMRING_IOC_TYPE, 5, struct rmemring_recovery_info)
#define RMEMRING_IOC_RELEASE_RECOVERED	_IO(RMEMRING_IOC_TYPE, 6)

#endif /* _UAPI_LINUX_RMEMRING_H */
