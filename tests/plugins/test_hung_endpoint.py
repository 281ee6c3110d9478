"""Remote plugins against an endpoint that accepts TCP and never answers (issue 14's hung-endpoint
check): every call comes back by itself with `deadline_exceeded` or `unavailable`, never KM_OK
and never a hang. The bound below is a guard against hanging, not a performance threshold."""

from __future__ import annotations

import json
import socket
import threading

import pytest

from host import errors
from host.managers.base import CallContext
from tests.plugins.conftest import REPO, load_factory

GUARD_S = 60  # the call has 0.5 s; anything still running after this has hung


@pytest.fixture
def black_hole():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    held: list[socket.socket] = []

    def accept():
        while True:
            try:
                held.append(sock.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield sock.getsockname()[1]
    sock.close()
    for c in held:
        c.close()


def configs(port: int) -> dict:
    return {
        "aws-kms": {"region": "us-east-1", "access_key_id": "AKIAEXAMPLE", "secret_access_key": "x" * 40,
                    "kms_key_id": "alias/hung", "endpoint": f"http://127.0.0.1:{port}"},
        "vault": {"vault_addr": f"http://127.0.0.1:{port}", "vault_token": "hvs.hung", "mount_path": "transit",
                  "key_name": "hung"},
    }


@pytest.mark.parametrize("plugin", ["aws-kms", "vault"])
@pytest.mark.parametrize("op", ["unwrap", "wrap", "public_key"])
def test_a_hung_endpoint_ends_each_call_at_its_deadline(black_hole, plugin, op):
    factory = load_factory(REPO / "build" / "plugins" / f"{plugin}-manager.so", plugin)
    manager = factory.create(json.dumps(configs(black_hole)[plugin]).encode())
    outcome: list = []

    def call():
        ctx = CallContext.with_timeout(0.5, request_id="hung-1")
        try:
            if op == "public_key":
                outcome.append(manager.public_key("", ctx))
            else:
                outcome.append(getattr(manager, op)("", b"\x01" * 32, ctx))
        except errors.PlatformError as e:
            outcome.append(e)

    try:
        t = threading.Thread(target=call, daemon=True)
        t.start()
        t.join(GUARD_S)
        assert not t.is_alive(), f"{plugin} {op} hung against an endpoint that never answers"
        (result,) = outcome
        assert isinstance(result, (errors.DeadlineExceeded, errors.Unavailable)), result
    finally:
        manager.close()
