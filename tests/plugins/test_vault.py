"""The `vault` plugin (build/plugins/vault-manager.so) through the host's loader.

Runs against tests/emulators/vault_transit.py (Vault's transit HTTP API on
loopback), or against a real Vault when VAULT_ADDR and VAULT_TOKEN are set
(transit mounted at VAULT_TRANSIT_MOUNT, default `transit`); tests that need
the emulator's fault hooks or AppRole setup are skipped there. Keys are
created and inspected with plain hvac, never through the plugin.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import uuid

import hvac
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from host import errors
from host.managers.base import CallContext
from tests.conformance.runner_util import make_or_fail, run_runner
from tests.emulators.vault_transit import VaultTransitEmulator
from tests.plugins.conftest import REPO, ctx, load_factory

SO = REPO / "build" / "plugins" / "vault-manager.so"
REAL = bool(os.environ.get("VAULT_ADDR") and os.environ.get("VAULT_TOKEN"))
emulator_only = pytest.mark.skipif(REAL, reason="needs the emulator's test hooks")
SEED_CONFIG = {  # verbatim from the seed document
    "vault_addr": "https://vault.example.com:8200",
    "vault_token": "hvs.CAESIJlWh...",
    "mount_path": "transit",
    "key_name": "opentdf-dek-key",
}


class VaultUnderTest:
    def __init__(self, addr: str, token: str, mount: str, emulator: VaultTransitEmulator | None):
        self.addr, self.token, self.mount, self.emulator = addr, token, mount, emulator
        self.admin = hvac.Client(url=addr, token=token)

    def new_key(self, key_type: str = "aes256-gcm96", namespace: str | None = None) -> str:
        name = f"km-test-{uuid.uuid4().hex[:12]}"
        client = hvac.Client(url=self.addr, token=self.token, namespace=namespace) if namespace else self.admin
        client.secrets.transit.create_key(name, key_type=key_type, mount_point=self.mount)
        return name

    def config(self, key_name: str, **extra) -> dict:
        return {"vault_addr": self.addr, "vault_token": self.token, "mount_path": self.mount,
                "key_name": key_name, **extra}


@pytest.fixture(scope="module")
def vault():
    if REAL:
        yield VaultUnderTest(os.environ["VAULT_ADDR"], os.environ["VAULT_TOKEN"],
                             os.environ.get("VAULT_TRANSIT_MOUNT", "transit"), None)
        return
    with VaultTransitEmulator() as emu:
        yield VaultUnderTest(emu.addr, emu.root_token, "transit", emu)


@pytest.fixture(scope="module")
def factory():
    make_or_fail("build/plugins/vault-manager.so")
    return load_factory(SO, "vault")


# ---- descriptor and config ----------------------------------------------------

def test_descriptor(factory):
    assert factory.thread_safe
    assert set(factory.describe()["capabilities"]) == {"wrap", "unwrap", "public_key", "probe"}


def test_seed_config_is_accepted_verbatim(make):
    make(SEED_CONFIG)  # building a manager contacts nothing


@pytest.mark.parametrize("change, reason", [
    ({"vault_addr": None}, "missing required field 'vault_addr'"),
    ({"key_name": None}, "missing required field 'key_name'"),
    ({"vault_addr": ""}, "field 'vault_addr' must not be empty"),
    ({"vault_addr": 8200}, "field 'vault_addr' must be a string"),
    ({"vault_token": ["hvs.x"]}, "field 'vault_token' must be a string"),
    ({"vault_addr": "vault.example.com:8200"}, "field 'vault_addr' must be an http(s) URL"),
    ({"vault_addr": "ftp://vault.example.com"}, "field 'vault_addr' must be an http(s) URL"),
    ({"vault_addr": "https://"}, "field 'vault_addr' must be an http(s) URL"),
    ({"vault_addr": "https://vault.example.com:99999"}, "field 'vault_addr' must be an http(s) URL"),
    ({"vault_addr": "https://user:pw@vault.example.com"}, "field 'vault_addr' must be an http(s) URL"),
    ({"key_name": "../sys/seal"}, "field 'key_name' must be a Vault key name"),
    ({"mount_path": "transit/../sys"}, "field 'mount_path' must be a Vault mount path"),
    ({"mount_path": 7}, "field 'mount_path' must be a string"),
    ({"namespace": "a b"}, "field 'namespace' must be a Vault namespace path"),
    ({"vault_token": None}, "give 'vault_token' or 'role_id' + 'secret_id'"),
    ({"role_id": "r"}, "fields 'role_id' and 'secret_id' must be given together"),
    ({"role_id": "r", "secret_id": "s3cr3t-approle"}, "give either 'vault_token' or 'role_id' + 'secret_id'"),
    ({"ca_cert": "/nonexistent/ca.pem"}, "field 'ca_cert' must be the path of a readable PEM file"),
    ({"timeout": -1}, "field 'timeout' must be a number of seconds"),
    ({"timeout": True}, "field 'timeout' must be a number of seconds"),
    ({"timeout": "10"}, "field 'timeout' must be a number of seconds"),
    ({"vault_tokn": "x"}, "unknown field 'vault_tokn'"),
])
def test_bad_config_is_refused_with_one_line(make, change, reason):
    config = {k: v for k, v in {**SEED_CONFIG, **change}.items() if v is not None}
    with pytest.raises(errors.InvalidArgument) as exc:
        make(config)
    message = str(exc.value)
    assert reason in message and "\n" not in message
    assert SEED_CONFIG["vault_token"] not in message and "s3cr3t-approle" not in message


@pytest.mark.parametrize("raw", [b"[]", b'"x"', b"{not json", b"\xff\xfe", b""])
def test_config_that_is_not_a_json_object_is_refused(make, raw):
    with pytest.raises(errors.InvalidArgument):
        make(raw)


# ---- provider mode: wrap/unwrap --------------------------------------------------

def test_round_trip_is_vault_ciphertext_that_hvac_decrypts(vault, make):
    name = vault.new_key()
    manager = make(vault.config(name))
    private_key = secrets.token_bytes(1700)  # about a PEM RSA-2048 private key
    wrapped = manager.wrap("", private_key, ctx())
    assert wrapped.startswith(b"vault:v1:")
    assert manager.unwrap("", wrapped, ctx()) == private_key
    # The same ciphertext decrypts with plain hvac: no private wrapping format.
    plain = vault.admin.secrets.transit.decrypt_data(name, wrapped.decode(), mount_point=vault.mount)
    assert base64.b64decode(plain["data"]["plaintext"]) == private_key


def test_explicit_key_id_overrides_the_default(vault, make):
    default, other = vault.new_key(), vault.new_key()
    manager = make(vault.config(default))
    wrapped = manager.wrap(other, b"dek", ctx())
    assert manager.unwrap(other, wrapped, ctx()) == b"dek"
    with pytest.raises(errors.CryptoError):  # the default key cannot open the other key's ciphertext
        manager.unwrap("", wrapped, ctx())


def test_rotation_keeps_old_ciphertexts_readable(vault, make):
    name = vault.new_key()
    manager = make(vault.config(name))
    before = manager.wrap("", b"wrapped under v1", ctx())
    vault.admin.secrets.transit.rotate_key(name, mount_point=vault.mount)
    after = manager.wrap("", b"wrapped under v2", ctx())
    assert before.startswith(b"vault:v1:") and after.startswith(b"vault:v2:")
    assert manager.unwrap("", before, ctx()) == b"wrapped under v1"
    assert manager.unwrap("", after, ctx()) == b"wrapped under v2"


def test_tampered_or_foreign_ciphertext_is_a_crypto_error(vault, make):
    name = vault.new_key()
    manager = make(vault.config(name))
    wrapped = bytearray(manager.wrap("", secrets.token_bytes(64), ctx()))
    body = bytearray(base64.b64decode(wrapped[len(b"vault:v1:"):]))
    body[20] ^= 1
    tampered = b"vault:v1:" + base64.b64encode(bytes(body))
    for bad in (tampered, b"vault:v1:AAAA", b"vault:vX:AAAA", b"vault:v9:" + bytes(wrapped[9:]),
                b"not a vault ciphertext", b"\xff\x00\x01"):
        with pytest.raises(errors.CryptoError):
            manager.unwrap("", bad, ctx())


def test_missing_key_is_not_found_and_is_not_created(vault, make):
    manager = make(vault.config(vault.new_key()))
    missing = f"km-missing-{uuid.uuid4().hex[:8]}"
    with pytest.raises(errors.NotFound, match=missing):
        manager.wrap(missing, b"x", ctx())
    with pytest.raises(errors.NotFound):
        manager.unwrap(missing, b"vault:v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", ctx())
    with pytest.raises(errors.NotFound):
        manager.public_key(missing, ctx())
    # Vault's encrypt would upsert the key; the manager checks first, so no key appears.
    with pytest.raises(hvac.exceptions.InvalidPath):
        vault.admin.secrets.transit.read_key(missing, mount_point=vault.mount)


@pytest.mark.parametrize("key_id", ["../../sys/seal", "a/b", "key name", "-x"])
def test_bad_key_id_is_invalid_argument(vault, make, key_id):
    manager = make(vault.config(vault.new_key()))
    with pytest.raises(errors.InvalidArgument):
        manager.wrap(key_id, b"x", ctx())


# ---- public key and remote mode ---------------------------------------------------

def test_public_key_of_rsa_transit_key(vault, make):
    name = vault.new_key("rsa-2048")
    manager = make(vault.config(name))
    pem = manager.public_key("", ctx())
    info = vault.admin.secrets.transit.read_key(name, mount_point=vault.mount)["data"]
    expected = serialization.load_pem_public_key(info["keys"]["1"]["public_key"].encode())
    got = serialization.load_pem_public_key(pem.encode())
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")
    assert got.public_numbers() == expected.public_numbers()
    vault.admin.secrets.transit.rotate_key(name, mount_point=vault.mount)  # latest version is served
    rotated = serialization.load_pem_public_key(manager.public_key("", ctx()).encode())
    assert rotated.public_numbers() != expected.public_numbers()


def test_symmetric_key_has_no_public_key(vault, make):
    manager = make(vault.config(vault.new_key()))
    with pytest.raises(errors.InvalidArgument, match="has no public key"):
        manager.public_key("", ctx())


def test_remote_mode_unwrap_is_refused_with_the_reason(vault, make):
    name = vault.new_key("rsa-2048")
    manager = make(vault.config(name))
    public = serialization.load_pem_public_key(manager.public_key("", ctx()).encode())
    dek_for_tdf = public.encrypt(secrets.token_bytes(32), padding.OAEP(
        mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None))
    with pytest.raises(errors.Unimplemented) as exc:
        manager.unwrap("", dek_for_tdf, ctx())
    assert "OAEP-SHA-256" in str(exc.value) and "provider mode" in str(exc.value)


def test_provider_mode_works_with_an_rsa_key_for_short_secrets(vault, make):
    manager = make(vault.config(vault.new_key("rsa-2048")))
    wrapped = manager.wrap("", b"short secret", ctx())
    assert manager.unwrap("", wrapped, ctx()) == b"short secret"
    with pytest.raises(errors.InvalidArgument):  # too long for one RSA-OAEP block
        manager.wrap("", secrets.token_bytes(1700), ctx())


# ---- probe, credentials, secrets ---------------------------------------------------

def test_probe(vault, make):
    make(vault.config(vault.new_key())).probe(ctx())
    make(vault.config(vault.new_key("rsa-2048"))).probe(ctx())
    with pytest.raises(errors.NotFound):
        make(vault.config("km-no-such-key")).probe(ctx())


def test_wrong_token_is_permission_denied_without_the_token(vault, make, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "hvs." + secrets.token_urlsafe(24)
    manager = make(vault.config(vault.new_key(), vault_token=wrong))
    for call in (lambda: manager.wrap("", b"x", ctx()), lambda: manager.probe(ctx()),
                 lambda: manager.unwrap("", b"vault:v1:AAAA", ctx())):
        with pytest.raises(errors.PermissionDenied) as exc:
            call()
        assert wrong not in str(exc.value) and "\n" not in str(exc.value)
    assert wrong not in caplog.text and vault.token not in caplog.text


def test_logs_never_contain_secrets_or_plaintext(vault, make, caplog):
    caplog.set_level(logging.DEBUG)
    manager = make(vault.config(vault.new_key()))
    plaintext = secrets.token_hex(40).encode()
    wrapped = manager.wrap("", plaintext, ctx())
    manager.unwrap("", wrapped, ctx())
    manager.probe(ctx())
    assert caplog.records, "expected some log lines from the plugin"
    for secret in (vault.token, plaintext.decode(), base64.b64encode(plaintext).decode()):
        assert secret not in caplog.text
    assert repr(manager).count(vault.token) == 0


@emulator_only
def test_approle_login_and_relogin_after_token_expiry(vault, make):
    role_id, secret_id = str(uuid.uuid4()), secrets.token_urlsafe(20)
    vault.emulator.add_approle(role_id, secret_id)
    name = vault.new_key()
    config = {"vault_addr": vault.addr, "role_id": role_id, "secret_id": secret_id, "key_name": name}
    manager = make(config)
    wrapped = manager.wrap("", b"via approle", ctx())
    vault.emulator.revoke_tokens_except_root()  # the AppRole token expired
    assert manager.unwrap("", wrapped, ctx()) == b"via approle"


@emulator_only
def test_approle_wrong_secret_is_permission_denied(vault, make, caplog):
    caplog.set_level(logging.DEBUG)
    role_id = str(uuid.uuid4())
    vault.emulator.add_approle(role_id, secrets.token_urlsafe(20))
    wrong = "wrong-" + secrets.token_urlsafe(20)
    manager = make({"vault_addr": vault.addr, "role_id": role_id, "secret_id": wrong,
                    "key_name": vault.new_key()})
    with pytest.raises(errors.PermissionDenied, match="AppRole login refused") as exc:
        manager.probe(ctx())
    assert wrong not in str(exc.value) and wrong not in caplog.text


@emulator_only
def test_namespace_scopes_keys(vault, make):
    name = vault.new_key(namespace="team-a")
    inside = make(vault.config(name, namespace="team-a"))
    assert inside.unwrap("", inside.wrap("", b"ns", ctx()), ctx()) == b"ns"
    with pytest.raises(errors.NotFound):
        make(vault.config(name)).wrap("", b"ns", ctx())


# ---- availability and deadlines --------------------------------------------------------

@emulator_only
@pytest.mark.parametrize("status", [429, 500, 503])
def test_transient_failures_are_retried(vault, make, status):
    manager = make(vault.config(vault.new_key()))
    wrapped = manager.wrap("", b"retry me", ctx())
    vault.emulator.fail_next(2, status)
    assert manager.unwrap("", wrapped, ctx()) == b"retry me"


@emulator_only
@pytest.mark.parametrize("status", [429, 503])
def test_persistent_failures_are_unavailable(vault, make, status):
    manager = make(vault.config(vault.new_key()))
    wrapped = manager.wrap("", b"x", ctx())
    vault.emulator.fail_next(10, status)
    try:
        with pytest.raises(errors.Unavailable, match="Vault unavailable"):
            manager.unwrap("", wrapped, ctx())
    finally:
        vault.emulator.fail_next(0)


def test_unreachable_vault_is_unavailable(make):
    manager = make({"vault_addr": "http://127.0.0.1:9", "vault_token": "hvs.x", "key_name": "k"})
    with pytest.raises(errors.Unavailable, match="cannot connect"):
        manager.probe(ctx())


@emulator_only
def test_hung_vault_gives_deadline_exceeded(vault, make):
    manager = make(vault.config(vault.new_key()))
    wrapped = manager.wrap("", b"x", ctx())
    vault.emulator.hold()
    try:
        with pytest.raises(errors.DeadlineExceeded):
            manager.unwrap("", wrapped, CallContext.with_timeout(0.5))
    finally:
        vault.emulator.release()
    assert manager.unwrap("", wrapped, ctx()) == b"x"


def test_tls_with_unknown_ca_is_unavailable_with_a_hint(make, tmp_path):
    # An HTTPS listener whose certificate nobody trusts: the Azure emulator's, reused as a TLS endpoint.
    from tests.emulators.azure_keyvault import AzureKeyVaultEmulator

    with AzureKeyVaultEmulator() as tls:
        manager = make({"vault_addr": tls.url, "vault_token": "hvs.x", "key_name": "k"})
        with pytest.raises(errors.Unavailable, match="ca_cert"):
            manager.probe(ctx())
        # Trusting its CA, TLS works and the request reaches the server (which is no Vault: 404).
        trusted = make({"vault_addr": tls.url, "vault_token": "hvs.x", "key_name": "k", "ca_cert": tls.ca_file})
        with pytest.raises(errors.NotFound):
            trusted.probe(ctx())


# ---- the C conformance runner -----------------------------------------------------------

def test_km_conformance_passes(vault, tmp_path):
    make_or_fail("build/plugins/vault-manager.so", "build/km-conformance")
    config = tmp_path / "vault.json"
    config.write_text(json.dumps(vault.config(vault.new_key())))
    result = run_runner(SO, config)
    assert result.returncode == 0, result.stdout + result.stderr
    passed, failed = result.summary
    assert failed == 0 and passed > 20
    assert vault.token not in result.text()
