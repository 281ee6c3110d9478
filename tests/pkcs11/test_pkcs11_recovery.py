"""Sessions closed and tokens replaced or removed between calls: the pkcs11
plugin reopens sessions and logs in again, or reports unavailable; it never
crashes. Plus the C conformance runner on the plugin."""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import subprocess

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from host import errors
from tests.pkcs11.labels import AES_KEY, RSA_KEY
from tests.make import make_or_fail

OAEP_SHA1 = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)


def test_sessions_closed_behind_the_plugins_back_are_reopened(manager, token):
    wrapped = manager.wrap("", b"dek" * 10)
    public = serialization.load_pem_public_key(manager.public_key(RSA_KEY).encode())
    # The same libsofthsm2 instance the plugin uses (dlopen shares it):
    # C_CloseAllSessions closes the plugin's pooled sessions, and closing
    # the last session also ends the process's login.
    lib = ctypes.CDLL(token.module)
    lib.C_CloseAllSessions.argtypes = [ctypes.c_ulong]
    assert lib.C_CloseAllSessions(token.slot_id) == 0
    assert manager.unwrap("", wrapped) == b"dek" * 10
    assert lib.C_CloseAllSessions(token.slot_id) == 0
    dek = secrets.token_bytes(32)  # the RSA private key needs the login back
    assert manager.unwrap(RSA_KEY, public.encrypt(dek, OAEP_SHA1)) == dek


def test_destroy_and_recreate(factory, token):
    for _ in range(3):
        m = factory.create(token.config_json(AES_KEY))
        wrapped = m.wrap("", b"abc")
        m.close()
        m = factory.create(token.config_json(AES_KEY))
        assert m.unwrap("", wrapped) == b"abc"
        m.close()


def test_token_reinitialized_then_removed(factory, volatile_token):
    m = factory.create(volatile_token.config_json(AES_KEY))
    try:
        old = m.wrap("", b"before")
        # Re-initialized in place: its keys are gone.
        volatile_token.reinitialize()
        with pytest.raises(errors.NotFound, match=f"no key labelled '{AES_KEY}'"):
            m.unwrap("", old)
        # A new key under the same label: cached handles were dropped.
        volatile_token.generate(aes=[AES_KEY])
        assert m.unwrap("", m.wrap("", b"after")) == b"after"
        with pytest.raises(errors.CryptoError):
            m.unwrap("", old)  # the old key's ciphertext
        # Removed: unavailable, call after call.
        volatile_token.delete()
        for _ in range(3):
            with pytest.raises(errors.Unavailable, match="token 'kas-pkcs11-volatile' is not present"):
                m.unwrap("", old)
        with pytest.raises(errors.Unavailable):
            m.probe()
    finally:
        m.close()


# ---- the C conformance runner ----------------------------------------------------

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNNER = os.path.join(ROOT, "build", "km-conformance")


@pytest.fixture(scope="module")
def runner():
    make_or_fail("build/km-conformance")
    return RUNNER


@pytest.mark.parametrize("key", [AES_KEY, RSA_KEY])
def test_conformance_runner_passes(runner, plugin_path, token, tmp_path, key):
    cfg = tmp_path / "pkcs11.json"
    cfg.write_text(json.dumps(token.config(key)))
    cfg.chmod(0o600)
    run = subprocess.run([runner, str(plugin_path), str(cfg)], capture_output=True, text=True,
                         env={**os.environ, **token.env}, timeout=600)
    lines = run.stdout.splitlines()
    assert run.returncode == 0, run.stdout + run.stderr
    assert lines[-1].endswith(" 0 failed")
    # The data path really ran: a round trip for AES, OAEP unwrap for RSA.
    must = "PASS roundtrip.32" if key == AES_KEY else "PASS unwrap.rsa_oaep"
    assert must in lines
    assert token.user_pin not in run.stdout + run.stderr
