"""Many keys, many provider configs, deep List pages -- on SQLite and on PostgreSQL.

- keys K:  warm local-mode ec:secp256r1 unwraps, round-robin over K keys, through
           UnwrapPath.unwrap(kid, .., kas_id) (the lookup Rewrap makes), as a ratio
           to K = 10 in the same database and run (paired, interleaved rounds).
           Every K shares one table of max(K) rows; the rows share one private key
           (what is measured is the caches and the lookups, not the curve), each row
           still its own lookup and its own parsed private key. Also KeyService.unwrap(kid)
           with no KAS named (the facade the CLI uses) at the largest K.
- configs P: revision-check queries per second, P provider configs with one
           provider-mode key each, every key in use (round-robin for a few check periods);
           queries on provider_config alone (not the key lookups) are counted.
- ListKeys: KeyService.list_keys page 1 vs the last and the middle page of 100 at 20,000 keys.

Targets (issue 21): K = 100,000 >= 0.8x of K = 10; revision queries/s within 2x
from P = 1 to 10,000; last page within 2x of the first.

    BENCH_SCALE_KEYS=10,1000,1025,5000   BENCH_SCALE_CONFIGS=1,1000   BENCH_SCALE_DBS=sqlite
    BENCH_PG_URL (default PLATFORM_TEST_PG_URL): the PostgreSQL server; unreachable -> SQLite only.
"""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import json
import os
import time
import uuid

from bench.results import Figure
from bench.timing import Budget, paired
from bench.unwrap import client_wrap

KEYS = (10, 1_000, 5_000, 20_000, 100_000)
CONFIGS = (1, 1_000, 10_000)
LIST_KEYS = 20_000
PAGE = 100
SMOKE_KEYS = (10, 200)
SMOKE_CONFIGS = (1, 50)
ALGORITHM = "ec:secp256r1"


def _ints(name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    raw = os.environ.get(name, "").strip()
    return tuple(int(x) for x in raw.split(",") if x.strip()) if raw else default


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _Database:
    """A fresh database for one backend: SQLite file under the workdir, or a new PostgreSQL database."""

    def __init__(self, env, backend: str):
        self.backend, self._pg = backend, None
        if backend == "sqlite":
            self.url = f"sqlite:///{env.workdir / f'scale-{uuid.uuid4().hex[:8]}.db'}"
            return
        import psycopg
        from sqlalchemy.engine import make_url

        base = make_url(os.environ.get("BENCH_PG_URL") or os.environ.get("PLATFORM_TEST_PG_URL") or "")
        self._admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
        self._name = f"kas_scale_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(self._admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{self._name}"')
        self._pg = psycopg
        self.url = base.set(drivername="postgresql+psycopg", database=self._name).render_as_string(
            hide_password=False)

    def drop(self) -> None:
        if self._pg is not None:
            with self._pg.connect(self._admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self._name}" WITH (FORCE)')


def _backends() -> list[str]:
    wanted = [b.strip() for b in os.environ.get("BENCH_SCALE_DBS", "sqlite,postgres").split(",") if b.strip()]
    out = []
    for b in wanted:
        if b == "postgres":
            url = os.environ.get("BENCH_PG_URL") or os.environ.get("PLATFORM_TEST_PG_URL")
            if not url:
                print("bench: scale: no BENCH_PG_URL / PLATFORM_TEST_PG_URL: PostgreSQL skipped", flush=True)
                continue
            try:
                import psycopg
                from sqlalchemy.engine import make_url

                admin = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
                psycopg.connect(admin, connect_timeout=3).close()
            except Exception as e:  # noqa: BLE001 - reported, the SQLite half still runs
                print(f"bench: scale: PostgreSQL unreachable ({type(e).__name__}): skipped", flush=True)
                continue
        out.append(b)
    return out


def _insert_keys(store, kas_id: str, start: int, stop: int, pem_pub: str, ctx: dict,
                 mode: str = "local", configs: list[str] | None = None) -> None:
    """Rows k{start}..k{stop-1} in bulk (the service's create path costs ~2 ms a key)."""
    from sqlalchemy import insert

    from host.store.models import KasKeyRow

    t0 = dt.datetime.now(dt.timezone.utc)
    rows = [{"id": str(uuid.uuid4()), "key_id": f"k{i}", "kas_id": kas_id, "algorithm": ALGORITHM,
             "status": "active", "mode": mode, "public_key_pem": pem_pub, "private_key_ctx": ctx,
             "provider_config_id": None if configs is None else configs[i - start], "labels": {},
             "created_at": t0 + dt.timedelta(microseconds=i), "updated_at": t0, "rotated_at": None,
             "legacy": False} for i in range(start, stop)]
    with store.db.engine.begin() as conn:
        for i in range(0, len(rows), 5000):
            conn.execute(insert(KasKeyRow.__table__), rows[i:i + 5000])


def _insert_configs(store, n: int, manager: str, config: dict) -> list[str]:
    from sqlalchemy import insert

    from host.store.models import ProviderConfigRow

    codec = store._codec  # the store's own sealing (root key), as the repository would
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)  # outside the watch window
    raw = json.dumps(config).encode()
    rows = []
    for i in range(n):
        cid = str(uuid.uuid4())
        blob, encrypted = codec.seal(cid, raw)
        rows.append({"id": cid, "name": f"cfg-{uuid.uuid4().hex[:12]}", "manager": manager, "config_json": blob,
                     "config_encrypted": encrypted, "labels": {}, "created_at": now, "updated_at": now,
                     "revision": 1})
    with store.db.engine.begin() as conn:
        for i in range(0, n, 5000):
            conn.execute(insert(ProviderConfigRow.__table__), rows[i:i + 5000])
    return [r["id"] for r in rows]


