"""Checks on everything that enters the store; each failure is one
InvalidArgument line naming the field. Values are never echoed back for
config documents (they may hold secrets)."""

from __future__ import annotations

import base64
import binascii
import json
import os
import uuid
from typing import Any, Mapping

from host.errors import InvalidArgument

MAX_TEXT = 255
MAX_URI = 2048
MAX_CONFIG_BYTES = 64 * 1024
# List page sizes, as OpenTDF's policy config (list_request_limit_default / _max); overridable.
DEFAULT_LIMIT = 1000
MAX_LIMIT = 2500
LIMIT_DEFAULT_ENV = "PLATFORM_LIST_LIMIT_DEFAULT"
LIMIT_MAX_ENV = "PLATFORM_LIST_LIMIT_MAX"
SORT_DIRECTIONS = ("asc", "desc")
PRIVATE_KEY_CTX_FIELDS = ("key_id", "wrapped_key")


def text(field: str, value: Any, max_len: int = MAX_TEXT) -> str:
    """A non-empty string of valid UTF-8 with no NUL, at most max_len characters."""
    if not isinstance(value, str):
        raise InvalidArgument(f"{field} must be a string")
    if not value:
        raise InvalidArgument(f"{field} must not be empty")
    try:
        value.encode("utf-8")  # lone surrogates come from undecodable command-line bytes
    except UnicodeEncodeError:
        raise InvalidArgument(f"{field} is not valid UTF-8") from None
    if "\x00" in value:
        raise InvalidArgument(f"{field} must not contain NUL characters")
    if len(value) > max_len:
        raise InvalidArgument(f"{field} is too long ({len(value)} characters, at most {max_len})")
    return value


def labels(value: Mapping[str, str] | None, field: str = "labels") -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidArgument(f"{field} must be a mapping of strings to strings")
    out = {}
    for k, v in value.items():
        key = text(f"{field} key", k)
        out[key] = text(f"{field}[{key}] value", v)
    return out


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def config_json(value: bytes | bytearray | str | Mapping) -> bytes:
    """The config as UTF-8 JSON bytes: a JSON object of at most 64 KiB.

    bytes/str are kept verbatim (operators get back what they stored); a
    mapping is serialized compactly.
    """
    if isinstance(value, Mapping):
        try:
            raw = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as e:
            raise InvalidArgument(f"config_json cannot be serialized as JSON: {e}") from None
    elif isinstance(value, str):
        try:
            raw = value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidArgument("config_json is not valid UTF-8") from None
    elif isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
    else:
        raise InvalidArgument("config_json must be a JSON object (bytes, str or dict)")
    if len(raw) > MAX_CONFIG_BYTES:
        raise InvalidArgument(f"config_json is too large ({len(raw)} bytes, at most {MAX_CONFIG_BYTES})")
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidArgument(f"config_json is not valid UTF-8 (byte {e.start})") from None
    try:
        doc = json.loads(decoded, parse_constant=_reject_constant)
    except ValueError as e:
        # JSONDecodeError's message carries only position info, never the content.
        reason = e.msg if isinstance(e, json.JSONDecodeError) else str(e)
        where = f" at line {e.lineno} column {e.colno}" if isinstance(e, json.JSONDecodeError) else ""
        raise InvalidArgument(f"config_json is not valid JSON: {reason}{where}") from None
    except RecursionError:
        raise InvalidArgument("config_json is nested too deeply") from None
    if not isinstance(doc, dict):
        raise InvalidArgument(f"config_json must be a JSON object, got a JSON {_json_kind(doc)}")
    return raw


def _json_kind(doc: Any) -> str:
    if isinstance(doc, list):
        return "array"
    if isinstance(doc, str):
        return "string"
    if isinstance(doc, bool):
        return "boolean"
    if doc is None:
        return "null"
    return "number"


def uuid_text(field: str, value: Any) -> str:
    """A canonical lowercase UUID string, or InvalidArgument naming the field."""
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"{field} must be a UUID")
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        shown = value if len(value) <= 64 else value[:64] + "..."
        raise InvalidArgument(f"{field} is not a valid UUID: {shown!r}") from None
    return str(parsed)


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        return False
    return True


