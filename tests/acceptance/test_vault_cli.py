"""Issue 6, HashiCorp Vault transit, end to end through the `platform` console script.

Against tests/emulators/vault_transit.py (Vault's transit HTTP API on
loopback; one per module). The transit key is made, and the wrapped private
key opened, with plain hvac. Every platform command is a subprocess of
.venv/bin/platform loading build/plugins/vault-manager.so.
"""

from __future__ import annotations

import base64
import json
import secrets

import hvac
import pytest

from tests.acceptance.cli import (PLUGIN_DIR, PlatformCli, require_built, one_error_line, private_pem_matches,
                                  wrapped_private_key)
from tests.emulators.vault_transit import VaultTransitEmulator

PLUGIN = PLUGIN_DIR / "vault-manager.so"

# The seed document's "HashiCorp Vault Provider" example, verbatim.
SEED_VAULT_EXAMPLE = {
    "vault_addr": "https://vault.example.com:8200",
    "vault_token": "hvs.CAESIJlWh...",
    "mount_path": "transit",
    "key_name": "opentdf-dek-key",
}


@pytest.fixture(scope="module")
def vault():
    require_built("build/plugins/vault-manager.so")
    with VaultTransitEmulator() as emulator:
        admin = hvac.Client(url=emulator.addr, token=emulator.root_token)
        admin.secrets.transit.create_key(SEED_VAULT_EXAMPLE["key_name"], key_type="aes256-gcm96",
                                         mount_point="transit")
        yield emulator, admin


def provider_config(emulator, token: str) -> dict:
    config = {**SEED_VAULT_EXAMPLE, "vault_addr": emulator.addr, "vault_token": token}
    assert set(config) == set(SEED_VAULT_EXAMPLE)
    return config


def test_provider_mode_key_on_a_transit_key(vault, tmp_path):
    emulator, admin = vault
    cli = PlatformCli(tmp_path, (PLUGIN,))
    cli.register_kas()
    provider_id = cli.create_provider("vault-transit", "vault", provider_config(emulator, emulator.root_token))
    validated = cli.validate(provider_id)
    assert validated.returncode == 0 and validated.stdout.startswith(
        "ok: provider config 'vault-transit' (manager 'vault') answered in "), validated.stderr

    cli.create_key("vault-provider-1", "rsa:2048", "provider", provider_id)
    cli.round_trip("vault-provider-1")

    # The wrapped private key is a plain transit ciphertext: hvac alone opens it.
    stored = cli.get_key("vault-provider-1")
    ciphertext = wrapped_private_key(stored).decode()
    assert ciphertext.startswith("vault:v1:")
    plain = admin.secrets.transit.decrypt_data(SEED_VAULT_EXAMPLE["key_name"], ciphertext, mount_point="transit")
    private_pem_matches(base64.b64decode(plain["data"]["plaintext"]), stored)
    assert emulator.root_token not in cli.output()


def test_remote_mode_is_refused_with_the_reason(vault, tmp_path):
    """Transit's RSA decryption is OAEP with SHA-256; TDF clients wrap with SHA-1."""
    emulator, admin = vault
    admin.secrets.transit.create_key("kas-rsa", key_type="rsa-2048", mount_point="transit")
    cli = PlatformCli(tmp_path, (PLUGIN,))
    cli.register_kas()
    config = {**provider_config(emulator, emulator.root_token), "key_name": "kas-rsa"}
    provider_id = cli.create_provider("vault-rsa", "vault", config)
    # The key can be registered (transit exports the public key); the KAS refuses to unwrap with it.
    cli.create_key("vault-remote", "rsa:2048", "remote", provider_id)
    dek = tmp_path / "dek"
    dek.write_bytes(secrets.token_bytes(32))
    cli.run("kas", "wrap", "--kid", "vault-remote", "--in", dek, "--out", tmp_path / "w.json")
    line = one_error_line(cli.run("kas", "unwrap", "--in", tmp_path / "w.json", "--out", tmp_path / "out", ok=False))
    assert "OAEP-SHA-256" in line and "use provider mode" in line and line.endswith("[unimplemented]"), line
    assert not (tmp_path / "out").exists()


def test_wrong_token_is_permission_denied_without_the_token(vault, tmp_path):
    emulator, _ = vault
    cli = PlatformCli(tmp_path, (PLUGIN,))
    cli.register_kas()
    wrong = "hvs." + secrets.token_urlsafe(24)
    config = provider_config(emulator, wrong)
    line = one_error_line(cli.run("policy", "keymanagement", "provider", "create", "-n", "bad", "-m", "vault",
                                  "-c", json.dumps(config), "--validate", ok=False))
    assert "failed validation with manager 'vault' (permission_denied after " in line, line

    provider_id = cli.create_provider("bad", "vault", config, validate=False)
    line = one_error_line(cli.validate(provider_id))
    assert line.endswith("[permission_denied]"), line
    line = one_error_line(cli.run("policy", "kas-registry", "key", "create", "--kas", "kas1", "--key-id", "k",
                                  "-a", "rsa:2048", "-m", "provider", "-p", provider_id, *cli.defaults("provider"),
                                  ok=False))
    assert line.endswith("[permission_denied]"), line
    assert wrong not in cli.output() and emulator.root_token not in cli.output()
