"""Rewrap refuses bad input with a clear error, per key access object or per request.

TDFs are made by the unmodified SDK; where the SDK cannot express the bad
request (another signing key, an expired token, a malformed object) the test
builds the Rewrap call itself, the way the SDK does, and posts it over HTTP.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import json
import time
import uuid
import zipfile

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives import hashes

from tests.tdf.conftest import (decrypt_nano, decrypt_tdf, encrypt_nano, encrypt_tdf, sdk_for)

REWRAP = "/kas.AccessService/Rewrap"
OAEP_SHA1 = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)


# ---- helpers: a TDF's parts, and a Rewrap call built like the SDK builds it -------
def manifest_of(tdf: bytes) -> dict:
    return json.loads(zipfile.ZipFile(io.BytesIO(tdf)).read("0.manifest.json"))


def with_manifest(tdf: bytes, manifest: dict) -> bytes:
    src = zipfile.ZipFile(io.BytesIO(tdf))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("0.payload", src.read("0.payload"))
        z.writestr("0.manifest.json", json.dumps(manifest))
    return out.getvalue()


def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def request_body(manifest: dict, client_key, kao_mutate=None) -> dict:
    info = manifest["encryptionInformation"]
    kao = copy.deepcopy(info["keyAccess"][0])
    if kao_mutate:
        kao_mutate(kao)
    return {"clientPublicKey": pem(client_key),
            "requests": [{"policy": {"id": "policy", "body": info["policy"]},
                          "keyAccessObjects": [{"keyAccessObjectId": "kao-0", "keyAccessObject": kao}]}]}


def srt(body: dict, signing_key, *, exp_delta: int = 600) -> str:
    now = int(time.time())
    return jwt.encode({"requestBody": json.dumps(body), "iat": now, "exp": now + exp_delta}, signing_key,
                      algorithm="RS256")


def dpop_proof(kp, key, access_token: str) -> str:
    numbers = key.public_key().public_numbers()
    b64 = lambda n: base64.urlsafe_b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).decode().rstrip("=")  # noqa: E731
    ath = base64.urlsafe_b64encode(hashlib.sha256(access_token.encode()).digest()).decode().rstrip("=")
    claims = {"jti": uuid.uuid4().hex, "htm": "POST", "htu": f"{kp.url}{REWRAP}", "iat": int(time.time()), "ath": ath}
    return jwt.encode(claims, key, algorithm="RS256",
                      headers={"typ": "dpop+jwt", "jwk": {"kty": "RSA", "n": b64(numbers.n), "e": b64(numbers.e)}})


def post_rewrap(kp, token: str, headers: dict | None = None) -> httpx.Response:
    return httpx.post(f"{kp.url}{REWRAP}", json={"signedRequestToken": token}, timeout=30,
                      headers={"authorization": f"Bearer {kp.server.client_token}", **(headers or {})})


def only_result(resp: httpx.Response) -> dict:
    assert resp.status_code == 200, resp.text
    (policy,) = resp.json()["responses"]
    (result,) = policy["results"]
    return result


def fresh_tdf(kp, data: bytes = b"secret payload", kas_info=None) -> bytes:
    sdk = sdk_for(kp)
    try:
        return encrypt_tdf(sdk, data, kas_info)
    finally:
        sdk.close()


def sdk_decrypt(kp, tdf: bytes) -> bytes:
    sdk = sdk_for(kp)
    try:
        return decrypt_tdf(sdk, tdf)
    finally:
        sdk.close()


# ---- the cases ------------------------------------------------------------------
def test_sdk_made_request_is_permitted(basic_kas):
    """The positive control for the hand-built requests below."""
    client = rsa_key()
    result = only_result(post_rewrap(basic_kas, srt(request_body(manifest_of(fresh_tdf(basic_kas)), client), rsa_key())))
    assert result["status"] == "permit"
    assert len(client.decrypt(base64.b64decode(result["kasWrappedKey"]), OAEP_SHA1)) == 32


def test_tampered_policy_binding_is_permission_denied(basic_kas):
    tdf = fresh_tdf(basic_kas)
    m = manifest_of(tdf)
    kao = m["encryptionInformation"]["keyAccess"][0]
    kao["policyBinding"]["hash"] = base64.b64encode(hashlib.sha256(b"forged").hexdigest().encode()).decode()
    with pytest.raises(ValueError, match="Unable to unwrap"):
        sdk_decrypt(basic_kas, with_manifest(tdf, m))
    result = only_result(post_rewrap(basic_kas, srt(request_body(m, rsa_key()), rsa_key())))
    assert result["status"] == "fail"
    assert result["error"].startswith("permission_denied: policy binding mismatch")
    assert "kasWrappedKey" not in result


def test_altered_policy_is_permission_denied(basic_kas):
    tdf = fresh_tdf(basic_kas)
    m = manifest_of(tdf)
    policy = json.loads(base64.b64decode(m["encryptionInformation"]["policy"]))
    policy["body"]["dataAttributes"] = [{"attribute": "https://example.com/attr/level/value/public"}]
    m["encryptionInformation"]["policy"] = base64.b64encode(json.dumps(policy).encode()).decode()
    with pytest.raises(ValueError, match="Unable to unwrap"):
        sdk_decrypt(basic_kas, with_manifest(tdf, m))
    result = only_result(post_rewrap(basic_kas, srt(request_body(m, rsa_key()), rsa_key())))
    assert result["error"].startswith("permission_denied: policy binding mismatch")


def test_tampered_nanotdf_binding_is_permission_denied(basic_kas):
    sdk = sdk_for(basic_kas)
    try:
        nano = bytearray(encrypt_nano(sdk, basic_kas, b"nano payload"))
        assert decrypt_nano(sdk, basic_kas, bytes(nano)) == b"nano payload"
        from otdf_python.header import Header

        header_len = Header.peek_length(bytes(nano))
        nano[header_len - 33 - 1] ^= 0x01  # last byte of the 8-byte binding, before the 33-byte ephemeral key
        with pytest.raises(Exception, match="Missing decryption key"):
            decrypt_nano(sdk, basic_kas, bytes(nano))
    finally:
        sdk.close()
    assert "permission_denied" in basic_kas.server.wait_for_log("permission_denied")


def test_unknown_kid_is_not_found(basic_kas):
    tdf = fresh_tdf(basic_kas)
    m = manifest_of(tdf)
    m["encryptionInformation"]["keyAccess"][0]["kid"] = "no-such-key"
    with pytest.raises(ValueError, match="Unable to unwrap"):
        sdk_decrypt(basic_kas, with_manifest(tdf, m))
    result = only_result(post_rewrap(basic_kas, srt(request_body(m, rsa_key()), rsa_key())))
    assert result["error"] == "not_found: this KAS has no key 'no-such-key'"


def test_rotated_key_still_decrypts(basic_kas):
    before = fresh_tdf(basic_kas, b"written before the rotation")
    old_kid = manifest_of(before)["encryptionInformation"]["keyAccess"][0]["kid"]
    rotated = basic_kas.activate("rsa:2048", "local")
    assert rotated["rotated"] == old_kid
    # the server may answer PublicKey from a short-lived cache: wait until it names the new key
    for _ in range(200):
        kid = httpx.post(f"{basic_kas.url}/kas.AccessService/PublicKey", json={}, timeout=30,
                         headers={"authorization": f"Bearer {basic_kas.server.client_token}"}).json()["kid"]
        if kid == rotated["key_id"]:
            break
        time.sleep(0.1)
    after = fresh_tdf(basic_kas, b"written after the rotation")
    assert manifest_of(after)["encryptionInformation"]["keyAccess"][0]["kid"] == rotated["key_id"]
    assert sdk_decrypt(basic_kas, before) == b"written before the rotation"
    assert sdk_decrypt(basic_kas, after) == b"written after the rotation"


def test_token_signed_by_another_key_is_unauthenticated(basic_kas):
    dpop_key, other = rsa_key(), rsa_key()
    body = request_body(manifest_of(fresh_tdf(basic_kas)), rsa_key())
    token = basic_kas.server.client_token
    good = post_rewrap(basic_kas, srt(body, dpop_key), {"dpop": dpop_proof(basic_kas, dpop_key, token)})
    assert only_result(good)["status"] == "permit"
    bad = post_rewrap(basic_kas, srt(body, other), {"dpop": dpop_proof(basic_kas, dpop_key, token)})
    assert bad.status_code == 401
    assert bad.json() == {"code": "unauthenticated",
                          "message": "signed_request_token signature does not verify with the DPoP key"}


def test_replayed_dpop_proof_is_unauthenticated(basic_kas):
    key = rsa_key()
    body = request_body(manifest_of(fresh_tdf(basic_kas)), rsa_key())
    proof = dpop_proof(basic_kas, key, basic_kas.server.client_token)
    assert post_rewrap(basic_kas, srt(body, key), {"dpop": proof}).status_code == 200
    again = post_rewrap(basic_kas, srt(body, key), {"dpop": proof})
    assert again.status_code == 401 and "replay" in again.json()["message"]


def test_expired_token_is_unauthenticated(basic_kas):
    body = request_body(manifest_of(fresh_tdf(basic_kas)), rsa_key())
    resp = post_rewrap(basic_kas, srt(body, rsa_key(), exp_delta=-120))
    assert resp.status_code == 401
    assert resp.json()["message"] == "signed_request_token has expired"


@pytest.mark.parametrize("mutate, error", [
    (lambda k: k.update(wrappedKey="not base64!"), "invalid_argument: wrappedKey is not valid base64"),
    (lambda k: k.pop("policyBinding"), "invalid_argument: policyBinding is required"),
    (lambda k: k.update(type="remote-wrapped"), "invalid_argument: key access object type must be one of ec-wrapped, hybrid-wrapped, mlkem-wrapped, wrapped"),
    (lambda k: k.update(type="ec-wrapped"), "invalid_argument: an ec-wrapped key access object needs ephemeralPublicKey"),
    (lambda k: k.update(kid=["r1"]), "invalid_argument: kid must be a string"),
    (lambda k: k.update(policyBinding={"alg": "HS256", "hash": "AAAA"}), "invalid_argument: policyBinding.hash must hold"),
], ids=["wrapped-key-not-base64", "no-binding", "unknown-type", "ec-without-ephemeral", "kid-not-string", "short-binding"])
def test_malformed_key_access_object_is_invalid_argument(basic_kas, mutate, error):
    body = request_body(manifest_of(fresh_tdf(basic_kas)), rsa_key(), kao_mutate=mutate)
    result = only_result(post_rewrap(basic_kas, srt(body, rsa_key())))
    assert result["status"] == "fail" and result["error"].startswith(error), result


@pytest.mark.parametrize("body, message", [
    ("not json", "requestBody is not valid JSON"),
    ({"clientPublicKey": "x", "requests": [{"keyAccessObjects": []}]}, "requestBody.clientPublicKey does not parse"),
    ({"requests": []}, "requestBody.clientPublicKey is required"),
])
def test_malformed_request_body_is_invalid_argument(basic_kas, body, message):
    now = int(time.time())
    claims = {"requestBody": body if isinstance(body, str) else json.dumps(body), "iat": now, "exp": now + 60}
    resp = post_rewrap(basic_kas, jwt.encode(claims, rsa_key(), algorithm="RS256"))
    assert resp.status_code == 400 and resp.json()["message"].startswith(message), resp.text


def test_unsigned_token_and_missing_credentials_are_refused(basic_kas):
    body = request_body(manifest_of(fresh_tdf(basic_kas)), rsa_key())
    unsigned = jwt.encode({"requestBody": json.dumps(body), "exp": int(time.time()) + 60}, None, algorithm="none")
    resp = post_rewrap(basic_kas, unsigned)
    assert resp.status_code == 401 and "asymmetric algorithm" in resp.json()["message"]
    anonymous = httpx.post(f"{basic_kas.url}{REWRAP}", json={"signedRequestToken": srt(body, rsa_key())}, timeout=30)
    assert anonymous.status_code == 401


def test_key_wrapped_to_another_kas_is_refused(basic_kas):
    """The SDK wraps to a public key that is not this KAS's (as a TDF for another KAS would), naming our kid."""
    from otdf_python.config import KASInfo

    current = manifest_of(fresh_tdf(basic_kas))["encryptionInformation"]["keyAccess"][0]["kid"]
    elsewhere = KASInfo(url=basic_kas.kas_url, public_key=pem(rsa_key()), kid=current)
    tdf = fresh_tdf(basic_kas, kas_info=elsewhere)
    with pytest.raises(ValueError, match="Unable to unwrap"):
        sdk_decrypt(basic_kas, tdf)
    result = only_result(post_rewrap(basic_kas, srt(request_body(manifest_of(tdf), rsa_key()), rsa_key())))
    assert result["error"].startswith(f"permission_denied: the wrapped key does not unwrap with key '{current}'")


def test_ec_client_key_gets_a_session_key(basic_kas):
    """An EC clientPublicKey: the DEK comes back under an ECDH session key (KAS session public key returned)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    client = ec.generate_private_key(ec.SECP256R1())
    body = request_body(manifest_of(fresh_tdf(basic_kas)), client)
    resp = post_rewrap(basic_kas, srt(body, rsa_key()))
    result = only_result(resp)
    session = serialization.load_pem_public_key(resp.json()["sessionPublicKey"].encode())
    key = HKDF(hashes.SHA256(), 32, hashlib.sha256(b"TDF").digest(), None).derive(client.exchange(ec.ECDH(), session))
    blob = base64.b64decode(result["kasWrappedKey"])
    assert len(AESGCM(key).decrypt(blob[:12], blob[12:], None)) == 32
