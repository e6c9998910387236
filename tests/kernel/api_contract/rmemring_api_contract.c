// SPDX-License-Identifier: GPL-2.0
/*
 * rmemring_api_contract: checks, at load, what each call of the in-kernel
 * API returns at its edges (the returns rmemring.h promises that the
 * example clients never meet), and leaves in the ring exactly the records
 * the selftest's kapi group then expects, in order:
 *
 *   tag USER_MIN + 2: "written" (rmemring_write, 8 bytes)
 *   tag USER_MIN + 3: 24 bytes 0..23 (rmemring_reserve + rmemring_commit)
 *   tag USER_MIN + 4: no payload (rmemring_write of 0 bytes)
 *   tag USER_MIN + 5: rmemring_max_payload() bytes, byte i = i % 251
 *                     (reserved and committed, filled byte by byte)
 *   tag USER_MIN + 8: the same bytes, copied by rmemring_write() from a
 *                     vmalloc()ed buffer, timed: the longest a write keeps
 *                     interrupts off ("max_payload write: ... ns" in the log)
 *   tag USER_MIN + 6: "reserved" (committed after refused commits of no
 *                     reservation and of another payload)
 *   tag USER_MIN + 9: "kprobed" (arm64: written from a kprobe's handler,
 *                     a BRK debug exception; x86-64 refuses it, -EBUSY:
 *                     the kernel enters int3 as an NMI)
 *   tag USER_MIN + 7: "nmi-safe" (x86-64: committed after an NMI's commit
 *                     of it was refused)
 *   tag USER_MIN + 10: SOFTIRQ_CALLS records of a u64 0, 1, ...: written by
 *                     a timer_list callback (softirq context), one per
 *                     expiry ("softirq: calls=..." in the log)
 *   tag USER_MIN + 12: "batch-0", "batch-1", "batch-2" (one batch, after
 *                     refused calls inside it)
 *   tag USER_MIN + 13: 4096 bytes, a u64 0, 1, ... then zeroes: one batch
 *                     until its bound, -EAGAIN ("batch: bound=N")
 *   tag USER_MIN + 14: 4096 bytes, a u64 0, 1, ... then zeroes: batches
 *                     until the ring is full ("fill=N"); the batch that
 *                     finds it full drops 2 records (-ENOSPC) around a
 *                     refused -ENOBUFS (RMEMRING_NO_DROP), so the ring's
 *                     records_dropped is 2
 *
 * and nothing of the attempts that failed or were discarded; each refusal
 * with -EBUSY counts in the ring's records_refused (2 from inside an open
 * reservation, 1 a write inside a batch, 1 a batch begun inside a
 * reservation; on x86-64, 1 from a kprobe handler and, where the CPU has
 * a local APIC to send itself an NMI with, 2 more from NMI context, a
 * write and a commit).
 *
 *   insmod rmemring_api_contract.ko ring=rmemring0
 *
 * Every check logs "ok - ..." or "not ok - ..."; the load fails with
 * -EINVAL if any did not hold. Run it on a fresh ring in drop-new mode with
 * nothing else producing.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/err.h>
#include <linux/delay.h>
#include <linux/string.h>
#include <linux/smp.h>
#include <linux/cpumask.h>
#include <linux/atomic.h>
#include <linux/kprobes.h>
#include <linux/ktime.h>
#include <linux/vmalloc.h>
#include <linux/timer.h>
#include <linux/completion.h>
#include <linux/preempt.h>

#ifdef CONFIG_X86_LOCAL_APIC
#include <asm/apic.h>
#include <asm/nmi.h>
#endif

#include <rmemring.h>

static char *ring_name = "rmemring0";
module_param_named(ring, ring_name, charp, 0444);
MODULE_PARM_DESC(ring, "The ring to check against (its device name)");

#define TAG(n) (RMEMRING_TAG_USER_MIN + (n))

static int failures;

static void expect(bool held, const char *what, long got)
{
	if (held) {
		pr_info("ok - %s\n", what);
	} else {
		failures++;
		pr_err("not ok - %s (got %ld)\n", what, got);
	}
}

#ifdef CONFIG_X86_LOCAL_APIC
static struct rmemring *nmi_ring;
/* What the NMI handler does: commits this payload if set, else writes. */
static void *nmi_payload;
/* 0 idle, 1 armed (the next NMI acts), 2 done: nmi_result holds. */
static atomic_t nmi_state = ATOMIC_INIT(0);
static int nmi_result;

