"""The platform's YAML configuration file: `platform --config platform.yaml` or PLATFORM_CONFIG.

Precedence is flag > environment > file > default. The file never overrides:
each setting fills the environment variable the platform already reads, only
when that variable is unset, and the `serve` options through click's
default_map (which click ranks below flags and environment). So the rest of
the platform keeps reading one place per setting, and `platform config show`
tells where each value came from. The file is checked against SCHEMA first;
a mistake is answered with its key path and what was expected.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from host.errors import InvalidArgument

CONFIG_ENV = "PLATFORM_CONFIG"
ROOT_KEY_ENV = "PLATFORM_ROOT_KEY"

_str = {"type": "string", "minLength": 1}
_bool = {"type": "boolean"}


def _int(low: int, high: int) -> dict:
    return {"type": "integer", "minimum": low, "maximum": high}


def _object(properties: dict, **extra) -> dict:
    return {"type": "object", "properties": properties, "additionalProperties": False, **extra}


SCHEMA = _object({
    "database": _object({"url": _str}),
    "root_key": _object({
        "file": _str,
        "env": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
        "value": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
        "allow_in_file": _bool,
        "allow_plaintext_secrets": _bool,
    }, maxProperties=3),
    "plugins": {"type": "array", "items": _object(
        {"path": _str, "isolated": _bool, "sha256": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}},
        required=["path"])},
    "server": _object({
        "host": _str, "port": _int(1, 65535), "workers": _int(1, 64),
        "max_connections": _int(1, 1_000_000), "header_timeout_ms": _int(1, 3_600_000),
        "body_timeout_ms": _int(1, 3_600_000),
    }),
    "auth": _object({
        "admin_tokens_file": _str, "client_tokens_file": _str,
        "kas_public_key_requires_auth": _bool,
        "oidc": _object({"issuer": _str, "audience": _str, "jwks": _str, "role_claim": _str,
                         "admin_role": _str, "client_role": _str}),
    }),
    "kas": _object({"identity": _str, "require_signed_requests": _bool, "max_token_lifetime": _int(1, 86400)}),
    "logging": _object({"verbosity": _int(0, 2)}),
})

# File key -> the environment variable that setting already has. The one table of the mapping.
ENV_SETTINGS: dict[str, str] = {
    "database.url": "PLATFORM_DB_URL",
    "root_key.file": "PLATFORM_ROOT_KEY_FILE",
    "root_key.allow_plaintext_secrets": "PLATFORM_ALLOW_PLAINTEXT_SECRETS",
    "server.max_connections": "PLATFORM_HTTP_MAX_CONNECTIONS",
    "server.header_timeout_ms": "PLATFORM_HTTP_HEADER_TIMEOUT_MS",
    "server.body_timeout_ms": "PLATFORM_HTTP_BODY_TIMEOUT_MS",
    "auth.admin_tokens_file": "PLATFORM_ADMIN_TOKEN_FILE",
    "auth.client_tokens_file": "PLATFORM_CLIENT_TOKEN_FILE",
    "auth.kas_public_key_requires_auth": "PLATFORM_KAS_PUBLIC_KEY_REQUIRES_AUTH",
    "auth.oidc.issuer": "PLATFORM_OIDC_ISSUER",
    "auth.oidc.audience": "PLATFORM_OIDC_AUDIENCE",
    "auth.oidc.jwks": "PLATFORM_OIDC_JWKS",
    "auth.oidc.role_claim": "PLATFORM_OIDC_ROLE_CLAIM",
    "auth.oidc.admin_role": "PLATFORM_OIDC_ADMIN_ROLE",
    "auth.oidc.client_role": "PLATFORM_OIDC_CLIENT_ROLE",
    "kas.identity": "PLATFORM_KAS",
    "kas.require_signed_requests": "PLATFORM_KAS_REQUIRE_SIGNED_REQUESTS",
    "kas.max_token_lifetime": "PLATFORM_KAS_MAX_TOKEN_LIFETIME",
}
# File key -> (command, option) given through click's default_map.
OPTION_SETTINGS: dict[str, tuple[str | None, str]] = {
    "server.host": ("serve", "host"),
    "server.port": ("serve", "port"),
    "server.workers": ("serve", "workers"),
    "logging.verbosity": (None, "verbose"),
}


@dataclass
class FileSettings:
    """What a loaded file contributed: env vars it filled, click defaults, plugin specs."""

    path: str
    values: dict[str, Any] = field(default_factory=dict)    # dotted key -> value, as in the file
    env_filled: set[str] = field(default_factory=set)      # variables this file set (they were unset)
    default_map: dict[str, Any] = field(default_factory=dict)
    plugins: tuple[str, ...] = ()
    root_key_source: str | None = None                     # e.g. "env FOO"; never the key


def _flatten(doc: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in doc.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def _env_text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def validate(doc: Any, path: str) -> None:
    """Raise InvalidArgument naming the first mistake's key path and what was expected."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(SCHEMA)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        where = ".".join(str(p) for p in e.absolute_path) or "(top level)"
        # e.message quotes the offending value: fine for every field but the root key
        what = "64 hex characters" if where == "root_key.value" else e.message
        raise InvalidArgument(f"{path}: {where}: {what}")


def load(path: str, environ: os._Environ | dict = os.environ) -> FileSettings:
    """Read and check the file, fill unset environment variables from it, return what it set."""
    import yaml

    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise InvalidArgument(f"config file {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise InvalidArgument(f"config file {path}:{where}: not valid YAML") from None
    doc = {} if doc is None else doc
    validate(doc, path)
    out = FileSettings(path=path, values=_flatten({k: v for k, v in doc.items() if k != "plugins"}))

    root = doc.get("root_key", {})
    if "value" in root and not root.get("allow_in_file"):
        raise InvalidArgument(f"{path}: root_key.value: a root key written in the file needs "
                              "root_key.allow_in_file: true (prefer root_key.file or root_key.env)")
    if "env" in root:
        out.root_key_source = f"environment variable {root['env']}"
        if ROOT_KEY_ENV not in environ and root["env"] in environ:
            environ[ROOT_KEY_ENV] = environ[root["env"]]
            out.env_filled.add(ROOT_KEY_ENV)
    elif "value" in root:
        out.root_key_source = "the config file"
        if ROOT_KEY_ENV not in environ:
            environ[ROOT_KEY_ENV] = root["value"]
            out.env_filled.add(ROOT_KEY_ENV)

    for key, var in ENV_SETTINGS.items():
        if key in out.values and var not in environ:
            environ[var] = _env_text(out.values[key])
            out.env_filled.add(var)
    for key, (command, option) in OPTION_SETTINGS.items():
        if key in out.values:
            target = out.default_map.setdefault(command, {}) if command else out.default_map
            target[option] = out.values[key]
    out.plugins = tuple(plugin_spec(p) for p in doc.get("plugins", []))
    return out


def plugin_spec(entry: dict) -> str:
    """{path, isolated, sha256} -> the `[isolated:]PATH[#sha256=HEX]` form --key-manager-plugin takes."""
    spec = ("isolated:" if entry.get("isolated") else "") + entry["path"]
    return spec + (f"#sha256={entry['sha256'].lower()}" if "sha256" in entry else "")
