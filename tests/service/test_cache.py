"""The bounded cache and the 'is this unwrap I/O-free right now' check."""

from __future__ import annotations

import os

from sqlalchemy import event

from host import crypto
from host.service.cache import BoundedCache


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_bounded_ttl_and_counts():
    clock = Clock()
    c = BoundedCache("t", max_entries=2, ttl=10, clock=clock)
    c.put("a", 1)
    c.put("b", 2)
    c.put("c", 3)                       # evicts the oldest
    assert c.get("a") is None and c.get("b") == 2 and c.get("c") == 3
    clock.now += 11
    assert c.get("b") is None           # expired
    c.put("d", 4, ttl=0)                # ttl 0/None: never expires
    clock.now += 1e6
    assert c.get("d") == 4
    assert c.stats()["hits"] == 3 and c.stats()["misses"] == 2


def test_peek_counts_nothing_and_honours_margin():
    clock = Clock()
    c = BoundedCache("t", max_entries=4, ttl=1.0, clock=clock)
    c.put("k", "v")
    assert c.peek("k") == "v" and c.peek("k", margin=0.5) == "v"
    assert c.peek("k", margin=1.0) is None   # would expire within the margin
    assert c.peek("missing") is None
    assert c.stats()["hits"] == 0 and c.stats()["misses"] == 0


def test_ready_only_when_no_io_is_needed(platform, file_kek_config_id, remote_config_id):
    path = platform.keys.unwrap_path
    local = platform.keys.create_key(None, "l", "rsa:2048", "local")
    prov = platform.keys.create_key(None, "p", "rsa:2048", "provider", provider_config_id=file_kek_config_id)
    remote = platform.keys.create_key(None, "r", "rsa:2048", "remote", provider_config_id=remote_config_id,
                                      wrapping_key_id="k-rsa:2048")
    assert path.ready("l") is None                      # nothing cached yet
    for key in (local, prov, remote):
        dek = os.urandom(32)
        assert platform.keys.unwrap(key.key_id, crypto.rsa_wrap(
            crypto.load_public_pem(key.public_key_pem, "rsa:2048"), dek)) == dek
    with Queries(platform.store.db.engine) as q:
        assert path.ready("l").id == local.id
        assert path.ready("p").id == prov.id
        assert path.ready("r") is None                  # remote mode always asks the manager
        # a revision check falling due is no reason: the watch runs on its own thread
        assert path.ready("p", margin=path.revision_check_seconds + 1).id == prov.id
        # a provider key expiring within the margin is (its TTL ends: the manager is asked again)
        assert path.ready("p", margin=path.private_key_ttl + 1) is None
        assert path.ready("l", margin=path.private_key_ttl + 1).id == local.id
    assert q.seen == []                                 # ready() is a look at the caches
    path.private_keys.clear()
    assert path.ready("l") is None and path.ready("p") is None


def test_ready_refuses_a_key_once_its_config_change_is_seen(platform, file_kek_config_id):
    path = platform.keys.unwrap_path
    keys = [platform.keys.create_key(None, kid, "rsa:2048", mode, provider_config_id=cfg)
            for kid, mode, cfg in (("l", "local", None), ("p", "provider", file_kek_config_id))]
    dek = os.urandom(32)
    for key in keys:
        platform.keys.unwrap(key.key_id, crypto.rsa_wrap(crypto.load_public_pem(key.public_key_pem, "rsa:2048"), dek))
    assert path.ready("p") is not None
    cfg = platform.store.providers.get(file_kek_config_id)
    platform.store.providers.update(cfg.id, config_json=cfg.config_json + b" ")  # same KEKs, new revision
    path.revisions.check()                              # what the watch thread does once a period
    assert path.ready("p") is None and path.ready("l").key_id == "l"
    platform.keys.unwrap("p", crypto.rsa_wrap(crypto.load_public_pem(keys[1].public_key_pem, "rsa:2048"), dek))
    assert path.ready("p").provider_config.revision == cfg.revision + 1   # warm again, under the new one
    path.revision_check_seconds = 0                     # inline checks: every lookup queries
    assert path.ready("l") is None and path.ready("p") is None


class Queries:
    def __init__(self, engine):
        self.engine, self.seen = engine, []

    def _on(self, _conn, _cursor, statement, *_):
        self.seen.append(statement)

    def __enter__(self):
        event.listen(self.engine, "before_cursor_execute", self._on)
        return self

    def __exit__(self, *exc):
        event.remove(self.engine, "before_cursor_execute", self._on)
