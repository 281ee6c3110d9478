"""Two processes racing on the same database (SQLite file and PostgreSQL)."""

from __future__ import annotations

import multiprocessing as mp
import queue
import time

from host.store import Store

ROUNDS = 8
WORKERS = 2
WAIT_SECONDS = 120  # for the whole race, not per result


def _worker(url: str, barrier, results, worker: int) -> None:
    try:
        barrier.wait(timeout=WAIT_SECONDS)
        store = Store.open(url)  # both open an empty database at once: schema created exactly once
        try:
            for i in range(ROUNDS):
                barrier.wait(timeout=WAIT_SECONDS)  # start each create at the same moment
                try:
                    cfg = store.providers.create(f"race-{i}", "aws-kms", f'{{"worker": {worker}}}'.encode())
                    results.put((i, worker, "created", cfg.id))
                except Exception as e:  # report the class; the parent asserts on it
                    results.put((i, worker, type(e).__name__, getattr(e, "message", str(e))))
        finally:
            store.close()
    except Exception as e:
        results.put((-1, worker, type(e).__name__, str(e)))


def _race(url: str) -> None:
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(WORKERS), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(url, barrier, results, w)) for w in range(WORKERS)]
    for p in procs:
        p.start()
    outcomes = []
    try:
        deadline = time.monotonic() + WAIT_SECONDS  # one bound for every result together
        while len(outcomes) < ROUNDS * WORKERS and (left := deadline - time.monotonic()) > 0:
            try:
                outcomes.append(results.get(timeout=min(left, 1.0)))
            except queue.Empty:
                if not any(p.is_alive() for p in procs):
                    break  # nobody left to answer
                continue
            if outcomes[-1][0] < 0:
                break  # a worker failed outside a round: its partner would only wait at the barrier
        assert all(o[0] >= 0 for o in outcomes) and len(outcomes) == ROUNDS * WORKERS, outcomes
        for p in procs:
            p.join(timeout=60)
            assert p.exitcode == 0
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(timeout=10)
    store = Store.open(url)
    try:
        items, total = store.providers.list(limit=1000)
        assert total == ROUNDS
        by_name = {c.name: c for c in items}
        for i in range(ROUNDS):
            kinds = sorted(o[2] for o in outcomes if o[0] == i)
            assert kinds == ["AlreadyExists", "created"], (i, outcomes)
            winner = next(o for o in outcomes if o[0] == i and o[2] == "created")
            stored = by_name[f"race-{i}"]
            assert stored.id == winner[3]
            assert stored.config_json == f'{{"worker": {winner[1]}}}'.encode()  # the winner's row, whole
    finally:
        store.close()


def test_concurrent_create_sqlite(sqlite_db_url):
    _race(sqlite_db_url)


def test_concurrent_create_postgres(pg_db_url):
    _race(pg_db_url)
