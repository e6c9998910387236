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
 *
 * and nothing of the attempts that failed or were discarded; each refusal
 * with -EBUSY counts in the ring's records_refused (2 from inside an open
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
		rmemring_commit(nmi_ring, nmi_payload, 0);
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
		rmemring_commit(ring, payload, 0);
	}
	expect(!IS_ERR(payload), "rmemring_reserve() of 24 bytes", PTR_ERR_OR_ZERO(payload));

	ret = rmemring_write(ring, TAG(4), NULL, 0, 0);
	expect(ret == 0, "rmemring_write() of no payload: written", ret);

	payload = rmemring_reserve(ring, TAG(5), max);
	if (!IS_ERR(payload)) {
		for (i = 0; i < max; i++)
			payload[i] = i % 251;
		rmemring_commit(ring, payload, 0);
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
	rmemring_commit(ring, NULL, 0);
	rmemring_discard(ring, NULL);
	payload = rmemring_reserve(ring, TAG(6), 8);
	if (!IS_ERR(payload)) {
		memcpy(payload, "reserved", 8);
		rmemring_commit(ring, payload + 8, 0);
		rmemring_discard(ring, NULL);
		rmemring_commit(ring, payload, 0);
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
		rmemring_commit(ring, payload, 0);
		expect(came, "a self-sent NMI during a reservation ran the handler", 0);
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
