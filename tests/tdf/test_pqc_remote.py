"""Remote-mode post-quantum keys through a real `platform serve` (issue 18; keymanager.h KM_CAP_KEM).

The remote keystore test plugin (tests/fixtures/remote_keystore, through the C ABI) holds the
private keys: the host sends it the KEM ciphertext and gets the secret(s) back. The vectors'
private keys are imported into the keystore (its key_dir, as into an HSM) and registered in remote
mode through CreateKey; every case OpenTDF wrapped unwraps through a served Rewrap, the tampered
blobs are refused, and keys the keystore generated round-trip our own wrap.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys

import httpx
import pytest

from host import crypto, kem
from tests.server.conftest import ROOT
from tests.tdf.conftest import start_kas_platform
from tests.tdf.test_pqc import ENUMS, VECTORS, kao_for, registry, rewrap, vectors

pytestmark = pytest.mark.skipif(not VECTORS.exists(), reason=f"{VECTORS} not present")


@pytest.fixture(scope="module")
def remote_pq_kas(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pq-remote")
    plugin = tmp / "remote-keystore-manager.so"
    subprocess.run([sys.executable, str(ROOT / "plugins/_pyembed/build.py"),
                    str(ROOT / "tests/fixtures/remote_keystore/plugin.toml"), "--out", str(plugin),
                    "--tmpdir", str(tmp / "build")], check=True, capture_output=True)
    key_dir = tmp / "keystore"
    key_dir.mkdir(mode=0o700)
    keys = {}
    for alg in vectors()["algorithms"]:  # the HSM import: the vector's PKCS#8 in the keystore
        kid = alg["kas_kid_used_in_kao"]
        (key_dir / f"{kid.replace(':', '_')}.pem").write_text(alg["kas_private_key_pem"])
        keys[kid] = alg["algorithm"]
    keys.update({f"gen-{a.replace(':', '-')}": a for a in ENUMS})  # made by the keystore
    (tmp / "state").mkdir()  # serve refuses a --db whose directory is missing (78d7aa5)
    kp = start_kas_platform(tmp, plugins=[plugin])
    try:
        pc_id = kp.provider("rk-pq", "remote-keystore", {"keys": keys, "key_dir": str(key_dir)})
        kas_id = registry(kp, "ListKeyAccessServers", {})["keyAccessServers"][0]["id"]
        for alg in vectors()["algorithms"]:
            kid = alg["kas_kid_used_in_kao"]
            registry(kp, "CreateKey", {
                "kasId": kas_id, "keyId": kid, "keyAlgorithm": alg["proto_number"], "keyMode": "KEY_MODE_REMOTE",
                "providerConfigId": pc_id, "privateKeyCtx": {"keyId": kid},
                "publicKeyCtx": {"pem": base64.b64encode(alg["kas_public_key_pem"].encode()).decode()}})
        for algorithm in ENUMS:  # made active with no public key given: the manager's is taken
            kid = f"gen-{algorithm.replace(':', '-')}"
            kp.activate(algorithm, "remote", provider="rk-pq", wrapping_key_id=kid, key_id=kid)
        yield kp
    finally:
        kp.stop()


@pytest.mark.parametrize("algorithm", list(ENUMS))
def test_vectors_unwrap_through_served_rewrap_in_remote_mode(remote_pq_kas, algorithm):
    doc = vectors()
    (alg,) = [a for a in doc["algorithms"] if a["algorithm"] == algorithm]
    for case in alg["cases"]:
        result = rewrap(remote_pq_kas, case["rewrap_key_access_object"], doc["policy_base64"])
        assert result["status"] == "permit", result
        assert result["dek"].hex() == case["dek_hex"]
    tampered = dict(alg["cases"][0]["rewrap_key_access_object"])
    tampered["wrappedKey"] = base64.b64encode(bytes.fromhex(alg["tampered"]["tampered_wrapped_hex"])).decode()
    result = rewrap(remote_pq_kas, tampered, doc["policy_base64"])
    assert result["status"] == "fail" and result["error"].startswith("permission_denied:"), result
    assert "kasWrappedKey" not in result


@pytest.mark.parametrize("algorithm", list(ENUMS))
def test_keystore_generated_key_round_trips(remote_pq_kas, algorithm):
    spec = crypto.KEMS[algorithm]
    kid = f"gen-{algorithm.replace(':', '-')}"
    resp = httpx.post(f"{remote_pq_kas.url}/kas.AccessService/PublicKey", json={"algorithm": algorithm}, timeout=30)
    assert resp.status_code == 200 and resp.json()["kid"] == kid, resp.text
    public = crypto.load_public_pem(resp.json()["publicKey"], algorithm)
    dek = os.urandom(32)
    policy = base64.b64encode(b'{"uuid":"r","body":{"dataAttributes":[],"dissem":[]}}').decode()
    result = rewrap(remote_pq_kas, kao_for(kid, spec.kao_type, kem.wrap(public, spec, dek), dek, policy), policy)
    assert result["status"] == "permit", result
    assert result["dek"] == dek
