/* SPDX-License-Identifier: GPL-2.0 */
/* The C helpers of the rmemring driver; see helpers.c and sys.rs. */
#ifndef RMEMRING_HELPERS_H
#define RMEMRING_HELPERS_H

#include <linux/types.h>
#include <linux/compiler_types.h>
#include <linux/pgtable.h>

struct device;
struct resource;

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
void rmemring_hook_record(u64 seq, u64 timestamp_ns, u32 len, const void *payload);

#endif
