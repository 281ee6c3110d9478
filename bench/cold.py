"""Provider mode, cold vs warm: the first unwrap after the private-key cache
entry is gone pays the manager's unwrap (file-kek) and the PEM parse of the
KAS private key; every later one within the TTL is a cache hit.

Then a short-TTL run shows the cache doing its job: at full speed for a
while, the manager is asked about once per key per TTL.
"""

from __future__ import annotations

import os
import statistics
import time

from bench.results import Figure
from bench.timing import Budget, per_call_seconds
from bench.unwrap import client_wrap

ALGORITHMS = ("rsa:2048", "ec:secp256r1")
SHORT_TTL = 0.2


def _cold_seconds(service, key, wrapped, eph, rounds: int) -> float:
    cache = service.unwrap_path.private_keys
    samples = []
    for _ in range(rounds):
        cache.pop(key.id)
        t0 = time.thread_time()
        service.unwrap(key.key_id, wrapped, eph)
        samples.append(time.thread_time() - t0)
    return statistics.median(samples)


def run(env, budget: Budget) -> list[Figure]:
    from host.service import KeyService

    figures = []
    for algorithm in ALGORITHMS:
        key, _ = env.key(algorithm, "provider", "fk", key_id=f"cold-{algorithm}")
        dek = os.urandom(32)
        wrapped, eph = client_wrap(key.public_key_pem, algorithm, dek)
        service = env.keys
        assert service.unwrap(key.key_id, wrapped, eph) == dek
        cold = _cold_seconds(service, key, wrapped, eph, max(5, budget.rounds * 3))
        warm = per_call_seconds(lambda: service.unwrap(key.key_id, wrapped, eph), budget)
        figures.append(Figure(f"provider {algorithm} cold", cold / warm, "x warm",
                              note=f"cold {cold * 1e6:,.0f}us (file-kek unwrap + private key parse) vs "
                                   f"warm {warm * 1e6:,.0f}us per call (CPU)",
                              detail={"cold_us": round(cold * 1e6, 1), "warm_us": round(warm * 1e6, 1)}))

    # A service of its own with a short TTL, driven at full speed.
    service = KeyService(env.platform.store, env.platform.registry, root_key=env.platform.root_key,
                         private_key_ttl=SHORT_TTL)
    key = env.keys.get_key(key_id="cold-ec:secp256r1")
    dek = os.urandom(32)
    wrapped, eph = client_wrap(key.public_key_pem, key.algorithm, dek)
    seconds = 10 * budget.sample_seconds
    t_end = time.perf_counter() + seconds
    calls = 0
    while time.perf_counter() < t_end:
        service.unwrap(key.key_id, wrapped, eph)
        calls += 1
    stats = service.stats()
    cache = stats["private_key_cache"]
    manager_unwraps = sum(c["count"] for c in stats["manager_calls"] if c["manager"] == "file-kek")
    figures.append(Figure(
        "provider cache hit ratio", cache["hit_ratio"], "ratio",
        note=f"{calls:,} unwraps in {seconds:.1f}s with TTL {SHORT_TTL}s: {manager_unwraps} file-kek unwraps "
             f"(one per TTL); default TTL 30s",
        detail={"unwraps": calls, "seconds": seconds, "ttl_seconds": SHORT_TTL,
                "manager_unwraps": manager_unwraps, **cache}))
    return figures
