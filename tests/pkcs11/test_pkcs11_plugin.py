"""The pkcs11 plugin on a real SoftHSM2 token, through the Python host's loader."""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from host import errors
from host.managers.base import Capability
from tests.pkcs11.labels import AES_KEY, EC_KEY, RSA_KEY

OAEP_SHA1 = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)


def rsa_public(manager, key_id=RSA_KEY) -> rsa.RSAPublicKey:
    pem = manager.public_key(key_id)
    key = serialization.load_pem_public_key(pem.encode())
    assert isinstance(key, rsa.RSAPublicKey)
    return key


# ---- descriptor ---------------------------------------------------------------

def test_factory_is_thread_safe_with_every_operation(factory):
    assert factory.name == "pkcs11"
    want = Capability.THREAD_SAFE | Capability.WRAP | Capability.UNWRAP | Capability.PUBLIC_KEY | Capability.PROBE
    assert factory.capabilities == want


# ---- provider mode: an AES key on the token ----------------------------------

@pytest.mark.parametrize("size", [1, 32, 1218, 4096])
def test_provider_mode_round_trip(manager, size):
    plain = secrets.token_bytes(size)
    wrapped = manager.wrap("", plain)
    assert len(wrapped) == 12 + size + 16  # iv || ciphertext || tag
    if size >= 16:  # a shorter plaintext turns up in random bytes by chance (1 byte in 29: ~11%)
        assert plain not in wrapped
    assert manager.unwrap("", wrapped) == plain
    assert manager.unwrap(AES_KEY, wrapped) == plain  # the default key, named


def test_provider_mode_uses_a_fresh_iv_each_time(manager):
    plain = secrets.token_bytes(32)
    a, b = manager.wrap("", plain), manager.wrap("", plain)
    assert a[:12] != b[:12] and a != b


@pytest.mark.parametrize("where", [0, 12, -1])  # IV, ciphertext, tag
def test_provider_mode_tampered_ciphertext_is_a_crypto_error(manager, where):
    wrapped = bytearray(manager.wrap("", secrets.token_bytes(64)))
    wrapped[where] ^= 0x01
    with pytest.raises(errors.CryptoError, match="does not decrypt"):
        manager.unwrap("", bytes(wrapped))


def test_provider_mode_short_ciphertext_is_a_crypto_error(manager):
    with pytest.raises(errors.CryptoError, match="shorter than"):
        manager.unwrap("", b"\x00" * 27)


def test_probe_checks_login_and_default_key(manager):
    manager.probe()


# ---- remote mode: an RSA key pair on the token -------------------------------

def test_remote_public_key_is_the_tokens_rsa_key(remote_manager):
    key = rsa_public(remote_manager, "")
    assert key.key_size == 2048
    assert rsa_public(remote_manager, RSA_KEY).public_numbers() == key.public_numbers()


def test_remote_unwrap_decrypts_an_oaep_sha1_wrapped_dek(remote_manager):
    dek = secrets.token_bytes(32)
    wrapped = rsa_public(remote_manager).encrypt(dek, OAEP_SHA1)
    assert remote_manager.unwrap("", wrapped) == dek


def test_one_manager_serves_aes_and_rsa_keys_by_key_id(manager):
    dek = secrets.token_bytes(32)
    assert manager.unwrap(RSA_KEY, rsa_public(manager).encrypt(dek, OAEP_SHA1)) == dek
    assert manager.unwrap("", manager.wrap("", dek)) == dek


def test_remote_unwrap_of_a_foreign_ciphertext_is_a_crypto_error(remote_manager):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    with pytest.raises(errors.CryptoError):
        remote_manager.unwrap("", other.encrypt(b"k" * 32, OAEP_SHA1))


def test_remote_unwrap_of_a_wrong_length_is_a_crypto_error(remote_manager):
    with pytest.raises(errors.CryptoError, match="256 bytes"):
        remote_manager.unwrap("", b"\x01" * 100)


def test_ec_public_key_comes_from_the_token(manager):
    key = serialization.load_pem_public_key(manager.public_key(EC_KEY).encode())
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert key.curve.name == "secp256r1"


