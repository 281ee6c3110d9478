"""Several nodes on one PostgreSQL, and a short bounded load test."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from host.server.protos import kasregistry_pb2 as kr, key_management_pb2 as km, objects_pb2
from tests.dbfixtures import drop_pg_database
from tests.server import load
from tests.server.conftest import start_server
from tests.server.test_api import create_kas, create_local_key, rsa_pair, uniq, wrap_with_root

LOAD_SECONDS = 3
LOAD_CONCURRENCY = 4


def provider_key(c, server, kas_id, config_id):
    private, public = rsa_pair()
    return c.kas_registry.create_key(kr.CreateKeyRequest(
        kas_id=kas_id, key_id=uniq("pk"), key_algorithm=objects_pb2.ALGORITHM_RSA_2048,
        key_mode=objects_pb2.KEY_MODE_PROVIDER_ROOT_KEY, provider_config_id=config_id,
        public_key_ctx=objects_pb2.PublicKeyCtx(pem=public),
        private_key_ctx=objects_pb2.PrivateKeyCtx(key_id="kek", wrapped_key=wrap_with_root(server, private))),
        headers=server.admin()).kas_key


@pytest.mark.postgres
def test_two_nodes_one_database(tmp_path, pg_server, pg_db_url):
    a = start_server(tmp_path / "a", pg_db_url)
    b = start_server(tmp_path / "b", pg_db_url, root_key_hex=a.root_key_hex)
    try:
        ca, cb = a.clients(proto_json=True), b.clients(proto_json=False)
        pc = ca.km.create_provider_config(km.CreateProviderConfigRequest(
            name=uniq("shared"), manager="opentdf.io/basic", config_json=b"{}"), headers=a.admin()).provider_config
        kas = create_kas(ca, a)

        # Created through A, usable through B: B builds a manager from it and creates a key with it.
        assert cb.km.get_provider_config(km.GetProviderConfigRequest(id=pc.id), headers=b.admin()).provider_config == pc
        key = provider_key(cb, b, kas.id, pc.id)
        assert key.key.provider_config.id == pc.id

        # Updated through A (the manager changes, the revision bumps): B's next call uses the new
        # revision. No plugin registers "not-loaded-kms", so B now refuses, naming the manager...
        ca.km.update_provider_config(km.UpdateProviderConfigRequest(id=pc.id, manager="not-loaded-kms"),
                                     headers=a.admin())
        with pytest.raises(ConnectError) as e:
            provider_key(cb, b, kas.id, pc.id)
        assert e.value.code == Code.FAILED_PRECONDITION and "not-loaded-kms" in e.value.message
        # ...and after A puts it back, B works again on its very next call.
        ca.km.update_provider_config(km.UpdateProviderConfigRequest(
            id=pc.id, manager="opentdf.io/basic", config_json=json.dumps({"note": "v3"}).encode()), headers=a.admin())
        provider_key(cb, b, kas.id, pc.id)

        # Both nodes see every row.
        total_a = ca.kas_registry.list_keys(kr.ListKeysRequest(kas_id=kas.id), headers=a.admin()).pagination.total
        total_b = cb.kas_registry.list_keys(kr.ListKeysRequest(kas_id=kas.id), headers=b.admin()).pagination.total
        assert total_a == total_b == 2

        # Losing the database shows in /readyz (503), not in /healthz.
        drop_pg_database(pg_server, pg_db_url.rsplit("/", 1)[1])
        # /readyz checks the database at most once a second (host.server.app.READY_CACHE_S)
        deadline = time.monotonic() + 10
        while (r := httpx.get(f"{b.url}/readyz")).status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert r.status_code == 503 and r.json()["checks"]["database"] != "ok"
        assert httpx.get(f"{b.url}/healthz").status_code == 200
    finally:
        a.stop()
        b.stop()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_bounded_load(tmp_path, request, backend, capsys):
    db = (f"sqlite:///{tmp_path / 'state' / 'platform.db'}" if backend == "sqlite"
          else request.getfixturevalue("pg_db_url"))
    s = start_server(tmp_path, db, workers=2 if backend == "postgres" else 1)
    try:
        c = s.clients(proto_json=False)
        kas = create_kas(c, s)
        create_local_key(c, s, kas.id, alg=objects_pb2.ALGORITHM_EC_P256)  # what PublicKey serves
        public, create, created = load.run(s.url, s.admin_token, LOAD_SECONDS, LOAD_CONCURRENCY, kas.id)
        with capsys.disabled():
            print(f"\n[{backend}] {public.summary()}\n[{backend}] {create.summary()}")
        assert public.errors == [] and create.errors == []
        assert public.count > 0 and create.count > 0
        listed = load.list_all_keys(s.url, s.admin_token, kas.id)
        kids = [kid for kid, _ in listed]
        assert len(kids) == len(set(kids))                       # no duplicates
        assert {kid for kid, _ in created} <= set(kids)           # nothing lost
        assert len(listed) == len(created) + 1                    # nothing extra (the +1 is the EC key)
        # With two workers, /metrics aggregates both processes' counters.
        text = httpx.get(f"{s.url}/metrics").text
        done = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith('platform_rpc_requests_total{code="ok",method="/kas.AccessService/PublicKey"}'))
        assert done == public.count
    finally:
        s.stop()
