// SPDX-License-Identifier: GPL-2.0
/*
 * C helpers for the rmemring driver: the calls whose C definitions are
 * macros or inline functions (so bindgen cannot reach them) or whose header
 * is missing from the Rust bindings in Linux 7.2. Each is a thin wrapper;
 * the safe Rust interface to them lives in sys.rs.
 */

#include <linux/io.h>
#include <linux/mm.h>
#include <linux/of.h>
#include <linux/of_reserved_mem.h>
#include <linux/ioport.h>
#include <linux/device.h>
#include <linux/sched.h>
#include <linux/security.h>
#include <linux/smp.h>
#include <linux/percpu.h>
#include <linux/fs.h>
#include <linux/uuid.h>
#include <linux/timekeeping.h>
#include <linux/libnvdimm.h>
#include <linux/notifier.h>
#include <linux/panic_notifier.h>
#include <linux/reboot.h>

#include "helpers.h"

#define CREATE_TRACE_POINTS
#include "rmemring_trace.h"

/*
 * The kernel mappings of the modes that are not write-back (which goes
 * through memremap(), reached directly from Rust). One function per
 * mode, so that the modes' numbers live in the protocol alone
 * (proto/src/modes.rs), not here too.
 */
void __iomem *rmemring_ioremap_wc(phys_addr_t phys, size_t size)
{
	return ioremap_wc(phys, size);
}

void __iomem *rmemring_ioremap_uc(phys_addr_t phys, size_t size)
{
#ifdef CONFIG_X86
	/*
	 * Strong UC. (x86's ioremap() is UC-, which an MTRR of type WC turns
	 * into WC.) rmemring_pgprot_uc() gives user mappings the same type.
	 */
	return ioremap_uc(phys, size);
#else
	return ioremap(phys, size);
#endif
}

/*
 * Whether the kernel is locked down against module parameters that name
 * hardware addresses (as module_param_hw() parameters are refused): 0 if
 * not, a negative errno if so. security_locked_down() logs the refusal
 * itself.
 */
int rmemring_params_locked_down(void)
{
	return security_locked_down(LOCKDOWN_MODULE_PARAMETERS);
}

/*
 * Whether @res, a region this driver requested from iomem_resource, lies
 * in memory the platform set aside: an e820 "Reserved" range on x86 (what
 * memmap=SIZE$BASE makes; IORES_DESC_RESERVED) or a no-map
 * reserved-memory region on arm64 (a "reserved" memory resource), rather
 * than in a PCI window, a device's BAR or a hole nobody described.
 *
 * __request_region() inserts a region below the innermost resource that
 * contains all of it, so its parent says what it lies in. The parent
 * cannot be released while @res is its child, and the firmware's and the
 * device tree's memory resources never change after boot, so reading
 * its fields needs no lock.
 */
bool rmemring_in_reserved_memory(const struct resource *res)
{
	const struct resource *parent = res->parent;

	if (!parent || parent == &iomem_resource)
		return false;
	if (!(parent->flags & IORESOURCE_MEM) || (parent->flags & IORESOURCE_SYSRAM))
		return false;
	if (parent->desc == IORES_DESC_RESERVED)
		return true;
	return parent->name && !strcmp(parent->name, "reserved");
}

/* cond_resched() is a macro, and a no-op on fully preemptible kernels. */
void rmemring_cond_resched(void)
{
	cond_resched();
}

void rmemring_iounmap(void __iomem *addr)
{
	iounmap(addr);
}

#ifdef CONFIG_X86
/* @prot with its PAT cache bits set to exactly @pcm. */
static pgprot_t rmemring_x86_cachemode(pgprot_t prot, enum page_cache_mode pcm)
{
	return __pgprot((pgprot_val(prot) & ~_PAGE_CACHE_MASK) |
			cachemode2protval(pcm));
}
#endif

/*
 * The user-mapping protections whose cache type is exactly the kernel
 * mapping's, one per cache mode.
 *
 * On x86 the type is set explicitly: the kernel maps WB (memremap() falls
 * back to ioremap_cache() for a hole in RAM), WC (ioremap_wc()) or strong
 * UC (ioremap_uc()). pgprot_noncached() would ask for UC- instead; that
 * works only because remap_pfn_range()'s PAT check (reserve_pfn_range())
 * finds the kernel's UC reservation and silently upgrades the request to
 * it. Asking for the kernel's type in the first place needs no upgrade,
 * and the PAT list shows one type for every mapping of the region.
 */