static int on_nmi(unsigned int type, struct pt_regs *regs)
{
	if (atomic_read(&nmi_state) != 1)
		return NMI_DONE;
	if (nmi_payload)
		nmi_result = rmemring_commit(nmi_ring, nmi_payload, 0);
	else
		nmi_result = rmemring_write(nmi_ring, TAG(9), "nmi", 3, 0);
	atomic_set_release(&nmi_state, 2);
	return NMI_HANDLED;
}

/* Runs on_nmi() in NMI context on this CPU: the CPU sends itself an NMI
 * through its local APIC. Interrupts may be off (an NMI comes anyway), so
 * the wait spins. Returns whether the NMI came. */
static bool in_nmi_on_this_cpu(struct rmemring *ring, void *payload)
{
	int i;

	nmi_ring = ring;
	nmi_payload = payload;
	atomic_set(&nmi_state, 1);
	preempt_disable();
	__apic_send_IPI_mask(cpumask_of(smp_processor_id()), NMI_VECTOR);
	for (i = 0; i < 1000000 && atomic_read_acquire(&nmi_state) != 2; i++)
		udelay(1);
	preempt_enable();
	return atomic_read_acquire(&nmi_state) == 2;
}
#endif

#ifdef CONFIG_KPROBES
static struct rmemring *kprobe_ring;
static int kprobe_result = 1;
static int kprobe_calls;

/* The probed function: a call the compiler keeps. */
static noinline void kprobe_target(void)
{
	WRITE_ONCE(kprobe_calls, READ_ONCE(kprobe_calls) + 1);
}

static int on_kprobe(struct kprobe *p, struct pt_regs *regs)
{
	static const char rec[8] = "kprobed";

	kprobe_result = rmemring_write(kprobe_ring, TAG(9), rec, sizeof(rec), 0);
	return 0;
}

/*
 * A post handler keeps the probe from being optimised into a jump
 * (kernel/kprobes.c, optimize_kprobe()): it stays a breakpoint, x86's
 * int3 or arm64's BRK, however long the load takes.
 */
static void after_kprobe(struct kprobe *p, struct pt_regs *regs, unsigned long flags)
{
}

/*
 * What a write from a breakpoint kprobe's handler gets: x86 enters a
 * kernel-mode int3 with irqentry_nmi_enter() (arch/x86/kernel/traps.c),
 * so in_nmi() is true and the write is refused, as any NMI's; arm64
 * enters a BRK with arm64_enter_el1_dbg(), which does not count as an NMI,
 * and the write goes in.
 */
static void check_kprobe(struct rmemring *ring)
{
	struct kprobe kp = {
		.addr = (kprobe_opcode_t *)kprobe_target,
		.pre_handler = on_kprobe,
		.post_handler = after_kprobe,
	};
	int ret;

	kprobe_ring = ring;
	ret = register_kprobe(&kp);
	if (ret) {
		expect(false, "register_kprobe() on this module's function", ret);
		return;
	}
	kprobe_target();
	unregister_kprobe(&kp);
	expect(kprobe_result != 1, "the kprobe's handler ran", kprobe_calls);
#ifdef CONFIG_X86
	expect(kprobe_result == -EBUSY,
	       "rmemring_write() from an int3 kprobe's handler (entered as an NMI): -EBUSY",
	       kprobe_result);
#else
	expect(kprobe_result == 0,
	       "rmemring_write() from a BRK kprobe's handler (a debug exception): written",
	       kprobe_result);
#endif
}
#endif

/* The softirq writer: a timer_list that writes one record per expiry. */
#define SOFTIRQ_CALLS 64

static struct {
	struct timer_list timer;
	struct rmemring *ring;
	struct completion done;
	int calls, written, dropped, refused, gone, failed, in_softirq;
} soft;

