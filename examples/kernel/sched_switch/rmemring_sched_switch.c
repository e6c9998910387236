// SPDX-License-Identifier: GPL-2.0
/*
 * rmemring_sched_switch: a sched_switch tracer that streams every context switch
 * through an rmemring ring, as an out-of-tree tracer would.
 *
 *   insmod rmemring_sched_switch.ko ring=rmemring0
 *   rmemring cat --format jsonl /dev/rmemring0
 *
 * The probe runs inside __schedule(), with the runqueue lock held and
 * interrupts off, on every CPU: the strictest context the in-kernel API
 * allows short of NMI. It writes one struct rmemring_sched_switch per call
 * with rmemring_reserve()/rmemring_commit(), storing its fields straight
 * into the reservation with aligned word stores (which every cache mode of
 * the ring takes), and counts
 * every call and every outcome itself, so that a test can check the
 * consumer's count against the tracer's: written + dropped + refused +
 * gone == calls. The counts are in
 * /sys/module/rmemring_sched_switch/parameters/ and, when the module is
 * unloaded (after the probe is detached), in the kernel log.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/err.h>
#include <linux/ktime.h>
#include <linux/math64.h>
#include <linux/atomic.h>
#include <linux/sched.h>
#include <linux/string.h>
#include <linux/tracepoint.h>
#include <linux/unaligned.h>

#include <rmemring.h>

static char *ring_name = "rmemring0";
module_param_named(ring, ring_name, charp, 0444);
MODULE_PARM_DESC(ring, "The ring to write into (its device name)");

/* The tracer's own counts. Read-only parameters so that a test can read them. */
static atomic64_t calls, written, dropped, refused, gone, failed;

static int get_count(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%lld\n", atomic64_read(kp->arg));
}

/* The kernel calls .set for a parameter given at load without checking it. */
static int set_read_only(const char *val, const struct kernel_param *kp)
{
	return -EPERM;
}

static const struct kernel_param_ops count_ops = { .set = set_read_only, .get = get_count };
module_param_cb(calls, &count_ops, &calls, 0444);
MODULE_PARM_DESC(calls, "Probe calls");
module_param_cb(written, &count_ops, &written, 0444);
MODULE_PARM_DESC(written, "Records written");
module_param_cb(dropped, &count_ops, &dropped, 0444);
MODULE_PARM_DESC(dropped, "Records dropped: the ring was full (drop-new mode)");
module_param_cb(refused, &count_ops, &refused, 0444);
MODULE_PARM_DESC(refused, "Records refused: NMI, nested in a producer section, or the ring resetting");
module_param_cb(gone, &count_ops, &gone, 0444);
MODULE_PARM_DESC(gone, "Records refused because the ring's device is gone (unbound)");
module_param_cb(failed, &count_ops, &failed, 0444);
MODULE_PARM_DESC(failed, "Records failed otherwise (a bug)");

/*
 * Where task_struct has the fields the tracer reads, in this kernel: for a
 * BPF program that reads them from a raw tracepoint's arguments on a kernel
 * without BTF (rmemring bench-events' bpf-raw peer), which has no other way
 * to learn this build's layout. The offset is the parameter's argument.
 */
static int get_offset(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%lu\n", (unsigned long)kp->arg);
}

static const struct kernel_param_ops offset_ops = { .set = set_read_only, .get = get_offset };
module_param_cb(task_pid_offset, &offset_ops, (void *)offsetof(struct task_struct, pid), 0444);
MODULE_PARM_DESC(task_pid_offset, "offsetof(struct task_struct, pid) in this kernel");
module_param_cb(task_comm_offset, &offset_ops, (void *)offsetof(struct task_struct, comm), 0444);
MODULE_PARM_DESC(task_comm_offset, "offsetof(struct task_struct, comm) in this kernel");

static bool quiet;
module_param(quiet, bool, 0444);
MODULE_PARM_DESC(quiet, "Never wake a sleeping consumer (RMEMRING_NO_WAKEUP on every record), for a consumer that drains the ring on its own schedule");

static unsigned int wake_every;
module_param(wake_every, uint, 0444);
MODULE_PARM_DESC(wake_every, "If not 0, only every this many-th record may wake a sleeping consumer (the others go in quietly), whatever the switch; the benchmark's like-for-like policy");

