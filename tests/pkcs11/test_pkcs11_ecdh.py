"""Remote-mode unwrap with an EC key on a real SoftHSM2 token (ABI v1: the
input is the client's ephemeral public key as DER SPKI, the output the raw
ECDH shared secret), through the plugin, the host's conformance checks and
the key service."""

from __future__ import annotations

import ctypes
import dataclasses
import json
import secrets
import threading

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from host import crypto, errors
from host.managers.base import Capability
from tests.conformance.host_checks import check_manager
from tests.pkcs11.labels import AES_KEY, EC384_KEY, EC_KEY, RSA_KEY

CURVES = {EC_KEY: ec.SECP256R1, EC384_KEY: ec.SECP384R1}
FIELD_BYTES = {EC_KEY: 32, EC384_KEY: 48}


def ec_public(manager, label) -> ec.EllipticCurvePublicKey:
    key = serialization.load_pem_public_key(manager.public_key(label).encode())
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key


def spki(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _der(tag: int, body: bytes) -> bytes:
    assert len(body) < 0x80
    return bytes([tag, len(body)]) + body


def compressed_spki(public_key: ec.EllipticCurvePublicKey) -> bytes:
    """A DER SPKI holding the compressed point (cryptography writes only uncompressed SPKIs)."""
    oids = {"secp256r1": bytes.fromhex("2a8648ce3d030107"), "secp384r1": bytes.fromhex("2b81040022")}
    algorithm = _der(0x30, _der(0x06, bytes.fromhex("2a8648ce3d0201")) + _der(0x06, oids[public_key.curve.name]))
    point = public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
    return _der(0x30, algorithm + _der(0x03, b"\x00" + point))


@pytest.fixture
def ec_manager(factory, token):
    """A manager whose default key is the P-256 key pair."""
    m = factory.create(token.config_json(EC_KEY))
    yield m
    m.close()


# ---- the plugin ------------------------------------------------------------------

@pytest.mark.parametrize("label", [EC_KEY, EC384_KEY])
def test_ec_unwrap_returns_the_ecdh_shared_secret(manager, label):
    public = ec_public(manager, label)
    assert isinstance(public.curve, CURVES[label])
    eph = ec.generate_private_key(public.curve)
    shared = manager.unwrap(label, spki(eph.public_key()))
    assert len(shared) == FIELD_BYTES[label]
    assert shared == eph.exchange(ec.ECDH(), public)


def test_ec_unwrap_with_the_default_key(ec_manager):
    public = ec_public(ec_manager, "")
    for _ in range(3):  # a fresh ephemeral key each time, a fresh secret each time
        eph = ec.generate_private_key(ec.SECP256R1())
        assert ec_manager.unwrap("", spki(eph.public_key())) == eph.exchange(ec.ECDH(), public)


@pytest.mark.parametrize("label", [EC_KEY, EC384_KEY])
def test_ec_unwrap_accepts_a_compressed_point(manager, label):
    public = ec_public(manager, label)
    eph = ec.generate_private_key(public.curve)
    assert manager.unwrap(label, compressed_spki(eph.public_key())) == eph.exchange(ec.ECDH(), public)


@pytest.mark.parametrize("label, other", [(EC_KEY, ec.SECP384R1), (EC384_KEY, ec.SECP256R1),
                                          (EC_KEY, ec.SECP521R1), (EC_KEY, ec.SECP256K1)])
def test_ephemeral_key_on_another_curve_is_invalid_argument(manager, label, other):
    eph = ec.generate_private_key(other()).public_key()
    with pytest.raises(errors.InvalidArgument, match=f"key '{label}' is an EC key on .*: the ephemeral "
                                                     r"public key is on another curve \(") as info:
        manager.unwrap(label, spki(eph))
    assert "\n" not in str(info.value)


def _garbage() -> dict[str, bytes]:
    good = spki(ec.generate_private_key(ec.SECP256R1()).public_key())
    off_curve = bytearray(good)
    off_curve[-1] ^= 0x01  # y no longer matches x
    return {
        "empty": b"",
        "text": b"x" * 64,
        "truncated": good[:-1],
        "trailing_byte": good + b"\x00",
        "bare_point": good[-65:],  # the point without the SPKI around it
        "pem": crypto.public_pem(ec.generate_private_key(ec.SECP256R1())).encode(),
        "off_curve": bytes(off_curve),
        "huge": b"\x30\x82\x10\x00" + b"\x00" * 4096,
    }


@pytest.mark.parametrize("name", sorted(_garbage()))
def test_garbage_ephemeral_key_is_invalid_argument(manager, name):
    with pytest.raises(errors.InvalidArgument, match=f"key '{EC_KEY}' is an EC key") as info:
        manager.unwrap(EC_KEY, _garbage()[name])
    assert "\n" not in str(info.value)


def test_rsa_ephemeral_key_is_invalid_argument(manager):
    eph = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    with pytest.raises(errors.InvalidArgument, match="the ephemeral public key is not an EC key"):
        manager.unwrap(EC_KEY, spki(eph))


def test_wrap_with_an_ec_key_is_failed_precondition(manager):
    with pytest.raises(errors.FailedPrecondition, match=f"key '{EC_KEY}' is an EC key; wrap needs an AES key"):
        manager.wrap(EC_KEY, b"x" * 32)


def test_ec_unwrap_threads(manager):
    publics = {label: ec_public(manager, label) for label in CURVES}
    failures: list[str] = []

    def worker(n: int) -> None:
        try:
            for i in range(10):
                label = (EC_KEY, EC384_KEY)[(n + i) % 2]
                eph = ec.generate_private_key(publics[label].curve)
                assert manager.unwrap(label, spki(eph.public_key())) == eph.exchange(ec.ECDH(), publics[label])
        except Exception as e:  # collected: an assert in a thread would be lost
            failures.append(f"thread {n}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


class _Attribute(ctypes.Structure):
    _fields_ = [("type", ctypes.c_ulong), ("value", ctypes.c_void_p), ("length", ctypes.c_ulong)]


def _generic_secrets_visible(token) -> int:
    """How many CKK_GENERIC_SECRET objects this process can see on the token
    (session objects of every session included), through the same
    libsofthsm2 instance the plugin uses."""
    lib = ctypes.CDLL(token.module)
    session = ctypes.c_ulong()
    assert lib.C_OpenSession(ctypes.c_ulong(token.slot_id), ctypes.c_ulong(4), None, None,  # CKF_SERIAL_SESSION
                             ctypes.byref(session)) == 0
    try:
        cls, key_type = ctypes.c_ulong(4), ctypes.c_ulong(0x10)  # CKO_SECRET_KEY, CKK_GENERIC_SECRET
        tmpl = (_Attribute * 2)(_Attribute(0x0, ctypes.cast(ctypes.byref(cls), ctypes.c_void_p), 8),
                                _Attribute(0x100, ctypes.cast(ctypes.byref(key_type), ctypes.c_void_p), 8))
        assert lib.C_FindObjectsInit(session, tmpl, ctypes.c_ulong(2)) == 0
        found, count = (ctypes.c_ulong * 64)(), ctypes.c_ulong()
        assert lib.C_FindObjects(session, found, ctypes.c_ulong(64), ctypes.byref(count)) == 0
        assert lib.C_FindObjectsFinal(session) == 0
        return count.value
    finally:
        lib.C_CloseSession(session)


def test_derived_secrets_do_not_linger(manager, token):
    public = ec_public(manager, EC_KEY)
    for _ in range(5):
        eph = ec.generate_private_key(ec.SECP256R1())
        assert manager.unwrap(EC_KEY, spki(eph.public_key())) == eph.exchange(ec.ECDH(), public)
    # The search itself can find them: a leaked derive would show up here.
    assert _generic_secrets_visible(token) == 0


def test_token_ec_keys_stay_sensitive(token):
    for label in CURVES:
        attrs = token.key_attributes(label, "private")
        assert attrs["sensitive"] and not attrs["extractable"] and not attrs["value_readable"], (label, attrs)


# ---- the host's conformance checks -----------------------------------------------

def test_host_conformance_checks_remote_ec(factory, token):
    # check_manager round-trips wrap/unwrap whenever the factory can wrap; an
    # EC key cannot (wrap needs an AES key), so hand it this factory's
    # capabilities as they apply to an EC key: everything but WRAP.
    ec_view = dataclasses.replace(factory, capabilities=factory.capabilities & ~Capability.WRAP)
    done = check_manager(ec_view, token.config_json(EC_KEY))
    assert done.get("remote_ec") is True and done.get("public_key") is True


# ---- the key service: a remote-mode EC key on the token ---------------------------

@pytest.fixture
def platform(tmp_path, loaded_plugin, token, monkeypatch):
    from host.app import Platform, Settings

    class WithLoadedPlugin(Platform):
        # The session's already-loaded plugin, not a second load of the same file
        # (see the loaded_plugin fixture).
        @property
        def plugins(self):
            return [loaded_plugin]

    monkeypatch.setenv("PLATFORM_ROOT_KEY", secrets.token_hex(32))
    p = WithLoadedPlugin(Settings(db_url=f"sqlite:///{tmp_path / 'platform.db'}",
                                  plugin_paths=(loaded_plugin.path,), state_dir=str(tmp_path)))
    p.store.kas.create("https://kas.example.com", "kas1")
    yield p
    p.close()


@pytest.fixture
def hsm_config_id(platform, token) -> str:
    return platform.store.providers.create("hsm", "pkcs11", json.dumps(token.config())).id


@pytest.mark.parametrize("label, algorithm", [(EC_KEY, "ec:secp256r1"), (EC384_KEY, "ec:secp384r1")])
def test_key_service_remote_ec_round_trip(platform, hsm_config_id, label, algorithm):
    key = platform.keys.create_key(None, f"hsm-{label}", algorithm, "remote", provider_config_id=hsm_config_id,
                                   wrapping_key_id=label)
    assert key.private_key_ctx == {"key_id": label}
    public = crypto.load_public_pem(key.public_key_pem, algorithm)
    for _ in range(2):
        dek = secrets.token_bytes(32)
        wrapped, eph_pem = crypto.ec_wrap(public, dek)  # what a TDF client does
        assert platform.keys.unwrap(f"hsm-{label}", wrapped, eph_pem) == dek
        # the ephemeral key as DER works the same
        eph_der = serialization.load_pem_public_key(eph_pem.encode()).public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        assert platform.keys.unwrap(f"hsm-{label}", wrapped, eph_der) == dek
    tampered = bytearray(wrapped)
    tampered[-1] ^= 1
    with pytest.raises(errors.CryptoError):
        platform.keys.unwrap(f"hsm-{label}", bytes(tampered), eph_pem)
    # another client's ephemeral key: another shared secret, the tag fails
    _, other_eph = crypto.ec_wrap(public, dek)
    with pytest.raises(errors.CryptoError):
        platform.keys.unwrap(f"hsm-{label}", wrapped, other_eph)
    assert platform.keys.stats()["private_key_cache"]["entries"] == 0  # nothing cached in remote mode


def test_key_service_remote_ec_curve_must_match_the_token_key(platform, hsm_config_id):
    with pytest.raises(errors.InvalidArgument, match="not an ec:secp384r1 key"):
        platform.keys.create_key(None, "hsm-mismatch", "ec:secp384r1", "remote", provider_config_id=hsm_config_id,
                                 wrapping_key_id=EC_KEY)


def test_key_service_remote_ec_and_rsa_side_by_side(platform, hsm_config_id):
    platform.keys.create_key(None, "hsm-ec", "ec:secp256r1", "remote", provider_config_id=hsm_config_id,
                             wrapping_key_id=EC_KEY)
    rsa_key = platform.keys.create_key(None, "hsm-rsa", "rsa:2048", "remote", provider_config_id=hsm_config_id,
                                       wrapping_key_id=RSA_KEY)
    dek = secrets.token_bytes(32)
    ec_public_key = crypto.load_public_pem(platform.keys.get_key(kas=None, key_id="hsm-ec").public_key_pem,
                                           "ec:secp256r1")
    wrapped, eph = crypto.ec_wrap(ec_public_key, dek)
    assert platform.keys.unwrap("hsm-ec", wrapped, eph) == dek
    rsa_public = crypto.load_public_pem(rsa_key.public_key_pem, "rsa:2048")
    assert platform.keys.unwrap("hsm-rsa", crypto.rsa_wrap(rsa_public, dek)) == dek
    with pytest.raises(errors.InvalidArgument, match="ephemeral public key is required"):
        platform.keys.unwrap("hsm-ec", wrapped)


# ---- the C conformance runner ------------------------------------------------------

def test_conformance_runner_checks_ecdh(plugin_path, token, tmp_path):
    from tests.conformance.runner_util import make_or_fail, run_runner

    make_or_fail("build/km-conformance")
    for label in (EC_KEY, EC384_KEY):
        cfg = tmp_path / f"{label}.json"
        cfg.write_text(json.dumps(token.config(label)))
        cfg.chmod(0o600)
        r = run_runner("--iterations", "5", plugin_path, cfg)
        assert r.returncode == 0 and r.summary[1] == 0, r.stdout + r.stderr
        assert "PASS unwrap.ecdh" in r.lines and "PASS coverage" in r.lines
        assert r.line("SKIP roundtrip.32").startswith("SKIP roundtrip.32: wrap on the default key is refused "
                                                      "(KM_ERR_FAILED_PRECONDITION")
        assert token.user_pin not in r.text()
    # an AES default key: no public key, so no ECDH check, round trips as before
    cfg = tmp_path / "aes.json"
    cfg.write_text(json.dumps(token.config(AES_KEY)))
    r = run_runner(plugin_path, cfg)
    assert r.returncode == 0 and "PASS roundtrip.32" in r.lines and "unwrap.ecdh" not in r.stdout
