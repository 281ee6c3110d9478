"""Bad input at the protocol boundary: every case answers one Connect error with the right code and status."""

from __future__ import annotations

import gzip
import json
import uuid

import httpx
import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError

from host.server.protos import common_pb2, kasregistry_pb2 as kr, key_management_pb2 as km, objects_pb2
from tests.server.test_api import create_kas, create_local_key, rsa_pair, uniq, wrap_with_root

CREATE_PC = "/policy.keymanagement.KeyManagementService/CreateProviderConfig"
LIST_PC = "/policy.keymanagement.KeyManagementService/ListProviderConfigs"


def post(server, path, body: bytes, content_type="application/json", headers=None, **kw):
    h = {"content-type": content_type, **server.admin(), **(headers or {})}
    return httpx.post(f"{server.url}{path}", content=body, headers=h, timeout=30, **kw)


def assert_error(resp, status: int, code: str, contains: str = ""):
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json"
    doc = resp.json()
    assert doc["code"] == code, doc
    assert contains in doc["message"], doc
    assert "Traceback" not in resp.text
    return doc


def test_malformed_json(server):
    assert_error(post(server, CREATE_PC, b'{"name": "a",'), 400, "invalid_argument", "malformed JSON")
    assert_error(post(server, CREATE_PC, b'{"name": 5}'), 400, "invalid_argument", "malformed JSON")
    assert_error(post(server, CREATE_PC, b'["not", "an", "object"]'), 400, "invalid_argument")
    assert_error(post(server, CREATE_PC, b'\xff\xfe'), 400, "invalid_argument", "UTF-8")
    assert_error(post(server, CREATE_PC, b'{"configJson": "***not base64***"}'), 400, "invalid_argument")


def test_malformed_protobuf(server):
    # Field 1 (name) declared as a 100-byte string, body ends after 3 bytes.
    assert_error(post(server, CREATE_PC, b"\x0a\x64abc", "application/proto"), 400, "invalid_argument",
                 "malformed protobuf")
    assert_error(post(server, CREATE_PC, b"\xff\xff\xff\xff\xff\xff", "application/proto"), 400, "invalid_argument")


def test_json_accepts_original_field_names_and_emits_camel_case(server):
    name = uniq("orig")
    r = post(server, CREATE_PC, json.dumps({"name": name, "manager": "m", "config_json": "e30="}).encode())
    assert r.status_code == 200, r.text
    doc = r.json()["providerConfig"]
    assert doc["name"] == name and doc["configJson"] == "e30=" and "config_json" not in doc


def test_gzip_request_is_accepted(server):
    body = gzip.compress(json.dumps({"name": uniq("gz"), "manager": "m", "configJson": "e30="}).encode())
    r = post(server, CREATE_PC, body, headers={"content-encoding": "gzip"})
    assert r.status_code == 200, r.text
    assert_error(post(server, CREATE_PC, b"not gzip", headers={"content-encoding": "gzip"}), 400,
                 "invalid_argument", "gzip")
    assert_error(post(server, CREATE_PC, b"{}", headers={"content-encoding": "br"}), 501, "unimplemented",
                 "content-encoding")


def test_wrong_content_type(server):
    r = post(server, CREATE_PC, b"{}", "text/plain")
    assert_error(r, 415, "unimplemented", "content-type")
    assert "application/proto" in r.headers["accept-post"]
    assert_error(post(server, CREATE_PC, b"{}", "application/grpc"), 415, "unimplemented")
    assert_error(post(server, CREATE_PC, b"{}", "application/json; charset=latin-1"), 415, "unimplemented")


def test_oversized_body_refused_before_parsing(server):
    big = b'{"name": "' + b"a" * (1 << 20) + b'"}'
    assert_error(post(server, CREATE_PC, big), 429, "resource_exhausted", "limit")

    def chunks():  # no Content-Length: counted while streaming
        for _ in range(20):
            yield b" " * 65536
    assert_error(post(server, CREATE_PC, chunks()), 429, "resource_exhausted", "limit")
    # A small gzip body that inflates past the limit is refused too.
    bomb = gzip.compress(b" " * (8 << 20))
    assert len(bomb) < 64 * 1024
    assert_error(post(server, CREATE_PC, bomb, headers={"content-encoding": "gzip"}), 429, "resource_exhausted")


