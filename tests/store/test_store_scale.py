"""The store at scale: every lookup the key service makes is indexed, List pages come from the
sort index, the revision watcher's query, and PostgreSQL connections pinged only when idle."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import event, text

from host.store import Store


@pytest.fixture
def store(db_url):
    s = Store.open(db_url)
    yield s
    s.close()


class Statements:
    """Statements the engine sends, as (SQL, parameters), while the block runs."""

    def __init__(self, engine):
        self.engine, self.seen = engine, []

    def _on(self, _conn, _cursor, statement, parameters, *_):
        if not statement.startswith("BEGIN"):  # SQLite's BEGIN (host.store.db) is not a query
            self.seen.append((statement, parameters))

    def __enter__(self):
        event.listen(self.engine, "before_cursor_execute", self._on)
        return self

    def __exit__(self, *exc):
        event.remove(self.engine, "before_cursor_execute", self._on)


def _plan(store, statement, parameters) -> str:
    with store.db.engine.connect() as conn:
        if store.db.backend == "sqlite":
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).fetchall()
            return "\n".join(str(r[-1]) for r in rows)
        conn.exec_driver_sql("SET enable_seqscan = off")  # tiny tables: else the planner scans anyway
        rows = conn.exec_driver_sql("EXPLAIN " + statement, parameters).fetchall()
        return "\n".join(r[0] for r in rows)


def _keys(store, n: int):
    kas = store.kas.create("https://kas.example.com", "kas1")
    return kas, [store.keys.create(kas.id, f"k{i:02d}", "ec:secp256r1", "public_key", public_key_pem="PEM")
                 for i in range(n)]


def test_key_by_kid_without_kas_is_an_index_search(store):
    _keys(store, 3)
    with Statements(store.db.engine) as st:
        assert store.keys.get_by_kid("k01").key_id == "k01"
    (statement, parameters), = st.seen
    plan = _plan(store, statement, parameters)
    assert "ix_kas_key_key_id_id" in plan, plan
    assert "SCAN kas_key" not in plan and "Seq Scan on kas_key" not in plan, plan


@pytest.mark.parametrize("sort", [None, ("created_at", "asc"), ("key_id", "desc"), ("status", "asc"),
                                  ("updated_at", "desc")])
def test_list_pages_keep_offset_semantics_in_constant_queries(store, sort):
    kas, keys = _keys(store, 23)
    store.keys.mark_rotated(keys[5].id)
    field, direction = sort or ("created_at", "desc")
    every, total = store.keys.list(limit=100, sort=sort)
    assert total == 23
    expected = sorted(every, key=lambda k: (getattr(k, field), k.id), reverse=direction == "desc")
    assert [k.id for k in every] == [k.id for k in expected]
    counts, pages = [], []
    for offset in (0, 7, 14, 21, 23):
        with Statements(store.db.engine) as st:
            page, _ = store.keys.list(limit=7, offset=offset, sort=sort)
        counts.append(len(st.seen))
        pages.append([k.id for k in page])
    assert sum(pages, []) == [k.id for k in expected]
    assert counts[:4] == [3, 3, 3, 3]  # count, the page's ids, its rows: whatever the offset
    assert store.keys.list(limit=7, offset=7, kas_id=kas.id, sort=sort)[0][0].id == expected[7].id


def _skipped(parameters) -> int:
    """The OFFSET of a page query (its last bound parameter, after LIMIT, on both backends)."""
    values = list(parameters.values()) if isinstance(parameters, dict) else list(parameters)
    return values[-1]


def test_no_page_skips_more_than_half_the_rows(store):
    _keys(store, 23)
    every, _ = store.keys.list(limit=100)
    skips = {}
    for offset in range(0, 24):
        with Statements(store.db.engine) as st:
            page, total = store.keys.list(limit=5, offset=offset)
        assert [k.id for k in page] == [k.id for k in every[offset:offset + 5]], offset
        if page:
            count, ids, rows = st.seen
            skips[offset] = _skipped(ids[1])
        else:
            assert len(st.seen) == 1  # past the end: the count says so, no page query
    assert max(skips.values()) <= 23 // 2, skips
    assert skips[0] == 0 and skips[18] == 0 and skips[22] == 0  # first and last pages skip nothing


@pytest.mark.parametrize("sort", [None, ("created_at", "asc"), ("key_id", "desc"), ("status", "asc"),
                                  ("updated_at", "desc")])
def test_iterate_walks_every_key_in_list_order_without_offset(store, sort):
    kas, keys = _keys(store, 23)
    for k in keys[3:9]:
        store.keys.mark_rotated(k.id)  # ties on status: the id breaks them
    every, _ = store.keys.list(limit=100, sort=sort)
    with Statements(store.db.engine) as st:
        walked = list(store.keys.iterate(sort=sort, batch=4))
    assert [k.id for k in walked] == [k.id for k in every]
    assert len(st.seen) == 2 * 6  # ids then rows, for 6 batches (4 x 5 and 3)
    assert all("OFFSET" not in q.upper() or _skipped(p) == 0 for q, p in st.seen[::2])  # nothing skipped
    assert [k.id for k in store.keys.iterate(kas_id=kas.id, status="rotated", sort=sort, batch=2)] == \
        [k.id for k in every if k.status == "rotated"]


def test_a_keyset_batch_is_an_index_range(store):
    _keys(store, 9)
    walk = store.keys.iterate(batch=4)
    for _ in range(5):
        next(walk)  # into the second batch
    with Statements(store.db.engine) as st:
        for _ in walk:
            pass
    (ids, parameters), *_ = st.seen
    plan = _plan(store, ids, parameters)
    assert "ix_kas_key_created_at_id" in plan, plan
    assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan


def test_a_kas_page_walks_the_kas_index(store):
    kas, _ = _keys(store, 9)
    other = store.kas.create("https://other.example.com", "kas2")
    store.keys.create(other.id, "o", "ec:secp256r1", "public_key", public_key_pem="PEM")
    for offset in (0, 7):  # from the front, and from the end
        with Statements(store.db.engine) as st:
            page, total = store.keys.list(kas_id=kas.id, limit=2, offset=offset)
        assert total == 9 and len(page) == 2 and {k.kas_id for k in page} == {kas.id}
        _, (ids, parameters), _ = st.seen
        plan = _plan(store, ids, parameters)
        assert "ix_kas_key_kas_id_created_at_id" in plan, plan
        assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan


def test_changed_since_names_only_configs_updated_since(store):
    a = store.providers.create("a", "file-kek", "{}")
    b = store.providers.create("b", "file-kek", "{}")
    since = dt.datetime.now(dt.timezone.utc)
    assert store.providers.changed_since(since) == {}
    store.providers.update(b.id, config_json='{"x": 1}')
    assert store.providers.changed_since(since) == {b.id: 2}
    assert set(store.providers.changed_since(since - dt.timedelta(minutes=1))) == {a.id, b.id}


def test_dead_pooled_connection_is_replaced_after_idle(pg_db_url, pg_server, monkeypatch):
    import psycopg

    from host.store import db as dbmod

    monkeypatch.setattr(dbmod, "PING_IDLE_SECONDS", 0.0)
    store = Store.open(pg_db_url)
    try:
        with store.db.session() as s:
            pid = s.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with psycopg.connect(pg_server, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with store.db.session() as s:  # the pooled connection is dead: the idle ping replaces it
            assert s.execute(text("SELECT pg_backend_pid()")).scalar_one() != pid
    finally:
        store.close()