pgprot_t rmemring_pgprot_wb(pgprot_t prot)
{
#ifdef CONFIG_X86
	return rmemring_x86_cachemode(prot, _PAGE_CACHE_MODE_WB);
#else
	return prot;
#endif
}

pgprot_t rmemring_pgprot_wc(pgprot_t prot)
{
#ifdef CONFIG_X86
	return rmemring_x86_cachemode(prot, _PAGE_CACHE_MODE_WC);
#else
	return pgprot_writecombine(prot);
#endif
}

pgprot_t rmemring_pgprot_uc(pgprot_t prot)
{
#if defined(CONFIG_X86)
	return rmemring_x86_cachemode(prot, _PAGE_CACHE_MODE_UC);
#elif defined(CONFIG_ARM64)
	/* Device-nGnRE, as ioremap() maps it. */
	return pgprot_device(prot);
#else
	return pgprot_noncached(prot);
#endif
}

/*
 * Resolves @dev's "memory-region" (index 0) to a physical range.
 *
 * Returns 0 and fills @base, @size, @no_map (whether the reserved-memory
 * node has "no-map") and @static_reg (whether it has a static "reg", rather
 * than a "size" the kernel allocated at boot), -ENOENT if the node has no
 * memory-region, -EOPNOTSUPP if the kernel lacks CONFIG_OF_RESERVED_MEM, or
 * another negative errno from the reserved-memory code.
 *
 * This is C, not an extern "C" declaration of of_reserved_mem_region_to_resource()
 * in sys.rs, because the compiler checks this call against the kernel's own
 * prototype (a hand-written Rust declaration would go wrong silently if the
 * prototype changed), of_parse_phandle() and resource_size() are inline, and
 * the header's stub keeps the !CONFIG_OF_RESERVED_MEM build working.
 */
int rmemring_of_memory_region(struct device *dev, u64 *base, u64 *size, bool *no_map,
			      bool *static_reg)
{
#ifdef CONFIG_OF_RESERVED_MEM
	struct device_node *np = dev->of_node;
	struct device_node *mem;
	struct resource res;
	int ret;

	if (!np)
		return -ENOENT;
	mem = of_parse_phandle(np, "memory-region", 0);
	if (!mem)
		return -ENOENT;
	*no_map = of_property_read_bool(mem, "no-map");
	*static_reg = of_property_present(mem, "reg");
	of_node_put(mem);

	ret = of_reserved_mem_region_to_resource(np, 0, &res);
	if (ret)
		return ret;
	*base = res.start;
	*size = resource_size(&res);
	return 0;
#else
	return -EOPNOTSUPP;
#endif
}

/*
 * The producer's per-record hook in PRODUCER_HOOK_ONLY mode. Not inline, so
 * a kprobe can attach here too; the tracepoint is the cheap way in.
 */
noinline void rmemring_hook_record(u64 seq, u64 timestamp_ns, u32 len, const void *payload)
{
	trace_rmemring_record_tp(seq, timestamp_ns, len, payload);
}

/*
 * Spinlocks taken with interrupts off, for the kernel crate's generic
 * Lock (see sys.rs): 7.2's Rust has no irq-safe spinlock, and the
 * irqsave/irqrestore calls are macros. The saved flags live next to the
 * lock (struct rmemring_*_irq), written and read only by its holder, so
 * that a holder can give the lock back from another call (the in-kernel
 * API's rmemring_reserve() and rmemring_commit()).
 *
 * The producer lock is a raw spinlock: producers run under the scheduler's
 * runqueue lock (a sched_switch probe) and in hard-IRQ context, where a
 * spinlock_t is not allowed (it sleeps on PREEMPT_RT; lockdep's
 * PROVE_RAW_LOCK_NESTING checks it everywhere). The wake lock is an
 * ordinary spinlock_t taken irqsave: the irq_work that wakes consumers
 * takes it from interrupt context, and a consumer's wait queue (a
 * spinlock_t) is taken inside it.
 */
