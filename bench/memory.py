"""Memory: RSS and tracemalloc after N unwraps through the FFI path vs after N/100.

The path: PluginManager.unwrap on file-kek (buffers in, a plugin-allocated
buffer out and freed); one call in 100 gets a tampered blob, so the error
path (a plugin-allocated message, freed by the host) is exercised too.
A leak of even a few bytes per call shows as N * bytes: 100,000 calls
leaking 16 bytes is 1.6 MB of RSS.
"""

from __future__ import annotations

import gc
import os
import resource
import tracemalloc

from bench.results import Figure
from bench.timing import Budget
from host import errors

RSS_LIMIT_KIB = 1024        # RSS noise (allocator arenas, page granularity) stays well below
TRACED_LIMIT_BYTES = 64 * 1024


def rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * (resource.getpagesize() // 1024)


def run(env, budget: Budget) -> list[Figure]:
    manager = env.manager("fk")
    key_id = env.file_kek_config["default_key_id"]
    dek = os.urandom(32)
    blob = manager.wrap(key_id, dek)
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])

    def calls(n: int) -> None:
        for i in range(n):
            if i % 100 == 99:
                try:
                    manager.unwrap(key_id, tampered)
                except errors.CryptoError:
                    pass
                else:
                    raise AssertionError("a tampered blob unwrapped")
            elif manager.unwrap(key_id, blob) != dek:
                raise AssertionError("unwrap returned the wrong DEK")

    total = budget.memory_ops
    first = max(10, total // 100)
    tracemalloc.start()
    try:
        calls(first)
        gc.collect()
        rss0, (traced0, _) = rss_kib(), tracemalloc.get_traced_memory()
        calls(total - first)
        gc.collect()
        rss1, (traced1, _) = rss_kib(), tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss_growth, traced_growth = rss1 - rss0, traced1 - traced0
    return [
        Figure(f"memory: RSS growth {first:,} -> {total:,} FFI unwraps", rss_growth, "KiB", f"<= {RSS_LIMIT_KIB} KiB",
               rss_growth <= RSS_LIMIT_KIB, note=f"RSS {rss0:,} KiB -> {rss1:,} KiB (1% of calls fail: error path)",
               detail={"rss_kib_after_first": rss0, "rss_kib_after_total": rss1, "first": first, "total": total}),
        Figure(f"memory: tracemalloc growth {first:,} -> {total:,}", traced_growth / 1024, "KiB",
               f"<= {TRACED_LIMIT_BYTES // 1024} KiB", traced_growth <= TRACED_LIMIT_BYTES,
               note=f"Python heap traced {traced0:,} B -> {traced1:,} B",
               detail={"traced_bytes_after_first": traced0, "traced_bytes_after_total": traced1}),
    ]
