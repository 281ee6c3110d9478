"""Rewrapper.finish(now=True), what the server runs on its event loop: warm standard-TDF (RSA and
ec-wrapped) and NanoTDF objects are served there; the first object that needs I/O (a store
query, a private key to load) hands the rest to finish() on a thread, which keeps what was done."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from host import crypto
from host.app import Platform, Settings
from host.kas import nanotdf
from host.kas.rewrap import Caller, Rewrapper
from host.service import NEEDS_IO

CLIENT = Caller(subject="token:test", roles=frozenset({"client"}))
POLICY = base64.b64encode(json.dumps({"uuid": "p", "body": {}}).encode()).decode()
LOCATOR = "kas.test/kas"


@pytest.fixture
def platform(tmp_path):
    key_file = tmp_path / "root.key"
    key_file.write_text(secrets.token_hex(32))
    p = Platform(Settings(db_url=f"sqlite:///{tmp_path / 'p.db'}", root_key_file=str(key_file)))
    p.store.kas.create(f"http://{LOCATOR}", "kas")
    for kid, algorithm in (("r1", "rsa:2048"), ("r2", "rsa:2048"), ("p256", "ec:secp256r1")):
        p.keys.create_key(None, kid, algorithm, "local")
    yield p
    p.close()


def _kao(platform, kid: str) -> tuple[dict, bytes]:
    """A standard-TDF key access object for a fresh DEK wrapped to `kid` (RSA or EC)."""
    key = platform.keys.get_key(key_id=kid)
    public = crypto.load_public_pem(key.public_key_pem, key.algorithm)
    dek = os.urandom(32)
    binding = base64.b64encode(hmac.new(dek, POLICY.encode(), hashlib.sha256).digest()).decode()
    kao = {"protocol": "kas", "kid": kid, "url": f"http://{LOCATOR}", "policyBinding": {"alg": "HS256", "hash": binding}}
    if key.algorithm.startswith("ec:"):
        wrapped, eph = crypto.ec_wrap(public, dek)
        kao.update(type="ec-wrapped", ephemeralPublicKey=eph)
    else:
        wrapped = crypto.rsa_wrap(public, dek)
        kao["type"] = "wrapped"
    kao["wrappedKey"] = base64.b64encode(wrapped).decode()
    return kao, dek


def _nano(platform) -> tuple[dict, bytes]:
    """A NanoTDF header (P-256, GMAC binding) naming otdf-python's placeholder kid "e1"."""
    kas_public = crypto.load_public_pem(platform.keys.get_key(key_id="p256").public_key_pem, "ec:secp256r1")
    ephemeral = ec.generate_private_key(ec.SECP256R1())
    dek = crypto.derive_wrap_key(ephemeral.exchange(ec.ECDH(), kas_public), nanotdf.NANO_SALT)
    policy = json.dumps({"uuid": "nano", "body": {}}).encode()
    gmac = AESGCM(dek).encrypt(nanotdf.GMAC_NONCE, b"", hashlib.sha256(policy).digest())[:8]
    point = ephemeral.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
    header = (b"L1L" + bytes([0x10, len(LOCATOR)]) + LOCATOR.encode() + b"e1" + bytes([0x00, 0x05, 0x01])
              + len(policy).to_bytes(2, "big") + policy + gmac + point)
    return {"type": "remote", "protocol": "kas", "header": base64.b64encode(header).decode()}, dek


def _token(kaos: list[dict], client) -> str:
    body = {"clientPublicKey": crypto.public_pem(client),
            "requests": [{"policy": {"id": "policy", "body": POLICY},
                          "keyAccessObjects": [{"keyAccessObjectId": f"kao-{i}", "keyAccessObject": kao}
                                               for i, kao in enumerate(kaos)]}]}
    now = int(time.time())
    return jwt.encode({"requestBody": json.dumps(body), "iat": now, "exp": now + 60}, client, algorithm="ES256")


def _opened(result, client, salts) -> list[bytes]:
    """The DEKs the client gets back (EC client key: the response's session key)."""
    session = serialization.load_pem_public_key(result.session_public_key.encode())
    shared = client.exchange(ec.ECDH(), session)
    (policy,) = result.responses
    assert [r.status for r in policy.results] == ["permit"] * len(salts), [r.error for r in policy.results]
    return [crypto.aes_gcm_open(crypto.derive_wrap_key(shared, salt), r.wrapped_key)
            for r, salt in zip(policy.results, salts)]


