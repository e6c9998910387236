// SPDX-License-Identifier: GPL-2.0
/*
 * rmemring_nested_lock: producers nested in the producer lock's own
 * instrumentation must be refused, not deadlock.
 *
 * A probe on a tracepoint that the producer lock itself fires (lockdep's
 * lock_acquire and lock_release, lock:contention_begin and contention_end)
 * runs on a CPU that is taking or letting go of that lock, with interrupts
 * off. A write to the ring from there must get -EBUSY (and be counted in
 * records_refused): spinning on the lock would never end, since its holder
 * is the CPU the probe interrupted. lock_release's probe runs with the lock
 * still held, contention_end's with it just taken.
 *
 * At load, with probes on every one of those tracepoints the kernel has,
 * one writer thread per CPU writes into the ring flat out (long enough for
 * the writers to contend, if the CPUs are more than one), and each probe
 * that sees the ring's producer lock tries a nested write. Then:
 *
 *   - with CONFIG_LOCKDEP, lockdep's probes fired and every nested write
 *     was refused with -EBUSY;
 *   - if the writers contended (the writers run on until both contention
 *     probes have fired, for up to 1 s), contention's probes the same.
 *     Their firing is not required: with two contenders qspinlock waits
 *     in its pending state, which fires no tracepoint, and only a third
 *     contender, or a holder slow enough to outlast the pending spin,
 *     sends a waiter down the queue that does;
 *   - the writers' own writes were written or dropped (the ring fills),
 *     never refused;
 *
 * and the last line says "nested: tried=N refused=N written=0 ...", the
 * refusals the ring's records_refused must hold.
 *
 *   insmod rmemring_nested_lock.ko ring=rmemring0 [ms=300]
 *
 * Every check logs "ok - ..." or "not ok - ..."; the load fails with
 * -EINVAL if any did not hold. Run it on a fresh ring with nothing else
 * producing.
 *
 * One failure says nothing of the driver: a lockdep probe never called at
 * all. Every write takes the producer lock through lock_acquire() and
 * lock_release() with interrupts off, and each of those fires its
 * tracepoint before anything else (kernel/locking/lockdep.c), for every
 * lock in the kernel; so while the writers wrote, a registered probe is
 * called thousands of times, unless the tracepoint's static branch (patched
 * kernel text, a key per tracepoint) did not take effect: on the arm64
 * debug board under TCG, in 11 of 600 loads in a row, lock_release's alone
 * in 7, lock_acquire's alone in 3, both in 1. The probes count their calls before looking at anything; a load
 * whose only failures are lockdep probes with 0 calls logs "not ok - ...
 * probe never called" and fails with -EAGAIN rather than -EINVAL: loading
 * it again (on a fresh ring) is the caller's choice. Busybox's insmod
 * makes it for any failure, loading again with init_module(2) after its
 * finit_module(2) failed: a caller that counts the ring's records should
 * load with one finit_module(2).
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/atomic.h>
#include <linux/cpumask.h>
#include <linux/delay.h>
#include <linux/jiffies.h>
#include <linux/kthread.h>
#include <linux/lockdep.h>
#include <linux/percpu.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/string.h>
#include <linux/tracepoint.h>

#include <rmemring.h>

static char *ring_name = "rmemring0";
module_param_named(ring, ring_name, charp, 0444);
MODULE_PARM_DESC(ring, "The ring to write into (its device name)");

static unsigned int run_ms = 300;
module_param_named(ms, run_ms, uint, 0444);
MODULE_PARM_DESC(ms, "How long the writers run at least (ms)");

/* The name the driver gives its producer lock (ring.rs). */
#define PRODUCER_LOCK "rmemring::producer"
/* How long the writers run at most, waiting for contention. */
#define MAX_RUN_MS 1000

enum site { ACQUIRE, RELEASE, CONTENTION_BEGIN, CONTENTION_END, SITES };

static const char *const site_names[SITES] = {
	"lock_acquire", "lock_release", "contention_begin", "contention_end",
};

static struct tracepoint *tracepoints[SITES];
static struct rmemring *ring;
/* Probes act only while set: between the writers' start and stop. */
static bool armed;
/* The ring's producer lock, as contention's tracepoints name it. */
static void *producer_lock;

/* Nested writes per site, and what they returned. */
static atomic64_t tried[SITES], refused[SITES], written[SITES], failed[SITES];
/* Each probe's calls, any lock's, before it looks at anything. */
static DEFINE_PER_CPU(unsigned long[SITES], probe_calls);
/* The writers' own writes. */
static atomic64_t outer_written, outer_dropped, outer_other;

/* This CPU is in a probe's nested write: the write's own locks fire the
 * probes again, which must then do nothing. */
static DEFINE_PER_CPU(int, in_probe);
/* This CPU's writer is inside its rmemring_write(). */
static DEFINE_PER_CPU(bool, writing);

