"""Every plugin we ship and every template, loaded isolated: a round trip
through the child, with the same results as in-process."""

from __future__ import annotations

import json
import secrets

import pytest

from host import errors
from host.managers.base import CallContext
from host.plugin_specs import load_one
from tests.conformance.runner_util import make_or_fail
from tests.emulators.vault_transit import VaultTransitEmulator
from tests.plugins.conftest import REPO, aws_kms_plugin, moto_server  # noqa: F401  (fixtures)
from tests.isolation.conftest import stop_child

BUILD = REPO / "build"


def ctx() -> CallContext:
    return CallContext.with_timeout(30)


@pytest.fixture
def isolated():
    """isolated(path) -> the plugin's one factory, its child closed after the test."""
    plugins = []

    def load(path):
        plugin = load_one(f"isolated:{path}")
        plugins.append(plugin)
        (factory,) = plugin.factories
        return factory

    yield load
    for plugin in plugins:
        stop_child(plugin)


def round_trip(manager, key_id: str) -> None:
    dek = secrets.token_bytes(32)
    wrapped = manager.wrap(key_id, dek, ctx())
    assert wrapped != dek and manager.unwrap(key_id, wrapped, ctx()) == dek
    with pytest.raises((errors.CryptoError, errors.InvalidArgument)):
        manager.unwrap(key_id, wrapped[:-2] + bytes([wrapped[-2] ^ 1, wrapped[-1]]), ctx())
    manager.close()


@pytest.mark.parametrize("lang", ["c", "go", "rust"])
def test_templates(isolated, lang):
    make_or_fail(f"example-{lang}")
    factory = isolated(BUILD / "examples" / f"example-{lang}-manager.so")
    round_trip(factory.create(json.dumps({"keks": {"alpha": secrets.token_hex(32)}, "default_key_id": "alpha"})),
               "alpha")


def test_file_kek(isolated):
    factory = isolated(BUILD / "plugins" / "file-kek-manager.so")
    round_trip(factory.create(json.dumps({"keks": {"a": secrets.token_hex(32)}, "default_key_id": "a"})), "a")


def test_pkcs11_on_softhsm(isolated, tmp_path, monkeypatch):
    from tests.softhsm import SoftHSMUnavailable, create_token

    make_or_fail("build/plugins/pkcs11-manager.so")
    try:
        token = create_token(tmp_path / "hsm", aes=["kek"], rsa=["kas-rsa"])
    except SoftHSMUnavailable as e:
        pytest.skip(str(e))
    for name, value in token.env.items():
        monkeypatch.setenv(name, value)  # the child inherits it at start
    factory = isolated(BUILD / "plugins" / "pkcs11-manager.so")
    manager = factory.create(token.config_json("kek"))
    assert "BEGIN PUBLIC KEY" in manager.public_key("kas-rsa", ctx())
    round_trip(manager, "kek")


def test_aws_kms_against_moto(isolated, aws_kms_plugin, moto_server):  # noqa: F811
    key = moto_server.client("kms").create_key(Description="isolated")["KeyMetadata"]["Arn"]
    factory = isolated(aws_kms_plugin)
    manager = factory.create(json.dumps({"region": "us-east-1", "kms_key_id": key, "endpoint": moto_server.url,
                                         "access_key_id": moto_server.access_key_id,
                                         "secret_access_key": moto_server.secret_access_key}))
    manager.probe(ctx())
    round_trip(manager, "")


def test_vault_against_the_emulator(isolated):
    make_or_fail("build/plugins/vault-manager.so")
    import hvac

    with VaultTransitEmulator() as emu:
        token = emu.root_token
        hvac.Client(url=emu.addr, token=token).secrets.transit.create_key("iso", key_type="aes256-gcm96")
        factory = isolated(BUILD / "plugins" / "vault-manager.so")
        round_trip(factory.create(json.dumps({"vault_addr": emu.addr, "vault_token": token, "mount_path": "transit",
                                              "key_name": "iso"})), "")


def test_azure_against_the_emulator(isolated):
    make_or_fail("build/plugins/azure-manager.so")
    from tests.emulators.azure_keyvault import AzureKeyVaultEmulator
    from tests.plugins.test_azure import AzureUnderTest

    with AzureKeyVaultEmulator() as emu:
        client_id, secret = emu.add_client()
        extra = {"authority_host": emu.authority_host, "disable_instance_discovery": True,
                 "verify_challenge_resource": False, "ca_cert": emu.ca_file}
        azure = AzureUnderTest(emu.vault_url, emu.tenant_id, client_id, secret, extra, emu)
        name, _version = azure.new_key()
        factory = isolated(BUILD / "plugins" / "azure-manager.so")
        round_trip(factory.create(json.dumps(azure.config(name))), "")
