// SPDX-License-Identifier: GPL-2.0
/*
 * rmemring_sched_switch_relay: the sched_switch tracer of
 * examples/kernel/sched_switch, written the way an in-kernel module author
 * has streamed records to user space since 2.6: into a relay channel
 * (kernel/relay.c, CONFIG_RELAY), one buffer per CPU, each a file in
 * debugfs. It is the real-event benchmark's relay peer (rmemring
 * bench-events --peers relay); it does not use rmemring at all, only the
 * layout of its record (struct rmemring_sched_switch).
 *
 *   insmod rmemring_sched_switch_relay.ko
 *   cat /sys/kernel/debug/rmemring_sched_switch_relay/cpu0 | ...
 *   echo 0 > /sys/module/rmemring_sched_switch_relay/parameters/attached
 *   rmmod rmemring_sched_switch_relay
 *
 * The probe writes one record per call with __relay_write() (relay_write()
 * without its local_irq_save(): the probe runs with interrupts off). relay
 * copies the record into the CPU's current sub-buffer and moves to the next
 * one when it is full; when every sub-buffer holds unread data the write is
 * dropped, which relay counts (per CPU, in stats.full_count). A reader
 * read()s the CPU's file: relay skips each sub-buffer's padding and frees
 * what was read. Relay wakes a reader in poll() when a sub-buffer fills.
 *
 * Writing 0 to the attached parameter detaches the probe, so that a reader
 * can drain every buffer and compare its count with the final calls and
 * dropped here before the module (and the files) go away.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/atomic.h>
#include <linux/debugfs.h>
#include <linux/relay.h>
#include <linux/sched.h>
#include <linux/string.h>
#include <linux/tracepoint.h>

#include <rmemring.h>

#ifndef CONFIG_RELAY

/* This kernel has no relay (the arm64 reference one): the module builds, and refuses to load. */
static int __init relay_tracer_init(void)
{
	pr_err("this kernel has no relay (CONFIG_RELAY)\n");
	return -EOPNOTSUPP;
}

module_init(relay_tracer_init);

#else /* CONFIG_RELAY */

static unsigned int subbuf_size = 4096;
module_param(subbuf_size, uint, 0444);
MODULE_PARM_DESC(subbuf_size, "Bytes per sub-buffer (a reader is woken when one fills)");

static unsigned int n_subbufs = 2048;
module_param(n_subbufs, uint, 0444);
MODULE_PARM_DESC(n_subbufs, "Sub-buffers per CPU");

static atomic64_t calls;
static struct rchan *chan;
static struct dentry *dir;
static struct tracepoint *sched_switch_tp;
static bool attached;
static DEFINE_MUTEX(attach_lock);

static int set_read_only(const char *val, const struct kernel_param *kp)
{
	return -EPERM;
}

static int get_calls(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%lld\n", atomic64_read(&calls));
}

static const struct kernel_param_ops calls_ops = { .set = set_read_only, .get = get_calls };
module_param_cb(calls, &calls_ops, NULL, 0444);
MODULE_PARM_DESC(calls, "Probe calls");

/*
 * The writes relay dropped: those that found every sub-buffer of their CPU
 * unread (full_count) or were larger than one (big_count, never here). What
 * relay_stats() adds up (not exported to modules).
 */
static u64 relay_dropped(void)
{
	struct rchan_buf *rbuf;
	unsigned int cpu;
	u64 sum = 0;

	for_each_possible_cpu(cpu) {
		rbuf = *per_cpu_ptr(chan->buf, cpu);
		if (rbuf)
			sum += READ_ONCE(rbuf->stats.full_count) + READ_ONCE(rbuf->stats.big_count);
	}
	return sum;
}

static int get_dropped(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%llu\n", relay_dropped());
}

static const struct kernel_param_ops dropped_ops = { .set = set_read_only, .get = get_dropped };
module_param_cb(dropped, &dropped_ops, NULL, 0444);
MODULE_PARM_DESC(dropped, "Records relay dropped: every sub-buffer of the CPU held unread data");