static void nested_write(enum site site)
{
	static const char payload[8] = "nested";
	int ret;

	if (!READ_ONCE(armed) || __this_cpu_read(in_probe))
		return;
	__this_cpu_inc(in_probe);
	ret = rmemring_write(ring, RMEMRING_TAG_USER_MIN + site, payload, sizeof(payload),
			     RMEMRING_NO_WAKEUP);
	__this_cpu_dec(in_probe);
	atomic64_inc(&tried[site]);
	if (ret == -EBUSY)
		atomic64_inc(&refused[site]);
	else if (ret == 0)
		atomic64_inc(&written[site]);
	else
		atomic64_inc(&failed[site]);
}

#ifdef CONFIG_LOCKDEP
static bool is_producer_lock(struct lockdep_map *map)
{
	return map->name && !strcmp(map->name, PRODUCER_LOCK);
}

static void probe_acquire(void *data, struct lockdep_map *map, unsigned int subclass,
			  int trylock, int read, int check, struct lockdep_map *next,
			  unsigned long ip)
{
	this_cpu_inc(probe_calls[ACQUIRE]);
	/* The producer lock is taken with interrupts off; other locks' probes
	 * may run preemptible, where this CPU's state means nothing. */
	if (!READ_ONCE(armed) || !irqs_disabled() || !is_producer_lock(map))
		return;
	/*
	 * Our writer's write into our ring: the lock contention's tracepoints
	 * will name by its arch lock, the raw spinlock's first member.
	 */
	if (__this_cpu_read(writing) && !__this_cpu_read(in_probe) && !READ_ONCE(producer_lock))
		WRITE_ONCE(producer_lock, &container_of(map, raw_spinlock_t, dep_map)->raw_lock);
	nested_write(ACQUIRE);
}

static void probe_release(void *data, struct lockdep_map *map, unsigned long ip)
{
	this_cpu_inc(probe_calls[RELEASE]);
	if (READ_ONCE(armed) && irqs_disabled() && is_producer_lock(map))
		nested_write(RELEASE);
}
#endif

/*
 * Contention on this CPU, with interrupts off, while its writer is inside
 * its write: there, with no wake-up asked for, the producer lock is the
 * only lock the write takes, but lockdep's own (an arch spinlock, taken
 * inside the lock's acquire) may contend too; with lockdep the producer
 * lock is known by its address, and only it counts. (Sleeping locks fire
 * these tracepoints too, preemptible, where this CPU's state means
 * nothing; and interrupts are on in the writer's write before and after
 * its section, where a nested write is allowed.)
 */
static bool producer_lock_contended(void *lock)
{
	void *known = READ_ONCE(producer_lock);

	return READ_ONCE(armed) && irqs_disabled() && __this_cpu_read(writing) &&
	       (!known || lock == known);
}

static void probe_contention_begin(void *data, void *lock, unsigned int flags)
{
	this_cpu_inc(probe_calls[CONTENTION_BEGIN]);
	if (producer_lock_contended(lock))
		nested_write(CONTENTION_BEGIN);
}

static void probe_contention_end(void *data, void *lock, int ret)
{
	this_cpu_inc(probe_calls[CONTENTION_END]);
	if (producer_lock_contended(lock))
		nested_write(CONTENTION_END);
}

static void *const probes[SITES] = {
#ifdef CONFIG_LOCKDEP
	[ACQUIRE] = (void *)probe_acquire,
	[RELEASE] = (void *)probe_release,
#endif
	[CONTENTION_BEGIN] = (void *)probe_contention_begin,
	[CONTENTION_END] = (void *)probe_contention_end,
};

static void find_tracepoints(struct tracepoint *tp, void *priv)
{
	int site;

	for (site = 0; site < SITES; site++)
		if (probes[site] && !strcmp(tp->name, site_names[site]))
			tracepoints[site] = tp;
}

static int writer(void *unused)
{
	static const char payload[32] = "outer";
	int ret;

	while (!kthread_should_stop()) {
		preempt_disable();
		__this_cpu_write(writing, true);
		ret = rmemring_write(ring, RMEMRING_TAG_USER_MIN + SITES, payload,
				     sizeof(payload), RMEMRING_NO_WAKEUP);
		__this_cpu_write(writing, false);
		preempt_enable();
		if (ret == 0)
			atomic64_inc(&outer_written);
		else if (ret == -ENOSPC)
			atomic64_inc(&outer_dropped);
		else
			atomic64_inc(&outer_other);
		cond_resched();
	}
	return 0;
}

/* Checks that did not hold; of them, lockdep probes never called. */
static int failures, never_called;

static void expect(bool held, const char *what)
{
	if (held) {
		pr_info("ok - %s\n", what);
	} else {
		failures++;
		pr_err("not ok - %s\n", what);
	}
}

/* A probe's calls, on every CPU, since the module was loaded. */
static unsigned long calls_of(enum site site)
{
	unsigned long sum = 0;
	unsigned int cpu;

	for_each_possible_cpu(cpu)
		sum += per_cpu(probe_calls, cpu)[site];
	return sum;
}

