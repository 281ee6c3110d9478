"""Health, readiness, metrics, startup errors, deadlines."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx

from host.server.app import NO_KAS
from host.server.protos import key_management_pb2 as km
from tests.server.conftest import ROOT, free_port


def test_health_and_ready(server):
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    r = httpx.get(f"{server.url}/readyz")
    assert r.status_code == 200
    assert r.json() == {"status": "ready", "checks": {"plugins": "ok", "database": "ok", "kas": NO_KAS},
                        "managers": {}}


def test_metrics(server):
    c = server.clients(proto_json=True)
    c.km.list_provider_configs(km.ListProviderConfigsRequest(), headers=server.admin())
    httpx.post(f"{server.url}/policy.keymanagement.KeyManagementService/ListProviderConfigs", content=b"{}",
               headers={"content-type": "application/json"})
    r = httpx.get(f"{server.url}/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    method = "/policy.keymanagement.KeyManagementService/ListProviderConfigs"
    assert f'platform_rpc_requests_total{{code="ok",method="{method}"}}' in text
    assert f'platform_rpc_requests_total{{code="unauthenticated",method="{method}"}}' in text
    assert f'platform_rpc_duration_seconds_bucket{{le="0.005",method="{method}"}}' in text
    # Unknown paths share one label, so scanners cannot grow the label set.
    httpx.post(f"{server.url}/x.Y/Z{os.getpid()}", content=b"{}", headers={"content-type": "application/json"})
    assert f"Z{os.getpid()}" not in httpx.get(f"{server.url}/metrics").text


def test_deadline_header_reaches_the_handler(server):
    # A deadline of 0 ms has passed before the handler starts: deadline_exceeded, HTTP 504.
    r = httpx.post(f"{server.url}/policy.keymanagement.KeyManagementService/ListProviderConfigs", content=b"{}",
                   headers={"content-type": "application/json", "connect-timeout-ms": "0", **server.admin()})
    assert r.status_code == 504 and r.json()["code"] == "deadline_exceeded"


def _serve(tmp_path, env_extra: dict, *args) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLATFORM_")}
    env.update({"PLATFORM_STATE_DIR": str(tmp_path / "state"),
                "PLATFORM_DB_URL": f"sqlite:///{tmp_path / 'state' / 'p.db'}"})
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", "from host.cli import run; run()", *args, "serve",
                           "--port", str(free_port())], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


def test_startup_errors_are_one_line(tmp_path):
    r = _serve(tmp_path, {})
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1].startswith("error: no credentials configured")
    assert "Traceback" not in r.stderr
    r = _serve(tmp_path, {"PLATFORM_ADMIN_TOKENS": "t", "PLATFORM_MAX_BODY_BYTES": "lots"})
    assert r.returncode == 1 and "PLATFORM_MAX_BODY_BYTES" in r.stderr and "Traceback" not in r.stderr
    r = _serve(tmp_path, {"PLATFORM_ADMIN_TOKENS": "t"}, "--key-manager-plugin", str(tmp_path / "missing.so"))
    assert r.returncode == 1 and "missing.so" in r.stderr and "Traceback" not in r.stderr
    r = _serve(tmp_path, {"PLATFORM_ADMIN_TOKENS": "t",
                          "PLATFORM_DB_URL": "postgresql+psycopg://nobody:pw-Zq9x@127.0.0.1:1/none"})
    assert r.returncode == 1 and "Traceback" not in r.stderr and "pw-Zq9x" not in r.stderr


def test_request_ids_are_unique_well_formed_and_differ_across_fork():
    import os
    import re

    from host.server.logs import new_request_id

    ids = [new_request_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[0-9a-f]{16}", i) for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: what a forked server worker would hand out first
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read), os.close(write)
    assert child[:8] != ids[0][:8] and child not in ids


def test_readyz_fails_while_the_kas_identity_is_ambiguous(tmp_path):
    """Two registered KAS and no PLATFORM_KAS: /readyz says so (503), a KAS client is told no CLI
    flag; PLATFORM_KAS naming one of them makes the server ready again."""
    import time

    from tests.server.conftest import start_server

    db_url = f"sqlite:///{tmp_path / 'state' / 'platform.db'}"
    s = start_server(tmp_path / "a", db_url)
    try:
        for name in ("kas1", "kas2"):
            r = httpx.post(f"{s.url}/policy.kasregistry.KeyAccessServerRegistryService/CreateKeyAccessServer",
                           json={"uri": f"https://{name}.example.com/kas", "name": name}, headers=s.admin())
            assert r.status_code == 200, r.text
        deadline = time.monotonic() + 30  # /readyz re-checks at most once a second
        while (r := httpx.get(f"{s.url}/readyz")).status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert r.status_code == 503 and "PLATFORM_KAS" in r.json()["checks"]["kas"], r.text
        public = httpx.post(f"{s.url}/kas.AccessService/PublicKey", json={"algorithm": "rsa:2048"})
        assert public.status_code != 200 and "--kas" not in public.text, public.text
    finally:
        s.stop()
    s = start_server(tmp_path / "b", db_url, env_extra={"PLATFORM_KAS": "kas2"})  # waits for /readyz 200
    try:
        assert httpx.get(f"{s.url}/readyz").json()["checks"]["kas"] == "ok"
    finally:
        s.stop()
