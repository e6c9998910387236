// SPDX-License-Identifier: GPL-2.0
/*
 * rmemring_panic_now: panics the kernel as it loads, on purpose.
 *
 * The reference kernels have no CONFIG_MAGIC_SYSRQ, so a test that needs
 * a panic (a ring that must outlive the kernel that wrote it) loads this:
 *
 *   insmod rmemring_panic_now.ko
 *
 * It first prints MARKER at KERN_EMERG, then panics with MARKER as the
 * message. The VM harness (xtask/src/vm.rs, PANIC_MARKER) forgives, in
 * runs that declare a deliberate panic, exactly the panic that follows
 * this line in the same boot: its "Kernel panic - not syncing: MARKER"
 * line, one stack dump and its "---[ end Kernel panic" line. Any other
 * problem, before the marker or after, still fails the run. The guest's
 * kernel command line has panic=-1, so the machine resets at once.
 */

#include <linux/module.h>
#include <linux/panic.h>
#include <linux/printk.h>

/* vm::PANIC_MARKER in xtask. */
#define MARKER "rmemring-test: deliberate panic"

static int __init panic_now_init(void)
{
	pr_emerg(MARKER "\n");
	panic(MARKER);
}

module_init(panic_now_init);
MODULE_DESCRIPTION("Panics the kernel when loaded, for the reboot tests");
MODULE_LICENSE("GPL");
