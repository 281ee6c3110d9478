"""Reading a provider config (config_json) in a Python plugin: one place for
the checks every plugin needs. Errors name the field, never its value.

    cfg = ConfigReader("vault", config, known={"vault_addr", ...})
    addr = cfg.string("vault_addr", required=True)
    timeout = cfg.seconds("timeout", default=10.0)
"""

from __future__ import annotations

import json
import os
from urllib.parse import urlsplit

from km_pyembed.errors import InvalidArgument


class ConfigReader:
    def __init__(self, plugin: str, config: dict | bytes | str, known: set[str]):
        self.plugin = plugin
        if isinstance(config, (bytes, str)):
            try:
                config = json.loads(config)
            except (ValueError, UnicodeDecodeError):
                raise self.error("config_json is not valid JSON") from None
            except RecursionError:
                raise self.error("config_json is nested too deeply") from None
        if not isinstance(config, dict):
            raise self.error("config_json must be a JSON object")
        unknown = sorted(set(config) - known)
        if unknown:
            raise self.error(f"unknown field '{unknown[0]}' (known: {', '.join(sorted(known))})")
        self.doc = config

    def error(self, message: str) -> InvalidArgument:
        return InvalidArgument(f"{self.plugin} config: {message}")

    def string(self, name: str, required: bool = False) -> str | None:
        """A non-empty string (stripped); None when absent or empty and not required."""
        value = self.doc.get(name)
        if value is None:
            if required:
                raise self.error(f"missing required field '{name}'")
            return None
        if not isinstance(value, str):
            raise self.error(f"field '{name}' must be a string")
        value = value.strip()
        if not value:
            if required:
                raise self.error(f"field '{name}' must not be empty")
            return None
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self.doc.get(name, default)
        if not isinstance(value, bool):
            raise self.error(f"field '{name}' must be true or false")
        return value

    def seconds(self, name: str, default: float, maximum: float = 300.0) -> float:
        value = self.doc.get(name, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= maximum:
            raise self.error(f"field '{name}' must be a number of seconds in (0, {maximum:g}]")
        return float(value)

    def pem_file(self, name: str) -> str | None:
        path = self.string(name)
        if path is not None and not os.path.isfile(path):
            raise self.error(f"field '{name}' must be the path of a readable PEM file")
        return path

    def check_url(self, name: str, value: str, schemes: tuple[str, ...], example: str,
                  allow_path: bool = True) -> str:
        """`value` parsed as a URL with one of `schemes`, a host, a valid port and no
        credentials, query or fragment (nor a path unless allowed)."""
        parts = urlsplit(value)
        try:
            port_ok = parts.port is None or parts.port > 0
        except ValueError:
            port_ok = False
        if parts.scheme not in schemes or not parts.hostname or not port_ok or parts.query \
                or parts.fragment or parts.username or parts.password \
                or (not allow_path and parts.path.strip("/")):
            kind = "http(s)" if set(schemes) == {"http", "https"} else "/".join(schemes)
            raise self.error(f"field '{name}' must be an {kind} URL such as {example}")
        return value
