"""Provider mode, cold vs warm: the first unwrap after the private-key cache
entry is gone pays the manager's unwrap (file-kek) and the PEM parse of the
KAS private key; every later one within the TTL is a cache hit.

Then a short-TTL run shows the cache doing its job: at full speed for a
while, the manager is asked about once per key per TTL.

Under concurrency (bench/slow_manager.py: a KMS with a fixed 20 ms per unwrap that counts
its calls; CLIENTS threads unwrapping one P-256 provider key through the key service), rounds
of three phases, interleaved:
  warm     TTL 30 s, nothing expires: the baseline p99;
  expiry   the cached entry dropped every EXPIRY_EVERY (a cold unwrap per drop): manager
           calls per expiry (single flight: 1, not CLIENTS) and the p99 that one cold
           unwrap costs when nothing refreshes ahead;
  TTL      a short TTL running out again and again under steady traffic: refresh-ahead
           reloads the key before each end, so the p99 stays the warm one.
"""

from __future__ import annotations

import json
import os
import secrets
import statistics
import threading
import time

from bench.results import Figure
from bench.timing import Budget, per_call_seconds
from bench.unwrap import client_wrap

ALGORITHMS = ("rsa:2048", "ec:secp256r1")
SHORT_TTL = 0.2
CLIENTS = 16
KMS_LATENCY_MS = 20
EXPIRY_EVERY = 0.1      # seconds between dropped entries in the expiry phase
TTL_PHASE_TTL = 1.0     # seconds: the short TTL of the TTL phase (refresh-ahead from 80% of it: 200 ms)
P99_TARGET = 1.5        # TTL phase p99 / warm p99


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
    figures += _concurrency(env, budget)
    return figures


# ---- cold keys under concurrency -------------------------------------------------------
def _p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def _drive(unwrap, seconds: float, every: float | None = None, expire=None) -> list[float]:
    """CLIENTS threads calling unwrap() for `seconds`; expire() every `every` seconds meanwhile.
    The latency of every call, in seconds."""
    stop = threading.Event()
    start = threading.Barrier(CLIENTS + 1)
    latencies: list[list[float]] = [[] for _ in range(CLIENTS)]
    errors: list[BaseException] = []

    def client(out: list[float]) -> None:
        start.wait()
        clock = time.perf_counter
        try:
            while not stop.is_set():
                t0 = clock()
                unwrap()
                out.append(clock() - t0)
        except BaseException as e:  # a failing call fails the bench
            errors.append(e)

    threads = [threading.Thread(target=client, args=(out,), daemon=True) for out in latencies]
    for t in threads:
        t.start()
    start.wait()
    t_end = time.perf_counter() + seconds
    while (left := t_end - time.perf_counter()) > 0:
        time.sleep(min(left, every or left))
        if expire is not None and left > (every or 0):
            expire()
    stop.set()
    for t in threads:
        t.join(30)
    if errors:
        raise errors[0]
    return [x for out in latencies for x in out]


