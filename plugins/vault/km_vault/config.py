"""Parse and check a Vault provider configuration (the provider_config.config_json).

The seed document's example is accepted verbatim:

    {"vault_addr": "https://vault.example.com:8200", "vault_token": "hvs.CAESIJlWh...",
     "mount_path": "transit", "key_name": "opentdf-dek-key"}

Optional: `namespace` (Vault Enterprise / HCP), `role_id` + `secret_id`
(AppRole login instead of a token), `ca_cert` (path to a PEM bundle that
signs Vault's TLS certificate), `timeout` (seconds per HTTP request when the
call has no deadline; default 10). Errors name the field, never its value.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from km_pyembed import InvalidArgument

# Vault's framework.GenericNameRegex for key names; mount paths are slash-separated names.
KEY_NAME_RE = re.compile(r"^\w(?:[\w\-.@]*\w)?$")
_MOUNT_RE = re.compile(r"^\w(?:[\w\-.@]*\w)?(?:/\w(?:[\w\-.@]*\w)?)*$")
_FIELDS = {"vault_addr", "vault_token", "mount_path", "key_name", "namespace",
           "role_id", "secret_id", "ca_cert", "timeout"}


@dataclass(frozen=True)
class VaultConfig:
    vault_addr: str
    key_name: str
    mount_path: str = "transit"
    vault_token: str | None = field(default=None, repr=False)
    namespace: str | None = None
    role_id: str | None = None
    secret_id: str | None = field(default=None, repr=False)
    ca_cert: str | None = None
    timeout: float = 10.0

    @property
    def uses_approle(self) -> bool:
        return self.role_id is not None

    def secrets(self) -> list[str]:
        """Values that must never appear in logs or errors."""
        return [s for s in (self.vault_token, self.secret_id) if s]


def _err(message: str) -> InvalidArgument:
    return InvalidArgument(f"vault config: {message}")


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


def parse_config(config: dict | bytes | str) -> VaultConfig:
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

    addr = _string(config, "vault_addr", required=True)
    parts = urlsplit(addr)
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok \
            or parts.query or parts.fragment or parts.username or parts.password:
        raise _err("field 'vault_addr' must be an http(s) URL such as https://vault.example.com:8200")

    key_name = _string(config, "key_name", required=True)
    if not KEY_NAME_RE.match(key_name):
        raise _err("field 'key_name' must be a Vault key name (letters, digits, '_', '-', '.', '@')")
    mount = _string(config, "mount_path") or "transit"
    mount = mount.strip("/")
    if not _MOUNT_RE.match(mount):
        raise _err("field 'mount_path' must be a Vault mount path such as 'transit'")
    namespace = _string(config, "namespace")
    if namespace is not None:
        namespace = namespace.strip("/")
        if not _MOUNT_RE.match(namespace):
            raise _err("field 'namespace' must be a Vault namespace path such as 'admin/team-a'")

    token = _string(config, "vault_token")
    role_id = _string(config, "role_id")
    secret_id = _string(config, "secret_id")
    if (role_id is None) != (secret_id is None):
        raise _err("fields 'role_id' and 'secret_id' must be given together (AppRole login)")
    if token is None and role_id is None:
        raise _err("give 'vault_token' or 'role_id' + 'secret_id'")
    if token is not None and role_id is not None:
        raise _err("give either 'vault_token' or 'role_id' + 'secret_id', not both")

    ca_cert = _string(config, "ca_cert")
    if ca_cert is not None and not os.path.isfile(ca_cert):
        raise _err("field 'ca_cert' must be the path of a readable PEM file")

    timeout = config.get("timeout", 10.0)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 300:
        raise _err("field 'timeout' must be a number of seconds in (0, 300]")

    return VaultConfig(vault_addr=addr.rstrip("/"), key_name=key_name, mount_path=mount,
                       vault_token=token, namespace=namespace, role_id=role_id, secret_id=secret_id,
                       ca_cert=ca_cert, timeout=float(timeout))
