"""km-conformance --hung-endpoint-config (issue 14's hung-endpoint check for remote plugins): the
endpoint is a loopback listener that accepts and never answers; create and every call, each with
a 300 ms deadline, come back by themselves and no call answers KM_OK. The check is on the plugin
itself, in a plain C host: the Python host would turn a late KM_OK into deadline_exceeded and
hide it. The guard inside km-conformance only tells a hang from a slow give-up."""

from __future__ import annotations

import json
import secrets
import socket
import threading

import pytest

from tests.conformance.runner_util import PLUGIN_DIR, TOY_SRC, compile_plugin, make_or_fail, run_runner


@pytest.fixture
def black_hole():
    """The port of a listener that accepts every connection and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    held: list[socket.socket] = []

    def accept():
        while True:
            try:
                held.append(sock.accept()[0])
            except OSError:  # shut down at teardown
                return

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield sock.getsockname()[1]
    sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept (close alone does not, on Linux)
    sock.close()
    for c in held:
        c.close()
    t.join(10)


def configs(port: int) -> dict:
    return {
        "aws-kms": {"region": "us-east-1", "access_key_id": "AKIAEXAMPLE", "secret_access_key": "x" * 40,
                    "kms_key_id": "alias/hung", "endpoint": f"http://127.0.0.1:{port}"},
        "vault": {"vault_addr": f"http://127.0.0.1:{port}", "vault_token": "hvs.hung", "mount_path": "transit",
                  "key_name": "hung"},
    }


@pytest.mark.parametrize("plugin", ["aws-kms", "vault"])
def test_remote_plugins_end_every_call_at_its_deadline(black_hole, plugin, tmp_path):
    so = PLUGIN_DIR / f"{plugin}-manager.so"
    make_or_fail(str(so.relative_to(PLUGIN_DIR.parents[1])), "build/km-conformance")
    cfg = tmp_path / "hung.json"
    cfg.write_text(json.dumps(configs(black_hole)[plugin]))
    result = run_runner("--hung-endpoint-config", cfg, so)
    assert result.returncode == 0, result.text()[-3000:]
    for op in ("create", "probe", "wrap", "unwrap", "get_public_key"):
        assert f"PASS hung_endpoint.{op}" in result.lines, result.stdout
    assert "x" * 40 not in result.text() and "hvs.hung" not in result.text()


def test_a_plugin_that_answers_ok_fails_the_check(black_hole, tmp_path):
    """The toy plugin never talks to the endpoint: its KM_OK is what the check exists to catch."""
    toy = compile_plugin(TOY_SRC, tmp_path / "toy.so")
    make_or_fail("build/km-conformance")
    cfg = tmp_path / "hung.json"
    cfg.write_text(json.dumps({"keks": {"k": secrets.token_hex(32)}, "default_key_id": "k",
                               "endpoint": f"http://127.0.0.1:{black_hole}"}))
    result = run_runner("--hung-endpoint-config", cfg, toy)
    assert result.returncode == 1
    assert result.line("FAIL hung_endpoint.wrap").endswith("answered KM_OK, but the endpoint never answers")
