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

import re
from dataclasses import dataclass, field

from km_pyembed.config import ConfigReader

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


def parse_config(config: dict | bytes | str) -> VaultConfig:
    cfg = ConfigReader("vault", config, _FIELDS)
    addr = cfg.string("vault_addr", required=True)
    cfg.check_url("vault_addr", addr, ("http", "https"), "https://vault.example.com:8200")

    key_name = cfg.string("key_name", required=True)
    if not KEY_NAME_RE.match(key_name):
        raise cfg.error("field 'key_name' must be a Vault key name (letters, digits, '_', '-', '.', '@')")
    mount = (cfg.string("mount_path") or "transit").strip("/")
    if not _MOUNT_RE.match(mount):
        raise cfg.error("field 'mount_path' must be a Vault mount path such as 'transit'")
    namespace = cfg.string("namespace")
    if namespace is not None:
        namespace = namespace.strip("/")
        if not _MOUNT_RE.match(namespace):
            raise cfg.error("field 'namespace' must be a Vault namespace path such as 'admin/team-a'")

    token = cfg.string("vault_token")
    role_id = cfg.string("role_id")
    secret_id = cfg.string("secret_id")
    if (role_id is None) != (secret_id is None):
        raise cfg.error("fields 'role_id' and 'secret_id' must be given together (AppRole login)")
    if token is None and role_id is None:
        raise cfg.error("give 'vault_token' or 'role_id' + 'secret_id'")
    if token is not None and role_id is not None:
        raise cfg.error("give either 'vault_token' or 'role_id' + 'secret_id', not both")

    return VaultConfig(vault_addr=addr.rstrip("/"), key_name=key_name, mount_path=mount,
                       vault_token=token, namespace=namespace, role_id=role_id, secret_id=secret_id,
                       ca_cert=cfg.pem_file("ca_cert"), timeout=cfg.seconds("timeout", 10.0))
