"""OIDC tokens without `kid`: every JWKS key of the token's type is tried, not just the first
(issue 13 item 9). JWKS from a file and from a loopback URL, against a served platform."""

from __future__ import annotations

import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.server.conftest import serve_json, start_server
from tests.server.test_oidc import AUDIENCE, ISSUER, LIST_PC, call


class Keys:
    def __init__(self):
        self.old_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)   # listed first
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # not in the JWKS

    def jwks(self) -> dict:
        keys = []
        for kid, key, alg in (("old", self.old_rsa, jwt.algorithms.RSAAlgorithm),
                              ("rsa1", self.rsa, jwt.algorithms.RSAAlgorithm),
                              ("ec1", self.ec, jwt.algorithms.ECAlgorithm)):
            doc = json.loads(alg.to_jwk(key.public_key()))
            doc.update(kid=kid, use="sig")
            keys.append(doc)
        return {"keys": keys}

    def token(self, key, alg="RS256") -> str:
        now = int(time.time())
        return jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": "bob", "iat": now, "exp": now + 300,
                           "realm_access": {"roles": ["opentdf-admin"]}}, key, algorithm=alg)  # no kid


@pytest.fixture(scope="module")
def keys():
    return Keys()


@pytest.fixture(scope="module", params=["file", "url"])
def server(request, tmp_path_factory, keys):
    tmp = tmp_path_factory.mktemp(f"oidc-kid-{request.param}")
    body = json.dumps(keys.jwks()).encode()
    httpd = None
    if request.param == "file":
        (tmp / "jwks.json").write_bytes(body)
        source = str(tmp / "jwks.json")
    else:
        httpd = serve_json(body)
        source = f"http://127.0.0.1:{httpd.server_port}/certs"
    s = start_server(tmp, f"sqlite:///{tmp / 'state' / 'platform.db'}", env_extra={
        "PLATFORM_OIDC_ISSUER": ISSUER, "PLATFORM_OIDC_AUDIENCE": AUDIENCE, "PLATFORM_OIDC_JWKS": source,
        "PLATFORM_OIDC_ROLE_CLAIM": "realm_access.roles"})
    yield s
    s.stop()
    if httpd is not None:
        httpd.shutdown()


def test_rs256_without_kid_signed_by_a_later_key(server, keys):
    assert jwt.get_unverified_header(keys.token(keys.rsa)).get("kid") is None
    assert call(server, LIST_PC, keys.token(keys.rsa)).status_code == 200
    assert call(server, LIST_PC, keys.token(keys.old_rsa)).status_code == 200


def test_es256_without_kid_finds_the_ec_key(server, keys):
    assert call(server, LIST_PC, keys.token(keys.ec, "ES256")).status_code == 200


def test_without_kid_a_key_outside_the_jwks_is_refused(server, keys):
    r = call(server, LIST_PC, keys.token(keys.stranger))
    assert r.status_code == 401 and r.json() == {"code": "unauthenticated", "message": "unauthenticated"}
