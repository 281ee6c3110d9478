"""OpenTDF's REST routes for the KAS against a real `platform serve`: shapes as its grpc-gateway
answered them, the Connect procedures' auth and limits, one access line per request (REST, ops
and unknown paths alike), and key access objects without a kid across rotations."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from host import crypto
from tests.tdf.conftest import start_kas_platform


@pytest.fixture(scope="module")
def kp(tmp_path_factory):
    kp = start_kas_platform(tmp_path_factory.mktemp("rest"), env={"PLATFORM_MAX_BODY_BYTES": "65536"})
    kp.activate("rsa:2048", "local", key_id="r1")
    kp.activate("ec:secp256r1", "local", key_id="e1")
    yield kp
    kp.stop()


def _pem_of(kp, kid: str) -> str:
    r = httpx.get(f"{kp.url}/kas/v2/kas_public_key", params={"kid": kid})
    assert r.status_code == 200, r.text
    return r.json()["publicKey"]


def _log_lines(kp, path: str) -> list[dict]:
    out = []
    for line in kp.server.log_text().splitlines():
        if f'"path":"{path}"' in line:
            out.append(json.loads(line))
    return out


# ---- public keys ---------------------------------------------------------------------------

def test_legacy_public_key_is_a_bare_json_string_without_credentials(kp):
    r1 = _pem_of(kp, "r1")
    for params in ({}, {"v": "2"}, {"algorithm": "rsa:2048"}):  # v is no field of the request: ignored
        r = httpx.get(f"{kp.url}/kas/kas_public_key", params=params)
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        assert r.json() == r1
    ec = httpx.get(f"{kp.url}/kas/kas_public_key", params={"algorithm": "ec:secp256r1"}).json()
    assert ec == _pem_of(kp, "e1") and "BEGIN PUBLIC KEY" in ec


def test_v2_public_key_shapes(kp):
    base = f"{kp.url}/kas/v2/kas_public_key"
    assert httpx.get(base).json() == {"publicKey": _pem_of(kp, "r1"), "kid": "r1"}
    # v=1 hides the kid, and the field is still present (the gateway emitted unpopulated fields)
    assert httpx.get(base, params={"v": "1"}).json() == {"publicKey": _pem_of(kp, "r1"), "kid": ""}
    assert httpx.get(base, params={"algorithm": "ec:secp256r1"}).json()["kid"] == "e1"
    jwk = json.loads(httpx.get(base, params={"fmt": "jwk"}).json()["publicKey"])
    assert jwk["kty"] == "RSA" and jwk["kid"] == "r1"
    missing = httpx.get(base, params={"algorithm": "rsa:4096"})
    assert missing.status_code == 404
    body = missing.json()
    assert body["code"] == 5 and body["details"] == [] and "rsa:4096" in body["message"]
    wrong = httpx.post(f"{kp.url}/kas/kas_public_key")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "GET" and wrong.json()["code"] == 12


@pytest.fixture(scope="module")
def auth_required(tmp_path_factory):
    kp = start_kas_platform(tmp_path_factory.mktemp("rest-auth"),
                            env={"PLATFORM_KAS_PUBLIC_KEY_REQUIRES_AUTH": "true"})
    kp.activate("rsa:2048", "local", key_id="r1")
    yield kp
    kp.stop()


def test_public_key_routes_need_a_token_when_the_operator_says_so(auth_required):
    kp = auth_required
    for path in ("/kas/kas_public_key", "/kas/v2/kas_public_key", "/kas.AccessService/LegacyPublicKey"):
        method = httpx.post if "." in path else httpx.get
        kwargs = {"json": {}} if "." in path else {}
        r = method(f"{kp.url}{path}", **kwargs)
        assert r.status_code == 401, (path, r.text)
        r = method(f"{kp.url}{path}", headers=kp.server.client(), **kwargs)
        assert r.status_code == 200, (path, r.text)
    assert httpx.get(f"{kp.url}/kas/v2/kas_public_key", headers=kp.server.client()).json()["kid"] == "r1"


# ---- rewrap ---------------------------------------------------------------------------------

def _kao(public_pem: str, dek: bytes, policy_b64: str, kid: str | None) -> dict:
    public = serialization.load_pem_public_key(public_pem.encode())
    binding = base64.b64encode(hmac.new(dek, policy_b64.encode(), hashlib.sha256).hexdigest().encode()).decode()
    kao = {"type": "wrapped", "protocol": "kas", "url": "http://kas.test/kas",
           "wrappedKey": base64.b64encode(crypto.rsa_wrap(public, dek)).decode(),
           "policyBinding": {"alg": "HS256", "hash": binding}}
    if kid is not None:
        kao["kid"] = kid
    return kao


def _v1_token(public_pem: str, dek: bytes, kid: str | None, client) -> str:
    """The request @opentdf/client sends for a standard TDF: v1 body, keyAccess + policy."""
    policy_b64 = base64.b64encode(json.dumps({"uuid": "p", "body": {}}).encode()).decode()
    client_pem = client.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    body = {"algorithm": "RS256", "keyAccess": _kao(public_pem, dek, policy_b64, kid), "policy": policy_b64,
            "clientPublicKey": client_pem}
    now = int(time.time())
    return jwt.encode({"requestBody": json.dumps(body), "iat": now, "exp": now + 60}, client, algorithm="RS256")


_CLIENT = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _rewrap(kp, token: str, headers=None) -> httpx.Response:
    return httpx.post(f"{kp.url}/kas/v2/rewrap", json={"signedRequestToken": token},
                      headers=kp.server.client() if headers is None else headers, timeout=30)


def _dek_of(resp: httpx.Response) -> bytes:
    assert resp.status_code == 200 and resp.json()["entityWrappedKey"], resp.text
    wrapped = base64.b64decode(resp.json()["entityWrappedKey"])
    return _CLIENT.decrypt(wrapped, crypto.OAEP_SHA1)


def test_rest_rewrap_answers_as_the_gateway(kp):
    dek = os.urandom(32)
    r = _rewrap(kp, _v1_token(_pem_of(kp, "r1"), dek, "r1", _CLIENT))
    assert _dek_of(r) == dek
    doc = r.json()
    # every field of RewrapResponse present, as the gateway's protojson (EmitUnpopulated) wrote it
    assert set(doc) == {"metadata", "entityWrappedKey", "sessionPublicKey", "schemaVersion", "responses"}
    assert doc["responses"][0]["results"][0]["status"] == "permit"
    # the same handler answers the Connect procedure
    connect = httpx.post(f"{kp.url}/kas.AccessService/Rewrap", headers=kp.server.client(),
                         json={"signedRequestToken": _v1_token(_pem_of(kp, "r1"), dek, "r1", _CLIENT)})
    assert _dek_of(connect) == dek


def test_rest_rewrap_has_the_procedures_auth_and_limits(kp):
    token = _v1_token(_pem_of(kp, "r1"), os.urandom(32), "r1", _CLIENT)
    r = _rewrap(kp, token, headers={})
    assert r.status_code == 401 and r.json() == {"code": 16, "message": "unauthenticated", "details": []}
    assert httpx.get(f"{kp.url}/kas/v2/rewrap", headers=kp.server.client()).status_code == 405
    big = httpx.post(f"{kp.url}/kas/v2/rewrap", headers=kp.server.client(),
                     content=json.dumps({"signedRequestToken": "x" * 70000}))
    assert big.status_code == 429 and big.json()["code"] == 8  # PLATFORM_MAX_BODY_BYTES of this server
    bad = httpx.post(f"{kp.url}/kas/v2/rewrap", headers=kp.server.client(), content=b"{not json")
    assert bad.status_code == 400 and bad.json()["code"] == 3
    unknown_fields = _rewrap(kp, token)  # extra fields are ignored, as the gateway did
    assert unknown_fields.status_code == 200


def test_every_request_writes_an_access_line(kp):
    rid = "rest-log-check-1"
    httpx.get(f"{kp.url}/no/such/path", headers={"x-request-id": rid})
    httpx.get(f"{kp.url}/healthz")
    assert httpx.get(f"{kp.url}/.well-known/opentdf-configuration").status_code == 200
    httpx.get(f"{kp.url}/kas/kas_public_key")
    _rewrap(kp, _v1_token(_pem_of(kp, "r1"), os.urandom(32), "r1", _CLIENT))
    kp.server.wait_for_log('"path":"/no/such/path"', '"path":"/healthz"', '"path":"/kas/kas_public_key"',
                           '"path":"/.well-known/opentdf-configuration"',
                           '"path":"/kas/v2/rewrap"')
    (nf,) = _log_lines(kp, "/no/such/path")
    assert nf["code"] == "not_found" and nf["http_method"] == "GET" and nf["msg"] == "rpc"
    assert any(x["code"] == "ok" for x in _log_lines(kp, "/healthz"))
    assert any(x["code"] == "ok" for x in _log_lines(kp, "/.well-known/opentdf-configuration"))
    assert any(x["code"] == "ok" and x["identity"] == "anonymous" for x in _log_lines(kp, "/kas/kas_public_key"))
    rw = [x for x in _log_lines(kp, "/kas/v2/rewrap") if x["msg"] == "rewrap"]
    assert rw and rw[-1]["permitted"] == 1 and rw[-1]["identity"].startswith("token:")


# ---- key access objects without kid ----------------------------------------------------------

def test_kidless_objects_decrypt_after_rotations(kp):
    """Wrapped to the active key, then to each key after it is rotated out: the kid-less object
    written before any number of rotations still finds its key; a foreign key finds none."""
    deks = []
    for i in range(3):
        current = httpx.get(f"{kp.url}/kas/kas_public_key").json()
        dek = os.urandom(32)
        deks.append((current, dek))
        assert _dek_of(_rewrap(kp, _v1_token(current, dek, None, _CLIENT))) == dek
        kp.activate("rsa:2048", "local", key_id=f"kidless-{i}")
    for pem, dek in deks:  # every one written before at least one rotation
        assert _dek_of(_rewrap(kp, _v1_token(pem, dek, None, _CLIENT))) == dek
    foreign = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    r = _rewrap(kp, _v1_token(foreign, os.urandom(32), None, _CLIENT))
    assert r.status_code == 200
    (result,) = r.json()["responses"][0]["results"]
    assert result["status"] == "fail" and result["error"].startswith("permission_denied")