def test_warm_rsa_ec_and_nano_objects_are_served_inline(platform):
    client = ec.generate_private_key(ec.SECP256R1())
    rewrapper = Rewrapper(platform.keys)
    (rsa_kao, rsa_dek), (ec_kao, ec_dek), (nano_kao, nano_dek) = _kao(platform, "r1"), _kao(platform, "p256"), _nano(platform)
    token = _token([rsa_kao, ec_kao, nano_kao], client)
    salts = [crypto.TDF_SALT, crypto.TDF_SALT, nanotdf.NANO_SALT]

    cold = rewrapper.prepare(token, CLIENT)
    assert rewrapper.finish(cold, CLIENT, now=True) is NEEDS_IO   # first call: the KAS id, keys and private keys
    assert cold.done == []
    assert _opened(rewrapper.finish(cold, CLIENT), client, salts) == [rsa_dek, ec_dek, nano_dek]

    warm = rewrapper.finish(rewrapper.prepare(token, CLIENT), CLIENT, now=True)
    assert warm is not NEEDS_IO
    assert _opened(warm, client, salts) == [rsa_dek, ec_dek, nano_dek]


def test_the_first_object_needing_io_hands_the_rest_to_a_thread_keeping_what_was_done(platform):
    client = ec.generate_private_key(ec.SECP256R1())
    rewrapper = Rewrapper(platform.keys)
    (warm_kao, warm_dek), (cold_kao, cold_dek) = _kao(platform, "r1"), _kao(platform, "r2")
    rewrapper.rewrap(_token([warm_kao], client), CLIENT)  # r1 warm, r2 never used

    prepared = rewrapper.prepare(_token([warm_kao, cold_kao], client), CLIENT)
    assert rewrapper.finish(prepared, CLIENT, now=True) is NEEDS_IO
    (policy,) = prepared.done
    assert [r.key_access_object_id for r in policy.results] == ["kao-0"]   # r1's object done inline
    kept = policy.results[0]
    result = rewrapper.finish(prepared, CLIENT)
    assert result.responses[0].results[0] is kept
    assert _opened(result, client, [crypto.TDF_SALT] * 2) == [warm_dek, cold_dek]


def test_a_hook_runs_inline_only_when_it_says_it_needs_no_io(platform):
    client = ec.generate_private_key(ec.SECP256R1())
    seen = []

    def io_hook(request):          # no attributes: may block, so never on the event loop
        seen.append(request)
        return True

    def cpu_hook(request):
        seen.append(request)
        return True

    cpu_hook.needs_io = False
    (warm_kao, _), (cold_kao, _) = _kao(platform, "r1"), _kao(platform, "r2")
    Rewrapper(platform.keys).rewrap(_token([warm_kao], client), CLIENT)

    rewrapper = Rewrapper(platform.keys, decide=io_hook)
    rewrapper.kas_id()
    prepared = rewrapper.prepare(_token([warm_kao], client), CLIENT)
    assert rewrapper.finish(prepared, CLIENT, now=True) is NEEDS_IO and seen == [] and prepared.done == []

    rewrapper = Rewrapper(platform.keys, decide=cpu_hook)
    rewrapper.kas_id()
    prepared = rewrapper.prepare(_token([warm_kao, cold_kao], client), CLIENT)
    assert rewrapper.finish(prepared, CLIENT, now=True) is NEEDS_IO   # r2 is cold
    assert len(seen) == 1 and seen[0].policy == {"uuid": "p", "body": {}} and seen[0].key_ids == ("r1", "r2")
    result = rewrapper.finish(prepared, CLIENT)
    assert [r.status for r in result.responses[0].results] == ["permit", "permit"]
    assert len(seen) == 1                                             # asked once for the policy


def test_without_the_client_role_every_object_is_denied_inline(platform):
    client = ec.generate_private_key(ec.SECP256R1())
    rewrapper = Rewrapper(platform.keys)
    rewrapper.kas_id()
    stranger = CLIENT._replace(roles=frozenset())
    prepared = rewrapper.prepare(_token([_kao(platform, "r2")[0], _nano(platform)[0]], client), stranger)
    result = rewrapper.finish(prepared, stranger, now=True)
    assert result is not NEEDS_IO
    assert [r.error for r in result.responses[0].results] == [
        "permission_denied: access denied by the access decision for this policy"] * 2
