"""Post-quantum KAS keys through a real `platform serve` (issue 18).

The vectors (tests/fixtures/vectors/opentdf-pqc-vectors.json) were wrapped by OpenTDF's own code. Their
private keys are imported through CreateKey (the proto enum numbers 7, 8, 20, 21), and every case
is unwrapped by a served Rewrap built as the SDK builds it; the tampered blobs are refused. Keys
generated here are served in OpenTDF's SPKI form, and our own wrap unwraps through the server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from host import crypto, kem
from host.rootkey import RootKey
from tests.tdf.conftest import start_kas_platform
from tests.tdf.test_bad_input import OAEP_SHA1, pem, post_rewrap, rsa_key, srt
from tests.conftest import PQC_VECTORS

VECTORS = PQC_VECTORS
REGISTRY = "/policy.kasregistry.KeyAccessServerRegistryService"
ENUMS = {"hpqt:secp256r1-mlkem768": 7, "hpqt:secp384r1-mlkem1024": 8, "mlkem:768": 20, "mlkem:1024": 21}

pytestmark = pytest.mark.skipif(not VECTORS.exists(), reason=f"{VECTORS} not present")


def vectors() -> dict:
    return json.loads(VECTORS.read_text())


@pytest.fixture(scope="module")
def pq_kas(tmp_path_factory):
    kp = start_kas_platform(tmp_path_factory.mktemp("pq-kas"))
    try:
        kas_id = registry(kp, "ListKeyAccessServers", {})["keyAccessServers"][0]["id"]
        root = RootKey.from_hex(kp.root_key_file.read_text().strip(), "test")
        for alg in vectors()["algorithms"]:  # import each vector key as OpenTDF's CLI would send it
            private = alg["kas_private_key_pem"].encode()
            registry(kp, "CreateKey", {
                "kasId": kas_id, "keyId": alg["kas_kid_used_in_kao"], "keyAlgorithm": alg["proto_number"],
                "keyMode": "KEY_MODE_CONFIG_ROOT_KEY",
                "publicKeyCtx": {"pem": base64.b64encode(alg["kas_public_key_pem"].encode()).decode()},
                "privateKeyCtx": {"keyId": "root", "wrappedKey": base64.b64encode(root.encrypt(private)).decode()}})
        kp.kas_id = kas_id
        yield kp
    finally:
        kp.stop()


def registry(kp, method: str, body: dict, status: int = 200) -> dict:
    resp = httpx.post(f"{kp.url}{REGISTRY}/{method}", json=body, headers=kp.server.admin(), timeout=60)
    assert resp.status_code == status, resp.text
    return resp.json()


def rewrap(kp, kao: dict, policy_b64: str, client=None) -> dict:
    client = client or rsa_key()
    body = {"clientPublicKey": pem(client),
            "requests": [{"policy": {"id": "policy", "body": policy_b64},
                          "keyAccessObjects": [{"keyAccessObjectId": "kao-0", "keyAccessObject": kao}]}]}
    resp = post_rewrap(kp, srt(body, rsa_key()))
    assert resp.status_code == 200, resp.text
    (result,) = resp.json()["responses"][0]["results"]
    if result["status"] == "permit":
        result["dek"] = client.decrypt(base64.b64decode(result["kasWrappedKey"]), OAEP_SHA1)
    return result


def kao_for(kid: str, kind: str, wrapped: bytes, dek: bytes, policy_b64: str) -> dict:
    binding = hmac.new(dek, policy_b64.encode(), hashlib.sha256).hexdigest().encode()
    return {"type": kind, "url": "https://kas.example.com", "protocol": "kas", "kid": kid,
            "wrappedKey": base64.b64encode(wrapped).decode(),
            "policyBinding": {"alg": "HS256", "hash": base64.b64encode(binding).decode()}}


@pytest.mark.parametrize("algorithm", list(ENUMS))
def test_vectors_unwrap_through_served_rewrap(pq_kas, algorithm):
    doc = vectors()
    (alg,) = [a for a in doc["algorithms"] if a["algorithm"] == algorithm]
    assert alg["proto_number"] == ENUMS[algorithm]
    for case in alg["cases"]:
        result = rewrap(pq_kas, case["rewrap_key_access_object"], doc["policy_base64"])
        assert result["status"] == "permit", result
        assert result["dek"].hex() == case["dek_hex"]
    tampered = dict(alg["cases"][0]["rewrap_key_access_object"])
    tampered["wrappedKey"] = base64.b64encode(bytes.fromhex(alg["tampered"]["tampered_wrapped_hex"])).decode()
    result = rewrap(pq_kas, tampered, doc["policy_base64"])
    assert result["status"] == "fail" and result["error"].startswith("permission_denied:"), result
    assert "kasWrappedKey" not in result


def test_imported_keys_listed_with_their_enums(pq_kas):
    keys = registry(pq_kas, "ListKeys", {"kasId": pq_kas.kas_id})["kasKeys"]
    got = {k["key"]["keyId"]: k["key"]["keyAlgorithm"] for k in keys}
    for alg in vectors()["algorithms"]:
        # protojson prints the names it knows (7, 8) and the number for the newer ones (20, 21)
        assert got[alg["kas_kid_used_in_kao"]] in (alg["proto_enum"], alg["proto_number"])


@pytest.mark.parametrize("algorithm", list(ENUMS))
def test_generated_key_serves_spki_and_round_trips(pq_kas, algorithm):
    kid = f"gen-{algorithm.replace(':', '-')}"
    pq_kas.activate(algorithm, "local", key_id=kid)
    resp = httpx.post(f"{pq_kas.url}/kas.AccessService/PublicKey", json={"algorithm": algorithm, "kid": ""},
                      timeout=30)
    assert resp.status_code == 200, resp.text
    served = resp.json()
    assert served["kid"] == kid
    spec = crypto.KEMS[algorithm]
    der = base64.b64decode("".join(served["publicKey"].strip().splitlines()[1:-1]))
    oid = {"mlkem:768": "2.16.840.1.101.3.4.4.2", "mlkem:1024": "2.16.840.1.101.3.4.4.3",
           "hpqt:secp256r1-mlkem768": "1.3.6.1.5.5.7.6.59", "hpqt:secp384r1-mlkem1024": "1.3.6.1.5.5.7.6.63"}
    assert kem._oid(oid[algorithm]) in der[:24]  # the NIST / composite-KEM OID, no parameters
    public = crypto.load_public_pem(served["publicKey"], algorithm)
    if spec.curve is None:  # OpenSSL reads the pure ML-KEM SPKI itself
        assert serialization.load_pem_public_key(served["publicKey"].encode()).public_bytes_raw() == \
            public.public_bytes_raw()
    dek = os.urandom(32)
    policy = base64.b64encode(b'{"uuid":"x","body":{"dataAttributes":[],"dissem":[]}}').decode()
    result = rewrap(pq_kas, kao_for(kid, spec.kao_type, kem.wrap(public, spec, dek), dek, policy), policy)
    assert result["status"] == "permit", result
    assert result["dek"] == dek


def _case(algorithm: str):
    doc = vectors()
    (alg,) = [a for a in doc["algorithms"] if a["algorithm"] == algorithm]
    return doc, alg, alg["cases"][0]


@pytest.mark.parametrize("algorithm,cut", [("mlkem:768", 1), ("hpqt:secp256r1-mlkem768", 65)])
def test_wrong_length_kem_ciphertext_is_invalid_argument(pq_kas, algorithm, cut):
    doc, alg, case = _case(algorithm)
    spec = crypto.KEMS[algorithm]
    ct, sealed = kem.split(bytes.fromhex(case["wrapped_hex"]), spec)
    short = kem._tlv(0x30, kem._tlv(0x80, ct[:-cut]) + kem._tlv(0x81, sealed))
    kao = dict(case["rewrap_key_access_object"], wrappedKey=base64.b64encode(short).decode())
    result = rewrap(pq_kas, kao, doc["policy_base64"])
    assert result["status"] == "fail"
    assert result["error"] == (f"invalid_argument: {algorithm} KEM ciphertext must be "
                               f"{spec.ciphertext_len + spec.point_len} bytes ("
                               + ("1088-byte ML-KEM ciphertext)" if spec.curve is None else
                                  "1088-byte ML-KEM ciphertext + 65-byte EC point)")
                               + f", got {len(ct) - cut}")


def test_not_an_envelope_is_invalid_argument(pq_kas):
    doc, alg, case = _case("mlkem:768")
    kao = dict(case["rewrap_key_access_object"], wrappedKey=base64.b64encode(os.urandom(1158)).decode())
    result = rewrap(pq_kas, kao, doc["policy_base64"])
    assert result["status"] == "fail"
    assert result["error"].startswith("invalid_argument: mlkem-wrapped wrappedKey is not OpenTDF's DER envelope")


@pytest.mark.parametrize("algorithm,kind", [("mlkem:768", "hybrid-wrapped"), ("hpqt:secp256r1-mlkem768", "mlkem-wrapped"),
                                            ("mlkem:1024", "wrapped"), ("hpqt:secp384r1-mlkem1024", "ec-wrapped")])
def test_kao_type_must_fit_the_key(pq_kas, algorithm, kind):
    doc, alg, case = _case(algorithm)
    kao = dict(case["rewrap_key_access_object"], type=kind)
    if kind == "ec-wrapped":
        kao["ephemeralPublicKey"] = pem(rsa_key())
    result = rewrap(pq_kas, kao, doc["policy_base64"])
    assert result["status"] == "fail"
    assert result["error"] == (f"invalid_argument: key {alg['kas_kid_used_in_kao']!r} is {algorithm}: key access "
                               f"object type {kind} does not fit it")


def test_kem_kao_with_ephemeral_key_or_without_kid_is_refused(pq_kas):
    doc, alg, case = _case("hpqt:secp256r1-mlkem768")
    kao = dict(case["rewrap_key_access_object"], ephemeralPublicKey=pem(rsa_key()))
    result = rewrap(pq_kas, kao, doc["policy_base64"])
    assert result["error"].startswith("invalid_argument: a hybrid-wrapped key access object carries its ephemeral key")
    kao = dict(case["rewrap_key_access_object"])
    del kao["kid"]
    result = rewrap(pq_kas, kao, doc["policy_base64"])
    assert result["error"] == "invalid_argument: a hybrid-wrapped key access object must name its key (kid)"


def test_altered_policy_is_refused_for_kem_objects(pq_kas):
    doc, alg, case = _case("mlkem:1024")
    result = rewrap(pq_kas, case["rewrap_key_access_object"], base64.b64encode(b'{"uuid":"other"}').decode())
    assert result["status"] == "fail" and result["error"].startswith("permission_denied: policy binding mismatch")


def test_unknown_algorithm_number_still_refused(pq_kas):
    """Accepting the newer numbers 20 and 21 does not accept every number."""
    resp = httpx.post(f"{pq_kas.url}{REGISTRY}/CreateKey", headers=pq_kas.server.admin(), timeout=30,
                      json={"kasId": pq_kas.kas_id, "keyId": "nope", "keyAlgorithm": 22,
                            "keyMode": "KEY_MODE_PUBLIC_KEY_ONLY", "publicKeyCtx": {"pem": "eA=="}})
    assert resp.status_code == 400 and "key_algorithm_defined" in resp.text, resp.text