def _service(env, store):
    from host.service import KeyService

    return KeyService(store, env.platform.registry, root_key=env.platform.root_key)


def _keys_and_list(env, backend: str, budget: Budget, ks: tuple[int, ...]) -> list[Figure]:
    from host import crypto
    from host.store import Store

    figures = []
    db = _Database(env, backend)
    store = Store.open(db.url, root_key=env.platform.root_key)
    try:
        kas = store.kas.create("https://kas.scale.example", "kas-scale")
        private = crypto.generate_private_key(ALGORITHM)
        pub = crypto.public_pem(private)
        ctx = {"key_id": "root", "wrapped_key": base64.b64encode(
            env.platform.root_key.encrypt(crypto.private_pem(private))).decode()}
        dek = os.urandom(32)
        wrapped, eph = client_wrap(pub, ALGORITHM, dek)
        largest = max(ks)
        list_at = LIST_KEYS if not budget.smoke else min(largest, 1_000)
        _insert_keys(store, kas.id, 0, min(list_at, largest), pub, ctx)

        # ListKeys, first vs last page, with exactly list_at keys
        if largest >= list_at:
            service = _service(env, store)
            last = list_at - PAGE
            first_page = lambda: service.list_keys(limit=PAGE, offset=0)  # noqa: E731
            last_page = lambda: service.list_keys(limit=PAGE, offset=last)  # noqa: E731
            assert len(last_page()[0]) == PAGE
            p = paired(first_page, last_page, budget)
            figures.append(Figure.ratio(
                f"{backend}: ListKeys last page / first", p.ratio, "x first page", 0.5,
                note=f"{list_at:,} keys, {PAGE} a page: first {1e3 / p.baseline_rate:.1f} ms, "
                     f"offset {last:,} {1e3 / p.subject_rate:.1f} ms (CPU of this thread)", **p.detail()))
            # the worst offset: deep pages are taken from the end, so the middle skips the most
            middle = list_at // 2
            p = paired(first_page, lambda: service.list_keys(limit=PAGE, offset=middle), budget)
            figures.append(Figure.ratio(
                f"{backend}: ListKeys middle page / first", p.ratio, "x first page", 0.5,
                note=f"offset {middle:,}: {1e3 / p.subject_rate:.1f} ms vs {1e3 / p.baseline_rate:.1f} ms",
                **p.detail()))
            service.close()
        if largest > list_at:
            _insert_keys(store, kas.id, list_at, largest, pub, ctx)

        service = _service(env, store)
        path = service.unwrap_path
        rss0 = _rss()
        t0 = time.perf_counter()
        for i in range(largest):  # warm: every key looked up and its private key parsed once
            assert path.unwrap(f"k{i}", wrapped, eph, kas.id) == dek
        warm_s = time.perf_counter() - t0
        per_key = (_rss() - rss0) / largest
        small = min(ks)

        def cycle(k: int, kas_id: str | None = kas.id, fn=path.unwrap):
            kids = itertools.cycle([f"k{i}" for i in range(k)])
            return lambda: fn(next(kids), wrapped, eph, kas_id)

        for k in ks:
            if k == small:
                continue
            p = paired(cycle(small), cycle(k), budget)
            figures.append(Figure.ratio(
                f"{backend}: warm unwrap K={k:,} / K={small}", p.ratio, f"x K={small}",
                0.8 if k >= 100_000 else None,
                note=f"{ALGORITHM} local, round-robin: {p.subject_rate:,.0f}/s vs {p.baseline_rate:,.0f}/s per CPU-s",
                **p.detail()))
        for i in range(largest):  # the facade's first lookup of a kid with no KAS asks the store once
            service.unwrap(f"k{i}", wrapped, eph)
        p = paired(cycle(small, None, service.unwrap), cycle(largest, None, service.unwrap), budget)
        figures.append(Figure.ratio(
            f"{backend}: KeyService.unwrap(kid) K={largest:,} / K={small}", p.ratio, f"x K={small}", None,
            note=f"no KAS named (get_by_kid(kid, None)): {p.subject_rate:,.0f}/s vs {p.baseline_rate:,.0f}/s",
            **p.detail()))
        stats = path.stats()
        figures.append(Figure(f"{backend}: memory per cached key", per_key, "bytes",
                              note=f"RSS growth over the warm pass of {largest:,} keys ({warm_s:.1f}s); "
                                   f"lookup cache {stats['key_cache']['entries']:,} / "
                                   f"{stats['key_cache']['max_entries']:,}",
                              detail={"warm_seconds": round(warm_s, 2), "keys": largest}))
        service.close()
    finally:
        store.close()
        db.drop()
    return figures


