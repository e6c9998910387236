// SPDX-License-Identifier: GPL-2.0
/*
 * rmemring_phys_mark: writes a word into a page of reserved memory, or
 * checks that the page holds it, as it loads: a witness that outlives
 * the kernel, for the tests that reset the guest (is the reserved memory
 * still there after a warm reboot or a panic?). It works where /dev/mem
 * does not exist (the arm64 reference kernel has no CONFIG_DEVMEM).
 *
 *   insmod rmemring_phys_mark.ko addr=0x11002000 write=WORD
 *   insmod rmemring_phys_mark.ko addr=0x11002000 expect=WORD
 *
 * The page at addr must be reserved memory that no one else uses (not
 * System RAM: such a page is refused). write= stores "rmemring-mark:"
 * WORD and a NUL at the page's start; expect= fails the load with
 * -ENODATA, and logs the page's first bytes, unless that is what the
 * page holds. Either way the module stays loaded until rmmod, holding
 * nothing.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/io.h>
#include <linux/ioport.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/string.h>

static unsigned long addr;
module_param(addr, ulong, 0444);
MODULE_PARM_DESC(addr, "Physical address of the page (page-aligned, reserved)");

static char *write;
module_param(write, charp, 0444);
MODULE_PARM_DESC(write, "The word to write there");

static char *expect;
module_param(expect, charp, 0444);
MODULE_PARM_DESC(expect, "The word the page must hold");

#define PREFIX "rmemring-mark:"
#define MAX_WORD 64

static int __init phys_mark_init(void)
{
	const char *word = write ? write : expect;
	char mark[sizeof(PREFIX) + MAX_WORD];
	size_t len;
	char *page;
	int ret = 0;

	if (!addr || !PAGE_ALIGNED(addr) || !write == !expect) {
		pr_err("usage: addr=PAGE (page-aligned) and one of write=WORD, expect=WORD\n");
		return -EINVAL;
	}
	if (strlen(word) > MAX_WORD) {
		pr_err("the word is longer than %d bytes\n", MAX_WORD);
		return -EINVAL;
	}
	if (region_intersects(addr, PAGE_SIZE, IORESOURCE_SYSTEM_RAM,
			      IORES_DESC_NONE) != REGION_DISJOINT) {
		pr_err("%#lx is System RAM, not reserved memory\n", addr);
		return -EPERM;
	}
	page = memremap(addr, PAGE_SIZE, MEMREMAP_WB);
	if (!page) {
		pr_err("cannot map %#lx\n", addr);
		return -ENOMEM;
	}
	len = scnprintf(mark, sizeof(mark), PREFIX "%s", word) + 1;
	if (write) {
		memcpy(page, mark, len);
		pr_info("wrote '%s' at %#lx\n", word, addr);
	} else if (!memcmp(page, mark, len)) {
		pr_info("found '%s' at %#lx\n", word, addr);
	} else {
		pr_info("no '%s' at %#lx; it begins with %*ph\n", word, addr,
			(int)min_t(size_t, len, 32), page);
		ret = -ENODATA;
	}
	memunmap(page);
	return ret;
}

static void __exit phys_mark_exit(void)
{
}

module_init(phys_mark_init);
module_exit(phys_mark_exit);
MODULE_DESCRIPTION("Writes or checks a word in a page of reserved memory");
MODULE_LICENSE("GPL");