static unsigned int bench;
module_param(bench, uint, 0444);
MODULE_PARM_DESC(bench, "At load, first time this many rmemring_write() and rmemring_reserve()/commit() calls of one record each, and log their mean cost");

/* See probe_sched_switch(). */
#define WAKE_EVERY 64 /* a power of two */

static struct rmemring *ring;
static struct tracepoint *sched_switch_tp;

/*
 * Whether the tracepoint's static key is on: a test that sees no call
 * can tell a probe the kernel never reaches from one it does not run.
 */
static int get_tracepoint_enabled(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%d\n",
			  sched_switch_tp ? static_key_enabled(&sched_switch_tp->key) : -1);
}

static const struct kernel_param_ops tracepoint_enabled_ops = {
	.set = set_read_only,
	.get = get_tracepoint_enabled,
};
module_param_cb(tracepoint_enabled, &tracepoint_enabled_ops, NULL, 0444);
MODULE_PARM_DESC(tracepoint_enabled, "Whether sched_switch's static key is on (-1: not found)");

/* The commit flags of the record of probe call number @call. */
static u32 wake_flags(unsigned int prev_state, u64 call)
{
	if (quiet)
		return RMEMRING_NO_WAKEUP;
	if (wake_every)
		return do_div(call, wake_every) ? RMEMRING_NO_WAKEUP : 0;
	/* See probe_sched_switch(). */
	return prev_state && (call & (WAKE_EVERY - 1)) ? RMEMRING_NO_WAKEUP : 0;
}

/*
 * Stores the record of one switch into a reservation: six aligned 8-byte
 * stores (WRITE_ONCE()), the stores every cache mode of the ring takes, as
 * rmemring_fill() makes them, straight from the tasks: no copy of the
 * record built elsewhere first. The u32 fields go in pairs, each pair a
 * word whose bytes are the struct's (memcpy() into a u64 is a register
 * move); the names are loaded whole, wherever task_struct puts them
 * (data_race(): a task may be renamed meanwhile, as any reader of comm
 * allows). The loads run with the ring's lock held: loading the six words
 * into locals before rmemring_reserve() costs 23 instructions a record
 * more here (kept across the call; under -icount, the tracer 328 -> 351
 * a switch), a cost every record pays, where the lock held across two
 * task_structs' cache lines costs only when other CPUs write the ring.
 */
static void store_switch(void *slot, struct task_struct *prev, struct task_struct *next,
			 unsigned int prev_state)
{
	struct { u32 a, b; } pair;
	u64 *to = slot, word;

	BUILD_BUG_ON(offsetof(struct rmemring_sched_switch, prev_comm) != 16);
	BUILD_BUG_ON(offsetof(struct rmemring_sched_switch, next_comm) != 32);
	pair.a = smp_processor_id();
	pair.b = prev->pid;
	memcpy(&word, &pair, sizeof(word));
	WRITE_ONCE(to[0], word);
	pair.a = prev_state;
	pair.b = next->pid;
	memcpy(&word, &pair, sizeof(word));
	WRITE_ONCE(to[1], word);
	WRITE_ONCE(to[2], data_race(get_unaligned((u64 *)&prev->comm[0])));
	WRITE_ONCE(to[3], data_race(get_unaligned((u64 *)&prev->comm[8])));
	WRITE_ONCE(to[4], data_race(get_unaligned((u64 *)&next->comm[0])));
	WRITE_ONCE(to[5], data_race(get_unaligned((u64 *)&next->comm[8])));
}

static void probe_sched_switch(void *data, bool preempt, struct task_struct *prev,
			       struct task_struct *next, unsigned int prev_state)
{
	void *slot;

