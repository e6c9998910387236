// SPDX-License-Identifier: GPL-2.0-only OR MIT
/*
 * rmemring-consume-c: a consumer of /dev/rmemringN in C, written from
 * <linux/rmemring.h> and docs/protocol.md alone.
 *
 * It resets the ring (drop-new, or overwrite-oldest with -o), starts the
 * driver's test producer for COUNT records, maps the ring and consumes it:
 * in place in drop-new mode, by copy and re-check in overwrite mode. Every
 * record's sequence number, tag, length and payload is checked against the
 * test pattern; lost records are counted from the sequence gaps and, once
 * the producer has stopped and the ring is drained, from its counters.
 *
 *	make -C examples/c
 *	examples/c/rmemring-consume-c [-d /dev/rmemring0] [-n COUNT] [-l MIN] [-L MAX] [-o]
 *
 * Exit status: 0 all verified, 1 a bad record or a count that does not add
 * up, 2 a broken ring or a failed call.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/rmemring.h>

/* Attempts of one overwrite-mode read before it counts as lapped. */
#define LAP_RETRIES	64

enum read_result { READ_BROKEN = -1, READ_EMPTY, READ_RECORD, READ_LAPPED };

struct ring {
	int fd;
	const struct rmemring_control_page *ctl;
	struct rmemring_consumer_page *cons;
	const __u8 *data;
	__u64 size;			/* data_size, a power of two */
	__u32 max_payload;
	bool overwrite;
	__u64 pos;			/* the next record's position */
	__u64 released;		/* consumer_pos, as last stored */
	__u64 head;			/* producer_pos, as last loaded */
	__u32 token;			/* the last need_wakeup token */
	__u64 next_seq;		/* the sequence number expected next */
	__u64 consumed, bytes, lost, sleeps;
};

static int corrupt(const struct ring *r, const char *what)
{
	fprintf(stderr, "rmemring-consume-c: the ring is broken at position %#llx: %s\n",
		r->pos, what);
	return READ_BROKEN;
}

/* Whether position @a is ahead of @b (modulo 2^64). */
static bool ahead(__u64 a, __u64 b)
{
	return a != b && a - b <= INT64_MAX;
}

/* Loads producer_pos and checks it against our position (section 7). */
static int refresh_head(struct ring *r)
{
	/* Pairs with the producer's release store: its records are visible. */
	__u64 head = __atomic_load_n(&r->ctl->producer_pos, __ATOMIC_ACQUIRE);

	if ((head | r->pos) % RMEMRING_RECORD_ALIGN)
		return corrupt(r, "misaligned producer_pos");
	if (!r->overwrite && head - r->pos > r->size)
		return corrupt(r, "producer_pos behind us or more than the data area ahead");
	r->head = head;
	return 0;
}

/*
 * The stride of the record whose header (its first word, at least) is @h,
 * at @off of the data area: 0 if the header is impossible (section 7).
 */
static __u64 stride_of(const struct ring *r, const struct rmemring_record_header *h,
			  __u64 off)
{
	__u64 to_end = r->size - off, avail = r->head - r->pos, stride;

	switch (h->kind) {
	case RMEMRING_KIND_PAD:
		stride = h->len;
		if (stride != to_end)
			return 0;
		break;
	case RMEMRING_KIND_DATA:
		if (h->len > r->max_payload)	/* bounded before any arithmetic */
			return 0;
		stride = (RMEMRING_HEADER_SIZE + (__u64)h->len + RMEMRING_RECORD_ALIGN - 1) &
			 ~(__u64)(RMEMRING_RECORD_ALIGN - 1);
		if (stride > to_end)
			return 0;
		break;
	default:
		return 0;
	}
	return stride <= avail ? stride : 0;
}

/* Counts a data record and the sequence gap before it. */
static int account(struct ring *r, const struct rmemring_record_header *h)
{
	__u64 gap = h->seq - r->next_seq;

	if (gap > INT64_MAX)
		return corrupt(r, "sequence number went back");
	r->lost += gap;
	r->next_seq = h->seq + 1;
	r->consumed++;
	r->bytes += h->len;
	return READ_RECORD;
}

/* Drop-new mode: the next record, in place until it is released. */
static int read_in_place(struct ring *r, struct rmemring_record_header *h,
			 const void **payload)
{
	for (;;) {
		__u64 off = r->pos & (r->size - 1), stride;

		if (r->pos == r->head) {
			if (refresh_head(r))
				return READ_BROKEN;
			if (r->pos == r->head)
				return READ_EMPTY;
		}
		/* Only len, kind and tag exist in a pad: read them once. */
		memcpy(h, r->data + off, 8);
		stride = stride_of(r, h, off);
		if (!stride)
			return corrupt(r, "impossible record header");
		r->pos += stride;
		if (h->kind == RMEMRING_KIND_PAD)
			continue;
		memcpy(&h->seq, r->data + off + 8, 16);
		*payload = r->data + off + RMEMRING_HEADER_SIZE;
		return account(r, h);
	}
}

