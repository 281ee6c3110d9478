"""`platform serve` with an isolated plugin that crashes (issue 14 item 1):
its keys answer `unavailable` and recover after the child restarts; local
keys keep answering and the server never exits."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from host.server.protos import kasregistry_pb2 as kr, key_management_pb2 as km, objects_pb2
from tests.server.conftest import start_server
from tests.server.test_api import create_kas, create_local_key, rsa_pair, uniq


@pytest.fixture(scope="module")
def server(tmp_path_factory, wild_plugin):
    tmp = tmp_path_factory.mktemp("serve-isolated")
    s = start_server(tmp, f"sqlite:///{tmp / 'state' / 'platform.db'}", plugins=(f"isolated:{wild_plugin}",))
    yield s
    s.stop()


def provider_key(c, server, kas_id, config_id, wrap_key_id: str):
    """CreateKey in provider mode: the host unwraps the caller's wrapped key through the plugin
    (wild echoes, so the 'wrapped' key is the PEM itself) with wrap_key_id as the key id."""
    private, public = rsa_pair()
    return c.kas_registry.create_key(kr.CreateKeyRequest(
        kas_id=kas_id, key_id=uniq("pk"), key_algorithm=objects_pb2.ALGORITHM_RSA_2048,
        key_mode=objects_pb2.KEY_MODE_PROVIDER_ROOT_KEY, provider_config_id=config_id,
        public_key_ctx=objects_pb2.PublicKeyCtx(pem=public),
        private_key_ctx=objects_pb2.PrivateKeyCtx(key_id=wrap_key_id, wrapped_key=base64.b64encode(private).decode())),
        headers={**server.admin(), "connect-timeout-ms": "3000"}).kas_key


@pytest.mark.parametrize("misbehaviour, codes", [
    ("segv", {Code.UNAVAILABLE}), ("abort", {Code.UNAVAILABLE}), ("garbage", {Code.UNAVAILABLE}),
    # the request's own deadline may answer first; the supervisor kills the child either way
    ("sleep", {Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED}),
    ("huge", {Code.INTERNAL})])  # refused in the child, unread
def test_a_crashing_isolated_plugin_never_takes_the_server_down(server, misbehaviour, codes):
    c = server.clients(proto_json=True)
    kas = create_kas(c, server)
    local = create_local_key(c, server, kas.id)
    config = c.km.create_provider_config(km.CreateProviderConfigRequest(
        name=uniq("wild"), manager="wild", config_json=json.dumps({}).encode()), headers=server.admin()).provider_config
    assert provider_key(c, server, kas.id, config.id, "kek").key.key_mode == objects_pb2.KEY_MODE_PROVIDER_ROOT_KEY

    with pytest.raises(ConnectError) as e:
        provider_key(c, server, kas.id, config.id, misbehaviour)
    assert e.value.code in codes, e.value.message
    assert server.proc.poll() is None

    # Local keys answer, and so does the plugin's next call, in a new child.
    r = httpx.get(f"{server.url}/kas/v2/kas_public_key", params={"kid": local.key.key_id}, headers=server.client())
    assert r.status_code == 200 and r.json()["kid"] == local.key.key_id
    create_local_key(c, server, kas.id)
    assert provider_key(c, server, kas.id, config.id, "kek").key.provider_config.id == config.id
    assert server.proc.poll() is None
