/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * rmemring: the in-kernel producer API.
 *
 * Kernel code (a driver, an interrupt handler, a tracepoint probe) writes
 * records into an rmemring ring; a user-space consumer reads them zero-copy
 * from the mapped reserved memory. Build a client module against
 * rmemring.ko with KBUILD_EXTRA_SYMBOLS pointing at the driver's
 * Module.symvers; docs/kernel-api.md is the guide.
 *
 * Contexts: rmemring_get() and rmemring_put() in process context only.
 * Everything else in any context but NMI (process, softirq, hard IRQ, with
 * interrupts off, under the scheduler's runqueue lock), on any CPU at once.
 * Producers of one ring are serialised by a raw spinlock held with
 * interrupts off from reserve to commit; consumer wake-ups are deferred
 * through an irq_work. In NMI context every write is refused (-EBUSY) and
 * counted: the lock may be held by the code the NMI interrupted.
 *
 * Record tags and their payloads (RMEMRING_TAG_*, struct
 * rmemring_sched_switch, ...) are user-space ABI as well, so they live in
 * the UAPI header included below, with the ring's layout and ioctls.
 */
#ifndef _RMEMRING_H
#define _RMEMRING_H

#include <linux/compiler.h>
#include <linux/string.h>
#include <linux/types.h>

#include "uapi/linux/rmemring.h"

/* A reference to a ring: from rmemring_get(), given back by rmemring_put(). */
struct rmemring;

/*
 * rmemring_write() and rmemring_commit() flags.
 *
 * RMEMRING_NO_WAKEUP: publish the record without waking a sleeping
 * consumer; its request stays armed, and the next publication without the
 * flag wakes it (the BPF ring buffer's BPF_RB_NO_WAKEUP). For records that
 * the consumer's own going to sleep causes (a sched_switch tracer), which
 * would otherwise wake it at once, for ever.
 */
#define RMEMRING_NO_WAKEUP		1

/*
 * rmemring_batch_reserve() flag.
 *
 * RMEMRING_NO_DROP: in drop-new mode, a full ring refuses the record with
 * -ENOBUFS instead of dropping it: nothing is counted and no sequence
 * number taken. For a producer that can wait for room (process context),
 * as the driver's own thread does when asked to.
 */
#define RMEMRING_NO_DROP		2

/**
 * rmemring_get() - find a ring by its device name and take a reference
 * @name: the device's name, e.g. "rmemring0" for /dev/rmemring0
 *
 * The reference keeps the ring's state and memory alive, and makes
 * rmemring.ko impossible to unload while the calling module holds it (the
 * module depends on rmemring.ko). If the device goes away meanwhile (a
 * device-tree unbind), writes fail with -ENODEV.
 *
 * Context: process context.
 * Return: the ring, or NULL if no live ring has that name.
 */
struct rmemring *rmemring_get(const char *name);

/**
 * rmemring_put() - give back a reference from rmemring_get()
 * @ring: the reference, or NULL
 *
 * Context: process context (the last reference to a ring whose device is
 * gone unmaps its memory).
 */
void rmemring_put(struct rmemring *ring);

/**
 * rmemring_write() - copy one record into the ring and publish it
 * @ring: a reference from rmemring_get()
 * @tag: what the payload is (RMEMRING_TAG_*, or your own from
 *       RMEMRING_TAG_USER_MIN)
 * @data: the payload
 * @len: its length in bytes
 * @flags: 0 or RMEMRING_NO_WAKEUP
 *
 * The record gets the ring's next sequence number and a CLOCK_MONOTONIC
 * timestamp taken under the ring's producer lock (so timestamps never go
 * backwards in ring order, whichever CPUs write).
 *
 * Context: any but NMI.
 * Return: 0 written; -ENOSPC dropped (drop-new mode, ring full; counted in
 * records_dropped, and the consumer sees the sequence gap); -EMSGSIZE
 * larger than rmemring_max_payload(); -ENODEV the device is gone (counted
 * in records_refused); -EBUSY NMI context, a write from inside a
 * producer's critical section of any ring on this CPU (an open
 * reservation, or a probe on a tracepoint fired there, the producer lock's
 * own included: lockdep's, lock:contention_*), or a reset in progress
 * (counted in
 * records_refused, except during a reset, which zeroes the counters when
 * it ends); -EINVAL unknown @flags.
 */
int rmemring_write(struct rmemring *ring, u16 tag, const void *data, u32 len, u32 flags);

/**
 * rmemring_reserve() - reserve a record to fill in place (zero-copy)
 * @ring: a reference from rmemring_get()
 * @tag: what the payload will be
 * @len: payload bytes
 *
 * On success the ring's producer lock is held, with interrupts off, until
 * rmemring_commit() or rmemring_discard(): fill the payload quickly and do
 * not sleep. A ring has one reservation open at a time: meanwhile other
 * producers of the ring spin (a second rmemring_reserve() or
 * rmemring_write() on the same CPU, of this ring or another, is refused
 * with -EBUSY).
 *
 * The payload is shared memory that a consumer may read while you fill it
 * (in overwrite mode, one that lapped the producer): readers check what
 * they read, but on a ring mapped uncached or write-combined (device-tree
 * rmemring,cache-mode, or the cache_mode parameter) write it with aligned
 * 8-byte stores only, as __iomem (uncached is Device memory on arm64, where
 * an unaligned store faults, and memcpy() makes them): rmemring_fill()
 * does, as rmemring_write() does.
 *
 * Context: any but NMI.
 * Return: the payload (8-byte aligned, @len bytes), or an ERR_PTR() of the
 * errors rmemring_write() returns.
 */
void *rmemring_reserve(struct rmemring *ring, u16 tag, u32 len);

/**
 * rmemring_fill() - write a reservation's payload with aligned word stores
 * @payload: what rmemring_reserve() returned (8-byte aligned)
 * @data: the bytes to write from the payload's start
 * @len: how many; at most the reserved length
 *
 * One WRITE_ONCE() of a u64 per 8 bytes, the last word padded with zeroes
 * (it stays within the record, whose length is rounded up to 8): the
 * stores every cache mode of the ring takes, as rmemring_write() makes
 * them. Use it rather than memcpy() into a reservation.
 *
 * Context: any, between rmemring_reserve() and rmemring_commit().
 */
static inline void rmemring_fill(void *payload, const void *data, u32 len)
{
	u64 *to = payload;
	const u8 *from = data;
	u64 word;

	for (; len >= sizeof(word); len -= sizeof(word), from += sizeof(word)) {
		memcpy(&word, from, sizeof(word));
		WRITE_ONCE(*to++, word);
	}
	if (len) {
		word = 0;
		memcpy(&word, from, len);
		WRITE_ONCE(*to, word);
	}
}

/**
 * rmemring_commit() - make a reservation a record and publish it
 * @ring: the ring reserved from
 * @payload: what rmemring_reserve() returned
 * @flags: 0 or RMEMRING_NO_WAKEUP
 *
 * Context: the same as the rmemring_reserve() call, on the same CPU.
 * Return: 0 committed and published; -EINVAL unknown @flags: the
 * reservation is discarded (as rmemring_discard() would: no record, no
 * sequence number, the lock let go), or no reservation of @payload is
 * open on this CPU (an error in the kernel log; nothing touched); -EBUSY
 * NMI context (counted in records_refused; nothing touched).
 */
int __must_check rmemring_commit(struct rmemring *ring, void *payload, u32 flags);

/**
 * rmemring_discard() - give a reservation back unwritten
 * @ring: the ring reserved from
 * @payload: what rmemring_reserve() returned
 *
 * The record takes no sequence number and is not counted. What making
 * room for it did stays: in overwrite mode, the oldest records it retired
 * (counted in records_overwritten; the consumer sees them lost).
 *
 * Context: the same as the rmemring_reserve() call, on the same CPU.
 */
void rmemring_discard(struct rmemring *ring, void *payload);

/**
 * rmemring_batch_begin() - hold a ring's producer lock for a batch of records
 * @ring: a reference from rmemring_get()
 * @seq: if not NULL, set to the sequence number the batch's first record
 *       gets; each record the batch commits or drops takes the next one
 *
 * For a producer with many records at once: one lock hold and one
 * publication (one release store, one look at the consumer's wake-up
 * request) for the batch, where rmemring_write() takes the lock and
 * publishes once per record. Reserve each record with
 * rmemring_batch_reserve(), fill it, rmemring_batch_commit() it, and
 * rmemring_batch_end() the batch, which publishes its records and lets go
 * of the lock. Meanwhile the lock is held with interrupts off, as for a
 * reservation, and every rule of rmemring_reserve() applies: do not
 * sleep, a write to any ring on this CPU is refused with -EBUSY. The lock
 * hold is bounded: a batch takes at most 64 KiB of records (or one larger
 * record) and at most 16384 records, after which rmemring_batch_reserve()
 * says -EAGAIN: end the batch and begin another.
 *
 * Context: any but NMI.
 * Return: 0, the batch open (end it with rmemring_batch_end()); -ENODEV,
 * -EBUSY as rmemring_write() (counted in records_refused, once: the
 * refusal of the record the batch would have begun with).
 */
int rmemring_batch_begin(struct rmemring *ring, u64 *seq);

/**
 * rmemring_batch_reserve() - reserve a record of the open batch
 * @ring: the ring whose batch this CPU holds open
 * @tag: what the payload will be
 * @len: payload bytes
 * @flags: 0 or RMEMRING_NO_DROP
 *
 * Returns the payload to fill in place (8-byte aligned, @len bytes; write
 * it as a reservation's, with rmemring_fill()), then give to
 * rmemring_batch_commit(). A reservation not committed before the next
 * rmemring_batch_reserve() or rmemring_batch_end() is discarded, as by
 * rmemring_discard().
 *
 * Context: the rmemring_batch_begin() call's, on the same CPU.
 * Return: the payload, or an ERR_PTR() of: -ENOSPC dropped (drop-new mode,
 * ring full; counted in records_dropped and takes a sequence number, as
 * for rmemring_write()); -EMSGSIZE larger than rmemring_max_payload() (not
 * counted); -EAGAIN the batch is at its bound (not counted: end it and
 * begin another); -ENOBUFS with RMEMRING_NO_DROP, drop-new mode and the
 * ring full (not counted, no sequence number taken); -EBUSY NMI context
 * (counted in records_refused); -EINVAL unknown @flags, or no batch of
 * @ring open on this CPU (an error in the kernel log). The batch stays
 * open whatever it returns.
 */
void *rmemring_batch_reserve(struct rmemring *ring, u16 tag, u32 len, u32 flags);

/**
 * rmemring_batch_commit() - make the batch's open reservation a record
 * @ring: the ring whose batch this CPU holds open
 * @payload: what rmemring_batch_reserve() returned
 *
 * The record takes the next sequence number and a timestamp; the consumer
 * sees it when the batch ends.
 *
 * Context: the rmemring_batch_begin() call's, on the same CPU.
 * Return: 0; -EINVAL no reservation of @payload open in a batch of @ring
 * on this CPU (an error in the kernel log; nothing touched); -EBUSY NMI
 * context (counted in records_refused).
 */
int rmemring_batch_commit(struct rmemring *ring, void *payload);

/**
 * rmemring_batch_end() - publish the batch's records and let go of the lock
 * @ring: the ring whose batch this CPU holds open
 * @flags: 0 or RMEMRING_NO_WAKEUP
 *
 * Discards an open reservation that was not committed, publishes every
 * record the batch committed (waking a sleeping consumer, unless
 * RMEMRING_NO_WAKEUP) and lets go of the producer lock.
 *
 * Context: the rmemring_batch_begin() call's, on the same CPU.
 * Return: 0; -EINVAL unknown @flags (the batch is ended all the same,
 * published without a wake-up), or no batch of @ring open on this CPU (an
 * error in the kernel log; nothing touched); -EBUSY NMI context (nothing
 * touched).
 */
int rmemring_batch_end(struct rmemring *ring, u32 flags);

/**
 * rmemring_max_payload() - the largest payload a record of @ring carries
 * @ring: a reference from rmemring_get()
 *
 * Context: any.
 */
u32 rmemring_max_payload(struct rmemring *ring);

#endif /* _RMEMRING_H */