/*
 * Copies @n bytes (a multiple of 8) that the producer may be overwriting,
 * with relaxed atomic loads: a memcpy() would be a data race.
 */
static void copy_words(__u64 *dst, const __u8 *src, __u64 n)
{
	const __u64 *words = (const __u64 *)src;

	for (__u64 i = 0; i < n / 8; i++)
		dst[i] = __atomic_load_n(&words[i], __ATOMIC_RELAXED);
}

/*
 * Overwrite mode: the next record, copied into @buf, seqlock-style
 * (section 8). Nothing the copy holds, not even the header, is judged
 * before the re-check of overwrite_pos says the producer did not retire
 * the record meanwhile.
 */
static int read_copy(struct ring *r, struct rmemring_record_header *h, __u64 *buf)
{
	for (int round = 0; round < LAP_RETRIES; round++) {
		__u64 off = r->pos & (r->size - 1), oldest, stride, word0;

		if (r->pos == r->head) {
			if (refresh_head(r))
				return READ_BROKEN;
			if (r->pos == r->head)
				return READ_EMPTY;
		}
		/* Pairs with the release fence after the producer's store. */
		oldest = __atomic_load_n(&r->ctl->overwrite_pos, __ATOMIC_ACQUIRE);
		if (ahead(oldest, r->pos)) {
			/* Lapped: resume at the oldest intact record, once published. */
			if (oldest % RMEMRING_RECORD_ALIGN)
				return corrupt(r, "misaligned overwrite_pos");
			if (ahead(oldest, r->head)) {
				if (refresh_head(r))
					return READ_BROKEN;
				if (ahead(oldest, r->head))
					return READ_LAPPED;
			}
			r->pos = oldest;
			continue;
		}
		if (r->head - r->pos > r->size)
			return corrupt(r, "producer_pos more than the data area ahead");

		copy_words(&word0, r->data + off, 8);
		memcpy(h, &word0, 8);
		stride = stride_of(r, h, off);
		if (stride && h->kind == RMEMRING_KIND_DATA) {
			copy_words(&h->seq, r->data + off + 8, 16);
			copy_words(buf, r->data + off + RMEMRING_HEADER_SIZE,
				   stride - RMEMRING_HEADER_SIZE);
		}
		/* If the copy saw a byte written after a retirement, this sees it. */
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		oldest = __atomic_load_n(&r->ctl->overwrite_pos, __ATOMIC_RELAXED);
		if (ahead(oldest, r->pos))
			continue;		/* torn: void, whatever it says */
		if (!stride)
			return corrupt(r, "impossible record header");
		r->pos += stride;
		if (h->kind == RMEMRING_KIND_DATA)
			return account(r, h);
	}
	return refresh_head(r) ? READ_BROKEN : READ_LAPPED;
}

/* Hands the records read back with one store, and publishes the counters. */
static void release(struct ring *r)
{
	struct rmemring_consumer_page *c = r->cons;

	if (r->pos != r->released) {
		/* After our reads of the records: pairs with the producer's acquire. */
		__atomic_store_n(&c->consumer_pos, r->pos, __ATOMIC_RELEASE);
		r->released = r->pos;
	}
	__atomic_store_n(&c->records_consumed, r->consumed, __ATOMIC_RELAXED);
	__atomic_store_n(&c->bytes_consumed, r->bytes, __ATOMIC_RELAXED);
	__atomic_store_n(&c->records_lost, r->lost, __ATOMIC_RELAXED);
	__atomic_store_n(&c->sleeps, r->sleeps, __ATOMIC_RELAXED);
}

/*
 * Sleeps in poll() until the producer publishes beyond our position, or
 * @timeout_ms passes (section 5's handshake).
 */