void rmemring_raw_lock_init(struct rmemring_raw_irq *lock, const char *name,
			    struct lock_class_key *key)
{
#ifdef CONFIG_DEBUG_SPINLOCK
	__raw_spin_lock_init(&lock->lock, name, key, LD_WAIT_SPIN);
#else
	raw_spin_lock_init(&lock->lock);
#endif
	lock->flags = 0;
	lock->was_producing = false;
	lock->self = lock;
}

/*
 * Whether this CPU is inside a producer lock's critical section: set, with
 * interrupts off, before the lock is taken, and cleared after it is let go
 * of. The lock's own instrumentation runs in between, with the lock half
 * taken or still held: lockdep's lock_acquire and lock_release
 * tracepoints, lock:contention_begin and contention_end. A probe there
 * that produces into a ring sees the flag and is refused, where a check of
 * the lock's holder (set only once the lock is taken, and cleared before
 * it goes) would let it spin for ever on the lock its own CPU holds. (In
 * the spirit of ftrace's trace_recursive_lock(), with one state: the
 * section runs with interrupts off, so only NMIs, refused anyway, and
 * probes nest in it.)
 *
 * One flag for every ring: a write to any ring from inside the section is
 * refused. What runs there is the lock's instrumentation, the record's
 * copy, a client's code between rmemring_reserve() and rmemring_commit(),
 * and the driver thread's batches (up to 64 KiB of records): a probe on any
 * tracepoint fired there (kmem, the clock's seqcount under lockdep) that
 * writes to a ring is refused and counted, rather than nesting two rings'
 * locks. The previous state is kept in the lock and restored by its
 * unlock, so even a nested taking of another producer lock (none today:
 * the driver refuses them before they lock) would not clear it early.
 */
static DEFINE_PER_CPU(bool, rmemring_producing);

/*
 * raw_spin_lock() and raw_spin_unlock() for the producer lock, inline
 * (spinlock_api_smp.h's __raw_spin_lock() and the first steps of
 * __raw_spin_unlock_irqrestore(): every record's path takes and lets go of
 * it) where a module may: with CONFIG_DEBUG_SPINLOCK the lock's checks are
 * in do_raw_spin_lock() and do_raw_spin_unlock(), which are not exported,
 * so the debug kernels call the out-of-line functions; so do kernels
 * without SMP, or with GENERIC_LOCKBREAK and no lockdep, where
 * __raw_spin_lock() is not defined. The unlock leaves preemption off
 * either way: the caller turns it back on last.
 */
#if defined(CONFIG_DEBUG_SPINLOCK) || !defined(CONFIG_SMP) || \
	(defined(CONFIG_GENERIC_LOCKBREAK) && !defined(CONFIG_DEBUG_LOCK_ALLOC))
#define RMEMRING_SPIN_OUT_OF_LINE
#endif

static __always_inline void producer_spin_lock(raw_spinlock_t *lock)
{
#ifdef RMEMRING_SPIN_OUT_OF_LINE
	raw_spin_lock(lock);
#else
	__raw_spin_lock(lock);
#endif
}

static __always_inline void producer_spin_unlock(raw_spinlock_t *lock)
{
#ifdef RMEMRING_SPIN_OUT_OF_LINE
	preempt_disable();
	raw_spin_unlock(lock);
#else
	spin_release(&lock->dep_map, _RET_IP_);
	do_raw_spin_unlock(lock);
#endif
}

/*
 * With interrupts off (saved in @flags): marks this CPU inside a producer
 * section, takes the lock, and keeps in it what its unlock restores (the
 * interrupts, and the flag as it was, @was). Every way of taking the lock
 * but the trylock's ends here.
 */
static __always_inline void enter_producer_section(struct rmemring_raw_irq *lock,
						   unsigned long flags, bool was)
{
	__this_cpu_write(rmemring_producing, true);
	producer_spin_lock(&lock->lock);
	lock->flags = flags;
	lock->was_producing = was;
}

/*
 * Takes a producer lock for a producer, in one call for the path every
 * record takes: refused (UINT_MAX, the lock not taken) in NMI context or
 * inside a producer section on this CPU; else the lock is taken as
 * rmemring_raw_lock() takes it and the CPU that holds it is returned
 * (interrupts being off, the producer stays on it until the unlock).
 *
 * The section's flag is read with interrupts off: a task cannot move
 * between finding its CPU's flag and reading it, and code that finds it
 * set runs on that CPU inside the section (nested in it: a probe of the
 * lock's instrumentation), which is what the check is for.
 */
