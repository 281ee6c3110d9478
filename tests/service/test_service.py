"""Key service: every mode x algorithm, routing, caching, fallback, bad input."""

from __future__ import annotations

import base64
import json
import os
import time

import pytest

from host import crypto, errors
from host.managers.base import CallContext

ALGS = list(crypto.ALGORITHMS)


def client_wrap(key, dek: bytes):
    """What a TDF client does with the KAS public key."""
    pub = crypto.load_public_pem(key.public_key_pem, key.algorithm)
    if crypto.is_ec(key.algorithm):
        return crypto.ec_wrap(pub, dek)
    if key.algorithm in crypto.KEMS:
        return crypto.kem.wrap(pub, crypto.KEMS[key.algorithm], dek), None
    return crypto.rsa_wrap(pub, dek), None


def round_trip(platform, key):
    dek = os.urandom(32)
    wrapped, eph = client_wrap(key, dek)
    assert platform.keys.unwrap(key.key_id, wrapped, eph) == dek
    return wrapped, eph, dek


@pytest.mark.parametrize("alg", ALGS)
def test_local_mode(platform, alg):
    key = platform.keys.create_key(None, f"l-{alg}", alg, "local")
    assert key.mode == "local" and key.provider_config is None
    assert key.private_key_ctx["wrapped_key"] and key.private_key_ctx["key_id"] == "root"
    round_trip(platform, key)


@pytest.mark.parametrize("alg", ALGS)
def test_provider_mode_file_kek(platform, file_kek_config_id, alg):
    key = platform.keys.create_key(None, f"p-{alg}", alg, "provider", provider_config_id=file_kek_config_id,
                                   wrapping_key_id="b")
    assert key.private_key_ctx["key_id"] == "b"
    # the stored private key is file-kek ciphertext, not a PEM
    assert b"PRIVATE KEY" not in base64.b64decode(key.private_key_ctx["wrapped_key"])
    round_trip(platform, key)


@pytest.mark.parametrize("alg", [a for a in ALGS if a not in crypto.KEMS])  # KEM keys: no remote mode yet
def test_remote_mode_key_from_manager_public_key(platform, remote_config_id, alg):
    key = platform.keys.create_key(None, f"r-{alg}", alg, "remote", provider_config_id=remote_config_id,
                                   wrapping_key_id=f"k-{alg}")
    assert key.private_key_ctx == {"key_id": f"k-{alg}"}
    round_trip(platform, key)
    # nothing cached for remote mode
    assert platform.keys.stats()["private_key_cache"]["entries"] == 0


def test_remote_mode_checks_given_public_key(platform, remote_config_id):
    other = crypto.public_pem(crypto.generate_private_key("rsa:2048"))
    with pytest.raises(errors.InvalidArgument, match="does not match the public key the manager holds"):
        platform.keys.create_key(None, "r", "rsa:2048", "remote", provider_config_id=remote_config_id,
                                 wrapping_key_id="k-rsa:2048", public_key_pem=other)
    with pytest.raises(errors.InvalidArgument, match="not an rsa:2048 key"):
        platform.keys.create_key(None, "r", "rsa:2048", "remote", provider_config_id=remote_config_id,
                                 wrapping_key_id="k-ec:secp256r1")


def test_public_key_mode_cannot_unwrap(platform):
    pem = crypto.public_pem(crypto.generate_private_key("ec:secp256r1"))
    key = platform.keys.create_key(None, "pub", "ec:secp256r1", "public_key", public_key_pem=pem)
    wrapped, eph = client_wrap(key, b"k" * 32)
    with pytest.raises(errors.FailedPrecondition, match="public_key-mode key.*cannot unwrap"):
        platform.keys.unwrap("pub", wrapped, eph)


def test_given_private_key_is_used_and_checked(platform, file_kek_config_id):
    private = crypto.generate_private_key("rsa:2048")
    key = platform.keys.create_key(None, "given", "rsa:2048", "provider", provider_config_id=file_kek_config_id,
                                   private_key_pem=crypto.private_pem(private).decode())
    assert key.public_key_pem == crypto.public_pem(private)
    round_trip(platform, key)
    with pytest.raises(errors.InvalidArgument, match="not an ec:secp256r1 key"):
        platform.keys.create_key(None, "x", "ec:secp256r1", "local", private_key_pem=crypto.private_pem(private))
    with pytest.raises(errors.InvalidArgument, match="does not parse"):
        platform.keys.create_key(None, "x", "rsa:2048", "local", private_key_pem="-----BEGIN PRIVATE KEY-----\nAAAA\n")


