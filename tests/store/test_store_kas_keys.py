"""KAS registry and KAS keys, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from host.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound

MISSING_ID = "6b1f4c5e-0000-4000-8000-000000000000"
CTX = {"key_id": "arn:aws:kms:us-east-1:111122223333:key/abc", "wrapped_key": "c2VjcmV0LXdyYXBwZWQ="}


def test_kas_create_get_list(store):
    a = store.kas.create("https://kas-a.example.com", "kas-a", {"region": "eu"})
    b = store.kas.create("http://localhost:8080/kas", "kas-b")
    for ref in (a.id, a.id.upper(), a.uri, a.name, a.name.upper()):
        assert store.kas.get(ref) == a
    items, total = store.kas.list(limit=1, offset=1)
    assert total == 2 and items == [a]  # newest first
    assert store.kas.list(sort=("name", "asc"))[0] == [a, b]
    assert store.kas.list(sort=("uri", "asc"))[0] == [b, a]
    assert store.kas.list(sort=("created_at", "asc"))[0] == [a, b]
    with pytest.raises(NotFound, match="'nope'"):
        store.kas.get("nope")
    with pytest.raises(NotFound):
        store.kas.get(MISSING_ID)


def test_kas_uniqueness_and_validation(store):
    store.kas.create("https://kas.example.com", "kas")
    with pytest.raises(AlreadyExists, match="uri"):
        store.kas.create("https://kas.example.com", "other")
    with pytest.raises(AlreadyExists, match="name 'kas'"):
        store.kas.create("https://other.example.com", "KAS")  # names are case-insensitive
    for bad in ("", "kas.example.com", "ftp://kas", "https://", "https:// spaced", "https:///path"):
        with pytest.raises(InvalidArgument, match="uri"):
            store.kas.create(bad, "n")
    # A KAS needs no name (as OpenTDF); several nameless ones coexist.
    assert store.kas.create("https://x.example.com", "").name == ""
    assert store.kas.create("https://y.example.com", None).name == ""
    assert store.kas.create("https://z.example.com", "Mixed-Case").name == "mixed-case"
    with pytest.raises(InvalidArgument, match="must not be empty"):
        store.kas.get("")


def test_kas_ref_prefers_id_then_uri_then_name(store):
    """A name that equals another KAS's URI does not hide that KAS."""
    a = store.kas.create("https://a.example.com", "a")
    b = store.kas.create("https://b.example.com", "https://a.example.com")
    assert store.kas.get("https://a.example.com") == a
    assert store.kas.get(b.id) == b


def test_key_create_and_get(store, kas):
    cfg = store.providers.create("aws", "aws-kms", b'{"region": "us-east-1"}')
    key = store.keys.create(kas.id, "k1", "rsa:2048", "provider", public_key_pem="-----BEGIN PUBLIC KEY-----",
                            private_key_ctx=CTX, provider_config_id=cfg.id, labels={"team": "a"})
    assert (key.kas_id, key.kas_uri, key.key_id, key.status, key.mode) == (kas.id, kas.uri, "k1", "active", "provider")
    assert key.private_key_ctx == CTX and key.provider_config == cfg and key.rotated_at is None
    assert store.keys.get(key.id) == key
    assert store.keys.get_by_kid("k1") == key
    assert store.keys.get_by_kid("k1", kas_id=kas.id) == key
    assert "c2VjcmV0" not in repr(key)  # no wrapped key in repr


def test_key_provider_config_revision_is_current(store, kas):
    cfg = store.providers.create("aws", "aws-kms", b"{}")
    key = store.keys.create(kas.id, "k1", "rsa:2048", "remote", private_key_ctx={"key_id": "arn"},
                            provider_config_id=cfg.id)
    store.providers.update(cfg.id, config_json=b'{"region": "eu-west-1"}')
    fresh = store.keys.get(key.id)
    assert fresh.provider_config.revision == 2 and fresh.provider_config.config_json == b'{"region": "eu-west-1"}'