static void unregister_probes(void)
{
	int site;

	for (site = 0; site < SITES; site++)
		if (tracepoints[site])
			tracepoint_probe_unregister(tracepoints[site], probes[site], NULL);
	tracepoint_synchronize_unregister();
}

/* Runs the writers for run_ms, and on for up to MAX_RUN_MS until both
 * contention probes have tried, if there are two CPUs to contend. */
static int run_writers(void)
{
	struct task_struct **threads;
	unsigned long start = jiffies;
	unsigned int cpu, n = 0;
	int ret = 0;

	threads = kcalloc(nr_cpu_ids, sizeof(*threads), GFP_KERNEL);
	if (!threads)
		return -ENOMEM;
	cpus_read_lock();
	for_each_online_cpu(cpu) {
		threads[cpu] = kthread_run_on_cpu(writer, NULL, cpu, "rmemring_nest/%u");
		if (IS_ERR(threads[cpu])) {
			ret = PTR_ERR(threads[cpu]);
			threads[cpu] = NULL;
			break;
		}
		n++;
	}
	cpus_read_unlock();
	while (!ret) {
		unsigned long ms = jiffies_to_msecs(jiffies - start);

		if (ms >= MAX_RUN_MS)
			break;
		if (ms >= run_ms &&
		    (n < 2 || !tracepoints[CONTENTION_BEGIN] || !tracepoints[CONTENTION_END] ||
		     (atomic64_read(&tried[CONTENTION_BEGIN]) && atomic64_read(&tried[CONTENTION_END]))))
			break;
		msleep(20);
	}
	for (cpu = 0; cpu < nr_cpu_ids; cpu++)
		if (threads[cpu])
			kthread_stop(threads[cpu]);
	kfree(threads);
	pr_info("writers: %u for %u ms\n", n, jiffies_to_msecs(jiffies - start));
	return ret;
}

static int __init nested_init(void)
{
	char what[160];
	s64 total_tried = 0, total_refused = 0, total_written = 0, total_failed = 0;
	int site, ret;

	for_each_kernel_tracepoint(find_tracepoints, NULL);
	ring = rmemring_get(ring_name);
	if (!ring) {
		pr_err("no ring %s\n", ring_name);
		return -ENODEV;
	}
	for (site = 0; site < SITES; site++) {
		if (!tracepoints[site]) {
			pr_info("no %s tracepoint in this kernel\n", site_names[site]);
			continue;
		}
		ret = tracepoint_probe_register(tracepoints[site], probes[site], NULL);
		if (ret) {
			pr_err("registering a probe on %s: %d\n", site_names[site], ret);
			tracepoints[site] = NULL;
			unregister_probes();
			rmemring_put(ring);
			return ret;
		}
	}
	WRITE_ONCE(armed, true);
	ret = run_writers();
	WRITE_ONCE(armed, false);
	unregister_probes();
	if (ret) {
		rmemring_put(ring);
		return ret;
	}

	for (site = 0; site < SITES; site++) {
		s64 t = atomic64_read(&tried[site]), r = atomic64_read(&refused[site]);
		s64 w = atomic64_read(&written[site]), f = atomic64_read(&failed[site]);
		unsigned long calls = calls_of(site);
		/* lockdep's tracepoints fire on every taking of the lock;
		 * contention's only when a waiter queues (see the top). */
		bool required = (site == ACQUIRE || site == RELEASE) && IS_ENABLED(CONFIG_LOCKDEP);

		total_tried += t;
		total_refused += r;
		total_written += w;
		total_failed += f;
		if (!t && !required) {
			pr_info("%s: not checked (%s)\n", site_names[site],
				tracepoints[site] ? "it never fired on the producer lock" :
						    "no such tracepoint");
			continue;
		}
		if (required && tracepoints[site] && !calls) {
			snprintf(what, sizeof(what),
				 "%s: probe never called (0 calls while it was registered and the writers wrote): nothing checked",
				 site_names[site]);
			expect(false, what);
			never_called++;
			continue;
		}
		snprintf(what, sizeof(what),
			 "%s: every nested write refused with -EBUSY (tried %lld, refused %lld, written %lld, failed %lld; probe calls %lu)",
			 site_names[site], t, r, w, f, calls);
		expect(tracepoints[site] && t > 0 && r == t, what);
	}
	snprintf(what, sizeof(what),
		 "the writers' own writes: written %lld, dropped %lld, other %lld",
		 atomic64_read(&outer_written), atomic64_read(&outer_dropped),
		 atomic64_read(&outer_other));
	expect(atomic64_read(&outer_written) > 0 && atomic64_read(&outer_other) == 0, what);
	pr_info("nested: tried=%lld refused=%lld written=%lld failed=%lld\n", total_tried,
		total_refused, total_written, total_failed);
	if (failures) {
		rmemring_put(ring);
		return failures == never_called ? -EAGAIN : -EINVAL;
	}
	pr_info("all checks held\n");
	return 0;
}

static void __exit nested_exit(void)
{
	rmemring_put(ring);
}

module_init(nested_init);
module_exit(nested_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("rmemring selftest: producers nested in the producer lock's instrumentation");
