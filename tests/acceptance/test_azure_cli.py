"""Issue 6, Azure Key Vault, end to end through the `platform` console script.

Against tests/emulators/azure_keyvault.py (Key Vault keys API and the token
endpoint over HTTPS with a throwaway CA, challenge-based auth; one per
module). The RSA key is made, and the wrapped private key opened, with the
plain Azure SDK. Every platform command is a subprocess of
.venv/bin/platform loading build/plugins/azure-manager.so.
"""

from __future__ import annotations

import base64
import json
import secrets

import pytest
from azure.identity import ClientSecretCredential
from azure.keyvault.keys import KeyClient
from azure.keyvault.keys.crypto import CryptographyClient, KeyWrapAlgorithm
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tests.acceptance.cli import (PLUGIN_DIR, PlatformCli, require_built, one_error_line, private_pem_matches,
                                  stored_public_key, wrapped_private_key)
from tests.emulators.azure_keyvault import AzureKeyVaultEmulator

PLUGIN = PLUGIN_DIR / "azure-manager.so"

# The seed document's "Azure Key Vault Provider" example, verbatim.
SEED_AZURE_EXAMPLE = {
    "vault_url": "https://myvault.vault.azure.net/",
    "tenant_id": "12345678-1234-1234-1234-123456789012",
    "client_id": "87654321-4321-4321-4321-210987654321",
    "client_secret": "...",
    "key_name": "opentdf-master-key",
}


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Azure:
    def __init__(self, emulator: AzureKeyVaultEmulator):
        self.emulator = emulator
        self.client_id, self.client_secret = emulator.add_client()
        self.credential = ClientSecretCredential(emulator.tenant_id, self.client_id, self.client_secret,
                                                 authority=emulator.authority_host, disable_instance_discovery=True,
                                                 connection_verify=emulator.ca_file)
        self.sdk = {"connection_verify": emulator.ca_file, "verify_challenge_resource": False}
        self.keys = KeyClient(emulator.vault_url, self.credential, **self.sdk)

    def config(self, key_name: str, **change) -> dict:
        """The seed example with the emulator's values, plus what reaching an emulator needs."""
        config = {**SEED_AZURE_EXAMPLE, "vault_url": self.emulator.vault_url, "tenant_id": self.emulator.tenant_id,
                  "client_id": self.client_id, "client_secret": self.client_secret, "key_name": key_name}
        assert set(config) == set(SEED_AZURE_EXAMPLE)
        return {**config, "authority_host": self.emulator.authority_host, "disable_instance_discovery": True,
                "verify_challenge_resource": False, "ca_cert": self.emulator.ca_file, **change}

    def open_jwe(self, compact: bytes) -> bytes:
        """Opens the plugin's wrapped value (compact JWE, RSA-OAEP + A256GCM) with the SDK and AES-GCM."""
        protected, encrypted_key, iv, ciphertext, tag = compact.decode().split(".")
        header = json.loads(_unb64url(protected))
        assert header["alg"] == "RSA-OAEP" and header["enc"] == "A256GCM"
        crypto = CryptographyClient(header["kid"], self.credential, **self.sdk)
        cek = crypto.unwrap_key(KeyWrapAlgorithm.rsa_oaep, _unb64url(encrypted_key)).key
        return AESGCM(cek).decrypt(_unb64url(iv), _unb64url(ciphertext) + _unb64url(tag), protected.encode())


@pytest.fixture(scope="module")
def azure():
    require_built("build/plugins/azure-manager.so")
    with AzureKeyVaultEmulator() as emulator:
        yield Azure(emulator)


def test_provider_mode_key_on_an_rsa_key_vault_key(azure, tmp_path):
    azure.keys.create_rsa_key("kas-wrapping-key", size=2048)
    cli = PlatformCli(tmp_path, (PLUGIN,))
    cli.register_kas()
    provider_id = cli.create_provider("azure-kv", "azure", azure.config("kas-wrapping-key"))
    validated = cli.validate(provider_id)
    assert validated.returncode == 0 and validated.stdout.startswith(
        "ok: provider config 'azure-kv' (manager 'azure') answered in "), validated.stderr

    cli.create_key("azure-provider-1", "rsa:2048", "provider", provider_id)
    cli.round_trip("azure-provider-1")

    stored = cli.get_key("azure-provider-1")
    private_pem_matches(azure.open_jwe(wrapped_private_key(stored)), stored)
    assert azure.client_secret not in cli.output()


def test_remote_mode_key_whose_public_key_comes_from_key_vault(azure, tmp_path):
    jwk = azure.keys.create_rsa_key("kas-remote-key", size=2048).key
    cli = PlatformCli(tmp_path, (PLUGIN,))
    cli.register_kas()
    provider_id = cli.create_provider("azure-remote", "azure", azure.config("kas-remote-key"))

    key = cli.create_key("azure-remote-1", "rsa:2048", "remote", provider_id)  # no --public-key-pem
    assert not (key.get("private_key_ctx") or {}).get("wrapped_key")  # the private half stays in Key Vault
    public = stored_public_key(key)
    assert isinstance(public, rsa.RSAPublicKey)
    assert public.public_numbers().n == int.from_bytes(jwk.n, "big")
    assert public.public_numbers().e == int.from_bytes(jwk.e, "big")
    assert "BEGIN PUBLIC KEY" in cli.public_key_pem("azure-remote-1")

    cli.round_trip("azure-remote-1")
    unwrap_calls = [path for method, path, _ in azure.emulator.requests
                    if method == "POST" and "/keys/kas-remote-key/" in path and path.split("?")[0].endswith("/decrypt")]
    assert unwrap_calls, "the DEK was not unwrapped by Key Vault"
    assert azure.client_secret not in cli.output()


def test_wrong_secret_is_permission_denied_without_the_secret(azure, tmp_path):
    azure.keys.create_rsa_key("kas-key-for-wrong-secret", size=2048)
    cli = PlatformCli(tmp_path, (PLUGIN,))
    cli.register_kas()
    wrong = "wrong~" + secrets.token_urlsafe(30)
    config = azure.config("kas-key-for-wrong-secret", client_secret=wrong)
    line = one_error_line(cli.run("policy", "keymanagement", "provider", "create", "-n", "bad", "-m", "azure",
                                  "-c", json.dumps(config), "--validate", ok=False))
    assert "failed validation with manager" in line and "(permission_denied after " in line, line

    provider_id = cli.create_provider("bad", "azure", config, validate=False)
    line = one_error_line(cli.validate(provider_id))
    assert line.endswith("[permission_denied]"), line
    for mode in ("provider", "remote"):
        line = one_error_line(cli.run("policy", "kas-registry", "key", "create", "--kas", "kas1", "--key-id",
                                      f"k-{mode}", "-a", "rsa:2048", "-m", mode, "-p", provider_id,
                                      *cli.defaults(mode), ok=False))
        assert line.endswith("[permission_denied]"), line
    assert wrong not in cli.output() and azure.client_secret not in cli.output()