	atomic64_inc(&calls);
	slot = rmemring_reserve(ring, RMEMRING_TAG_SCHED_SWITCH,
				sizeof(struct rmemring_sched_switch));
	if (IS_ERR(slot)) {
		switch (PTR_ERR(slot)) {
		case -ENOSPC:
			atomic64_inc(&dropped);
			break;
		case -ENODEV:
			atomic64_inc(&gone);
			break;
		case -EBUSY:
			atomic64_inc(&refused);
			break;
		default:
			atomic64_inc(&failed);
		}
		return;
	}
	store_switch(slot, prev, next, prev_state);
	/*
	 * A task going to sleep (prev_state not TASK_RUNNING) may be the
	 * consumer itself: waking it for the record of its own sleep would
	 * make it read, sleep and be woken again, for ever. Such records go
	 * in quietly; any other, and every WAKE_EVERY-th, wakes a sleeping
	 * consumer, so it waits for at most that many records on a machine
	 * where every switch is a task blocking.
	 */
	if (rmemring_commit(ring, slot, wake_flags(prev_state, atomic64_read(&calls))))
		atomic64_inc(&failed);	/* a bug here: flags we know, our own slot */
	else
		atomic64_inc(&written);
}

static void find_sched_switch(struct tracepoint *tp, void *priv)
{
	if (!strcmp(tp->name, "sched_switch"))
		sched_switch_tp = tp;
}

/*
 * The cost of a write, measured where a producer would pay it: @bench
 * records of the tracer's size through each path, back to back on this
 * CPU, into the ring (a consumer should be draining it, or the ring fills
 * and the rest measure the drop path). Tagged RMEMRING_TAG_USER_MIN, so a
 * consumer can tell them from switches.
 */
static void run_bench(void)
{
	struct rmemring_sched_switch rec = { .cpu = 0 };
	unsigned int i, full = 0;
	u64 start, write_ns, reserve_ns;
	void *p;

	start = ktime_get_ns();
	for (i = 0; i < bench; i++)
		full += rmemring_write(ring, RMEMRING_TAG_USER_MIN, &rec, sizeof(rec), 0) == -ENOSPC;
	write_ns = ktime_get_ns() - start;
	start = ktime_get_ns();
	for (i = 0; i < bench; i++) {
		p = rmemring_reserve(ring, RMEMRING_TAG_USER_MIN, sizeof(rec));
		if (IS_ERR(p)) {
			full++;
			continue;
		}
		rmemring_fill(p, &rec, sizeof(rec));
		full += rmemring_commit(ring, p, 0) != 0;
	}
	reserve_ns = ktime_get_ns() - start;
	pr_info("bench: %u records of %zu B: rmemring_write %llu ns each, rmemring_reserve+commit %llu ns each (%u of %u found the ring full)\n",
		bench, sizeof(rec), div_u64(write_ns, bench), div_u64(reserve_ns, bench), full,
		2 * bench);
}

static int __init sched_switch_init(void)
{
	int ret;

	BUILD_BUG_ON(sizeof(struct rmemring_sched_switch) != 48);
	BUILD_BUG_ON(TASK_COMM_LEN != RMEMRING_COMM_LEN);

	for_each_kernel_tracepoint(find_sched_switch, NULL);
	if (!sched_switch_tp) {
		pr_err("no sched_switch tracepoint in this kernel\n");
		return -ENOENT;
	}
	ring = rmemring_get(ring_name);
	if (!ring) {
		pr_err("no ring named %s\n", ring_name);
		return -ENODEV;
	}
	if (bench)
		run_bench();
	ret = tracepoint_probe_register(sched_switch_tp, probe_sched_switch, NULL);
	if (ret) {
		rmemring_put(ring);
		return ret;
	}
	pr_info("tracing sched_switch into %s\n", ring_name);
	return 0;
}

static void __exit sched_switch_exit(void)
{
	tracepoint_probe_unregister(sched_switch_tp, probe_sched_switch, NULL);
	/* No probe runs after this: the counts below are final. */
	tracepoint_synchronize_unregister();
	rmemring_put(ring);
	pr_info("calls=%lld written=%lld dropped=%lld refused=%lld gone=%lld failed=%lld\n",
		atomic64_read(&calls), atomic64_read(&written), atomic64_read(&dropped),
		atomic64_read(&refused), atomic64_read(&gone), atomic64_read(&failed));
}

module_init(sched_switch_init);
module_exit(sched_switch_exit);
MODULE_DESCRIPTION("sched_switch tracer writing into an rmemring ring");
MODULE_LICENSE("GPL");
