"""NanoTDF policy binding under an access decision hook, against a served platform.

The hook (tests.tdf.decisions:deny_secret) denies policies naming the secret
attribute. Each bypass of issue 13 item 3 is tried: (a) a swapped header
policy with a recomputed unkeyed binding, (b) a harmless `policy.body` beside
a secret header, (c) a harmless decoy header before a secret one. The secret
object must never come back with a key; the hook decides every object on the
policy bound to that object. NanoTDFs bound as the specification defines
(GMAC with the payload key, ECDSA) are built here; the SDK writes the unkeyed
form.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tests.tdf.conftest import encrypt_nano, sdk_for, start_kas_platform
from tests.tdf.decisions import SECRET

REWRAP = "/kas.AccessService/Rewrap"
OAEP_SHA1 = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
HARMLESS = json.dumps({"uuid": "p-harmless", "body": {"dataAttributes": None, "dissem": []}}).encode()
SECRET_POLICY = json.dumps({"uuid": "p-secret", "body": {"dataAttributes": [{"attribute": SECRET}], "dissem": []}}).encode()
# The GMAC binding's nonce, as the KAS defines it (README): twelve 0xFF bytes.
GMAC_NONCE = b"\xff" * 12


@pytest.fixture(scope="module")
def hooked_kas(tmp_path_factory):
    kp = start_kas_platform(tmp_path_factory.mktemp("tdf-hook"),
                            env={"PLATFORM_KAS_DECISION": "tests.tdf.decisions:deny_secret"})
    kp.activate("rsa:2048", "local", key_id="r1")
    kp.activate("ec:secp256r1", "local", key_id="e1")
    yield kp
    kp.stop()


# ---- NanoTDF headers, built from the specification -------------------------------
def kas_ec_public_key(kp):
    resp = httpx.post(f"{kp.url}/kas.AccessService/PublicKey", json={"algorithm": "ec:secp256r1"}, timeout=30,
                      headers={"authorization": f"Bearer {kp.server.client_token}"})
    assert resp.status_code == 200, resp.text
    return serialization.load_pem_public_key(resp.json()["publicKey"].encode())


def nano_header(kp, policy: bytes, binding: str) -> tuple[bytes, bytes]:
    """(header, payload key) for a plaintext `policy` bound by `binding`: unkeyed | gmac | ecdsa."""
    ephemeral = ec.generate_private_key(ec.SECP256R1())
    dek = HKDF(hashes.SHA256(), 32, hashlib.sha256(b"L1L").digest(), None).derive(
        ephemeral.exchange(ec.ECDH(), kas_ec_public_key(kp)))
    digest = hashlib.sha256(policy).digest()
    mode = 0x00  # secp256r1
    if binding == "unkeyed":
        bound = digest[-8:]
    elif binding == "gmac":  # GMAC = AES-256-GCM tag over no plaintext, the digest as associated data
        bound = AESGCM(dek).encrypt(GMAC_NONCE, b"", digest)[:8]
    else:
        mode |= 0x80
        r, s = decode_dss_signature(ephemeral.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256()))))
        bound = bytes([32]) + r.to_bytes(32, "big") + bytes([32]) + s.to_bytes(32, "big")
    locator = kp.kas_url.removeprefix("http://").encode()
    point = ephemeral.public_key().public_bytes(serialization.Encoding.X962,
                                                serialization.PublicFormat.CompressedPoint)
    header = (b"L1L" + bytes([0x10, len(locator)]) + locator + b"e1" + bytes([mode, 0x05, 0x01])
              + len(policy).to_bytes(2, "big") + policy + bound + point)
    return header, dek


def sdk_header(kp, attributes=()) -> bytes:
    """The header of a NanoTDF the unmodified SDK wrote (unkeyed binding)."""
    from otdf_python.config import KASInfo, NanoTDFConfig
    from otdf_python.header import Header
    import io

    sdk = sdk_for(kp)
    try:
        out = io.BytesIO()
        sdk.create_nano_tdf(io.BytesIO(b"payload"), out,
                            NanoTDFConfig(kas_info_list=[KASInfo(url=kp.kas_url)], attributes=list(attributes)))
        nano = out.getvalue()
    finally:
        sdk.close()
    return nano[:Header.peek_length(nano)]


# ---- Rewrap, as the SDK sends it for NanoTDF ---------------------------------------
def rewrap(kp, headers: list[bytes], *, policy_body: str | None = None, client=None) -> list[dict]:
    client = client or rsa.generate_private_key(public_exponent=65537, key_size=2048)
    policy = {"id": "policy"}
    if policy_body is not None:
        policy["body"] = policy_body
    kaos = [{"keyAccessObjectId": f"kao-{i}",
             "keyAccessObject": {"header": base64.b64encode(h).decode(), "type": "remote", "protocol": "kas",
                                 "url": kp.kas_url}} for i, h in enumerate(headers)]
    body = {"clientPublicKey": client.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
            "requests": [{"algorithm": "ec:secp256r1", "policy": policy, "keyAccessObjects": kaos}]}
    now = int(time.time())
    token = jwt.encode({"requestBody": json.dumps(body), "iat": now, "exp": now + 60}, client, algorithm="RS256")
    resp = httpx.post(f"{kp.url}{REWRAP}", json={"signedRequestToken": token}, timeout=30,
                      headers={"authorization": f"Bearer {kp.server.client_token}"})
    assert resp.status_code == 200, resp.text
    (result,) = resp.json()["responses"]
    for r in result["results"]:
        if r.get("status") == "permit":
            r["dek"] = client.decrypt(base64.b64decode(r["kasWrappedKey"]), OAEP_SHA1)
    return result["results"]


def swap_policy(header: bytes, new_policy: bytes) -> bytes:
    """The header with its plaintext policy replaced and the unkeyed binding recomputed."""
    from host.kas import nanotdf

    h = nanotdf.parse_header(header)
    old = len(h.policy_body).to_bytes(2, "big") + h.policy_body + h.binding
    assert header.count(old) == 1
    new = len(new_policy).to_bytes(2, "big") + new_policy + hashlib.sha256(new_policy).digest()[-8:]
    return header.replace(old, new)


# ---- controls: bindings the specification defines work under the hook ------------
@pytest.mark.parametrize("binding", ["gmac", "ecdsa"])
def test_bound_nanotdf_is_decided_on_its_own_policy(hooked_kas, binding):
    header, dek = nano_header(hooked_kas, HARMLESS, binding)
    (result,) = rewrap(hooked_kas, [header])
    assert result["status"] == "permit" and result["dek"] == dek, result
    header, dek = nano_header(hooked_kas, SECRET_POLICY, binding)
    (result,) = rewrap(hooked_kas, [header])
    assert result["status"] == "fail" and "kasWrappedKey" not in result
    assert result["error"] == "permission_denied: access denied by the access decision for this policy"


@pytest.mark.parametrize("binding", ["gmac", "ecdsa"])
def test_altered_policy_of_a_bound_nanotdf_is_refused(hooked_kas, binding):
    header, _ = nano_header(hooked_kas, SECRET_POLICY, binding)
    tampered = header.replace(SECRET_POLICY, SECRET_POLICY.replace(b"secret", b"public"))
    (result,) = rewrap(hooked_kas, [tampered])
    assert result["status"] == "fail" and result["error"].startswith("permission_denied: policy binding mismatch")


def test_unkeyed_binding_is_refused_under_a_decision_hook(hooked_kas):
    (result,) = rewrap(hooked_kas, [sdk_header(hooked_kas)])  # harmless policy, but nothing binds it
    assert result["status"] == "fail" and "kasWrappedKey" not in result
    assert result["error"].startswith("permission_denied: the NanoTDF policy binding is an unkeyed SHA-256")


def test_unkeyed_binding_still_works_with_the_default_decision(basic_kas):
    from tests.tdf.conftest import decrypt_nano

    sdk = sdk_for(basic_kas)
    try:
        assert decrypt_nano(sdk, basic_kas, encrypt_nano(sdk, basic_kas, b"default")) == b"default"
    finally:
        sdk.close()
    header, dek = nano_header(basic_kas, HARMLESS, "gmac")
    (result,) = rewrap(basic_kas, [header])
    assert result["status"] == "permit" and result["dek"] == dek


# ---- the three bypasses --------------------------------------------------------------
def test_bypass_a_swapped_policy_with_recomputed_unkeyed_binding(hooked_kas):
    secret = sdk_header(hooked_kas, attributes=[SECRET])
    (denied,) = rewrap(hooked_kas, [secret])
    assert denied["status"] == "fail"
    (result,) = rewrap(hooked_kas, [swap_policy(secret, HARMLESS)])
    assert result["status"] == "fail" and "kasWrappedKey" not in result, result


@pytest.mark.parametrize("binding", ["unkeyed", "gmac", "ecdsa"])
def test_bypass_b_harmless_request_policy_beside_a_secret_header(hooked_kas, binding):
    header = sdk_header(hooked_kas, [SECRET]) if binding == "unkeyed" else nano_header(hooked_kas, SECRET_POLICY, binding)[0]
    (result,) = rewrap(hooked_kas, [header], policy_body=base64.b64encode(HARMLESS).decode())
    assert result["status"] == "fail" and "kasWrappedKey" not in result, result
    if binding != "unkeyed":
        assert result["error"] == "permission_denied: access denied by the access decision for this policy"


@pytest.mark.parametrize("binding", ["unkeyed", "gmac", "ecdsa"])
def test_bypass_c_harmless_decoy_header_first(hooked_kas, binding):
    if binding == "unkeyed":
        decoy, secret = sdk_header(hooked_kas), sdk_header(hooked_kas, [SECRET])
    else:
        (decoy, decoy_dek), (secret, _) = (nano_header(hooked_kas, HARMLESS, binding),
                                           nano_header(hooked_kas, SECRET_POLICY, binding))
    first, second = rewrap(hooked_kas, [decoy, secret])
    assert second["status"] == "fail" and "kasWrappedKey" not in second, second
    if binding != "unkeyed":  # every object decided on its own: the decoy itself is fine
        assert first["status"] == "permit" and first["dek"] == decoy_dek
        assert second["error"] == "permission_denied: access denied by the access decision for this policy"