def test_key_errors(store, kas):
    other = store.kas.create("https://other.example.com", "kas-b")
    store.keys.create(kas.id, "k1", "ec:secp256r1", "local", private_key_ctx={"wrapped_key": "AAAA"})
    with pytest.raises(AlreadyExists, match="'k1' already exists on KAS https://kas.example.com"):
        store.keys.create(kas.id, "k1", "rsa:2048", "local")
    store.keys.create(other.id, "k1", "rsa:2048", "public_key", public_key_pem="PEM")  # kid unique per KAS
    with pytest.raises(InvalidArgument, match="several KAS"):
        store.keys.get_by_kid("k1")
    assert store.keys.get_by_kid("k1", kas_id=other.id).mode == "public_key"
    with pytest.raises(NotFound):
        store.keys.get_by_kid("nope")
    with pytest.raises(NotFound):
        store.keys.get(MISSING_ID)
    with pytest.raises(InvalidArgument, match="UUID"):
        store.keys.get("bad")
    # A broken reference is the caller's error (OpenTDF: foreign-key violation -> invalid_argument).
    with pytest.raises(InvalidArgument, match="KAS"):
        store.keys.create(MISSING_ID, "k2", "rsa:2048", "local")
    with pytest.raises(InvalidArgument, match="provider config"):
        store.keys.create(kas.id, "k2", "rsa:2048", "provider", provider_config_id=MISSING_ID)
    bad = [({"algorithm": "rsa:1024"}, "algorithm must be one of"),
           ({"mode": "cloud"}, "mode must be one of"),
           ({"status": "gone"}, "status must be one of"),
           ({"key_id": ""}, "key_id must not be empty"),
           ({"private_key_ctx": {"wrapped_key": "***"}}, "wrapped_key must be base64"),
           ({"private_key_ctx": {"key_id": 5}}, "key_id must be a string"),
           ({"private_key_ctx": {"pem": "x"}}, "unknown field"),
           ({"private_key_ctx": "x"}, "private_key_ctx must be an object")]
    for override, message in bad:
        args = {"kas_id": kas.id, "key_id": "k3", "algorithm": "rsa:2048", "mode": "local", **override}
        with pytest.raises(InvalidArgument, match=message):
            store.keys.create(**args)
    assert store.keys.list()[1] == 2


def test_database_check_constraints(store, kas):
    """The schema itself refuses unknown status/mode/algorithm values."""
    row = {"id": MISSING_ID, "key_id": "raw", "kas_id": kas.id, "algorithm": "rsa:2048", "status": "active",
           "mode": "local", "labels": "{}", "created_at": kas.created_at, "updated_at": kas.created_at}
    for column, value in (("status", "gone"), ("mode", "cloud"), ("algorithm", "rsa:1024")):
        with pytest.raises(IntegrityError):
            with store.db.engine.begin() as conn:
                conn.execute(text("INSERT INTO kas_key (id, key_id, kas_id, algorithm, status, mode, labels, "
                                  "created_at, updated_at) VALUES (:id, :key_id, :kas_id, :algorithm, :status, "
                                  ":mode, :labels, :created_at, :updated_at)"), {**row, column: value})


def test_list_filters_and_pagination(store, kas):
    other = store.kas.create("https://other.example.com", "kas-b")
    for i in range(3):
        store.keys.create(kas.id, f"r{i}", "rsa:2048", "local")
    store.keys.create(kas.id, "e0", "ec:secp256r1", "local")
    store.keys.create(other.id, "o0", "rsa:2048", "local")
    assert store.keys.list()[1] == 5
    items, total = store.keys.list(kas_id=kas.id, limit=2, offset=2)
    assert total == 4 and [k.key_id for k in items] == ["r1", "r0"]  # newest first
    assert [k.key_id for k in store.keys.list(kas_id=kas.id, sort=("key_id", "asc"))[0]] == ["e0", "r0", "r1", "r2"]
    assert store.keys.list(kas_id=kas.id, algorithm="rsa:2048")[1] == 3
    store.keys.mark_rotated(store.keys.get_by_kid("r0").id)
    assert [k.key_id for k in store.keys.list(status="rotated")[0]] == ["r0"]
    assert store.keys.list(kas_id=kas.id, status="active", algorithm="rsa:2048")[1] == 2
    with pytest.raises(InvalidArgument):
        store.keys.list(status="gone")


