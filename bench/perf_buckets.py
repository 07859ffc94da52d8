#!/usr/bin/env python3
"""Buckets `perf script -F comm,tid,period,ip,sym` samples by thread and by what the
sampled frames show (leaf symbol first; deeper frames where the stack has them).

Usage: perf script -i perf.data -F comm,tid,period,ip,sym | bench/perf_buckets.py
Threads are named by role from what they run most: the tokio worker (receiver, pipeline,
exporter I/O), blocking-pool threads (gzip/encode of large batches, queue reads) and the
queue writer thread (`tracecast-queue`).
"""
import collections
import re
import sys

RULES = [  # (bucket, regex on any frame), first match wins, leaf first
    ("gzip (zlib-rs deflate + crc32)", r"zlib_rs|crc32|flate2|deflate"),
    ("fdatasync (queue writer)", r"fdatasync|do_fsync|ext4_sync_file"),
    ("protobuf decode (prost merge)", r"prost::encoding::.*merge|::merge_field|decode_varint|Message>::decode|Message::decode|from_utf8"),
    ("protobuf encode (prost encode_raw)", r"encode_raw|encoded_len|encode_varint|encode_to_vec"),
    ("drop of decoded requests", r"drop_in_place"),
    ("malloc/free (incl. counting allocator)", r"malloc|free|realloc|_int_|unlink_chunk|CountingAllocator|memalign"),
    ("memcpy/memset", r"memmove|memcpy|memset"),
    ("read/write/send/recv syscalls (kernel copies, TCP)", r"tcp_|sock_|inet_|__sys_sendto|__sys_recvfrom|sys_write|sys_read|skb|_copy_to_iter|_copy_from_iter|net_rx|loopback|__dev_queue_xmit"),
    ("scheduler / context switch / wakeups", r"finish_task_switch|__schedule|try_to_wake_up|futex|_raw_spin_unlock|schedule|ttwu|epoll|irqentry|handle_softirqs"),
    ("hyper / http parsing", r"hyper|httparse|h2::|http::"),
    ("tokio runtime", r"tokio::"),
    ("queue (format/crc/reader/writer)", r"tracecast_queue"),
]
RULES = [(b, re.compile(r)) for b, r in RULES]

samples = []
cur = None
for line in sys.stdin:
    if not line.strip():
        if cur:
            samples.append(cur)
        cur = None
        continue
    if not line.startswith(("\t", " ")) or cur is None and not line.startswith("\t"):
        parts = line.split()
        cur = {"comm": parts[0], "tid": parts[1], "frames": []}
        continue
    m = re.match(r"\s+[0-9a-f]+ (.*)", line)
    if m and cur is not None:
        cur["frames"].append(m.group(1))
if cur:
    samples.append(cur)

total = len(samples)
by_tid = collections.Counter()
buckets_by_tid = collections.defaultdict(collections.Counter)
buckets = collections.Counter()
for s in samples:
    key = f'{s["comm"]}/{s["tid"]}'
    by_tid[key] += 1
    bucket = "other"
    for f in s["frames"]:
        hit = next((b for b, r in RULES if r.search(f)), None)
        if hit:
            bucket = hit
            break
    buckets[bucket] += 1
    buckets_by_tid[key][bucket] += 1

print(f"samples: {total}")
print("\n| thread | share | top buckets |\n|---|---|---|")
for tid, n in by_tid.most_common(8):
    tops = ", ".join(f"{b} {100*c/n:.0f}%" for b, c in buckets_by_tid[tid].most_common(4))
    print(f"| {tid} | {100*n/total:.1f}% | {tops} |")
print("\n| bucket | share of samples |\n|---|---|")
for b, n in buckets.most_common():
    print(f"| {b} | {100*n/total:.1f}% |")
