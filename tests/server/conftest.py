"""Fixtures for server tests: `platform serve` as a real subprocess on a free port.

Clients are the generated Connect clients from otdf-python (`otdf_python_proto`),
in JSON and binary protobuf, plus httpx for raw protocol checks.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

import host.server.protos  # noqa: F401  (installs buf.validate shim; makes the generated clients importable)
from otdf_python_proto.kas import AccessServiceClientSync
from otdf_python_proto.policy.kasregistry import KeyAccessServerRegistryServiceClientSync
from otdf_python_proto.policy.keymanagement import KeyManagementServiceClientSync
from tests.dbfixtures import pg_db_url, pg_server, sqlite_db_url  # noqa: F401
from tests.conftest import free_port  # noqa: F401  (also imported from here)

ROOT = Path(__file__).resolve().parents[2]
STARTUP_LIMIT_S = 60  # a guard against hanging forever, not a performance assertion


def serve_json(body: bytes):
    """A loopback HTTP server answering every GET with `body` as JSON (a JWKS endpoint, say);
    returns the server (its `server_port`; call `shutdown()` when done)."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


@dataclass
class Server:
    url: str
    proc: subprocess.Popen
    env: dict
    admin_token: str
    client_token: str
    log_path: Path
    root_key_hex: str
    extra: dict = field(default_factory=dict)

    def admin(self) -> dict:
        return {"authorization": f"Bearer {self.admin_token}"}

    def client(self) -> dict:
        return {"authorization": f"Bearer {self.client_token}"}

    def clients(self, proto_json: bool):
        return Clients(self, proto_json)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, *needles: str, timeout: float = 10.0) -> str:
        """The log once it holds every needle: access lines are written after the response is sent."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_text()
            if all(n in text for n in needles) or time.monotonic() > deadline:
                return text
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Clients:
    def __init__(self, server: Server, proto_json: bool):
        self.km = KeyManagementServiceClientSync(server.url, proto_json=proto_json)
        self.kas_registry = KeyAccessServerRegistryServiceClientSync(server.url, proto_json=proto_json)
        self.kas = AccessServiceClientSync(server.url, proto_json=proto_json)


def start_server(tmp: Path, db_url: str, *, root_key_hex: str | None = None, env_extra: dict | None = None,
                 workers: int = 1, server_impl: str | None = None, plugins: tuple[str, ...] = ()) -> Server:
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    admin, client = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    root_key_hex = root_key_hex or secrets.token_hex(32)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PLATFORM_", "PROMETHEUS_"))}
    env.update({
        "PLATFORM_STATE_DIR": str(tmp / "state"),
        "PLATFORM_ADMIN_TOKENS": admin,
        "PLATFORM_CLIENT_TOKENS": client,
        "PLATFORM_ROOT_KEY": root_key_hex,
        "PLATFORM_DB_URL": db_url,
    })
    env.update(env_extra or {})
    cmd = [sys.executable, "-c", "from host.cli import run; run()"]
    for p in plugins:
        cmd.append(f"--key-manager-plugin={p}")
    cmd += ["serve", "--port", str(port), "--workers", str(workers)]
    if server_impl:
        cmd += ["--server", server_impl]
    log_path = tmp / f"server-{port}.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", proc, env, admin, client, log_path, root_key_hex)
    deadline = time.monotonic() + STARTUP_LIMIT_S
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"platform serve exited with {proc.returncode}: {server.log_text()[-2000:]}")
        try:
            if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"platform serve did not become ready: {server.log_text()[-2000:]}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    s = start_server(tmp, f"sqlite:///{tmp / 'state' / 'platform.db'}")
    yield s
    s.stop()


@pytest.fixture(params=[True, False], ids=["json", "proto"])
def clients(request, server) -> Clients:
    return server.clients(proto_json=request.param)
