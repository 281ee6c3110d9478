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

import json
import os
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from km_pyembed import InvalidArgument

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


def _err(message: str) -> InvalidArgument:
    return InvalidArgument(f"azure config: {message}")


def _string(doc: dict, name: str, required: bool = False) -> str | None:
    value = doc.get(name)
    if value is None:
        if required:
            raise _err(f"missing required field '{name}'")
        return None
    if not isinstance(value, str):
        raise _err(f"field '{name}' must be a string")
    value = value.strip()
    if not value:
        if required:
            raise _err(f"field '{name}' must not be empty")
        return None
    return value


def _bool(doc: dict, name: str, default: bool) -> bool:
    value = doc.get(name, default)
    if not isinstance(value, bool):
        raise _err(f"field '{name}' must be true or false")
    return value


def _https_origin(value: str, name: str, example: str) -> str:
    if "://" not in value and name == "authority_host":
        value = "https://" + value
    parts = urlsplit(value)
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
    if parts.scheme != "https" or not parts.hostname or not port_ok or parts.path.strip("/") \
            or parts.query or parts.fragment or parts.username or parts.password:
        raise _err(f"field '{name}' must be an https URL such as {example}")
    return f"https://{parts.netloc}"


def parse_config(config: dict | bytes | str) -> AzureConfig:
    if isinstance(config, (bytes, str)):
        try:
            config = json.loads(config)
        except (ValueError, UnicodeDecodeError):
            raise _err("config_json is not valid JSON") from None
    if not isinstance(config, dict):
        raise _err("config_json must be a JSON object")
    unknown = sorted(set(config) - _FIELDS)
    if unknown:
        raise _err(f"unknown field '{unknown[0]}' (known: {', '.join(sorted(_FIELDS))})")

    vault_url = _https_origin(_string(config, "vault_url", required=True), "vault_url",
                              "https://myvault.vault.azure.net/") + "/"
    key_name = _string(config, "key_name", required=True)
    if not KEY_NAME_RE.match(key_name):
        raise _err("field 'key_name' must be a Key Vault key name (1-127 letters, digits and '-')")

    tenant_id = _string(config, "tenant_id")
    if tenant_id is not None and not _TENANT_RE.match(tenant_id):
        raise _err("field 'tenant_id' must be a tenant id (GUID) or domain")
    client_id = _string(config, "client_id")
    client_secret = _string(config, "client_secret")
    if client_secret is not None and (tenant_id is None or client_id is None):
        raise _err("'client_secret' needs 'tenant_id' and 'client_id' (service principal login)")

    authority = _string(config, "authority_host")
    if authority is not None:
        authority = _https_origin(authority, "authority_host", "https://login.microsoftonline.com")

    ca_cert = _string(config, "ca_cert")
    if ca_cert is not None and not os.path.isfile(ca_cert):
        raise _err("field 'ca_cert' must be the path of a readable PEM file")

    timeout = config.get("timeout", 10.0)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 300:
        raise _err("field 'timeout' must be a number of seconds in (0, 300]")

    return AzureConfig(vault_url=vault_url, key_name=key_name, tenant_id=tenant_id, client_id=client_id,
                       client_secret=client_secret, authority_host=authority,
                       disable_instance_discovery=_bool(config, "disable_instance_discovery", False),
                       verify_challenge_resource=_bool(config, "verify_challenge_resource", True),
                       ca_cert=ca_cert, timeout=float(timeout))