def test_unknown_service_or_method(server, clients):
    assert_error(post(server, "/policy.keymanagement.KeyManagementService/Nope", b"{}"), 404, "unimplemented")
    assert_error(post(server, "/no.such.Service/Method", b"{}"), 404, "unimplemented")
    # A method of a served service that this platform does not implement (no namespaces here).
    r = post(server, "/policy.unsafe.UnsafeService/UnsafeDeleteNamespace", b"{}")
    assert_error(r, 404, "unimplemented")
    assert httpx.get(f"{server.url}/nothing/here").status_code == 404


def test_http_method_and_protocol_headers(server):
    r = httpx.get(f"{server.url}{CREATE_PC}", headers=server.admin())
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert_error(post(server, LIST_PC, b"{}", headers={"connect-protocol-version": "2"}), 400, "invalid_argument")
    assert_error(post(server, LIST_PC, b"{}", headers={"connect-timeout-ms": "soon"}), 400, "invalid_argument")
    assert_error(post(server, LIST_PC, b"{}", headers={"connect-timeout-ms": "12345678901"}), 400,
                 "invalid_argument")
    assert post(server, LIST_PC, b"{}", headers={"connect-timeout-ms": "60000"}).status_code == 200


def test_bad_tokens(server):
    for header in ({}, {"authorization": "Bearer"}, {"authorization": "Basic YWRtaW46YWRtaW4="},
                   {"authorization": "Bearer wrong-token"}, {"authorization": f"Bearer {server.admin_token}x"},
                   {"authorization": "Bearer a.b.c"}):
        r = httpx.post(f"{server.url}{LIST_PC}", content=b"{}",
                       headers={"content-type": "application/json", **header})
        assert_error(r, 401, "unauthenticated")
        assert r.json()["message"] == "unauthenticated"


def test_request_id_is_echoed_or_made(server):
    r = post(server, LIST_PC, b"{}", headers={"x-request-id": "trace-123"})
    assert r.headers["x-request-id"] == "trace-123"
    r = post(server, LIST_PC, b"{}", headers={"x-request-id": "bad id with spaces"})
    assert r.headers["x-request-id"] != "bad id with spaces" and len(r.headers["x-request-id"]) == 16


# ---- validation and store rules through the API ---------------------------------------------


def code_of(fn, *args, **kw) -> tuple[Code, str]:
    with pytest.raises(ConnectError) as e:
        fn(*args, **kw)
    return e.value.code, e.value.message


def test_field_validation_names_the_field(server, clients):
    c, h = clients, server.admin()
    code, msg = code_of(c.km.create_provider_config, km.CreateProviderConfigRequest(
        name="", manager="m", config_json=b"{}"), headers=h)
    assert code == Code.INVALID_ARGUMENT and msg == "name: value is required [required]"  # rule id as OpenTDF words it
    code, msg = code_of(c.km.get_provider_config, km.GetProviderConfigRequest(id="not-a-uuid"), headers=h)
    assert code == Code.INVALID_ARGUMENT and msg == "id: must be a valid UUID [string.uuid]"
    code, msg = code_of(c.kas_registry.create_key, kr.CreateKeyRequest(
        kas_id=str(uuid.uuid4()), key_id="", key_algorithm=objects_pb2.ALGORITHM_RSA_2048,
        key_mode=objects_pb2.KEY_MODE_PUBLIC_KEY_ONLY, public_key_ctx=objects_pb2.PublicKeyCtx(pem="x")), headers=h)
    assert code == Code.INVALID_ARGUMENT and "key_id: must be at least 1 characters" in msg


