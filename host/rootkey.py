"""The root key (KEK) of the platform: 32 bytes given as 64 hex characters.

Used by the basic manager to wrap KAS private keys and by the store to
encrypt provider-config secrets at rest. Format: AES-256-GCM with a random
12-byte nonce, `nonce || ciphertext || tag` (DESIGN.md, "Formats").
"""

from __future__ import annotations

import os
import re

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from host.errors import CryptoError, InvalidArgument

NONCE_LEN = 12
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


class RootKey:
    """An AES-256-GCM key that never shows itself in repr/str."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes):
        if len(key) != 32:
            raise InvalidArgument(f"root key must be 32 bytes (64 hex characters), got {len(key)} bytes")
        self._aead = AESGCM(key)

    @classmethod
    def from_hex(cls, text: str, source: str) -> "RootKey":
        text = text.strip()
        if not _HEX64.fullmatch(text):
            raise InvalidArgument(
                f"root key from {source} must be exactly 64 hex characters (32 bytes), "
                f"got {len(text)} characters; generate one with: openssl rand -hex 32")
        return cls(bytes.fromhex(text))

    def encrypt(self, plain: bytes, aad: bytes = b"") -> bytes:
        nonce = os.urandom(NONCE_LEN)
        return nonce + self._aead.encrypt(nonce, plain, aad or None)

    def decrypt(self, blob: bytes, aad: bytes = b"") -> bytes:
        if len(blob) < NONCE_LEN + 16:
            raise CryptoError("wrapped data is too short to be AES-256-GCM output")
        try:
            return self._aead.decrypt(blob[:NONCE_LEN], blob[NONCE_LEN:], aad or None)
        except InvalidTag:
            raise CryptoError("wrapped data failed authentication (tampered, or wrapped under another root key)") from None

    def __repr__(self) -> str:
        return "RootKey(<redacted>)"

    __str__ = __repr__


def load_root_key(path: str | None = None) -> RootKey | None:
    """PLATFORM_ROOT_KEY (hex) wins over the file; neither -> None."""
    env = os.environ.get("PLATFORM_ROOT_KEY")
    if env:
        return RootKey.from_hex(env, "PLATFORM_ROOT_KEY")
    if path:
        try:
            with open(path, encoding="ascii") as f:
                text = f.read()
        except FileNotFoundError:
            raise InvalidArgument(f"root key file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as e:
            raise InvalidArgument(f"root key file {path} cannot be read: {getattr(e, 'strerror', None) or 'not ASCII hex'}") from None
        return RootKey.from_hex(text, path)
    return None