@pytest.mark.parametrize("mode,kwargs,match", [
    ("provider", {}, "requires a provider config"),
    ("remote", {}, "requires a provider config"),
    ("local", {"provider_config_id": "CFG"}, "must not have a provider config"),
    ("public_key", {"provider_config_id": "CFG"}, "must not have a provider config"),
    ("public_key", {}, "requires --public-key-pem"),
    ("remote", {"provider_config_id": "CFG", "private_key_pem": "x"}, "keeps no private key"),
    ("bogus", {}, "mode must be one of"),
])
def test_mode_rules(platform, file_kek_config_id, mode, kwargs, match):
    kwargs = {k: (file_kek_config_id if v == "CFG" else v) for k, v in kwargs.items()}
    with pytest.raises(errors.InvalidArgument, match=match):
        platform.keys.create_key(None, "k", "rsa:2048", mode, **kwargs)
    assert platform.keys.list_keys()[1] == 0


def test_unknown_algorithm_and_kid(platform):
    with pytest.raises(errors.InvalidArgument, match="algorithm must be one of"):
        platform.keys.create_key(None, "k", "rsa:1024", "local")
    with pytest.raises(errors.NotFound):
        platform.keys.unwrap("nope", b"x" * 256)


def test_rotation_keeps_old_wraps_working(platform, file_kek_config_id):
    old = platform.keys.create_key(None, "v1", "ec:secp256r1", "provider", provider_config_id=file_kek_config_id)
    wrapped, eph, dek = round_trip(platform, old)
    new, rotated = platform.keys.rotate_key(None, "v1", "v2")
    assert rotated.status == "rotated" and new.status == "active" and new.mode == "provider"
    assert platform.keys.public_key(algorithm="ec:secp256r1").key_id == "v2"
    assert platform.keys.unwrap("v1", wrapped, eph) == dek
    round_trip(platform, new)
    with pytest.raises(errors.FailedPrecondition, match="already rotated"):
        platform.keys.rotate_key(None, "v1", "v3")


def test_tampering_is_a_crypto_error(platform, file_kek_config_id):
    rsa_key = platform.keys.create_key(None, "t-rsa", "rsa:2048", "local")
    ec_key = platform.keys.create_key(None, "t-ec", "ec:secp256r1", "provider", provider_config_id=file_kek_config_id)
    wrapped, _ = client_wrap(rsa_key, b"d" * 32)
    bad = bytearray(wrapped)
    bad[10] ^= 1
    with pytest.raises(errors.CryptoError):
        platform.keys.unwrap("t-rsa", bytes(bad))
    wrapped, eph = client_wrap(ec_key, b"d" * 32)
    bad = bytearray(wrapped)
    bad[-1] ^= 1
    with pytest.raises(errors.CryptoError):
        platform.keys.unwrap("t-ec", bytes(bad), eph)


def test_tampered_wrapped_private_key_in_database(platform, file_kek_config_id):
    key = platform.keys.create_key(None, "db", "rsa:2048", "provider", provider_config_id=file_kek_config_id)
    blob = bytearray(base64.b64decode(key.private_key_ctx["wrapped_key"]))
    blob[20] ^= 0x40
    from sqlalchemy import text
    with platform.store.db.engine.begin() as conn:
        conn.execute(text("UPDATE kas_key SET private_key_ctx = :c WHERE id = :i"),
                     {"c": json.dumps({"key_id": "a", "wrapped_key": base64.b64encode(bytes(blob)).decode()}), "i": key.id})
    wrapped, _ = client_wrap(key, b"d" * 32)
    with pytest.raises(errors.CryptoError, match="file-kek unwrap"):
        platform.keys.unwrap("db", wrapped)


def test_ec_ephemeral_key_checks(platform):
    key = platform.keys.create_key(None, "e", "ec:secp256r1", "local")
    wrapped, _ = client_wrap(key, b"d" * 32)
    other_curve = crypto.public_pem(crypto.generate_private_key("ec:secp384r1"))
    with pytest.raises(errors.InvalidArgument, match="not on the KAS key's curve"):
        platform.keys.unwrap("e", wrapped, other_curve)
    with pytest.raises(errors.InvalidArgument, match="does not parse"):
        platform.keys.unwrap("e", wrapped, b"\x04garbage")
    with pytest.raises(errors.InvalidArgument, match="ephemeral public key is required"):
        platform.keys.unwrap("e", wrapped, None)