static int wait_for_records(struct ring *r, int timeout_ms)
{
	struct pollfd pfd = { .fd = r->fd, .events = POLLIN };
	int ret = 0;

	release(r);
	r->token = r->token + 1 ? r->token + 1 : 1;	/* fresh, never 0 */
	__atomic_store_n(&r->cons->wake_token, r->token, __ATOMIC_RELAXED);
	/* Release: the producer that reads the token reads our consumer_pos. */
	__atomic_store_n(&r->cons->need_wakeup, r->token, __ATOMIC_RELEASE);
	/* Dekker: store need_wakeup, fence, load producer_pos. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (__atomic_load_n(&r->ctl->producer_pos, __ATOMIC_ACQUIRE) == r->pos) {
		r->sleeps++;
		if (poll(&pfd, 1, timeout_ms) < 0 && errno != EINTR)
			ret = -errno;
	}
	__atomic_store_n(&r->cons->need_wakeup, 0, __ATOMIC_RELAXED);
	return ret;
}

/* The test pattern's hash: the first output of splitmix64 seeded with @seq. */
static __u64 mix(__u64 seq)
{
	__u64 z = seq + 0x9e3779b97f4a7c15ULL;

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Whether a record is the test producer's record @h->seq (section 4). */
static bool verify(const struct rmemring_record_header *h, const __u8 *payload,
		   __u32 min_len, __u32 max_len)
{
	__u64 base = mix(h->seq), word;
	__u32 len = min_len;

	if (max_len > min_len)
		len += mix(h->seq ^ 0x5bd1e995) % ((__u64)max_len - min_len + 1);
	if (h->tag != RMEMRING_TAG_PATTERN || h->len != len)
		return false;
	for (__u32 i = 0; i < len; i += 8) {
		__u32 n = len - i < 8 ? len - i : 8;

		word = base + i / 8;	/* little-endian, like the ring */
		if (memcmp(payload + i, &word, n))
			return false;
	}
	return true;
}

/* Maps the ring's three parts and checks its identity (section 7). */
static int map_ring(struct ring *r, const struct rmemring_info *info)
{
	const struct rmemring_control_page *ctl;
	long page = sysconf(_SC_PAGESIZE);

	ctl = mmap(NULL, page, PROT_READ, MAP_SHARED, r->fd, 0);
	if (ctl == MAP_FAILED)
		return -errno;
	if (ctl->magic != RMEMRING_MAGIC || ctl->abi_version != RMEMRING_ABI_VERSION ||
	    ctl->page_size != page || ctl->consumer_offset != (__u64)page ||
	    ctl->data_offset != 2 * (__u64)page ||
	    ctl->data_size < RMEMRING_MIN_DATA_SIZE || ctl->data_size > RMEMRING_MAX_DATA_SIZE ||
	    (ctl->data_size & (ctl->data_size - 1)) ||
	    ctl->data_offset + ctl->data_size > ctl->region_size ||
	    ctl->max_payload > ctl->data_size / 4 - RMEMRING_HEADER_SIZE ||
	    (ctl->flags & ~RMEMRING_FLAGS_KNOWN))
		return -EPROTO;
	/* The identity fields are fixed but for a RESET: copy them once. */
	if (ctl->data_size != info->data_size || ctl->flags != info->flags)
		return -EPROTO;
	/* Other cache modes need rmb() besides (section 5): not done here. */
	if ((ctl->flags & RMEMRING_FLAG_CACHE_MASK) >> RMEMRING_FLAG_CACHE_SHIFT !=
	    RMEMRING_CACHE_WRITE_BACK)
		return -EOPNOTSUPP;
	r->ctl = ctl;
	r->size = ctl->data_size;
	r->max_payload = ctl->max_payload;
	r->overwrite = ctl->flags & RMEMRING_FLAG_OVERWRITE;
	r->cons = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd,
		       ctl->consumer_offset);
	if (r->cons == MAP_FAILED)
		return -errno;
	r->data = mmap(NULL, r->size, PROT_READ, MAP_SHARED, r->fd, ctl->data_offset);
	if (r->data == MAP_FAILED)
		return -errno;
	/* Attach: resume where the last consumer stopped (section 3). */
	r->pos = r->released = r->head = r->cons->consumer_pos;
	r->token = r->cons->wake_token;
	r->consumed = r->cons->records_consumed;
	r->bytes = r->cons->bytes_consumed;
	r->lost = r->cons->records_lost;
	r->sleeps = r->cons->sleeps;
	r->next_seq = r->consumed + r->lost;
	return refresh_head(r) ? -EPROTO : 0;
}

static int fail(const char *what)
{
	fprintf(stderr, "rmemring-consume-c: %s: %s\n", what, strerror(errno));
	return 2;
}

int main(int argc, char **argv)
{
	struct rmemring_producer_config config = { .min_len = 8, .max_len = 4096,
						   .count = 1000000,
						   .pattern = RMEMRING_PATTERN_SEQ };
	struct rmemring_reset_config reset = { 0 };
	const char *path = "/dev/rmemring0";
	struct rmemring_stats stats;
	struct rmemring_info info;
	struct ring r = { 0 };
	__u64 bad = 0, *buf, total, trailing;
	int opt, err;

	while ((opt = getopt(argc, argv, "d:n:l:L:o")) != -1) {
		switch (opt) {
		case 'd':
			path = optarg;
			break;
		case 'n':
			config.count = strtoull(optarg, NULL, 0);
			break;
		case 'l':
			config.min_len = strtoul(optarg, NULL, 0);
			break;
		case 'L':
			config.max_len = strtoul(optarg, NULL, 0);
			break;
		case 'o':
			reset.flags = RMEMRING_FLAG_OVERWRITE;
			break;
		default:
			fprintf(stderr, "usage: %s [-d DEVICE] [-n COUNT] [-l MIN] [-L MAX] [-o]\n",
				argv[0]);
			return 2;
		}
	}

	/* O_RDWR: the consumer, the only one that may map its page writable. */
	r.fd = open(path, O_RDWR | O_CLOEXEC);
	if (r.fd < 0)
		return fail(path);
	if (ioctl(r.fd, RMEMRING_IOC_RESET, &reset))
		return fail("RMEMRING_IOC_RESET");
	if (ioctl(r.fd, RMEMRING_IOC_INFO, &info))
		return fail("RMEMRING_IOC_INFO");
	err = map_ring(&r, &info);
	if (err) {
		errno = -err;
		return fail("mapping the ring");
	}
	if (config.min_len > config.max_len || config.max_len > r.max_payload) {
		fprintf(stderr, "rmemring-consume-c: payloads %u..%u, the ring takes up to %u\n",
			config.min_len, config.max_len, r.max_payload);
		return 2;
	}
	buf = malloc(r.max_payload + 8);
	if (!buf)
		return fail("malloc");
	printf("%s: /dev/rmemring%u, data area %llu KiB, %s, %llu records of %u..%u bytes\n",
	       argv[0], info.index, r.size >> 10, r.overwrite ? "overwrite" : "drop-new",
	       config.count, config.min_len, config.max_len);
	if (ioctl(r.fd, RMEMRING_IOC_START, &config))
		return fail("RMEMRING_IOC_START");

	for (;;) {
		struct rmemring_record_header h;
		const void *payload = buf;
		int got = r.overwrite ? read_copy(&r, &h, buf) : read_in_place(&r, &h, &payload);

		if (got == READ_BROKEN)
			return 2;
		if (got == READ_RECORD) {
			if (!verify(&h, payload, config.min_len, config.max_len) && bad++ < 5)
				fprintf(stderr, "bad record: seq %llu, tag %u, len %u\n",
					h.seq, h.tag, h.len);
			/* Hand space back every quarter ring, not only when idle. */
			if (r.pos - r.released > r.size / 4)
				release(&r);
			continue;
		}
		if (got == READ_LAPPED) {
			/* poll() would return at once: nap until the next publication. */
			release(&r);
			usleep(1000);
			continue;
		}
		/* Empty. Done once the producer has stopped and we hold all it wrote. */
		if (ioctl(r.fd, RMEMRING_IOC_STATS, &stats))
			return fail("RMEMRING_IOC_STATS");
		if (!stats.producer_running) {
			if (refresh_head(&r))
				return 2;
			if (r.pos == r.head)
				break;
			continue;
		}
		if (wait_for_records(&r, 100))
			return fail("poll");
	}
	release(&r);
	if (ioctl(r.fd, RMEMRING_IOC_STATS, &stats))
		return fail("RMEMRING_IOC_STATS");

	/* Records lost after the last one delivered leave no gap: count them. */
	total = stats.records_produced + stats.records_dropped;
	trailing = total - r.next_seq;
	printf("%llu records (%llu bytes), %llu bad; lost %llu (%llu in gaps, %llu after the last);"
	       " producer: %llu published, %llu dropped, %llu overwritten; %llu sleeps\n",
	       r.consumed, r.bytes, bad, r.lost + trailing, r.lost, trailing,
	       stats.records_produced, stats.records_dropped, stats.records_overwritten,
	       r.sleeps);
	if (bad || total != config.count || r.next_seq > total ||
	    r.consumed + r.lost + trailing != total ||
	    (!r.overwrite && r.consumed != stats.records_produced) ||
	    (r.overwrite && r.lost + trailing > stats.records_overwritten) ||
	    stats.records_consumed != r.consumed || stats.records_lost != r.lost) {
		fprintf(stderr, "rmemring-consume-c: the counts do not add up\n");
		return 1;
	}
	return 0;
}