static void on_timer(struct timer_list *t)
{
	u64 index = soft.calls++;
	int ret = rmemring_write(soft.ring, TAG(10), &index, sizeof(index), 0);

	if (in_serving_softirq())
		soft.in_softirq++;
	if (ret == 0)
		soft.written++;
	else if (ret == -ENOSPC)
		soft.dropped++;
	else if (ret == -EBUSY)
		soft.refused++;
	else if (ret == -ENODEV)
		soft.gone++;
	else
		soft.failed++;
	if (soft.calls < SOFTIRQ_CALLS)
		mod_timer(&soft.timer, jiffies + 1);
	else
		complete(&soft.done);
}

/*
 * Writes from softirq context (a timer_list callback), SOFTIRQ_CALLS
 * expiries, each counted by outcome: they must all be written, in
 * softirq context, and the outcomes add up to the calls exactly.
 */
static void check_softirq(struct rmemring *ring)
{
	soft.ring = ring;
	init_completion(&soft.done);
	timer_setup(&soft.timer, on_timer, 0);
	mod_timer(&soft.timer, jiffies + 1);
	if (!wait_for_completion_timeout(&soft.done, 30 * HZ))
		expect(false, "the timer_list writer finished within 30 s", soft.calls);
	timer_delete_sync(&soft.timer);
	pr_info("softirq: calls=%d written=%d dropped=%d refused=%d gone=%d failed=%d in_softirq=%d\n",
		soft.calls, soft.written, soft.dropped, soft.refused, soft.gone,
		soft.failed, soft.in_softirq);
	expect(soft.calls == SOFTIRQ_CALLS && soft.in_softirq == soft.calls,
	       "rmemring_write() from a timer_list callback: every call in softirq context",
	       soft.in_softirq);
	expect(soft.written == soft.calls &&
	       soft.written + soft.dropped + soft.refused + soft.gone + soft.failed == soft.calls,
	       "rmemring_write() from softirq context: all written, the outcomes add up to the calls",
	       soft.written);
}

/* One record of 4096 bytes in the open batch: its first word @index. */
static long batch_record(struct rmemring *ring, u16 tag, u64 index, u32 flags)
{
	void *payload = rmemring_batch_reserve(ring, tag, 4096, flags);

	if (IS_ERR(payload))
		return PTR_ERR(payload);
	rmemring_fill(payload, &index, sizeof(index));
	return rmemring_batch_commit(ring, payload);
}

/*
 * The batch calls: their refusals inside a batch, their bound, and a
 * batch that finds the ring full (drop-new) part way. Last: it fills the
 * ring.
 */