unsigned int rmemring_raw_lock_producer(struct rmemring_raw_irq *lock)
{
	unsigned long flags;

	if (in_nmi())
		return UINT_MAX;
	local_irq_save(flags);
	if (__this_cpu_read(rmemring_producing)) {
		local_irq_restore(flags);
		return UINT_MAX;
	}
	enter_producer_section(lock, flags, false);
	return raw_smp_processor_id();
}

/*
 * Whether a producer that has let go of its lock may wake the consumer
 * itself rather than through the irq_work: only in preemptible context,
 * which holds no spinlock (so not the runqueue lock, nor a waitqueue's)
 * and has interrupts on. Without CONFIG_PREEMPT_COUNT, preemptible() is
 * 0, and every wake-up goes through the irq_work. On PREEMPT_RT a holder
 * of a spinlock_t is preemptible too, so there it always goes through
 * the irq_work: a client's own locks never nest around the wake-up's.
 */
bool rmemring_may_wake_directly(void)
{
	return !IS_ENABLED(CONFIG_PREEMPT_RT) && preemptible();
}

void rmemring_raw_lock(struct rmemring_raw_irq *lock)
{
	unsigned long flags;
	bool was;

	local_irq_save(flags);
	was = __this_cpu_read(rmemring_producing);
	enter_producer_section(lock, flags, was);
}

bool rmemring_raw_trylock(struct rmemring_raw_irq *lock)
{
	unsigned long flags;
	bool was;

	local_irq_save(flags);
	was = __this_cpu_read(rmemring_producing);
	__this_cpu_write(rmemring_producing, true);
	if (!raw_spin_trylock(&lock->lock)) {
		__this_cpu_write(rmemring_producing, was);
		local_irq_restore(flags);
		return false;
	}
	lock->flags = flags;
	lock->was_producing = was;
	return true;
}

void rmemring_raw_unlock(struct rmemring_raw_irq *lock)
{
	unsigned long flags = lock->flags;
	bool was = lock->was_producing;

	/*
	 * raw_spin_unlock_irqrestore()'s steps, with the section's flag
	 * cleared between the unlock and the interrupts. Preemption comes
	 * back last: a reschedule that fell due meanwhile happens here rather
	 * than at the next preemption point.
	 */
	producer_spin_unlock(&lock->lock);
	__this_cpu_write(rmemring_producing, was);
	local_irq_restore(flags);
	preempt_enable();
}

void rmemring_raw_assert_held(struct rmemring_raw_irq *lock)
{
	lockdep_assert_held(&lock->lock);
}

void rmemring_spin_lock_init(struct rmemring_spin_irq *lock, const char *name,
			     struct lock_class_key *key)
{
#if defined(CONFIG_DEBUG_SPINLOCK) && !defined(CONFIG_PREEMPT_RT)
	__raw_spin_lock_init(spinlock_check(&lock->lock), name, key, LD_WAIT_CONFIG);
#elif defined(CONFIG_DEBUG_SPINLOCK)
	__spin_lock_init(&lock->lock, name, key, false);
#else
	spin_lock_init(&lock->lock);
#endif
	lock->flags = 0;
}

void rmemring_spin_lock(struct rmemring_spin_irq *lock)
{
	unsigned long flags;

	spin_lock_irqsave(&lock->lock, flags);
	lock->flags = flags;
}

bool rmemring_spin_trylock(struct rmemring_spin_irq *lock)
{
	unsigned long flags;

	if (!spin_trylock_irqsave(&lock->lock, flags))
		return false;
	lock->flags = flags;
	return true;
}

void rmemring_spin_unlock(struct rmemring_spin_irq *lock)
{
	spin_unlock_irqrestore(&lock->lock, lock->flags);
}

void rmemring_spin_assert_held(struct rmemring_spin_irq *lock)
{
	lockdep_assert_held(&lock->lock);
}

/*
 * Consumer wake-ups from any context go through an irq_work, as the BPF
 * ring buffer's and perf's do: a producer may run with the runqueue lock
 * held, where wake_up() would take it again.
 */