def test_unknown_wrapping_key_id_leaves_no_row(platform, file_kek_config_id):
    with pytest.raises(errors.NotFound, match="file-kek wrap"):
        platform.keys.create_key(None, "w", "rsa:2048", "provider", provider_config_id=file_kek_config_id,
                                 wrapping_key_id="no-such-kek")
    assert platform.keys.list_keys()[1] == 0


def test_plugin_failing_during_wrap_leaves_no_row(platform, remote_config_id):
    # the remote keystore cannot wrap: provider mode through it fails at wrap time
    with pytest.raises(errors.Unimplemented):
        platform.keys.create_key(None, "w", "rsa:2048", "provider", provider_config_id=remote_config_id)
    assert platform.keys.list_keys()[1] == 0


def test_unknown_manager_falls_back_to_basic_with_clear_error(platform, caplog):
    cfg = platform.store.providers.create("aws-prod", "aws-kms-not-loaded", '{"region": "us-east-1"}')
    with pytest.raises(errors.FailedPrecondition, match=r"no key manager named 'aws-kms-not-loaded'.*--key-manager-plugin"):
        platform.keys.create_key(None, "f", "rsa:2048", "provider", provider_config_id=cfg.id)
    assert "using the default opentdf.io/basic manager" in caplog.text
    assert platform.keys.list_keys()[1] == 0


def test_remote_key_for_a_manager_not_loaded_here_is_stored_with_its_public_key(platform):
    """As OpenTDF's policy service, which never calls a manager: a remote key whose plugin this node
    lacks is registered with the PEM given; without a PEM there is nothing to register."""
    from host import crypto

    cfg = platform.store.providers.create("elsewhere", "fake-manager", "{}")
    pem = crypto.public_pem(crypto.generate_private_key("rsa:2048").public_key())
    key = platform.keys.create_key(None, "r", "rsa:2048", "remote", provider_config_id=cfg.id,
                                   wrapping_key_id="kms-key-1", public_key_pem=pem)
    assert (key.mode, key.private_key_ctx, key.public_key_pem) == ("remote", {"key_id": "kms-key-1"}, pem)
    with pytest.raises(errors.FailedPrecondition, match="no key manager named 'fake-manager'"):
        platform.keys.create_key(None, "r2", "rsa:2048", "remote", provider_config_id=cfg.id,
                                 wrapping_key_id="kms-key-1")
    with pytest.raises(errors.InvalidArgument):  # the PEM is still checked
        platform.keys.create_key(None, "r3", "rsa:2048", "remote", provider_config_id=cfg.id,
                                 wrapping_key_id="kms-key-1", public_key_pem="not a pem")


def test_key_created_with_plugin_fails_clearly_without_it(sqlite_db_url, root_key_hex, file_kek_plugin):
    from tests.service.conftest import file_kek_config, make_platform
    a = make_platform(sqlite_db_url, [file_kek_plugin])
    a.store.kas.create("https://kas", "k")
    cfg = a.store.providers.create("fk", "file-kek", json.dumps(file_kek_config("a")))
    key = a.keys.create_key(None, "p", "rsa:2048", "provider", provider_config_id=cfg.id)
    wrapped, _ = client_wrap(key, b"d" * 32)
    a.close()
    b = make_platform(sqlite_db_url, [])
    with pytest.raises(errors.FailedPrecondition, match="--key-manager-plugin=.*file-kek-manager.so"):
        b.keys.unwrap("p", wrapped)
    b.close()


