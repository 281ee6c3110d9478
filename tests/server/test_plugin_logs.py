"""Plugin log lines (km_host.log) reach the served platform's JSON log with the plugin and request id."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx

from tests.cbuild import build_shared
from tests.server.conftest import start_server
from tests.server.test_api import rsa_pair

PLUGIN_SRC = Path(__file__).resolve().parents[1] / "fixtures" / "misbehaving_plugin.c"


def _rpc(server, path: str, body: dict, request_id: str) -> dict:
    r = httpx.post(f"{server.url}{path}", json=body, timeout=30,
                   headers={**server.admin(), "x-request-id": request_id})
    assert r.status_code == 200, r.text
    return r.json()


def test_plugin_log_lines_reach_the_json_log(tmp_path):
    plugin = build_shared(PLUGIN_SRC, tmp_path / "echo-logger.so")
    server = start_server(tmp_path, f"sqlite:///{tmp_path / 'state' / 'platform.db'}", plugins=(str(plugin),))
    try:
        kas = _rpc(server, "/policy.kasregistry.KeyAccessServerRegistryService/CreateKeyAccessServer",
                   {"uri": "https://logs.example.com/kas", "name": "logs"}, "setup-1")["keyAccessServer"]
        cfg = _rpc(server, "/policy.keymanagement.KeyManagementService/CreateProviderConfig",
                   {"name": "echo-cfg", "manager": "echo",
                    "configJson": base64.b64encode(b"{}").decode()}, "setup-2")["providerConfig"]
        private, public = rsa_pair()
        # provider mode through the echo manager: unwrap (of the given "wrapped" key) then wrap, both logging
        _rpc(server, "/policy.kasregistry.KeyAccessServerRegistryService/CreateKey", {
            "kasId": kas["id"], "keyId": "logged", "keyAlgorithm": "ALGORITHM_RSA_2048",
            "keyMode": "KEY_MODE_PROVIDER_ROOT_KEY", "providerConfigId": cfg["id"],
            "publicKeyCtx": {"pem": public},
            "privateKeyCtx": {"keyId": "log", "wrappedKey": base64.b64encode(private).decode()},
        }, "plugin-log-42")
        text = server.wait_for_log('"echo wrap of', '"echo unwrap of')
    finally:
        server.stop()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    plugin_lines = [d for d in lines if d["msg"].startswith("echo ")]
    assert {d["msg"].split(" of ")[0] for d in plugin_lines} == {"echo wrap", "echo unwrap"}, text[-3000:]
    for d in plugin_lines:
        assert d["plugin"] == "misbehaving" and d["request_id"] == "plugin-log-42", d
        assert d["level"] == "info" and d["logger"] == "host.plugin.echo-logger.so", d
    assert "echo debug detail" not in text  # below the default (info) level
    assert private.decode().splitlines()[1] not in text  # key material never logged
