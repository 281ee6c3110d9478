"""Provider-config secrets without a root key: refused unless the operator allows plaintext.

With a root key the store encrypts every config_json at rest; without one it can only store
it as given. A config whose JSON names a secret (SECRET_NAME, at any depth) is then refused
unless PLATFORM_ALLOW_PLAINTEXT_SECRETS is true (`platform --allow-plaintext-secrets`, or
`root_key.allow_plaintext_secrets: true` in the config file). The refusal names the fields,
never their values. Checked where configs enter (host/server/keymanagement.py), which the
CLI's --db mode goes through too.
"""

from __future__ import annotations

import json
import os
import re

from host.errors import FailedPrecondition

ALLOW_ENV = "PLATFORM_ALLOW_PLAINTEXT_SECRETS"
# The shipped plugins' secret fields: secret_access_key, client_secret, token, pin/user_pin, keks.
SECRET_NAME = re.compile(r"(^|_)(secret|password|passwd|token|pin|keks?|private_key|credentials?|api_key)($|_)",
                         re.I)


def allowed(environ=os.environ) -> bool:
    return (environ.get(ALLOW_ENV) or "").strip().lower() in ("1", "true", "yes")


def secret_fields(doc, prefix: str = "") -> list[str]:
    """Dotted paths of non-empty values under secret-looking keys."""
    found: list[str] = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            path = f"{prefix}{key}"
            if isinstance(key, str) and SECRET_NAME.search(key) and value not in (None, "", {}, []):
                found.append(path)
            else:
                found.extend(secret_fields(value, path + "."))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            found.extend(secret_fields(value, f"{prefix}{i}."))
    return found


def check(root_key, config_json: bytes | None) -> None:
    """Raise FailedPrecondition when config_json would put secrets in the database unencrypted."""
    if root_key is not None or not config_json or allowed():
        return
    try:
        doc = json.loads(config_json)
    except (ValueError, UnicodeDecodeError):
        return  # not JSON: the store's validation words that error
    fields = secret_fields(doc)
    if fields:
        raise FailedPrecondition(
            f"no root key is configured, so this provider config's secrets ({', '.join(fields)}) would be stored "
            f"unencrypted: configure a root key (PLATFORM_ROOT_KEY or a root key file), or allow plaintext "
            f"secrets explicitly ({ALLOW_ENV}=true; CLI: --allow-plaintext-secrets)")


REDACTED = "<redacted>"


def _redacted(doc):
    if isinstance(doc, dict):
        return {k: (REDACTED if isinstance(k, str) and SECRET_NAME.search(k) and v not in (None, "", {}, [])
                    else _redacted(v)) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_redacted(v) for v in doc]
    return doc


def redact(config_json: bytes) -> bytes:
    """config_json with every secret value (as secret_fields finds them) replaced by REDACTED, for
    output; the bytes unchanged when it holds none (or is not JSON: then it is shown as a size only)."""
    try:
        doc = json.loads(config_json)
    except (ValueError, UnicodeDecodeError):
        return b'"<not JSON: %d bytes, redacted>"' % len(config_json)
    if not secret_fields(doc):
        return config_json
    return json.dumps(_redacted(doc)).encode()
