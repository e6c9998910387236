// SPDX-License-Identifier: GPL-2.0
/*
 * The exports of the in-kernel producer API. The functions are written in
 * Rust (api.rs, #[no_mangle] extern "C"); this file checks their C
 * prototypes (include/rmemring.h, compiled against here) and exports them,
 * since EXPORT_SYMBOL_GPL is C.
 */

#include <linux/export.h>
#include <linux/module.h>

#include "include/rmemring.h"

EXPORT_SYMBOL_GPL(rmemring_get);
EXPORT_SYMBOL_GPL(rmemring_put);
EXPORT_SYMBOL_GPL(rmemring_write);
EXPORT_SYMBOL_GPL(rmemring_reserve);
EXPORT_SYMBOL_GPL(rmemring_commit);
EXPORT_SYMBOL_GPL(rmemring_discard);
EXPORT_SYMBOL_GPL(rmemring_max_payload);
EXPORT_SYMBOL_GPL(rmemring_batch_begin);
EXPORT_SYMBOL_GPL(rmemring_batch_reserve);
EXPORT_SYMBOL_GPL(rmemring_batch_commit);
EXPORT_SYMBOL_GPL(rmemring_batch_end);