void rmemring_init_irq_work(struct irq_work *work, void (*func)(struct irq_work *))
{
	init_irq_work(work, func);
}

/*
 * The CPU this runs on, or UINT_MAX in NMI context (in_nmi() is a macro):
 * a commit's two checks in one call.
 */
unsigned int rmemring_this_cpu_outside_nmi(void)
{
	return in_nmi() ? UINT_MAX : raw_smp_processor_id();
}

/*
 * A client's misuse of the API (a commit without a reservation, say),
 * reported from wherever it happened: under the runqueue lock, with the
 * ring's raw lock held, in hard-IRQ context. printk_deferred(), because
 * printk() may wake the console's waiters there; once, because a buggy
 * probe may repeat it millions of times a second.
 */
static __printf(1, 2) void rmemring_printk_deferred(const char *fmt, ...)
{
	va_list args;

	/* printk_deferred() is not exported; LOGLEVEL_SCHED is what it uses. */
	va_start(args, fmt);
	vprintk_emit(0, LOGLEVEL_SCHED, NULL, fmt, args);
	va_end(args);
}

void rmemring_report_misuse(const char *what)
{
	static bool reported;

	if (!READ_ONCE(reported) && !xchg(&reported, true))
		rmemring_printk_deferred(KERN_ERR "rmemring: %s (reported once per boot)\n", what);
}

/*
 * The kernel's boot id, the random UUID of /proc/sys/kernel/random/boot_id:
 * what tells a ring a previous boot laid out from this boot's own. No
 * kernel API exports it, so it is read from its sysctl, in process context
 * (module load or device probe). Returns 0 or a negative errno.
 */
int rmemring_boot_id(u64 id[2])
{
	char text[UUID_STRING_LEN + 1] = {};
	struct file *file;
	loff_t pos = 0;
	ssize_t n;
	uuid_t uuid;

	file = filp_open("/proc/sys/kernel/random/boot_id", O_RDONLY, 0);
	if (IS_ERR(file))
		return PTR_ERR(file);
	n = kernel_read(file, text, UUID_STRING_LEN, &pos);
	filp_close(file, NULL);
	if (n != UUID_STRING_LEN)
		return n < 0 ? n : -EIO;
	if (uuid_parse(text, &uuid))
		return -EINVAL;
	memcpy(id, uuid.b, sizeof(uuid.b));
	return 0;
}

/* CLOCK_REALTIME minus CLOCK_MONOTONIC now, in nanoseconds. */
s64 rmemring_realtime_offset_ns(void)
{
	return ktime_to_ns(ktime_sub(ktime_get_real(), ktime_get()));
}

/*
 * Writes the dirty cache lines of a write-back mapping back to memory, so
 * that they survive a reset that does not (a warm reset may discard the
 * caches). arch_wb_cache_pmem() is the architectures' exported clean by
 * virtual address (clwb/clflushopt on x86, dc cvap on arm64): safe in
 * panic context, takes no lock.
 */
void rmemring_write_back(void *addr, size_t size)
{
	arch_wb_cache_pmem(addr, size);
}

/*
 * Whether rmemring_write_back() does anything: without
 * CONFIG_ARCH_HAS_PMEM_API (on arm64, CONFIG_ARM64_PMEM) the architecture
 * has no exported clean by address, and arch_wb_cache_pmem() is an empty
 * inline.
 */
bool rmemring_can_write_back(void)
{
	return IS_ENABLED(CONFIG_ARCH_HAS_PMEM_API);
}

/*
 * The panic and reboot notifiers of a ring kept for the next boot. The
 * panic chain is atomic (its callbacks run with the other CPUs stopped);
 * the reboot chain is blocking (process context, before devices shut
 * down). panic_notifier_list is not in the Rust bindings.
 */
void rmemring_crash_notifiers_register(struct notifier_block *panic_nb,
				       struct notifier_block *reboot_nb)
{
	atomic_notifier_chain_register(&panic_notifier_list, panic_nb);
	register_reboot_notifier(reboot_nb);
}

void rmemring_crash_notifiers_unregister(struct notifier_block *panic_nb,
					 struct notifier_block *reboot_nb)
{
	unregister_reboot_notifier(reboot_nb);
	atomic_notifier_chain_unregister(&panic_notifier_list, panic_nb);
}