def test_private_halves_never_leave_the_token(token):
    for label, cls in ((RSA_KEY, "private"), (EC_KEY, "private"), (AES_KEY, "secret")):
        attrs = token.key_attributes(label, cls)
        assert attrs == {"sensitive": True, "extractable": False, "always_sensitive": True,
                         "never_extractable": True, "value_readable": False}, (label, attrs)


# ---- concurrency ---------------------------------------------------------------

def test_four_threads_share_one_manager(manager):
    public = rsa_public(manager)
    failures: list[str] = []

    def worker(n: int) -> None:
        try:
            for i in range(25):
                dek = secrets.token_bytes(32)
                if (n + i) % 2:
                    assert manager.unwrap("", manager.wrap("", dek)) == dek
                else:
                    assert manager.unwrap(RSA_KEY, public.encrypt(dek, OAEP_SHA1)) == dek
        except Exception as e:  # collected: an assert in a thread would be lost
            failures.append(f"thread {n}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


# ---- bad input: operations -------------------------------------------------------

def test_aes_key_has_no_public_key(manager):
    with pytest.raises(errors.FailedPrecondition, match=f"key '{AES_KEY}' is an AES key; it has no public key"):
        manager.public_key("")


def test_wrap_with_an_rsa_key_is_refused(manager):
    with pytest.raises(errors.FailedPrecondition, match="is an RSA key; wrap needs an AES key"):
        manager.wrap(RSA_KEY, b"x" * 32)


def test_unwrap_with_an_ec_key_is_refused(manager):
    with pytest.raises(errors.InvalidArgument, match="is an EC key"):
        manager.unwrap(EC_KEY, b"x" * 64)


@pytest.mark.parametrize("op", ["wrap", "unwrap", "public_key"])
def test_unknown_key_id_is_not_found(manager, op):
    args = {"wrap": (b"x" * 32,), "unwrap": (b"x" * 60,), "public_key": ()}[op]
    with pytest.raises(errors.NotFound, match="no key labelled 'no-such-key' on token"):
        getattr(manager, op)("no-such-key", *args)


# ---- bad input: configuration ----------------------------------------------------

def create_error(factory, cfg) -> errors.PlatformError:
    raw = cfg if isinstance(cfg, bytes) else json.dumps(cfg).encode()
    with pytest.raises(errors.PlatformError) as info:
        factory.create(raw).close()
    message = str(info.value)
    assert "\n" not in message
    return info.value


def test_wrong_pin_is_permission_denied_without_echoing_it(factory, token, caplog):
    wrong = "wrong-" + secrets.token_hex(4)
    with caplog.at_level(logging.DEBUG):
        err = create_error(factory, token.config(AES_KEY, pin=wrong))
    assert isinstance(err, errors.PermissionDenied)
    assert "refused the user PIN (CKR_PIN_INCORRECT)" in str(err)
    assert wrong not in str(err) and token.user_pin not in str(err)
    assert wrong not in caplog.text and token.user_pin not in caplog.text


def test_wrong_pin_is_refused_while_another_manager_is_logged_in(factory, token, manager):
    # Login is process-wide in PKCS#11: the live manager's login must not
    # let a manager with a wrong PIN in.
    manager.probe()
    err = create_error(factory, token.config(AES_KEY, pin="not-the-pin"))
    assert isinstance(err, errors.PermissionDenied)


def test_pin_from_env_and_file(factory, token, tmp_path, monkeypatch):
    monkeypatch.setenv("KAS_TEST_HSM_PIN", token.user_pin)
    cfg = token.config(AES_KEY)
    del cfg["pin"]
    m = factory.create(json.dumps({**cfg, "pin_env": "KAS_TEST_HSM_PIN"}).encode())
    m.close()
    pin_file = tmp_path / "pin"
    pin_file.write_text(token.user_pin + "\n")
    m = factory.create(json.dumps({**cfg, "pin_file": str(pin_file)}).encode())
    assert m.unwrap("", m.wrap("", b"abc")) == b"abc"
    m.close()


@pytest.mark.parametrize("change, code, message", [
    ({"module": None}, errors.InvalidArgument, '"module" (path of the PKCS#11 library) is required'),
    ({"module": "/nonexistent/libpkcs11.so"}, errors.InvalidArgument, "cannot load module /nonexistent/libpkcs11.so"),
    ({"module": "libc.so.6"}, errors.InvalidArgument, "libc.so.6 is not a PKCS#11 library (no C_GetFunctionList)"),
    ({"token_label": "no-such-token"}, errors.NotFound, "no initialized token 'no-such-token'"),
    ({"key_label": "no-such-key"}, errors.NotFound, "no key labelled 'no-such-key' on token"),
    ({"pin": None}, errors.InvalidArgument, 'give exactly one of "pin", "pin_env" or "pin_file"'),
    ({"pin_env": "X"}, errors.InvalidArgument, 'give exactly one of "pin", "pin_env" or "pin_file"'),
    ({"pin": None, "pin_env": "KAS_TEST_UNSET_PIN_VAR"}, errors.InvalidArgument,
     "environment variable KAS_TEST_UNSET_PIN_VAR is not set"),
    ({"pin": None, "pin_file": "/nonexistent/pin"}, errors.InvalidArgument,
     "pin_file: cannot read /nonexistent/pin"),
    ({"token_label": None}, errors.InvalidArgument, 'give exactly one of "token_label" or "slot_id"'),
    ({"slot_id": -1}, errors.InvalidArgument, "slot_id must be a non-negative integer"),
    ({"slot_id": 12345}, errors.InvalidArgument, 'give exactly one of "token_label" or "slot_id"'),
    ({"pin_flie": "x"}, errors.InvalidArgument, 'unknown field "pin_flie"'),
    ({"max_sessions": 0}, errors.InvalidArgument, "max_sessions must be between 1 and 256"),
    ({"aes_mechanism": "kwp"}, errors.InvalidArgument, "does not offer CKM_AES_KEY_WRAP_PAD"),
])
def test_bad_config_gives_one_clear_line(factory, token, change, code, message):
    cfg = token.config(AES_KEY)
    for k, v in change.items():
        if v is None:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    err = create_error(factory, cfg)
    assert isinstance(err, code), err
    assert message in str(err)
    assert token.user_pin not in str(err)


def test_slot_id_instead_of_token_label(factory, token):
    cfg = token.config(AES_KEY)
    del cfg["token_label"]
    m = factory.create(json.dumps({**cfg, "slot_id": token.slot_id}).encode())
    assert m.unwrap("", m.wrap("", b"abc")) == b"abc"
    m.close()
    err = create_error(factory, {**cfg, "slot_id": 987654321})
    assert isinstance(err, errors.NotFound) and "slot 987654321" in str(err)


@pytest.mark.parametrize("raw", [b"", b"[]", b"{", b'{"module": 1}', b'{"module": "a"} x',
                                 b'{"module": "a", "module": "b"}'])
def test_malformed_config_json(factory, raw):
    err = create_error(factory, raw)
    assert isinstance(err, errors.InvalidArgument)
    assert "pkcs11 config:" in str(err)


def test_pin_with_escapes_is_decoded(factory, token, tmp_path):
    # The PIN travels as JSON: an escaped form must reach the token decoded.
    escaped = "".join(f"\\u{ord(c):04x}" for c in token.user_pin)
    cfg = token.config(AES_KEY)
    raw = json.dumps(cfg).replace(json.dumps(token.user_pin), f'"{escaped}"').encode()
    factory.create(raw).close()


def test_no_default_key_needs_a_key_id(factory, token):
    m = factory.create(token.config_json())  # no key_label
    try:
        m.probe()
        with pytest.raises(errors.InvalidArgument, match="no key id given and the config names no key_label"):
            m.wrap("", b"x")
        assert m.unwrap(AES_KEY, m.wrap(AES_KEY, b"x")) == b"x"
    finally:
        m.close()
