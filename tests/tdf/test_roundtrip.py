"""An unmodified otdf-python SDK encrypts and decrypts through our KAS, for every manager.

RSA-2048 keys are exercised with standard TDFs (the SDK's TDF writer is
RSA-only), P-256 keys with NanoTDF (the SDK's EC path). Each manager group
runs one `platform serve` process with its plugin loaded; each case makes a
fresh key held by that manager the KAS's active key, then round-trips a file.

    manager   modes                      real part behind it
    basic     local                      root key in the platform
    file-kek  provider                   KEK file config (C plugin)
    pkcs11    provider, remote (RSA, EC) SoftHSM2 token
    aws-kms   provider                   moto's KMS server
    vault     provider                   Vault transit emulator
    azure     provider, remote (RSA)     Key Vault emulator (HTTPS)

Remote mode for EC keys needs the manager to do ECDH (ABI v1: unwrap of the
client's ephemeral key returns the shared secret): the pkcs11 plugin does it
with CKM_ECDH1_DERIVE; Azure Key Vault has no ECDH operation, so azure's
remote mode is RSA only.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import uuid

import pytest

from tests.tdf.conftest import plugin, roundtrip, start_kas_platform

CASES = [
    ("basic", "local", "rsa:2048"), ("basic", "local", "ec:secp256r1"),
    ("file-kek", "provider", "rsa:2048"), ("file-kek", "provider", "ec:secp256r1"),
    ("pkcs11", "provider", "rsa:2048"), ("pkcs11", "provider", "ec:secp256r1"), ("pkcs11", "remote", "rsa:2048"),
    ("pkcs11", "remote", "ec:secp256r1"),
    ("aws-kms", "provider", "rsa:2048"), ("aws-kms", "provider", "ec:secp256r1"),
    ("vault", "provider", "rsa:2048"), ("vault", "provider", "ec:secp256r1"),
    ("azure", "provider", "rsa:2048"), ("azure", "provider", "ec:secp256r1"), ("azure", "remote", "rsa:2048"),
]


# ---- one platform per manager group -------------------------------------------
def _basic(tmp, stack):
    return start_kas_platform(tmp), {}, None


def _file_kek(tmp, stack):
    kp = start_kas_platform(tmp, [plugin("file-kek")])
    kp.provider("fk", "file-kek", {"keks": {"kek-1": secrets.token_hex(32)}, "default_key_id": "kek-1"})
    return kp, {"provider": "fk"}, None


def _pkcs11(tmp, stack):
    from tests.softhsm import SoftHSMUnavailable, create_token

    try:
        token = create_token(tmp / "softhsm", label="tdf-kas", aes=["tdf-aes"], rsa=["tdf-rsa"],
                             ec=["tdf-ec"])
    except SoftHSMUnavailable as e:
        pytest.fail(f"{e}: run `make sysdeps`")
    kp = start_kas_platform(tmp, [plugin("pkcs11")], env=token.env)  # only the subprocesses load SoftHSM
    kp.provider("hsm-aes", "pkcs11", token.config("tdf-aes"))
    kp.provider("hsm-rsa", "pkcs11", token.config("tdf-rsa"))
    # a (provider, wrapping key id) pair picks another key of the same token
    return kp, {"provider": "hsm-aes", "remote": "hsm-rsa", "remote:ec:secp256r1": ("hsm-rsa", "tdf-ec")}, None


def _aws_kms(tmp, stack, moto):
    key_id = moto.client().create_key(KeySpec="SYMMETRIC_DEFAULT", KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]["KeyId"]
    kp = start_kas_platform(tmp, [plugin("aws-kms")])
    kp.provider("kms", "aws-kms", {"region": moto.region, "access_key_id": moto.access_key_id,
                                   "secret_access_key": moto.secret_access_key, "kms_key_id": key_id,
                                   "endpoint": moto.url})
    return kp, {"provider": "kms"}, None


def _vault(tmp, stack):
    from tests.emulators.vault_transit import VaultTransitEmulator

    import hvac

    emu = stack.enter_context(VaultTransitEmulator())
    hvac.Client(url=emu.addr, token=emu.root_token).secrets.transit.create_key(
        "tdf-kek", key_type="aes256-gcm96", mount_point="transit")
    kp = start_kas_platform(tmp, [plugin("vault")])
    kp.provider("vault", "vault", {"vault_addr": emu.addr, "vault_token": emu.root_token,
                                   "mount_path": "transit", "key_name": "tdf-kek"})
    return kp, {"provider": "vault"}, emu


def _azure(tmp, stack):
    from azure.identity import ClientSecretCredential
    from azure.keyvault.keys import KeyClient

    from tests.emulators.azure_keyvault import AzureKeyVaultEmulator

    emu = stack.enter_context(AzureKeyVaultEmulator())
    client_id, secret = emu.add_client()
    credential = ClientSecretCredential(emu.tenant_id, client_id, secret, authority=emu.authority_host,
                                        disable_instance_discovery=True, connection_verify=emu.ca_file)
    admin = KeyClient(emu.vault_url, credential, connection_verify=emu.ca_file, verify_challenge_resource=False)
    key_name = f"tdf-{uuid.uuid4().hex[:8]}"
    admin.create_rsa_key(key_name, size=2048)
    kp = start_kas_platform(tmp, [plugin("azure")])
    kp.provider("akv", "azure", {"vault_url": emu.vault_url, "tenant_id": emu.tenant_id, "client_id": client_id,
                                 "client_secret": secret, "key_name": key_name, "authority_host": emu.authority_host,
                                 "disable_instance_discovery": True, "verify_challenge_resource": False,
                                 "ca_cert": emu.ca_file})
    return kp, {"provider": "akv", "remote": "akv"}, emu


class Groups:
    """Starts a group's platform on first use; stops the previous group's first (one server at a time)."""

    def __init__(self, tmp_path_factory, request):
        self.tmp_path_factory, self.request = tmp_path_factory, request
        self.name, self.current, self.stack = None, None, None

    def get(self, name: str):
        if name != self.name:
            self.close()
            self.stack = contextlib.ExitStack()
            tmp = self.tmp_path_factory.mktemp(f"tdf-{name}")
            if name == "aws-kms":
                self.current = _aws_kms(tmp, self.stack, self.request.getfixturevalue("moto_server"))
            else:
                self.current = {"basic": _basic, "file-kek": _file_kek, "pkcs11": _pkcs11, "vault": _vault,
                                "azure": _azure}[name](tmp, self.stack)
            self.stack.callback(self.current[0].stop)
            self.name = name
        return self.current

    def close(self):
        if self.stack is not None:
            self.stack.close()
        self.name, self.current, self.stack = None, None, None


@pytest.fixture(scope="module")
def groups(tmp_path_factory, request):
    g = Groups(tmp_path_factory, request)
    yield g
    g.close()


@pytest.mark.parametrize("manager, mode, algorithm", CASES, ids=[f"{m}-{mo}-{a}" for m, mo, a in CASES])
def test_sdk_roundtrip(groups, manager, mode, algorithm):
    kp, providers, emulator = groups.get(manager)
    choice = providers.get(f"{mode}:{algorithm}", providers.get(mode))
    provider, wrapping_key_id = choice if isinstance(choice, tuple) else (choice, "")
    active = kp.activate(algorithm, mode, provider=provider, wrapping_key_id=wrapping_key_id)
    seen_before = len(emulator.requests) if emulator is not None else 0
    data = os.urandom(4096) + f"{manager}/{mode}/{algorithm}\n".encode() * 100
    assert roundtrip(kp, algorithm, data) == data
    log = kp.server.wait_for_log('"msg":"rewrap"', '"permitted":1')
    assert '"msg":"rewrap"' in log and '"permitted":1' in log
    if emulator is not None:
        # the manager did the work: provider mode unwrapped the new private key through the
        # emulated KMS, remote mode had it decrypt the DEK itself
        assert any(op in entry[1].lower() for entry in emulator.requests[seen_before:]
                   for op in ("decrypt", "unwrapkey")), active
