/* SPDX-License-Identifier: GPL-2.0 */
/* The C helpers of the rmemring driver; see helpers.c and sys.rs. */
#ifndef RMEMRING_HELPERS_H
#define RMEMRING_HELPERS_H

#include <linux/types.h>
#include <linux/compiler_types.h>
#include <linux/pgtable.h>
#include <linux/spinlock.h>
#include <linux/irq_work.h>

struct device;
struct resource;
struct notifier_block;

void __iomem *rmemring_ioremap_wc(phys_addr_t phys, size_t size);
void __iomem *rmemring_ioremap_uc(phys_addr_t phys, size_t size);
void rmemring_iounmap(void __iomem *addr);
void rmemring_cond_resched(void);
int rmemring_params_locked_down(void);
bool rmemring_in_reserved_memory(const struct resource *res);
pgprot_t rmemring_pgprot_wb(pgprot_t prot);
pgprot_t rmemring_pgprot_wc(pgprot_t prot);
pgprot_t rmemring_pgprot_uc(pgprot_t prot);
int rmemring_of_memory_region(struct device *dev, u64 *base, u64 *size, bool *no_map,
			      bool *static_reg);
/*
 * The producer lock: a raw spinlock, the interrupt flags its holder saved,
 * and whether its CPU was already in a producer section when it took it.
 */
struct rmemring_raw_irq {
	raw_spinlock_t lock;
	unsigned long flags;
	bool was_producing;
	/* Its own address, set by rmemring_raw_lock_init(): see sys.rs. */
	void *self;
};

struct rmemring_spin_irq {
	spinlock_t lock;
	unsigned long flags;
};

void rmemring_raw_lock_init(struct rmemring_raw_irq *lock, const char *name,
			    struct lock_class_key *key);
void rmemring_raw_lock(struct rmemring_raw_irq *lock);
bool rmemring_raw_trylock(struct rmemring_raw_irq *lock);
void rmemring_raw_unlock(struct rmemring_raw_irq *lock);
void rmemring_raw_assert_held(struct rmemring_raw_irq *lock);
unsigned int rmemring_raw_lock_producer(struct rmemring_raw_irq *lock);
bool rmemring_may_wake_directly(void);
void rmemring_spin_lock_init(struct rmemring_spin_irq *lock, const char *name,
			     struct lock_class_key *key);
void rmemring_spin_lock(struct rmemring_spin_irq *lock);
bool rmemring_spin_trylock(struct rmemring_spin_irq *lock);
void rmemring_spin_unlock(struct rmemring_spin_irq *lock);
void rmemring_spin_assert_held(struct rmemring_spin_irq *lock);
void rmemring_init_irq_work(struct irq_work *work, void (*func)(struct irq_work *));
unsigned int rmemring_this_cpu_outside_nmi(void);
void rmemring_report_misuse(const char *what);
void rmemring_hook_record(u64 seq, u64 timestamp_ns, u32 len, const void *payload);
int rmemring_boot_id(u64 id[2]);
s64 rmemring_realtime_offset_ns(void);
void rmemring_write_back(void *addr, size_t size);
bool rmemring_can_write_back(void);
void rmemring_crash_notifiers_register(struct notifier_block *panic_nb,
				       struct notifier_block *reboot_nb);
void rmemring_crash_notifiers_unregister(struct notifier_block *panic_nb,
					 struct notifier_block *reboot_nb);

#endif
