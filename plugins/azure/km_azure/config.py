"""Parse and check an Azure Key Vault provider configuration (provider_config.config_json).

The seed document's example is accepted verbatim:

    {"vault_url": "https://myvault.vault.azure.net/", "tenant_id": "1234...", "client_id": "8765...",
     "client_secret": "...", "key_name": "opentdf-master-key"}

Optional fields:
- `authority_host`: the identity platform host (default login.microsoftonline.com;
  e.g. login.microsoftonline.us for sovereign clouds, or a private authority).
- `disable_instance_discovery` (default false): skip MSAL's authority check
  against login.microsoftonline.com, needed for authorities Microsoft does not
  know (Azure Stack, private clouds, test emulators).
- `verify_challenge_resource` (default true): the SDK checks that the
  resource in Key Vault's 401 challenge matches the vault's domain. Turn it
  off only for vaults reached under another name (private endpoints with
  custom DNS, test emulators on 127.0.0.1).
- `ca_cert`: path of a PEM bundle to trust for TLS (vault and authority).
- `timeout`: seconds per HTTP request when the call has no deadline (default 10).

Without `client_secret`, DefaultAzureCredential is used (environment, workload
identity, managed identity with `client_id` as its client id, Azure CLI).
Errors name the field, never its value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from km_pyembed.config import ConfigReader

KEY_NAME_RE = re.compile(r"^[0-9A-Za-z-]{1,127}$")
KEY_VERSION_RE = re.compile(r"^[0-9A-Za-z]{1,64}$")
_TENANT_RE = re.compile(r"^[0-9A-Za-z.-]{1,256}$")
_FIELDS = {"vault_url", "tenant_id", "client_id", "client_secret", "key_name", "authority_host",
           "disable_instance_discovery", "verify_challenge_resource", "ca_cert", "timeout"}


@dataclass(frozen=True)
class AzureConfig:
    vault_url: str  # normalized: https://host[:port]/
    key_name: str
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    authority_host: str | None = None
    disable_instance_discovery: bool = False
    verify_challenge_resource: bool = True
    ca_cert: str | None = None
    timeout: float = 10.0

    def secrets(self) -> list[str]:
        return [self.client_secret] if self.client_secret else []


def _https_origin(cfg: ConfigReader, value: str, name: str, example: str) -> str:
    if "://" not in value and name == "authority_host":
        value = "https://" + value
    cfg.check_url(name, value, ("https",), example, allow_path=False)
    return f"https://{urlsplit(value).netloc}"


def parse_config(config: dict | bytes | str) -> AzureConfig:
    cfg = ConfigReader("azure", config, _FIELDS)
    vault_url = _https_origin(cfg, cfg.string("vault_url", required=True), "vault_url",
                              "https://myvault.vault.azure.net/") + "/"
    key_name = cfg.string("key_name", required=True)
    if not KEY_NAME_RE.match(key_name):
        raise cfg.error("field 'key_name' must be a Key Vault key name (1-127 letters, digits and '-')")

    tenant_id = cfg.string("tenant_id")
    if tenant_id is not None and not _TENANT_RE.match(tenant_id):
        raise cfg.error("field 'tenant_id' must be a tenant id (GUID) or domain")
    client_id = cfg.string("client_id")
    client_secret = cfg.string("client_secret")
    if client_secret is not None and (tenant_id is None or client_id is None):
        raise cfg.error("'client_secret' needs 'tenant_id' and 'client_id' (service principal login)")

    authority = cfg.string("authority_host")
    if authority is not None:
        authority = _https_origin(cfg, authority, "authority_host", "https://login.microsoftonline.com")
    ca_cert = cfg.pem_file("ca_cert")
    timeout = cfg.seconds("timeout", 10.0)

    return AzureConfig(vault_url=vault_url, key_name=key_name, tenant_id=tenant_id, client_id=client_id,
                       client_secret=client_secret, authority_host=authority,
                       disable_instance_discovery=cfg.boolean("disable_instance_discovery", False),
                       verify_challenge_resource=cfg.boolean("verify_challenge_resource", True),
                       ca_cert=ca_cert, timeout=timeout)