def _env_int(name: str, default: int) -> int:
    raw = (os.environ.get(name) or "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise InvalidArgument(f"{name} must be a positive integer, got {raw[:20]!r}")
    return int(raw)


def list_limits() -> tuple[int, int]:
    """(default, maximum) page size for every List call."""
    maximum = _env_int(LIMIT_MAX_ENV, MAX_LIMIT)
    return min(_env_int(LIMIT_DEFAULT_ENV, DEFAULT_LIMIT), maximum), maximum


def page(limit: int | None, offset: int | None) -> tuple[int, int]:
    """limit None or 0 -> the configured default; above the configured maximum -> InvalidArgument."""
    default, maximum = list_limits()
    limit = default if not limit else limit
    offset = 0 if offset is None else offset
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise InvalidArgument(f"limit must be a positive integer, got {limit!r}")
    if limit > maximum:
        raise InvalidArgument(f"requested pagination limit must be less than or equal to configured limit "
                              f"({limit} > {maximum})")
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise InvalidArgument(f"offset must be 0 or more, got {offset!r}")
    return limit, offset


def name(field: str, value: Any) -> str:
    """A KAS or provider-config name: stored lower-case, matched case-insensitively (as OpenTDF)."""
    return text(field, value).lower()


def sort(value: tuple[str, str] | None, fields: tuple[str, ...], default: str = "created_at") -> tuple[str, str]:
    """(field, direction) of a List call; newest first when nothing is asked."""
    if value is None:
        return default, "desc"
    field, direction = value
    field = field or default
    direction = (direction or "desc").lower()
    if field not in fields:
        raise InvalidArgument(f"sort field must be one of {', '.join(fields)}, got {field!r}")
    if direction not in SORT_DIRECTIONS:
        raise InvalidArgument(f"sort direction must be asc or desc, got {direction!r}")
    return field, direction


SOURCE_TYPES = ("internal", "external")
MAX_PUBLIC_KEY_JSON = 64 * 1024


def kas_public_key(value: Any) -> dict[str, Any]:
    """OpenTDF's KAS PublicKey as JSON: {"remote": uri} or {"cached": {"keys": [...]}}."""
    if not isinstance(value, Mapping) or set(value) - {"remote", "cached"} or len(value) != 1:
        raise InvalidArgument("public_key must be one of remote (a URI) or cached (keys)")
    if len(json.dumps(value)) > MAX_PUBLIC_KEY_JSON:
        raise InvalidArgument(f"public_key is too large (at most {MAX_PUBLIC_KEY_JSON} bytes of JSON)")
    if "remote" in value:
        uri(value["remote"], "public_key.remote")
    return dict(value)


def source_type(value: Any) -> str:
    if value not in SOURCE_TYPES:
        raise InvalidArgument(f"source_type must be one of {', '.join(SOURCE_TYPES)}, got {value!r}")
    return value


def uri(value: Any, field: str = "uri") -> str:
    value = text(field, value, MAX_URI)
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() not in ("http", "https") or not rest or rest.startswith("/") or any(c.isspace() for c in value):
        raise InvalidArgument(f"{field} must be an http(s):// URL, got {value!r}")
    return value


def private_key_ctx(value: Mapping | None) -> dict[str, str] | None:
    """{"key_id": str, "wrapped_key": base64 str}; either may be absent."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidArgument("private_key_ctx must be an object with key_id and wrapped_key")
    unknown = sorted(set(value) - set(PRIVATE_KEY_CTX_FIELDS))
    if unknown:
        raise InvalidArgument(f"private_key_ctx has unknown field(s): {', '.join(map(str, unknown))}")
    out = {}
    for name in PRIVATE_KEY_CTX_FIELDS:
        if name not in value or value[name] is None:
            continue
        item = value[name]
        if not isinstance(item, str):
            raise InvalidArgument(f"private_key_ctx.{name} must be a string")
        out[name] = item
    if "key_id" in out and len(out["key_id"]) > 2048:
        raise InvalidArgument("private_key_ctx.key_id is too long (at most 2048 characters)")
    if "wrapped_key" in out:
        try:
            base64.b64decode(out["wrapped_key"], validate=True)
        except (binascii.Error, ValueError):
            raise InvalidArgument("private_key_ctx.wrapped_key must be base64") from None
    return out
