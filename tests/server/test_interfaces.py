"""The same app behind each server interface: granian RSGI (default), granian ASGI, uvicorn."""

from __future__ import annotations

import gzip
import json

import httpx
import pytest

from tests.server.conftest import start_server

LIST_PC = "/policy.keymanagement.KeyManagementService/ListProviderConfigs"


@pytest.mark.parametrize("server_impl,env", [
    ("granian", {}), ("granian", {"PLATFORM_GRANIAN_INTERFACE": "asgi"}), ("uvicorn", {}),
], ids=["granian-rsgi", "granian-asgi", "uvicorn"])
def test_interface_serves_the_same_protocol(tmp_path, sqlite_db_url, server_impl, env):
    server = start_server(tmp_path, sqlite_db_url, server_impl=server_impl, env_extra=env)
    try:
        base = server.url
        auth = {"Authorization": f"Bearer {server.admin_token}"}
        with httpx.Client(base_url=base, timeout=30) as http:
            r = http.post(LIST_PC, content=b"{}", headers={**auth, "Content-Type": "application/json"})
            assert r.status_code == 200 and "pagination" in r.json()
            # gzip-compressed body, as connect-python clients send
            r = http.post(LIST_PC, content=gzip.compress(b"{}"),
                          headers={**auth, "Content-Type": "application/json", "Content-Encoding": "gzip"})
            assert r.status_code == 200
            # oversized body refused before parsing, error in Connect's format
            r = http.post(LIST_PC, content=b" " * (2 << 20), headers={**auth, "Content-Type": "application/json"})
            assert r.status_code == 429 and r.json()["code"] == "resource_exhausted"
            r = http.post(LIST_PC, content=b"{}", headers={"Content-Type": "application/json"})
            assert r.status_code == 401 and json.loads(r.content)["code"] == "unauthenticated"
            assert http.get("/healthz").status_code == 200
            # a repeated header is read as its values joined with ", " (RFC 9110 5.3), here one
            # that is no longer a valid request id, so the server assigns its own
            r = http.post(LIST_PC, content=b"{}", headers=[
                ("Authorization", f"Bearer {server.admin_token}"), ("Content-Type", "application/json"),
                ("X-Request-Id", "first-id"), ("X-Request-Id", "second-id")])
            assert r.status_code == 200 and r.headers["x-request-id"] not in ("first-id", "second-id")
            r = http.post(LIST_PC, content=b"{}", headers={**auth, "Content-Type": "application/json",
                                                           "X-Request-Id": "only-id"})
            assert r.headers["x-request-id"] == "only-id"
    finally:
        server.stop()