def test_config_change_builds_a_new_manager(platform, file_kek_config_id):
    platform.keys.unwrap_path.revision_check_seconds = 0
    platform.keys.unwrap_path.private_key_ttl = 0
    key = platform.keys.create_key(None, "c", "rsa:2048", "provider", provider_config_id=file_kek_config_id,
                                   wrapping_key_id="a")
    wrapped, _, dek = round_trip(platform, key)
    first = platform.registry.manager_for(platform.store.providers.get(id=file_kek_config_id))
    cfg = platform.store.providers.get(id=file_kek_config_id)
    conf = cfg.config
    conf["keks"]["c"] = "00" * 32
    updated = platform.store.providers.update(file_kek_config_id, config_json=json.dumps(conf))
    assert updated.revision == cfg.revision + 1
    assert platform.keys.unwrap("c", wrapped) == dek
    second = platform.registry.manager_for(updated)
    assert second is not first
    # a config without the wrapping KEK: the next unwrap uses it and fails
    del conf["keks"]["a"]
    conf["default_key_id"] = "b"
    platform.store.providers.update(file_kek_config_id, config_json=json.dumps(conf))
    with pytest.raises(errors.NotFound):
        platform.keys.unwrap("c", wrapped)


def test_provider_private_keys_cached_with_ttl(sqlite_db_url, root_key_hex, file_kek_plugin):
    from tests.service.conftest import file_kek_config, make_platform

    ttl = 1.0  # short, so that the test can let it run out
    platform = make_platform(sqlite_db_url, [file_kek_plugin], private_key_ttl=ttl)

    def unwrap_calls() -> int:
        calls = {(c["manager"], c["op"]): c["count"] for c in platform.keys.stats()["manager_calls"]}
        return calls[("file-kek", "unwrap")]

    try:
        platform.store.kas.create("https://kas.example.com", "kas1")
        pc = platform.store.providers.create("fk", "file-kek", json.dumps(file_kek_config("a"))).id
        key = platform.keys.create_key(None, "ttl", "rsa:2048", "provider", provider_config_id=pc)
        round_trip(platform, key)
        expired_after = time.monotonic() + ttl  # the private key was cached before this instant
        for _ in range(4):
            round_trip(platform, key)
        stats = platform.keys.stats()
        assert unwrap_calls() == 1 and stats["private_key_cache"]["hits"] == 4
        assert stats["private_key_cache"]["ttl_seconds"] == ttl
        # let the TTL run out (bounded: one computed wait), then the manager is asked again, once
        while (left := expired_after - time.monotonic()) > 0:
            time.sleep(left)
        round_trip(platform, key)
        assert unwrap_calls() == 2
        round_trip(platform, key)
        assert unwrap_calls() == 2  # and the fresh copy is cached again
    finally:
        platform.close()


def test_deadline_reaches_the_plugin(platform, file_kek_config_id):
    key = platform.keys.create_key(None, "dl", "rsa:2048", "provider", provider_config_id=file_kek_config_id)
    wrapped, _ = client_wrap(key, b"d" * 32)
    with pytest.raises(errors.DeadlineExceeded):
        platform.keys.unwrap("dl", wrapped, ctx=CallContext(deadline=0.0))


def test_root_key_validation(monkeypatch):
    from host.rootkey import load_root_key
    monkeypatch.setenv("PLATFORM_ROOT_KEY", "ab" * 16)
    with pytest.raises(errors.InvalidArgument, match="64 hex characters"):
        load_root_key()
    monkeypatch.setenv("PLATFORM_ROOT_KEY", "zz" * 32)
    with pytest.raises(errors.InvalidArgument, match="64 hex characters"):
        load_root_key()


def test_local_keys_without_root_key_is_a_startup_error(sqlite_db_url, root_key_hex, monkeypatch):
    from tests.service.conftest import make_platform
    a = make_platform(sqlite_db_url)
    a.store.kas.create("https://kas", "k")
    a.keys.create_key(None, "l", "rsa:2048", "local")
    a.close()
    monkeypatch.delenv("PLATFORM_ROOT_KEY")
    b = make_platform(sqlite_db_url)
    with pytest.raises(errors.FailedPrecondition, match="1 local-mode key.*no root key"):
        b.keys.check_startup()
    b.close()


def test_rotation_to_another_manager_does_not_reuse_the_wrapping_key_id(platform, file_kek_config_id):
    platform.keys.create_key(None, "m1", "rsa:2048", "local")
    new, _ = platform.keys.rotate_key(None, "m1", "m2", mode="provider", provider_config_id=file_kek_config_id)
    assert new.mode == "provider" and new.private_key_ctx["key_id"] == ""  # file-kek's default, not "root"
    round_trip(platform, new)
    back, _ = platform.keys.rotate_key(None, "m2", "m3", mode="local")
    assert back.provider_config_id is None and back.private_key_ctx["key_id"] == "root"
    round_trip(platform, back)