static void check_batch(struct rmemring *ring)
{
	static const char names[3][8] = { "batch-0", "batch-1", "batch-2" };
	u32 max = rmemring_max_payload(ring);
	u64 seq = U64_MAX, next;
	void *payload, *inner;
	long ret, nospc = 0, nobufs = 0;
	int i, i2, bound = 0, fill = 0, batches = 0;

	payload = rmemring_reserve(ring, TAG(0), 8);
	if (!IS_ERR(payload)) {
		ret = rmemring_batch_begin(ring, NULL);
		rmemring_discard(ring, payload);
		expect(ret == -EBUSY, "rmemring_batch_begin() inside an open reservation: -EBUSY", ret);
	}

	/*
	 * Nothing is logged while a batch is open: printk takes the console's
	 * locks, which must never nest inside the producer lock (see above).
	 */
	ret = rmemring_batch_begin(ring, &seq);
	if (ret) {
		expect(false, "rmemring_batch_begin()", ret);
		return;
	}
	/* Refusals inside the batch, none of which ends it. */
	inner = rmemring_batch_reserve(ring, TAG(0), max + 1, 0);
	ret = rmemring_write(ring, TAG(0), "inner", 5, 0);
	payload = rmemring_batch_reserve(ring, TAG(0), 8, 0x80);
	i = rmemring_commit(ring, NULL, 0);
	/* A reservation of the batch not committed: discarded by the next. */
	rmemring_batch_reserve(ring, TAG(0), 8, 0);
	for (next = 0; next < 3; next++) {
		void *p = rmemring_batch_reserve(ring, TAG(12), 8, 0);

		if (IS_ERR(p))
			break;
		rmemring_fill(p, names[next], 8);
		if (rmemring_batch_commit(ring, p))
			break;
	}
	i2 = rmemring_batch_end(ring, 0);
	expect(seq != U64_MAX, "rmemring_batch_begin(): 0, and the next sequence number", 0);
	expect(i2 == 0, "rmemring_batch_end(): 0", i2);
	expect(IS_ERR(inner) && PTR_ERR(inner) == -EMSGSIZE,
	       "rmemring_batch_reserve() of max_payload + 1 bytes: ERR_PTR(-EMSGSIZE)",
	       PTR_ERR_OR_ZERO(inner));
	expect(ret == -EBUSY, "rmemring_write() inside a batch: -EBUSY", ret);
	expect(IS_ERR(payload) && PTR_ERR(payload) == -EINVAL,
	       "rmemring_batch_reserve() with an unknown flag: ERR_PTR(-EINVAL)",
	       PTR_ERR_OR_ZERO(payload));
	expect(i == -EINVAL, "rmemring_commit() of no reservation inside a batch: -EINVAL", i);
	expect(next == 3, "three records reserved and committed in the batch", next);
	expect(rmemring_batch_end(ring, 0) == -EINVAL,
	       "rmemring_batch_end() with no batch open: -EINVAL", 0);
	/* Unknown end flags: the batch ends all the same, and -EINVAL. */
	i = rmemring_batch_begin(ring, NULL);
	i2 = i ? i : rmemring_batch_end(ring, 0x80);
	expect(i == 0 && i2 == -EINVAL, "rmemring_batch_end() with an unknown flag: -EINVAL", i2);
	expect(rmemring_batch_end(ring, 0) == -EINVAL,
	       "... and the batch ended all the same: no batch open after it", 0);
	inner = rmemring_batch_reserve(ring, TAG(0), 8, 0);
	expect(IS_ERR(inner) && PTR_ERR(inner) == -EINVAL,
	       "rmemring_batch_reserve() with no batch open: ERR_PTR(-EINVAL)",
	       PTR_ERR_OR_ZERO(inner));

	/* The bound: 64 KiB of records, then -EAGAIN. */
	ret = rmemring_batch_begin(ring, NULL);
	if (ret == 0) {
		while (bound < 1000 && !(ret = batch_record(ring, TAG(13), bound, 0)))
			bound++;
		rmemring_batch_end(ring, 0);
	}
	pr_info("batch: bound=%d\n", bound);
	expect(ret == -EAGAIN && bound > 0 && bound <= (64 << 10) / 4096 + 1,
	       "a batch takes records until 64 KiB of them, then ERR_PTR(-EAGAIN)", ret);

	/* Batches until the ring is full: the full one drops, or refuses with
	 * RMEMRING_NO_DROP, and still publishes what it committed before. */
	while (batches < 100000 && !nospc) {
		ret = rmemring_batch_begin(ring, NULL);
		if (ret)
			break;
		batches++;
		while (!(ret = batch_record(ring, TAG(14), fill, 0)))
			fill++;
		if (ret == -ENOSPC) {
			nospc = 1;
			nobufs = batch_record(ring, TAG(14), fill, RMEMRING_NO_DROP);
			if (batch_record(ring, TAG(14), fill, 0) == -ENOSPC)
				nospc++;
		}
		rmemring_batch_end(ring, 0);
		if (ret != -EAGAIN && ret != -ENOSPC)
			break;
	}
	pr_info("batch: fill=%d batches=%d dropped=%ld\n", fill, batches, nospc);
	expect(nospc == 2 && fill > 0,
	       "batches until the ring is full: then ERR_PTR(-ENOSPC), dropped, twice", ret);
	expect(nobufs == -ENOBUFS,
	       "rmemring_batch_reserve(RMEMRING_NO_DROP) of a full ring: ERR_PTR(-ENOBUFS)", nobufs);
}