def test_store_rules(server, clients):
    c, h = clients, server.admin()
    name = uniq("dup")
    req = km.CreateProviderConfigRequest(name=name, manager="opentdf.io/basic", config_json=b"{}")
    pc = c.km.create_provider_config(req, headers=h).provider_config
    assert code_of(c.km.create_provider_config, req, headers=h)[0] == Code.ALREADY_EXISTS
    code, msg = code_of(c.km.create_provider_config, km.CreateProviderConfigRequest(
        name=uniq("x"), manager="m", config_json=b"[1, 2]"), headers=h)
    assert code == Code.INVALID_ARGUMENT and "config_json" in msg
    code, msg = code_of(c.km.create_provider_config, km.CreateProviderConfigRequest(
        name=uniq("x"), manager="m", config_json=b"{not json"), headers=h)
    assert code == Code.INVALID_ARGUMENT and "config_json" in msg
    assert code_of(c.km.get_provider_config, km.GetProviderConfigRequest(id=str(uuid.uuid4())),
                   headers=h)[0] == Code.NOT_FOUND
    assert code_of(c.km.get_provider_config, km.GetProviderConfigRequest(name=name),
                   headers=h)[0] == Code.INVALID_ARGUMENT  # name without manager
    assert code_of(c.km.update_provider_config, km.UpdateProviderConfigRequest(id=str(uuid.uuid4()), name="n"),
                   headers=h)[0] == Code.NOT_FOUND
    assert code_of(c.km.update_provider_config, km.UpdateProviderConfigRequest(id=pc.id),
                   headers=h)[0] == Code.INVALID_ARGUMENT  # nothing to update
    assert code_of(c.km.delete_provider_config, km.DeleteProviderConfigRequest(id=str(uuid.uuid4())),
                   headers=h)[0] == Code.NOT_FOUND

    # A provider-mode key referencing the config: deleting the config is refused as OpenTDF does
    # (invalid_argument, a restriction), naming the keys.
    kas = create_kas(c, server)
    private, public = rsa_pair()
    c.kas_registry.create_key(kr.CreateKeyRequest(
        kas_id=kas.id, key_id=uniq("pk"), key_algorithm=objects_pb2.ALGORITHM_RSA_2048,
        key_mode=objects_pb2.KEY_MODE_PROVIDER_ROOT_KEY, provider_config_id=pc.id,
        public_key_ctx=objects_pb2.PublicKeyCtx(pem=public),
        private_key_ctx=objects_pb2.PrivateKeyCtx(key_id="kek", wrapped_key=wrap_with_root(server, private))),
        headers=h)
    code, msg = code_of(c.km.delete_provider_config, km.DeleteProviderConfigRequest(id=pc.id), headers=h)
    assert code == Code.INVALID_ARGUMENT and "used by keys" in msg

    # KAS rules.
    assert code_of(c.kas_registry.create_key_access_server, kr.CreateKeyAccessServerRequest(
        uri=kas.uri, name=uniq("other")), headers=h)[0] == Code.ALREADY_EXISTS
    assert code_of(c.kas_registry.create_key_access_server, kr.CreateKeyAccessServerRequest(
        uri="ftp://x", name=uniq("bad")), headers=h)[0] == Code.INVALID_ARGUMENT
    assert code_of(c.kas_registry.get_key_access_server, kr.GetKeyAccessServerRequest(kas_id=str(uuid.uuid4())),
                   headers=h)[0] == Code.NOT_FOUND


