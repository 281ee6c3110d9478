"""Cold provider keys under concurrency: one manager call per expiry (single flight), and hot
keys reloaded in the background before their TTL ends (refresh-ahead).

The manager is bench/slow_manager.py: real AES-GCM wrap/unwrap with a fixed latency, counting
its calls. Nothing here asserts a duration; waits are computed from the TTL and bounded.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time

import pytest

from bench.slow_manager import NAME, CallCounter, factory
from host import crypto, errors
from host.service.unwrap import REFRESH_AHEAD
from tests.service.conftest import make_platform

CLIENTS = 16
BOUND = 30.0  # seconds: the longest any wait below may take before the test gives up


def _platform(db, ttl: float, latency_ms: int):
    counter = CallCounter()
    p = make_platform(db, private_key_ttl=ttl)
    p.registry.register(factory(counter))
    p.store.kas.create("https://kas.example.com", "kas1")
    pc = p.store.providers.create("kms", NAME, json.dumps({"kek": secrets.token_hex(32), "latency_ms": latency_ms}))
    key = p.keys.create_key(None, "cold", "ec:secp256r1", "provider", provider_config_id=pc.id)
    return p, counter, key


def _wrapped(key):
    dek = os.urandom(32)
    wrapped, eph = crypto.ec_wrap(crypto.load_public_pem(key.public_key_pem, key.algorithm), dek)
    return dek, wrapped, eph


def _concurrently(fn, n: int) -> list:
    """fn() from n threads released together; each thread's result or exception."""
    start = threading.Barrier(n)
    out: list = [None] * n

    def run(i):
        start.wait()
        try:
            out[i] = fn()
        except Exception as e:
            out[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(BOUND)
    assert not any(t.is_alive() for t in threads)
    return out


def _sleep_until(instant: float) -> None:
    while (left := instant - time.monotonic()) > 0:
        time.sleep(left)


def _wait_for(predicate) -> None:
    deadline = time.monotonic() + BOUND
    while not predicate():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.01)


@pytest.fixture
def cold(sqlite_db_url, root_key_hex):
    p, counter, key = _platform(sqlite_db_url, ttl=30.0, latency_ms=200)
    yield p, counter, key
    p.close()


def test_concurrent_misses_cause_one_manager_call(cold):
    p, counter, key = cold
    dek, wrapped, eph = _wrapped(key)
    for _ in range(3):  # three expiries
        p.keys.unwrap_path.private_keys.pop(key.id)
        before = counter.unwraps
        got = _concurrently(lambda: p.keys.unwrap(key.key_id, wrapped, eph), CLIENTS)
        assert got == [dek] * CLIENTS
        assert counter.unwraps - before == 1
    assert counter.max_in_flight == 1


def test_every_waiter_gets_the_one_failure(cold):
    p, counter, key = cold
    dek, wrapped, eph = _wrapped(key)
    p.keys.unwrap_path.private_keys.pop(key.id)
    counter.fail = True
    got = _concurrently(lambda: p.keys.unwrap(key.key_id, wrapped, eph), CLIENTS)
    assert all(isinstance(e, errors.Unavailable) for e in got), got
    assert counter.max_in_flight == 1  # never two loads of one key at once
    counter.fail = False
    assert p.keys.unwrap(key.key_id, wrapped, eph) == dek  # a failed load is not cached


def test_a_waiter_past_its_deadline_gives_up(cold):
    from host.managers.base import CallContext

    p, counter, key = cold
    _, wrapped, eph = _wrapped(key)
    p.keys.unwrap_path.private_keys.pop(key.id)
    leader = threading.Thread(target=p.keys.unwrap, args=(key.key_id, wrapped, eph))
    leader.start()
    _wait_for(lambda: counter.in_flight == 1)
    with pytest.raises(errors.DeadlineExceeded, match="still being loaded"):
        p.keys.unwrap(key.key_id, wrapped, eph, ctx=CallContext(deadline=time.monotonic()))
    leader.join(BOUND)
    assert counter.in_flight == 0


def test_hot_key_is_refreshed_before_its_ttl_ends(sqlite_db_url, root_key_hex):
    ttl = 3.0
    p, counter, key = _platform(sqlite_db_url, ttl=ttl, latency_ms=20)
    path = p.keys.unwrap_path
    try:
        dek, wrapped, eph = _wrapped(key)
        path.private_keys.pop(key.id)
        assert p.keys.unwrap(key.key_id, wrapped, eph) == dek
        loaded = time.monotonic()  # the entry was cached before this instant
        calls = counter.unwraps
        _sleep_until(loaded + ttl * (1 - REFRESH_AHEAD))
        misses = path.private_keys.misses
        assert p.keys.unwrap(key.key_id, wrapped, eph) == dek  # served from the cache, starts the refresh
        assert path.private_keys.misses == misses
        _wait_for(lambda: path.refreshes == 1)
        assert counter.unwraps == calls + 1
        _sleep_until(loaded + ttl)  # the first entry has expired by now; the refreshed one serves
        assert p.keys.unwrap(key.key_id, wrapped, eph) == dek
        assert path.private_keys.misses == misses and counter.unwraps == calls + 1
        assert path.stats()["private_key_cache"]["refreshes"] == 1
    finally:
        p.close()


def test_failed_refresh_does_not_extend_the_ttl(sqlite_db_url, root_key_hex):
    ttl = 3.0
    p, counter, key = _platform(sqlite_db_url, ttl=ttl, latency_ms=20)
    path = p.keys.unwrap_path
    try:
        dek, wrapped, eph = _wrapped(key)
        path.private_keys.pop(key.id)
        assert p.keys.unwrap(key.key_id, wrapped, eph) == dek
        loaded_after = time.monotonic()  # the entry expires no later than loaded_after + ttl
        _sleep_until(loaded_after + ttl * (1 - REFRESH_AHEAD))
        counter.fail = True  # the KMS now refuses: the key must stop working when its TTL ends
        assert p.keys.unwrap(key.key_id, wrapped, eph) == dek
        _wait_for(lambda: path.refresh_failures == 1)
        _sleep_until(loaded_after + ttl)
        with pytest.raises(errors.Unavailable):
            p.keys.unwrap(key.key_id, wrapped, eph)
    finally:
        p.close()