def _revision_queries(env, backend: str, budget: Budget, ps: tuple[int, ...]) -> list[Figure]:
    from sqlalchemy import event

    from host import crypto
    from host.store import Store

    figures, rates = [], {}
    for p_count in ps:
        db = _Database(env, backend)
        store = Store.open(db.url, root_key=env.platform.root_key)
        try:
            kas = store.kas.create("https://kas.scale.example", "kas-scale")
            configs = _insert_configs(store, p_count, "file-kek", env.file_kek_config)
            private = crypto.generate_private_key(ALGORITHM)
            pub = crypto.public_pem(private)
            wrapped_key = env.manager("fk").wrap("a", crypto.private_pem(private))  # same KEK in every config
            ctx = {"key_id": "a", "wrapped_key": base64.b64encode(wrapped_key).decode()}
            _insert_keys(store, kas.id, 0, p_count, pub, ctx, mode="provider", configs=configs)
            dek = os.urandom(32)
            wrapped, eph = client_wrap(pub, ALGORITHM, dek)
            service = _service(env, store)
            path = service.unwrap_path
            for i in range(p_count):
                assert path.unwrap(f"k{i}", wrapped, eph, kas.id) == dek
            counted = [0]

            def on_execute(_conn, _cursor, statement, *_a):
                low = statement.lower()
                if "from provider_config" in low and "kas_key" not in low:
                    counted[0] += 1

            event.listen(store.db.engine, "before_cursor_execute", on_execute)
            period = path.revision_check_seconds
            window = (3 if not budget.smoke else 1) * period
            kids = itertools.cycle([f"k{i}" for i in range(p_count)])
            calls, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < window:
                path.unwrap(next(kids), wrapped, eph, kas.id)
                calls += 1
            elapsed = time.perf_counter() - t0
            event.remove(store.db.engine, "before_cursor_execute", on_execute)
            rates[p_count] = (counted[0] / elapsed, calls / elapsed)
            service.close()
        finally:
            store.close()
            db.drop()
    small = min(ps)
    q0 = rates[small][0]
    for p_count in ps:
        q, r = rates[p_count]
        if p_count == small:
            figures.append(Figure(f"{backend}: revision queries/s P={p_count:,}", q, "/s",
                                  note=f"{r:,.0f} provider-mode unwraps/s over the window"))
            continue
        ratio = q / q0 if q0 else float("inf")
        figures.append(Figure(f"{backend}: revision queries/s P={p_count:,} / P={small}", ratio, f"x P={small}",
                              "<= 2", ratio <= 2,
                              note=f"{q:,.2f} vs {q0:,.2f} queries/s; {r:,.0f} unwraps/s over {p_count:,} keys",
                              detail={"queries_per_s": round(q, 3), "unwraps_per_s": round(r, 1)}))
    return figures


def run(env, budget: Budget) -> list[Figure]:
    ks = _ints("BENCH_SCALE_KEYS", SMOKE_KEYS if budget.smoke else KEYS)
    ps = _ints("BENCH_SCALE_CONFIGS", SMOKE_CONFIGS if budget.smoke else CONFIGS)
    figures = []
    for backend in _backends():
        print(f"bench: scale: {backend} keys {ks}", flush=True)
        figures += _keys_and_list(env, backend, budget, ks)
        print(f"bench: scale: {backend} configs {ps}", flush=True)
        figures += _revision_queries(env, backend, budget, ps)
    return figures