def test_active_for_and_mark_rotated(store, kas):
    assert store.keys.active_for(kas.id, "rsa:2048") is None
    old = store.keys.create(kas.id, "old", "rsa:2048", "local")
    assert store.keys.active_for(kas.id, "rsa:2048") == old
    new = store.keys.create(kas.id, "new", "rsa:2048", "local")
    assert store.keys.active_for(kas.id, "rsa:2048").id == new.id  # newest active wins
    rotated = store.keys.mark_rotated(new.id)
    assert rotated.status == "rotated" and rotated.rotated_at is not None
    assert store.keys.active_for(kas.id, "rsa:2048").id == old.id
    assert store.keys.active_for(kas.id, "ec:secp256r1") is None
    with pytest.raises(FailedPrecondition, match="already rotated"):
        store.keys.mark_rotated(new.id)
    with pytest.raises(NotFound):
        store.keys.mark_rotated(MISSING_ID)


def test_transaction_commits_together(store, kas):
    old = store.keys.create(kas.id, "old", "rsa:2048", "local")
    with store.transaction() as tx:
        new = tx.keys.create(kas.id, "new", "rsa:2048", "local")
        tx.keys.mark_rotated(old.id)
    assert store.keys.get(new.id).status == "active"
    assert store.keys.get(old.id).status == "rotated"


def test_transaction_rolls_back_on_error(store, kas):
    old = store.keys.create(kas.id, "old", "rsa:2048", "local")
    with pytest.raises(AlreadyExists):
        with store.transaction() as tx:
            tx.keys.mark_rotated(old.id)
            tx.keys.create(kas.id, "old", "rsa:2048", "local")  # duplicate: the whole block fails
    assert store.keys.get(old.id).status == "active"
    with pytest.raises(RuntimeError):
        with store.transaction() as tx:
            tx.keys.create(kas.id, "new", "rsa:2048", "local")
            raise RuntimeError("caller failed after the create")
    with pytest.raises(NotFound):
        store.keys.get_by_kid("new")


def test_sqlite_foreign_keys_on_for_every_connection(sqlite_db_url):
    from host.store import Store

    s = Store.open(sqlite_db_url)
    try:
        conns = [s.db.engine.connect() for _ in range(3)]  # distinct pooled connections
        assert [c.exec_driver_sql("PRAGMA foreign_keys").scalar() for c in conns] == [1, 1, 1]
        for c in conns:
            c.close()
    finally:
        s.close()


def test_legacy_base_key_update_and_delete(store, kas):
    """Legacy keys (one per KAS), the base key, label updates and the unsafe delete, on every backend."""
    other = store.kas.create("https://other.example.com")
    legacy = store.keys.create(kas.id, "l1", "rsa:2048", "local", legacy=True)
    with pytest.raises(AlreadyExists, match="legacy"):
        store.keys.create(kas.id, "l2", "rsa:2048", "local", legacy=True)
    assert store.keys.create(other.id, "l3", "rsa:2048", "local", legacy=True).legacy
    plain = store.keys.create(kas.id, "p1", "rsa:2048", "local", labels={"a": "1"})
    assert [k.key_id for k in store.keys.list(kas_id=kas.id, legacy=True)[0]] == ["l1"]
    assert [k.key_id for k in store.keys.list(kas_id=kas.id, legacy=False)[0]] == ["p1"]

    assert store.keys.base_key() is None
    new, previous = store.keys.set_base_key(legacy.id)
    assert new.id == legacy.id and previous is None
    new, previous = store.keys.set_base_key(plain.id)
    assert new.id == plain.id and previous.id == legacy.id and store.keys.base_key().id == plain.id
    public = store.keys.create(kas.id, "pub", "rsa:2048", "public_key", public_key_pem="PEM")
    with pytest.raises(InvalidArgument, match="KEY_MODE_PUBLIC_KEY_ONLY"):
        store.keys.set_base_key(public.id)
    store.keys.mark_rotated(legacy.id)
    with pytest.raises(InvalidArgument, match="KEY_STATUS_ROTATED"):
        store.keys.set_base_key(legacy.id)

    assert store.keys.update_labels(plain.id, {"b": "2"}, extend=True).labels == {"a": "1", "b": "2"}
    assert store.keys.update_labels(plain.id, {"c": "3"}, extend=False).labels == {"c": "3"}
    assert store.keys.delete(plain.id).id == plain.id
    assert store.keys.base_key() is None  # the base key went with its key
    with pytest.raises(NotFound):
        store.keys.get(plain.id)
    with pytest.raises(InvalidArgument, match="still holds keys"):
        store.kas.delete(kas.id)
    for k in store.keys.list(kas_id=other.id)[0]:
        store.keys.delete(k.id)
    assert store.kas.delete(other.id).id == other.id
