/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The rmemring producer's per-record tracepoint, for the benchmark's BPF
 * ring buffer peer: a BPF program attached with raw_tp/rmemring_record_tp
 * receives (seq, timestamp_ns, len, payload) for each record the producer
 * emits in PRODUCER_HOOK_ONLY mode.
 */
#undef TRACE_SYSTEM
#define TRACE_SYSTEM rmemring

#if !defined(_RMEMRING_TRACE_H) || defined(TRACE_HEADER_MULTI_READ)
#define _RMEMRING_TRACE_H

#include <linux/tracepoint.h>

DECLARE_TRACE(rmemring_record,
	TP_PROTO(u64 seq, u64 timestamp_ns, u32 len, const void *payload),
	TP_ARGS(seq, timestamp_ns, len, payload));

#endif /* _RMEMRING_TRACE_H */

#undef TRACE_INCLUDE_PATH
#define TRACE_INCLUDE_PATH .
#undef TRACE_INCLUDE_FILE
#define TRACE_INCLUDE_FILE rmemring_trace
#include <trace/define_trace.h>