static void probe_sched_switch(void *data, bool preempt, struct task_struct *prev,
			       struct task_struct *next, unsigned int prev_state)
{
	struct rmemring_sched_switch rec;

	atomic64_inc(&calls);
	rec.cpu = smp_processor_id();
	rec.prev_pid = prev->pid;
	rec.prev_state = prev_state;
	rec.next_pid = next->pid;
	memcpy(rec.prev_comm, prev->comm, RMEMRING_COMM_LEN);
	memcpy(rec.next_comm, next->comm, RMEMRING_COMM_LEN);
	__relay_write(chan, &rec, sizeof(rec));
}

/* Detaches the probe; no call runs after this returns. */
static void detach(void)
{
	mutex_lock(&attach_lock);
	if (attached) {
		tracepoint_probe_unregister(sched_switch_tp, probe_sched_switch, NULL);
		tracepoint_synchronize_unregister();
		attached = false;
	}
	mutex_unlock(&attach_lock);
}

/* Only detaching is offered: the probe is attached at load. */
static int set_attached(const char *val, const struct kernel_param *kp)
{
	bool on;
	int ret = kstrtobool(val, &on);

	if (ret)
		return ret;
	if (on)
		return -EINVAL;
	detach();
	return 0;
}

static int get_attached(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "%d\n", READ_ONCE(attached));
}

static const struct kernel_param_ops attached_ops = { .set = set_attached, .get = get_attached };
module_param_cb(attached, &attached_ops, NULL, 0644);
MODULE_PARM_DESC(attached, "Whether the probe is attached; write 0 to detach it for good");

static struct dentry *create_buf_file(const char *filename, struct dentry *parent,
				      umode_t mode, struct rchan_buf *buf, int *is_global)
{
	return debugfs_create_file(filename, mode, parent, buf, &relay_file_operations);
}

static int remove_buf_file(struct dentry *dentry)
{
	debugfs_remove(dentry);
	return 0;
}

/* No subbuf_start: relay's default drops new records when the buffer is full. */
static const struct rchan_callbacks relay_callbacks = {
	.create_buf_file = create_buf_file,
	.remove_buf_file = remove_buf_file,
};

static void find_sched_switch(struct tracepoint *tp, void *priv)
{
	if (!strcmp(tp->name, "sched_switch"))
		sched_switch_tp = tp;
}

static int __init relay_tracer_init(void)
{
	int ret;

	BUILD_BUG_ON(TASK_COMM_LEN != RMEMRING_COMM_LEN);

	for_each_kernel_tracepoint(find_sched_switch, NULL);
	if (!sched_switch_tp) {
		pr_err("no sched_switch tracepoint in this kernel\n");
		return -ENOENT;
	}
	dir = debugfs_create_dir(KBUILD_MODNAME, NULL);
	if (IS_ERR(dir))
		return PTR_ERR(dir);
	chan = relay_open("cpu", dir, subbuf_size, n_subbufs, &relay_callbacks, NULL);
	if (!chan) {
		debugfs_remove(dir);
		return -ENOMEM;
	}
	ret = tracepoint_probe_register(sched_switch_tp, probe_sched_switch, NULL);
	if (ret) {
		relay_close(chan);
		debugfs_remove(dir);
		return ret;
	}
	attached = true;
	pr_info("tracing sched_switch into relay, %u sub-buffers of %u bytes per CPU\n",
		n_subbufs, subbuf_size);
	return 0;
}

static void __exit relay_tracer_exit(void)
{
	detach();
	pr_info("calls=%lld dropped=%llu\n", atomic64_read(&calls), relay_dropped());
	relay_close(chan);
	debugfs_remove(dir);
}

module_init(relay_tracer_init);
module_exit(relay_tracer_exit);

#endif /* CONFIG_RELAY */
MODULE_DESCRIPTION("sched_switch tracer writing into a relay channel (a benchmark peer)");
MODULE_LICENSE("GPL");