def test_key_rules(server, clients):
    c, h = clients, server.admin()
    kas = create_kas(c, server)
    key = create_local_key(c, server, kas.id)
    private, public = rsa_pair()

    def create(**over):
        fields = dict(kas_id=kas.id, key_id=uniq("k"), key_algorithm=objects_pb2.ALGORITHM_RSA_2048,
                      key_mode=objects_pb2.KEY_MODE_CONFIG_ROOT_KEY,
                      public_key_ctx=objects_pb2.PublicKeyCtx(pem=public),
                      private_key_ctx=objects_pb2.PrivateKeyCtx(key_id="root",
                                                                wrapped_key=wrap_with_root(server, private)))
        fields.update(over)
        return code_of(c.kas_registry.create_key, kr.CreateKeyRequest(**fields), headers=h)

    assert create(key_id=key.key.key_id)[0] == Code.ALREADY_EXISTS
    assert create(kas_id=str(uuid.uuid4()))[0] == Code.INVALID_ARGUMENT  # a broken relation, as OpenTDF
    code, msg = create(private_key_ctx=objects_pb2.PrivateKeyCtx(key_id="root", wrapped_key="AAAA"))
    assert code == Code.INVALID_ARGUMENT and "root key" in msg
    code, msg = create(public_key_ctx=objects_pb2.PublicKeyCtx(pem=rsa_pair()[1]))
    assert code == Code.INVALID_ARGUMENT and "does not match" in msg
    code, msg = create(key_algorithm=objects_pb2.ALGORITHM_EC_P256)
    assert code == Code.INVALID_ARGUMENT
    code, _ = create(key_mode=objects_pb2.KEY_MODE_REMOTE)  # remote needs a provider config, no wrapped key
    assert code == Code.INVALID_ARGUMENT
    code, msg = create(provider_config_id=str(uuid.uuid4()), key_mode=objects_pb2.KEY_MODE_PROVIDER_ROOT_KEY)
    assert code == Code.INVALID_ARGUMENT and "provider_config_id" in msg  # a broken relation, as OpenTDF
    code, _ = create(key_mode=objects_pb2.KEY_MODE_PUBLIC_KEY_ONLY, private_key_ctx=None,
                     public_key_ctx=objects_pb2.PublicKeyCtx(pem="-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"))
    assert code == Code.INVALID_ARGUMENT
    assert code_of(c.kas_registry.get_key, kr.GetKeyRequest(id=str(uuid.uuid4())), headers=h)[0] == Code.NOT_FOUND
    assert code_of(c.kas_registry.get_key, kr.GetKeyRequest(key=kr.KasKeyIdentifier(kas_id=kas.id, kid="nope")),
                   headers=h)[0] == Code.NOT_FOUND
    # Rotating an already-rotated key.
    new = kr.RotateKeyRequest.NewKey(
        key_id=uniq("r"), algorithm=objects_pb2.ALGORITHM_RSA_2048, key_mode=objects_pb2.KEY_MODE_CONFIG_ROOT_KEY,
        public_key_ctx=objects_pb2.PublicKeyCtx(pem=public),
        private_key_ctx=objects_pb2.PrivateKeyCtx(key_id="root", wrapped_key=wrap_with_root(server, private)))
    c.kas_registry.rotate_key(kr.RotateKeyRequest(id=key.key.id, new_key=new), headers=h)
    new.key_id = uniq("r")
    assert code_of(c.kas_registry.rotate_key, kr.RotateKeyRequest(id=key.key.id, new_key=new),
                   headers=h)[0] == Code.FAILED_PRECONDITION
    # Pagination bounds reach the store's rule.
    code, _ = code_of(c.kas_registry.list_keys, kr.ListKeysRequest(
        pagination=__import__("host.server.protos", fromlist=["x"]).selectors_pb2.PageRequest(limit=100000)), headers=h)
    assert code == Code.INVALID_ARGUMENT


def test_secrets_not_in_logs(server):
    secret = "s3cr3t-" + uuid.uuid4().hex
    r = post(server, CREATE_PC, json.dumps({"name": uniq("sec"), "manager": "vault",
                                            "configJson": __import__("base64").b64encode(
                                                json.dumps({"token": secret}).encode()).decode()}).encode())
    assert r.status_code == 200
    assert post(server, CREATE_PC, json.dumps({"name": "", "configJson": secret}).encode()).status_code == 400
    text = server.log_text()
    assert secret not in text
    assert server.admin_token not in text and server.client_token not in text
    assert server.root_key_hex not in text
    for line in text.splitlines():
        if line.startswith("{"):
            json.loads(line)  # every log line is one JSON object
