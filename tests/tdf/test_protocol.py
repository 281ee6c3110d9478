"""host.kas without a transport: the decision hook, strict request-token checking,
NanoTDF header parsing, and the discovery document served by `platform serve`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from host import crypto, errors
from host.app import Platform, Settings
from host.kas import decision, nanotdf
from host.kas.rewrap import Caller, Rewrapper
from host.kas.srt import SrtVerifier


def _pem(key) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


@pytest.fixture
def platform(tmp_path):
    key_file = tmp_path / "root.key"
    key_file.write_text(secrets.token_hex(32))
    p = Platform(Settings(db_url=f"sqlite:///{tmp_path / 'p.db'}", root_key_file=str(key_file)))
    p.store.kas.create("http://kas.test/kas", "kas")
    p.keys.create_key(None, "r1", "rsa:2048", "local")
    yield p
    p.close()


def _request(platform, dek: bytes = None, policy: dict | None = None, client=None) -> tuple[dict, object]:
    """A v2 request body for one RSA-wrapped DEK, as otdf-python builds it."""
    dek = dek or os.urandom(32)
    public = serialization.load_pem_public_key(platform.keys.public_key(algorithm="rsa:2048").public_key_pem.encode())
    policy_b64 = base64.b64encode(json.dumps(policy or {"uuid": "p", "body": {}}).encode()).decode()
    binding = base64.b64encode(hmac.new(dek, policy_b64.encode(), hashlib.sha256).hexdigest().encode()).decode()
    client = client or rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kao = {"type": "wrapped", "protocol": "kas", "kid": "r1", "url": "http://kas.test/kas",
           "wrappedKey": base64.b64encode(crypto.rsa_wrap(public, dek)).decode(),
           "policyBinding": {"alg": "HS256", "hash": binding}}
    return ({"clientPublicKey": _pem(client),
             "requests": [{"policy": {"id": "policy", "body": policy_b64},
                           "keyAccessObjects": [{"keyAccessObjectId": "kao-0", "keyAccessObject": kao}]}]}, client)


def _token(body: dict, key) -> str:
    now = int(time.time())
    return jwt.encode({"requestBody": json.dumps(body), "iat": now, "exp": now + 60}, key, algorithm="RS256")


CLIENT = Caller(subject="token:test", roles=frozenset({"client"}))


def test_default_decision_permits_authenticated_clients(platform):
    body, client = _request(platform)
    (policy,) = Rewrapper(platform.keys).rewrap(_token(body, client), CLIENT).responses
    assert policy.results[0].status == "permit"
    assert decision.allow_authenticated(decision.DecisionRequest("s", frozenset(), "p", None, (), "ztdf")) is False


def test_a_denying_hook_fails_every_object_of_the_policy(platform):
    seen = []

    def deny_secret(req: decision.DecisionRequest) -> bool:
        seen.append(req)
        return "secret" not in json.dumps(req.policy)

    body, client = _request(platform, policy={"uuid": "p", "body": {"dataAttributes": [{"attribute": "secret"}]}})
    (policy,) = Rewrapper(platform.keys, decide=deny_secret).rewrap(_token(body, client), CLIENT).responses
    assert policy.results[0].status == "fail"
    assert policy.results[0].error == "permission_denied: access denied by the access decision for this policy"
    assert seen[0].key_ids == ("r1",) and seen[0].container == "ztdf" and seen[0].subject == "token:test"


def test_a_raising_hook_fails_closed(platform):
    def broken(req):
        raise RuntimeError("boom")

    body, client = _request(platform)
    (policy,) = Rewrapper(platform.keys, decide=broken).rewrap(_token(body, client), CLIENT).responses
    assert policy.results[0].error == "internal: the access decision could not be made"


def test_decision_hook_spec_errors():
    assert decision.load("") is decision.allow_authenticated
    assert decision.load("json:dumps") is json.dumps
    with pytest.raises(errors.InvalidArgument, match="must be 'package.module:function'"):
        decision.load("nocolon")
    with pytest.raises(errors.InvalidArgument, match="cannot load"):
        decision.load("no_such_module_xyz:f")


def test_strict_mode_refuses_tokens_not_signed_by_the_client_key(platform):
    body, client = _request(platform)
    strict = Rewrapper(platform.keys, verifier=SrtVerifier(require_signature=True))
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(errors.Unauthenticated, match="does not verify with a DPoP key or the client public key"):
        strict.rewrap(_token(body, other), CLIENT)
    result = strict.rewrap(_token(body, client), CLIENT)  # signed with the key it carries: verified
    assert result.signer == "client-key" and result.responses[0].results[0].status == "permit"


def test_lenient_mode_reports_unverified_tokens(platform):
    body, client = _request(platform)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert Rewrapper(platform.keys).rewrap(_token(body, other), CLIENT).signer == "unverified"
    # without a DPoP proof the default mode checks no signature, so it claims none either
    result = Rewrapper(platform.keys).rewrap(_token(body, client), CLIENT)
    assert result.signer == "unverified" and result.responses[0].results[0].status == "permit"


def test_dpop_bound_access_token_requires_a_proof(platform):
    body, client = _request(platform)
    bound = jwt.encode({"sub": "x", "cnf": {"jkt": "abc"}}, "k" * 32, algorithm="HS256")
    with pytest.raises(errors.Unauthenticated, match="DPoP-bound"):
        Rewrapper(platform.keys).rewrap(_token(body, client), Caller("s", frozenset({"client"}), access_token=bound))


@pytest.mark.parametrize("cut, message", [
    (2, "wrong magic"), (4, "truncated"), (None, None),
])
def test_nanotdf_header_parsing(cut, message):
    from cryptography.hazmat.primitives.asymmetric import ec

    eph = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
    policy = b'{"body":{}}'
    header = (b"L1L" + bytes([0x10, 9]) + b"kas.test/" + b"e1" + bytes([0, 5, 1]) + len(policy).to_bytes(2, "big")
              + policy + hashlib.sha256(policy).digest()[-8:] + eph)
    if cut is None:
        h = nanotdf.parse_header(header)
        assert (h.kas_url, h.kid, h.algorithm, h.ephemeral_key) == ("http://kas.test/", "e1", "ec:secp256r1", eph)
        assert h.unkeyed_binding() and h.tag_size == 16 and h.policy(b"k" * 32) == {"body": {}}
        assert not nanotdf.parse_header(header.replace(policy, b'{"body":[]}')).unkeyed_binding()
        with pytest.raises(errors.PermissionDenied, match="policy binding mismatch"):
            h.check_gmac(b"k" * 32)  # 8 bytes that are no GMAC under this key
        return
    data = b"XYZ" + header[3:] if cut == 2 else header[:-cut]
    with pytest.raises(errors.InvalidArgument, match=message):
        nanotdf.parse_header(data)


def test_well_known_configuration_is_public(basic_kas):
    resp = httpx.get(f"{basic_kas.url}/.well-known/opentdf-configuration", timeout=30)
    assert resp.status_code == 200
    doc = resp.json()["configuration"]
    assert doc["kas"]["rewrap"] == "/kas.AccessService/Rewrap" and doc["platform_issuer"] == ""
    assert httpx.post(f"{basic_kas.url}/.well-known/opentdf-configuration", timeout=30).status_code == 405


def test_nanotdf_after_rotation_uses_the_new_active_key(basic_kas):
    """otdf-python writes the placeholder kid "e1": new NanoTDFs follow the active EC key."""
    from tests.tdf.conftest import roundtrip

    from host.service.keys import PUBLIC_KEY_TTL

    rotated = basic_kas.activate("ec:secp256r1", "local")
    new_kid = rotated["key_id"]
    assert rotated["rotated"] == "e1" and new_kid != "e1"
    # PublicKey may answer from its cache for PUBLIC_KEY_TTL seconds; wait at most ten times that
    for _ in range(int(PUBLIC_KEY_TTL / 0.1) * 10):
        kid = httpx.post(f"{basic_kas.url}/kas.AccessService/PublicKey", json={"algorithm": "ec:secp256r1"},
                         headers={"authorization": f"Bearer {basic_kas.server.client_token}"}, timeout=30).json()["kid"]
        if kid == new_kid:
            break
        time.sleep(0.1)
    assert kid == new_kid, f"PublicKey still answers {kid!r} after the rotation to {new_kid!r}"
    # The SDK encrypts to the new key but names it "e1" (the old key's kid): the roundtrip works only
    # when Rewrap serves the placeholder with the curve's active key, not the key literally named "e1".
    assert roundtrip(basic_kas, "ec:secp256r1", b"after rotation") == b"after rotation"