def _concurrency(env, budget: Budget) -> list[Figure]:
    from bench.slow_manager import NAME, CallCounter, factory
    from host.service import KeyService

    counter = CallCounter()
    env.platform.registry.register(factory(counter))
    pc = env.platform.store.providers.create(
        "slow-kms", NAME, json.dumps({"kek": secrets.token_hex(32), "latency_ms": KMS_LATENCY_MS})).id
    key = env.keys.create_key(None, "cold-concurrent", "ec:secp256r1", "provider", provider_config_id=pc)
    dek = os.urandom(32)
    wrapped, eph = client_wrap(key.public_key_pem, key.algorithm, dek)

    def service(ttl: float):
        s = KeyService(env.platform.store, env.platform.registry, root_key=env.platform.root_key, private_key_ttl=ttl)
        assert s.unwrap(key.key_id, wrapped, eph) == dek
        return s

    warm, ttl_svc = service(30.0), service(TTL_PHASE_TTL)
    phase = 2 * budget.thread_seconds
    rounds = []
    for r in range(max(2, budget.rounds - 2)):
        got = {}
        order = ["warm", "expiry", "ttl"]
        for name in order[r % 3:] + order[:r % 3]:
            calls = counter.unwraps
            if name == "warm":
                lat = _drive(lambda: warm.unwrap(key.key_id, wrapped, eph), phase)
                got[name] = {"p99": _p99(lat), "max": max(lat), "calls": counter.unwraps - calls, "n": len(lat)}
            elif name == "expiry":
                expiries = [0]

                def expire():
                    warm.unwrap_path.private_keys.pop(key.id)
                    expiries[0] += 1

                lat = _drive(lambda: warm.unwrap(key.key_id, wrapped, eph), phase, EXPIRY_EVERY, expire)
                warm.unwrap(key.key_id, wrapped, eph)  # the last drop's load, if no client made it
                got[name] = {"p99": _p99(lat), "max": max(lat), "calls": counter.unwraps - calls, "expiries": expiries[0],
                             "n": len(lat)}
            else:
                ttl_svc.unwrap(key.key_id, wrapped, eph)  # idle since its last phase: load it first
                calls, misses = counter.unwraps, ttl_svc.unwrap_path.private_keys.misses
                lat = _drive(lambda: ttl_svc.unwrap(key.key_id, wrapped, eph), 2 * phase)  # 2+ TTL ends
                got[name] = {"p99": _p99(lat), "max": max(lat), "calls": counter.unwraps - calls, "n": len(lat),
                             "misses": ttl_svc.unwrap_path.private_keys.misses - misses,
                             "refresh_failures": ttl_svc.unwrap_path.refresh_failures}
        rounds.append(got)
    warm.close()
    ttl_svc.close()

    def med(fn):
        return statistics.median(fn(g) for g in rounds)

    per_expiry = med(lambda g: g["expiry"]["calls"] / max(1, g["expiry"]["expiries"]))
    warm_p99 = med(lambda g: g["warm"]["p99"])
    expiry_ratio = med(lambda g: g["expiry"]["p99"] / g["warm"]["p99"])
    ttl_ratio = med(lambda g: g["ttl"]["p99"] / g["warm"]["p99"])
    ttl_calls = med(lambda g: g["ttl"]["calls"])
    ttl_misses = sum(g["ttl"]["misses"] for g in rounds)
    detail = {"rounds": rounds, "clients": CLIENTS, "kms_latency_ms": KMS_LATENCY_MS, "phase_seconds": phase}
    return [
        Figure(f"cold key, {CLIENTS} clients: manager calls per expiry", per_expiry, "calls", "<= 1",
               per_expiry <= 1.0,
               note=f"{KMS_LATENCY_MS} ms KMS, entry dropped every {EXPIRY_EVERY * 1e3:.0f} ms under {CLIENTS} "
                    f"threads of KeyService.unwrap (single flight; without it up to {CLIENTS})",
               detail=detail),
        Figure(f"cold key, {CLIENTS} clients: p99 across an expiry", expiry_ratio, "x warm p99",
               note=f"one cold unwrap per drop, no refresh ahead: p99 "
                    f"{med(lambda g: g['expiry']['p99']) * 1e3:.2f} ms vs warm {warm_p99 * 1e3:.2f} ms (16 threads "
                    f"share the GIL); slowest call {med(lambda g: g['expiry']['max']) * 1e3:.1f} ms vs warm "
                    f"{med(lambda g: g['warm']['max']) * 1e3:.1f} ms"),
        Figure(f"hot key, {CLIENTS} clients: p99 across TTL ends", ttl_ratio, "x warm p99", f"<= {P99_TARGET:g}",
               ttl_ratio <= P99_TARGET,
               note=f"TTL {TTL_PHASE_TTL:g}s running out under steady traffic: refreshed ahead "
                    f"({ttl_calls:.0f} manager calls per {2 * phase:g}s phase, {ttl_misses} cache misses in all "
                    f"rounds); p99 {med(lambda g: g['ttl']['p99']) * 1e3:.2f} ms vs warm {warm_p99 * 1e3:.2f} ms"),
    ]
