"""Plain, immutable records returned by the store.

Other layers cache these, so they hold no database session and cannot
change under their holder. Secrets (config_json, wrapped private keys) are
kept out of repr().
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ProviderConfig:
    id: str
    name: str
    manager: str
    config_json: bytes = field(repr=False)  # decrypted JSON document, as stored
    labels: dict[str, str]
    created_at: dt.datetime
    updated_at: dt.datetime
    revision: int

    @property
    def config(self) -> dict[str, Any]:
        """config_json parsed (validated as a JSON object when stored)."""
        return json.loads(self.config_json)


@dataclass(frozen=True)
class KeyAccessServer:
    id: str
    uri: str
    name: str
    labels: dict[str, str]
    created_at: dt.datetime
    updated_at: dt.datetime
    public_key: dict[str, Any] | None = None   # OpenTDF's deprecated remote/cached KAS public key
    source_type: str | None = None             # "internal" | "external" | None


@dataclass(frozen=True)
class KasKey:
    id: str
    kas_id: str
    kas_uri: str
    key_id: str
    algorithm: str
    status: str                      # "active" | "rotated"
    mode: str                        # "local" | "provider" | "remote" | "public_key"
    public_key_pem: str | None
    private_key_ctx: dict[str, str] | None = field(repr=False)  # {"key_id", "wrapped_key" (base64)}
    provider_config_id: str | None
    provider_config: ProviderConfig | None
    labels: dict[str, str]
    created_at: dt.datetime
    updated_at: dt.datetime
    rotated_at: dt.datetime | None = None
    legacy: bool = False
