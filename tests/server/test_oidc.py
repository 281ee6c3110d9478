"""OIDC JWTs against a throwaway issuer: JWKS from a file and from a loopback HTTP server."""

from __future__ import annotations

import json
import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from host.server import auth
from tests.server.conftest import serve_json, start_server

ISSUER = "https://issuer.test/realms/opentdf"
AUDIENCE = "http://platform.test"
LIST_PC = "/policy.keymanagement.KeyManagementService/ListProviderConfigs"
PUBLIC_KEY = "/kas.AccessService/PublicKey"


class Issuer:
    def __init__(self):
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.other = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # not in the JWKS

    def jwks(self) -> dict:
        keys = []
        for kid, key, alg in (("rsa1", self.rsa, jwt.algorithms.RSAAlgorithm), ("ec1", self.ec, jwt.algorithms.ECAlgorithm)):
            doc = json.loads(alg.to_jwk(key.public_key()))
            doc.update(kid=kid, use="sig")
            keys.append(doc)
        return {"keys": keys}

    def token(self, roles=("opentdf-admin",), *, key=None, kid="rsa1", alg="RS256", aud=AUDIENCE, iss=ISSUER,
              exp_in=300, claims=None) -> str:
        now = int(time.time())
        payload = {"iss": iss, "aud": aud, "sub": "alice", "iat": now, "exp": now + exp_in,
                   "realm_access": {"roles": list(roles)}}
        payload.update(claims or {})
        return jwt.encode(payload, key or (self.ec if alg == "ES256" else self.rsa), algorithm=alg,
                          headers={"kid": kid})


@pytest.fixture(scope="module")
def issuer():
    return Issuer()


@pytest.fixture(scope="module")
def jwks_url(issuer):
    httpd = serve_json(json.dumps(issuer.jwks()).encode())
    yield f"http://127.0.0.1:{httpd.server_port}/protocol/openid-connect/certs"
    httpd.shutdown()


@pytest.fixture(scope="module", params=["file", "url"])
def oidc_server(request, tmp_path_factory, issuer):
    tmp = tmp_path_factory.mktemp(f"oidc-{request.param}")
    if request.param == "file":
        jwks = tmp / "jwks.json"
        jwks.write_text(json.dumps(issuer.jwks()))
        source = str(jwks)
    else:
        source = request.getfixturevalue("jwks_url")
    s = start_server(tmp, f"sqlite:///{tmp / 'state' / 'platform.db'}", env_extra={
        "PLATFORM_OIDC_ISSUER": ISSUER, "PLATFORM_OIDC_AUDIENCE": AUDIENCE, "PLATFORM_OIDC_JWKS": source,
        "PLATFORM_OIDC_ROLE_CLAIM": "realm_access.roles"})
    yield s
    s.stop()


def call(server, path, token):
    return httpx.post(f"{server.url}{path}", content=b"{}", timeout=30,
                      headers={"content-type": "application/json", "authorization": f"Bearer {token}"})


def test_valid_tokens(oidc_server, issuer):
    assert call(oidc_server, LIST_PC, issuer.token()).status_code == 200
    assert call(oidc_server, LIST_PC, issuer.token(alg="ES256", kid="ec1")).status_code == 200
    # A standard (client) role: KAS RPCs yes (no key yet: not_found, past auth), policy RPCs no.
    standard = issuer.token(roles=("opentdf-standard",))
    r = call(oidc_server, PUBLIC_KEY, standard)
    assert r.json()["code"] != "unauthenticated" and r.status_code not in (401, 403)
    r = call(oidc_server, LIST_PC, standard)
    assert r.status_code == 403 and r.json() == {"code": "permission_denied", "message": "permission denied"}
    # no role at all: refused by a client-role RPC (PublicKey is public, so Rewrap)
    r = call(oidc_server, "/kas.AccessService/Rewrap", issuer.token(roles=()))
    assert r.status_code == 403


@pytest.mark.parametrize("case", ["expired", "wrong_signature", "wrong_audience", "wrong_issuer", "unknown_kid",
                                  "hs256", "none", "garbage", "no_exp"])
def test_rejected_tokens(oidc_server, issuer, case):
    if case == "expired":
        token = issuer.token(exp_in=-3600)
    elif case == "wrong_signature":
        token = issuer.token(key=issuer.other)  # kid says rsa1, signed by another key
    elif case == "wrong_audience":
        token = issuer.token(aud="http://someone-else")
    elif case == "wrong_issuer":
        token = issuer.token(iss="https://evil.test")
    elif case == "unknown_kid":
        token = issuer.token(kid="nope")
    elif case == "hs256":
        token = jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60,
                            "realm_access": {"roles": ["opentdf-admin"]}}, "k" * 32, algorithm="HS256")
    elif case == "none":
        token = jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60}, None, algorithm="none")
    elif case == "garbage":
        token = "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln"
    else:
        now = int(time.time())
        token = jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "iat": now, "realm_access": {"roles": ["opentdf-admin"]}},
                           issuer.rsa, algorithm="RS256", headers={"kid": "rsa1"})
    r = call(oidc_server, LIST_PC, token)
    assert r.status_code == 401
    assert r.json() == {"code": "unauthenticated", "message": "unauthenticated"}


def test_static_tokens_still_work_with_oidc(oidc_server):
    assert call(oidc_server, LIST_PC, oidc_server.admin_token).status_code == 200


def test_static_tokens_are_kept_as_hashes():
    tokens = auth.StaticTokens(["admin-secret"], ["client-secret"])
    assert "admin-secret" not in repr(vars(tokens)) and "client-secret" not in repr(vars(tokens))
    assert tokens.match("admin-secret").roles == {auth.ADMIN, auth.CLIENT}
    assert tokens.match("client-secret").roles == {auth.CLIENT}
    assert tokens.match("admin-secre") is None


def test_partial_oidc_configuration_is_refused():
    with pytest.raises(Exception) as e:
        auth.Authenticator.from_env({"PLATFORM_OIDC_ISSUER": ISSUER})
    assert "PLATFORM_OIDC_AUDIENCE" in str(e.value) and "PLATFORM_OIDC_JWKS" in str(e.value)


def test_token_file_and_dev_token(tmp_path):
    env: dict = {}
    token, path = auth.ensure_dev_admin_token(str(tmp_path / "state"), env)
    assert (tmp_path / "state" / "admin.token").stat().st_mode & 0o777 == 0o600
    assert env["PLATFORM_ADMIN_TOKEN_FILE"].endswith("admin.token")
    again, _ = auth.ensure_dev_admin_token(str(tmp_path / "state"), {})
    assert again == token  # reused, not regenerated
    a = auth.Authenticator.from_env(env)
    assert auth.ADMIN in a.authenticate(f"Bearer {token}").roles
    assert auth.ensure_dev_admin_token(str(tmp_path / "x"), {"PLATFORM_ADMIN_TOKENS": "t"}) is None
    with pytest.raises(Exception) as e:
        auth.Authenticator.from_env({"PLATFORM_CLIENT_TOKEN_FILE": str(tmp_path / "missing")})
    assert "PLATFORM_CLIENT_TOKEN_FILE" in str(e.value)