static void check(struct rmemring *ring)
{
	u32 max = rmemring_max_payload(ring);
	static const char written[8] = "written";
	u8 *payload, *inner;
	u32 i;
	int ret;

	expect(max > 0, "rmemring_max_payload() is positive", max);

	ret = rmemring_write(ring, TAG(0), written, max + 1, 0);
	expect(ret == -EMSGSIZE, "rmemring_write() of max_payload + 1 bytes: -EMSGSIZE", ret);
	ret = rmemring_write(ring, TAG(0), written, sizeof(written), 0x80);
	expect(ret == -EINVAL, "rmemring_write() with an unknown flag: -EINVAL", ret);
	/*
	 * A commit with an unknown flag is refused and gives the reservation
	 * back: nothing is written, and the lock is let go (else the next
	 * reservation on this CPU would be refused with -EBUSY).
	 */
	payload = rmemring_reserve(ring, TAG(0), 8);
	if (!IS_ERR(payload)) {
		rmemring_fill(payload, "flagged", 8);
		ret = rmemring_commit(ring, payload, 0x80);
		inner = rmemring_reserve(ring, TAG(0), 8);
		if (!IS_ERR(inner))
			rmemring_discard(ring, inner);
		expect(ret == -EINVAL, "rmemring_commit() with an unknown flag: -EINVAL", ret);
		expect(!IS_ERR(inner),
		       "after it, a reservation goes through (the refused commit let go of the lock)",
		       PTR_ERR_OR_ZERO(inner));
	} else {
		expect(false, "rmemring_reserve() of 8 bytes", PTR_ERR(payload));
	}
	payload = rmemring_reserve(ring, TAG(0), max + 1);
	if (!IS_ERR(payload))
		rmemring_discard(ring, payload);
	expect(IS_ERR(payload) && PTR_ERR(payload) == -EMSGSIZE,
	       "rmemring_reserve() of max_payload + 1 bytes: ERR_PTR(-EMSGSIZE)",
	       PTR_ERR_OR_ZERO(payload));

	/*
	 * Inside an open reservation (interrupts off, so this CPU), the ring
	 * refuses this CPU's producers instead of deadlocking on its lock.
	 * Nothing is logged until the reservation ends: printk takes the
	 * console's locks, which must never nest inside the producer lock (a
	 * sched_switch probe takes that under the runqueue lock).
	 */
	payload = rmemring_reserve(ring, TAG(1), 16);
	if (!IS_ERR(payload)) {
		memset(payload, 0xd1, 16);
		ret = rmemring_write(ring, TAG(0), written, sizeof(written), 0);
		inner = rmemring_reserve(ring, TAG(0), 8);
		rmemring_discard(ring, payload);
		expect(IS_ALIGNED((unsigned long)payload, 8),
		       "rmemring_reserve() of 16 bytes: an 8-byte aligned payload", 0);
		expect(ret == -EBUSY, "rmemring_write() inside an open reservation: -EBUSY", ret);
		expect(IS_ERR(inner) && PTR_ERR(inner) == -EBUSY,
		       "rmemring_reserve() inside an open reservation: ERR_PTR(-EBUSY)",
		       PTR_ERR_OR_ZERO(inner));
	} else {
		expect(false, "rmemring_reserve() of 16 bytes", PTR_ERR(payload));
	}

	ret = rmemring_write(ring, TAG(2), written, sizeof(written), 0);
	expect(ret == 0, "rmemring_write() of 8 bytes after a discard: written", ret);

	payload = rmemring_reserve(ring, TAG(3), 24);
	if (!IS_ERR(payload)) {
		for (i = 0; i < 24; i++)
			payload[i] = i;
		ret = rmemring_commit(ring, payload, 0);
		expect(ret == 0, "rmemring_commit() of 24 bytes: written", ret);
	}
	expect(!IS_ERR(payload), "rmemring_reserve() of 24 bytes", PTR_ERR_OR_ZERO(payload));

	ret = rmemring_write(ring, TAG(4), NULL, 0, 0);
	expect(ret == 0, "rmemring_write() of no payload: written", ret);

	payload = rmemring_reserve(ring, TAG(5), max);
	if (!IS_ERR(payload)) {
		for (i = 0; i < max; i++)
			payload[i] = i % 251;
		ret = rmemring_commit(ring, payload, 0);
		expect(ret == 0, "rmemring_commit() of max_payload bytes: written", ret);
	}
	expect(!IS_ERR(payload), "rmemring_reserve() of max_payload bytes (a quarter of the ring)",
	       PTR_ERR_OR_ZERO(payload));

	/*
	 * The longest a write can keep interrupts off (and the ring's other
	 * producers spinning): a copy of max_payload bytes, all under the
	 * lock. Timed around the call, which is the lock's hold and a little.
	 */
	inner = vmalloc(max);
	if (inner) {
		u64 start;

		for (i = 0; i < max; i++)
			inner[i] = i % 251;
		start = ktime_get_ns();
		ret = rmemring_write(ring, TAG(8), inner, max, 0);
		start = ktime_get_ns() - start;
		vfree(inner);
		pr_info("max_payload write: %u bytes in %llu ns\n", max, start);
		expect(ret == 0, "rmemring_write() of max_payload bytes", ret);
	} else {
		expect(false, "vmalloc() of max_payload bytes", -ENOMEM);
	}

	/* A commit or discard with no reservation open is refused (and
	 * reported once, deferred); so is one of another payload, which
	 * leaves the open reservation to its owner. */
	ret = rmemring_commit(ring, NULL, 0);
	expect(ret == -EINVAL, "rmemring_commit() of no reservation: -EINVAL", ret);
	rmemring_discard(ring, NULL);
	payload = rmemring_reserve(ring, TAG(6), 8);
	if (!IS_ERR(payload)) {
		int other;

		memcpy(payload, "reserved", 8);
		/* Nothing logged until the reservation is done: it holds the
		 * producer lock, and printk() under it nests the console's
		 * locks inside it (lockdep). */
		other = rmemring_commit(ring, payload + 8, 0);
		rmemring_discard(ring, NULL);
		ret = rmemring_commit(ring, payload, 0);
		expect(other == -EINVAL, "rmemring_commit() of another payload: -EINVAL", other);
		expect(ret == 0, "rmemring_commit() of its own payload after those: written", ret);
	}
	expect(!IS_ERR(payload), "rmemring_reserve() of 8 bytes, then commits of no reservation and of another payload (refused), then its own",
	       PTR_ERR_OR_ZERO(payload));

#ifdef CONFIG_KPROBES
	check_kprobe(ring);
#else
	pr_info("skip - rmemring_write() from a kprobe's handler: no CONFIG_KPROBES\n");
#endif

#ifdef CONFIG_X86_LOCAL_APIC
	if (register_nmi_handler(NMI_LOCAL, on_nmi, 0, "rmemring_api_contract")) {
		expect(false, "register_nmi_handler()", 0);
		return;
	}
	expect(in_nmi_on_this_cpu(ring, NULL), "a self-sent NMI ran the handler", 0);
	expect(nmi_result == -EBUSY, "rmemring_write() in NMI context: -EBUSY", nmi_result);
	/* An NMI that interrupts a reservation and commits it (a nested
	 * probe's error path, say) is refused: the reservation stays its
	 * owner's, who commits it afterwards. */
	payload = rmemring_reserve(ring, TAG(7), 8);
	if (!IS_ERR(payload)) {
		bool came;

		memcpy(payload, "nmi-safe", 8);
		came = in_nmi_on_this_cpu(ring, payload);
		ret = rmemring_commit(ring, payload, 0);
		expect(came, "a self-sent NMI during a reservation ran the handler", 0);
		expect(!came || nmi_result == -EBUSY, "rmemring_commit() in NMI context: -EBUSY",
		       nmi_result);
		expect(ret == 0, "rmemring_commit() by the reservation's owner after the NMI: written",
		       ret);
	} else {
		expect(false, "rmemring_reserve() of 8 bytes", PTR_ERR(payload));
	}
	unregister_nmi_handler(NMI_LOCAL, "rmemring_api_contract");
#else
	pr_info("skip - rmemring_write() and rmemring_commit() in NMI context: no local APIC to send an NMI with\n");
#endif
}

static int __init contract_init(void)
{
	struct rmemring *ring;

	expect(!rmemring_get("rmemring-no-such-ring"), "rmemring_get() of an unknown name: NULL", 0);
	ring = rmemring_get(ring_name);
	expect(ring, "rmemring_get() of the ring under test", 0);
	if (ring) {
		check(ring);
		check_softirq(ring);
		check_batch(ring);
		rmemring_put(ring);
	}
	rmemring_put(NULL);
	if (failures) {
		pr_err("%d checks failed\n", failures);
		return -EINVAL;
	}
	pr_info("all checks held\n");
	return 0;
}

static void __exit contract_exit(void)
{
}

module_init(contract_init);
module_exit(contract_exit);
MODULE_DESCRIPTION("Checks the returns of rmemring's in-kernel API at its edges");
MODULE_LICENSE("GPL");
