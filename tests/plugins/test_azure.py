"""The `azure` plugin (build/plugins/azure-manager.so) through the host's loader.

Runs against tests/emulators/azure_keyvault.py (Key Vault keys API + token
endpoint over HTTPS with a throwaway CA, challenge-based auth as Azure does
it), or against a real vault when AZURE_KEYVAULT_URL, AZURE_TENANT_ID,
AZURE_CLIENT_ID and AZURE_CLIENT_SECRET are set; tests that need the
emulator's hooks are skipped there. Keys are created and inspected with the
plain Azure SDK, never through the plugin.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import uuid

import pytest
from azure.identity import ClientSecretCredential
from azure.keyvault.keys import KeyClient
from azure.keyvault.keys.crypto import CryptographyClient, KeyWrapAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from host import errors
from host.managers.base import CallContext
from tests.conformance.runner_util import make_or_fail, run_runner
from tests.emulators.azure_keyvault import AzureKeyVaultEmulator
from tests.plugins.conftest import REPO, ctx, load_factory

SO = REPO / "build" / "plugins" / "azure-manager.so"
_REAL_VARS = ("AZURE_KEYVAULT_URL", "AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET")
REAL = all(os.environ.get(v) for v in _REAL_VARS)
emulator_only = pytest.mark.skipif(REAL, reason="needs the emulator's test hooks")
SEED_CONFIG = {  # verbatim from the seed document
    "vault_url": "https://myvault.vault.azure.net/",
    "tenant_id": "12345678-1234-1234-1234-123456789012",
    "client_id": "87654321-4321-4321-4321-210987654321",
    "client_secret": "...",
    "key_name": "opentdf-master-key",
}
OAEP_SHA1 = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class AzureUnderTest:
    def __init__(self, vault_url, tenant_id, client_id, client_secret, extra: dict, emulator=None):
        self.vault_url, self.tenant_id = vault_url, tenant_id
        self.client_id, self.client_secret = client_id, client_secret
        self.extra, self.emulator = extra, emulator
        sdk = {}
        if emulator is not None:
            sdk = {"connection_verify": emulator.ca_file}
        self.credential = ClientSecretCredential(
            tenant_id, client_id, client_secret,
            **({"authority": emulator.authority_host, "disable_instance_discovery": True} if emulator else {}), **sdk)
        self.sdk_kwargs = dict(sdk, **({"verify_challenge_resource": False} if emulator else {}))
        self.admin = KeyClient(vault_url, self.credential, **self.sdk_kwargs)

    def new_key(self) -> tuple[str, str]:
        name = f"km-test-{uuid.uuid4().hex[:12]}"
        key = self.admin.create_rsa_key(name, size=2048)
        return name, key.properties.version

    def config(self, key_name: str, **change) -> dict:
        config = {"vault_url": self.vault_url, "tenant_id": self.tenant_id, "client_id": self.client_id,
                  "client_secret": self.client_secret, "key_name": key_name, **self.extra, **change}
        return {k: v for k, v in config.items() if v is not None}


@pytest.fixture(scope="module")
def azure():
    if REAL:
        env = {v: os.environ[v] for v in _REAL_VARS}
        yield AzureUnderTest(env["AZURE_KEYVAULT_URL"], env["AZURE_TENANT_ID"], env["AZURE_CLIENT_ID"],
                             env["AZURE_CLIENT_SECRET"], {})
        return
    with AzureKeyVaultEmulator() as emu:
        client_id, secret = emu.add_client()
        extra = {"authority_host": emu.authority_host, "disable_instance_discovery": True,
                 "verify_challenge_resource": False, "ca_cert": emu.ca_file}
        yield AzureUnderTest(emu.vault_url, emu.tenant_id, client_id, secret, extra, emu)


@pytest.fixture(scope="module")
def factory():
    make_or_fail("build/plugins/azure-manager.so")
    return load_factory(SO, "azure")


# ---- descriptor and config ----------------------------------------------------

def test_descriptor(factory):
    assert factory.thread_safe
    assert set(factory.describe()["capabilities"]) == {"wrap", "unwrap", "public_key", "probe"}


def test_seed_config_is_accepted_verbatim(make):
    make(SEED_CONFIG)  # building a manager contacts nothing


@pytest.mark.parametrize("change, reason", [
    ({"vault_url": None}, "missing required field 'vault_url'"),
    ({"key_name": None}, "missing required field 'key_name'"),
    ({"vault_url": 443}, "field 'vault_url' must be a string"),
    ({"client_secret": 12345}, "field 'client_secret' must be a string"),
    ({"vault_url": "http://myvault.vault.azure.net/"}, "field 'vault_url' must be an https URL"),
    ({"vault_url": "myvault"}, "field 'vault_url' must be an https URL"),
    ({"vault_url": "https://myvault.vault.azure.net/keys/x"}, "field 'vault_url' must be an https URL"),
    ({"vault_url": "https://myvault.vault.azure.net:0/"}, "field 'vault_url' must be an https URL"),
    ({"authority_host": "http://login.example"}, "field 'authority_host' must be an https URL"),
    ({"key_name": "bad_name!"}, "field 'key_name' must be a Key Vault key name"),
    ({"tenant_id": "not a tenant"}, "field 'tenant_id' must be a tenant id"),
    ({"tenant_id": None}, "'client_secret' needs 'tenant_id' and 'client_id'"),
    ({"client_id": None}, "'client_secret' needs 'tenant_id' and 'client_id'"),
    ({"verify_challenge_resource": "false"}, "field 'verify_challenge_resource' must be true or false"),
    ({"disable_instance_discovery": 1}, "field 'disable_instance_discovery' must be true or false"),
    ({"ca_cert": "/nonexistent/ca.pem"}, "field 'ca_cert' must be the path of a readable PEM file"),
    ({"timeout": 0}, "field 'timeout' must be a number of seconds"),
    ({"clientsecret": "x"}, "unknown field 'clientsecret'"),
])
def test_bad_config_is_refused_with_one_line(make, change, reason):
    config = {k: v for k, v in {**SEED_CONFIG, "client_secret": "s3cr3t-value", **change}.items()
              if v is not None}
    with pytest.raises(errors.InvalidArgument) as exc:
        make(config)
    message = str(exc.value)
    assert reason in message and "\n" not in message
    assert "s3cr3t-value" not in message


@pytest.mark.parametrize("raw", [b"[]", b"null", b"{", b"\xff", b""])
def test_config_that_is_not_a_json_object_is_refused(make, raw):
    with pytest.raises(errors.InvalidArgument):
        make(raw)


def test_seed_config_without_a_secret_is_accepted(make):
    config = {k: v for k, v in SEED_CONFIG.items() if k != "client_secret"}
    make(config)  # DefaultAzureCredential; nothing contacted until a call


@emulator_only
def test_without_a_secret_default_credential_is_used(azure, make, monkeypatch):
    """No client_secret: DefaultAzureCredential's chain logs in, here as the environment's service principal.

    The environment names a client of its own that may read and wrap but not unwrap: the vault sees
    that identity, so this manager's wrap works and its unwrap is refused (the config's client may unwrap).
    """
    name, _ = azure.new_key()
    wrapped = make(azure.config(name)).wrap("", b"x", ctx())
    env_client, env_secret = azure.emulator.add_client(permissions={"get", "wrapKey"})
    for var, value in {"AZURE_TENANT_ID": azure.tenant_id, "AZURE_CLIENT_ID": env_client,
                       "AZURE_CLIENT_SECRET": env_secret,
                       "AZURE_AUTHORITY_HOST": azure.emulator.authority_host}.items():
        monkeypatch.setenv(var, value)  # EnvironmentCredential, the chain's first link, reads these
    tokens_before = len(azure.emulator.issued_tokens())
    manager = make(azure.config(name, client_id=None, client_secret=None))
    manager.wrap("", b"allowed", ctx())
    assert len(azure.emulator.issued_tokens()) > tokens_before  # logged in at the emulator's token endpoint
    with pytest.raises(errors.PermissionDenied, match="unwrapKey"):
        manager.unwrap("", wrapped, ctx())


# ---- provider mode: wrap/unwrap ----------------------------------------------------

def test_round_trip_is_a_jwe_the_plain_sdk_opens(azure, make):
    name, version = azure.new_key()
    manager = make(azure.config(name))
    private_key = secrets.token_bytes(1700)  # longer than one RSA block: enveloped
    wrapped = manager.wrap("", private_key, ctx())
    assert manager.unwrap("", wrapped, ctx()) == private_key

    # RFC 7516 compact JWE; open it with the plain SDK + AES-GCM.
    protected, encrypted_key, iv, ciphertext, tag = wrapped.decode().split(".")
    header = json.loads(_unb64url(protected))
    assert header["alg"] == "RSA-OAEP" and header["enc"] == "A256GCM"
    assert header["kid"].rstrip("/").endswith(f"/keys/{name}/{version}")
    crypto = CryptographyClient(header["kid"], azure.credential, **azure.sdk_kwargs)
    cek = crypto.unwrap_key(KeyWrapAlgorithm.rsa_oaep, _unb64url(encrypted_key)).key
    plain = AESGCM(cek).decrypt(_unb64url(iv), _unb64url(ciphertext) + _unb64url(tag), protected.encode())
    assert plain == private_key


def test_rotation_keeps_old_wrapped_values_readable(azure, make):
    name, first = azure.new_key()
    manager = make(azure.config(name))
    before = manager.wrap("", b"under the first version", ctx())
    second = azure.admin.rotate_key(name).properties.version
    after = manager.wrap("", b"under the second version", ctx())
    kid = lambda w: json.loads(_unb64url(w.decode().split(".")[0]))["kid"]  # noqa: E731
    assert kid(before).endswith(first) and kid(after).endswith(second)
    assert manager.unwrap("", before, ctx()) == b"under the first version"
    assert manager.unwrap(name, after, ctx()) == b"under the second version"
    assert manager.unwrap(f"{name}/{first}", before, ctx()) == b"under the first version"
    with pytest.raises(errors.CryptoError):  # pinned to the other version
        manager.unwrap(f"{name}/{second}", before, ctx())


def test_tampered_wrapped_value_is_a_crypto_error(azure, make):
    name, _ = azure.new_key()
    manager = make(azure.config(name))
    parts = manager.wrap("", secrets.token_bytes(64), ctx()).decode().split(".")
    body = bytearray(_unb64url(parts[3]))
    body[5] ^= 1
    tampered = ".".join(parts[:3] + [base64.urlsafe_b64encode(bytes(body)).rstrip(b"=").decode(), parts[4]])
    with pytest.raises(errors.CryptoError):
        manager.unwrap("", tampered.encode(), ctx())
    other, _ = azure.new_key()
    foreign = make(azure.config(other)).wrap("", b"x", ctx())
    with pytest.raises(errors.CryptoError, match="made with key"):
        manager.unwrap("", foreign, ctx())


def test_missing_key_is_not_found(azure, make):
    name, _ = azure.new_key()
    manager = make(azure.config(name))
    missing = f"km-missing-{uuid.uuid4().hex[:8]}"
    wrapped = manager.wrap("", b"x", ctx())
    with pytest.raises(errors.NotFound, match=missing):
        manager.wrap(missing, b"x", ctx())
    with pytest.raises(errors.NotFound):
        manager.unwrap(missing, wrapped, ctx())
    with pytest.raises(errors.NotFound):
        manager.public_key(missing, ctx())
    with pytest.raises(errors.NotFound):
        manager.public_key(f"{name}/{'0' * 32}", ctx())


@pytest.mark.parametrize("key_id", ["a/b/c", "name/", "bad_name", "../keys", "x/ver-sion"])
def test_bad_key_id_is_invalid_argument(azure, make, key_id):
    manager = make(azure.config("some-key"))
    with pytest.raises(errors.InvalidArgument):
        manager.public_key(key_id, ctx())


# ---- public key and remote mode ------------------------------------------------------

def test_public_key_matches_the_jwk(azure, make):
    name, version = azure.new_key()
    manager = make(azure.config(name))
    pem = manager.public_key("", ctx())
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")
    public = serialization.load_pem_public_key(pem.encode())
    jwk = azure.admin.get_key(name, version).key
    assert isinstance(public, rsa.RSAPublicKey)
    assert public.public_numbers().n == int.from_bytes(jwk.n, "big")
    assert public.public_numbers().e == int.from_bytes(jwk.e, "big")
    assert manager.public_key(f"{name}/{version}", ctx()) == pem


def test_remote_unwrap_of_a_tdf_wrapped_dek(azure, make):
    name, version = azure.new_key()
    manager = make(azure.config(name))
    public = serialization.load_pem_public_key(manager.public_key(f"{name}/{version}", ctx()).encode())
    dek = secrets.token_bytes(32)
    wrapped_dek = public.encrypt(dek, OAEP_SHA1)  # what a TDF client sends
    assert manager.unwrap(f"{name}/{version}", wrapped_dek, ctx()) == dek
    assert manager.unwrap("", wrapped_dek, ctx()) == dek  # latest version
    with pytest.raises(errors.CryptoError):
        manager.unwrap("", secrets.token_bytes(256), ctx())
    sha256 = public.encrypt(dek, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(),
                                             label=None))
    with pytest.raises(errors.CryptoError):  # not the padding TDF clients use
        manager.unwrap("", sha256, ctx())


def test_probe(azure, make):
    name, _ = azure.new_key()
    make(azure.config(name)).probe(ctx())
    with pytest.raises(errors.NotFound):
        make(azure.config("km-no-such-key")).probe(ctx())


# ---- credentials, permissions and secrets ---------------------------------------------

def test_wrong_secret_is_permission_denied_without_the_secret(azure, make, caplog):
    caplog.set_level(logging.DEBUG)
    name, _ = azure.new_key()
    wrong = "wrong~" + secrets.token_urlsafe(30)
    manager = make(azure.config(name, client_secret=wrong))
    for call in (lambda: manager.wrap("", b"x", ctx()), lambda: manager.probe(ctx()),
                 lambda: manager.public_key("", ctx())):
        with pytest.raises(errors.PermissionDenied, match="authentication failed") as exc:
            call()
        assert wrong not in str(exc.value) and "\n" not in str(exc.value)
    assert wrong not in caplog.text and azure.client_secret not in caplog.text


def test_unknown_client_is_permission_denied(azure, make):
    name, _ = azure.new_key()
    manager = make(azure.config(name, client_id=str(uuid.uuid4())))
    with pytest.raises(errors.PermissionDenied):
        manager.public_key("", ctx())


def test_logs_never_contain_secrets_tokens_or_plaintext(azure, make, caplog):
    caplog.set_level(logging.DEBUG)
    name, _ = azure.new_key()
    manager = make(azure.config(name))
    plaintext = secrets.token_hex(40).encode()
    manager.unwrap("", manager.wrap("", plaintext, ctx()), ctx())
    manager.probe(ctx())
    assert caplog.records
    text = caplog.text
    assert azure.client_secret not in text and plaintext.decode() not in text
    assert azure.client_secret not in repr(manager)
    if azure.emulator is not None:  # the access tokens themselves never reach a log line
        tokens = azure.emulator.issued_tokens()
        assert tokens and not any(token in text for token in tokens)


@emulator_only
def test_missing_key_permission_is_permission_denied(azure, make):
    name, _ = azure.new_key()
    wrapped = make(azure.config(name)).wrap("", b"x", ctx())
    client_id, secret = azure.emulator.add_client(permissions={"get", "wrapKey"})
    limited = make(azure.config(name, client_id=client_id, client_secret=secret))
    limited.wrap("", b"allowed", ctx())
    with pytest.raises(errors.PermissionDenied, match="unwrapKey"):
        limited.unwrap("", wrapped, ctx())


@emulator_only
def test_challenge_flow_is_followed(make):
    # A fresh vault URL: the SDK caches a vault's challenge process-wide once it has seen it.
    with AzureKeyVaultEmulator() as emu:
        client_id, secret = emu.add_client()
        config = {"vault_url": emu.vault_url, "tenant_id": emu.tenant_id, "client_id": client_id,
                  "client_secret": secret, "key_name": "k", "authority_host": emu.authority_host,
                  "disable_instance_discovery": True, "verify_challenge_resource": False, "ca_cert": emu.ca_file}
        with pytest.raises(errors.NotFound):
            make(config).public_key("", ctx())
        # The first request goes without a token and gets the 401 challenge; the retry carries the token.
        assert [had_token for _, _, had_token in emu.requests] == [False, True]
        assert emu.issued_tokens()


@emulator_only
def test_challenge_resource_is_verified_by_default(azure, make):
    name, _ = azure.new_key()
    strict = make(azure.config(name, verify_challenge_resource=None))
    with pytest.raises(errors.InvalidArgument, match="verify_challenge_resource"):
        strict.public_key("", ctx())


@emulator_only
def test_untrusted_tls_is_unavailable_with_a_hint(azure, make):
    name, _ = azure.new_key()
    manager = make(azure.config(name, ca_cert=None))
    with pytest.raises(errors.Unavailable, match="ca_cert"):
        manager.public_key("", ctx())


@emulator_only
def test_environment_credential_via_default_chain(azure, make, monkeypatch):
    client_id, secret = azure.emulator.add_client()
    monkeypatch.setenv("AZURE_TENANT_ID", azure.tenant_id)
    monkeypatch.setenv("AZURE_CLIENT_ID", client_id)
    monkeypatch.setenv("AZURE_CLIENT_SECRET", secret)
    monkeypatch.setenv("AZURE_AUTHORITY_HOST", azure.emulator.authority_host)
    name, _ = azure.new_key()
    manager = make(azure.config(name, tenant_id=None, client_id=None, client_secret=None))
    assert manager.unwrap("", manager.wrap("", b"via env", ctx()), ctx()) == b"via env"


# ---- availability and deadlines -------------------------------------------------------

@emulator_only
def test_transient_throttling_is_retried_by_the_sdk(azure, make):
    name, _ = azure.new_key()
    manager = make(azure.config(name))
    manager.public_key("", ctx())
    azure.emulator.fail_next(2, 429)
    assert manager.public_key("", ctx())


@emulator_only
@pytest.mark.parametrize("status", [429, 503])
def test_persistent_failures_are_unavailable(azure, make, status):
    name, _ = azure.new_key()
    manager = make(azure.config(name))
    wrapped = manager.wrap("", b"x", ctx())
    azure.emulator.fail_next(50, status)
    try:
        with pytest.raises(errors.Unavailable, match=f"HTTP {status}"):
            manager.unwrap("", wrapped, ctx())
    finally:
        azure.emulator.fail_next(0)


@emulator_only
def test_hung_vault_gives_deadline_exceeded(azure, make):
    name, _ = azure.new_key()
    manager = make(azure.config(name))
    wrapped = manager.wrap("", b"x", ctx())
    azure.emulator.hold()
    try:
        with pytest.raises(errors.DeadlineExceeded):
            manager.unwrap("", wrapped, CallContext.with_timeout(1.0))
    finally:
        azure.emulator.release()
    assert manager.unwrap("", wrapped, ctx()) == b"x"


def test_unreachable_vault_is_unavailable(make):
    config = dict(SEED_CONFIG, vault_url="https://127.0.0.1:9/", authority_host="https://127.0.0.1:9",
                  disable_instance_discovery=True)
    with pytest.raises(errors.Unavailable):
        make(config).public_key("", ctx())


# ---- the C conformance runner -----------------------------------------------------------

def test_km_conformance_passes(azure, tmp_path):
    make_or_fail("build/plugins/azure-manager.so", "build/km-conformance")
    name, _ = azure.new_key()
    config = tmp_path / "azure.json"
    config.write_text(json.dumps(azure.config(name)))
    result = run_runner(SO, config)
    assert result.returncode == 0, result.stdout + result.stderr
    passed, failed = result.summary
    assert failed == 0 and passed > 20
    assert azure.client_secret not in result.text()


def test_host_side_conformance_checks(azure, factory):
    from tests.conformance.host_checks import check_manager

    name, _ = azure.new_key()
    done = check_manager(factory, json.dumps(azure.config(name)).encode())
    assert done.keys() >= {"round_trip", "public_key", "remote_rsa"}
