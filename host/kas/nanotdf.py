"""NanoTDF header, as the KAS reads it (opentdf/spec, schema/nanotdf).

    magic+version "L1L" (3)
    KAS resource locator: protocol|identifier-size (1), body length (1), body, identifier (0/2/8/32)
    ECC and binding mode (1): bit 7 = ECDSA binding, bits 0-2 = curve
    symmetric and payload config (1)
    policy: type (1), body length (2, big endian), body
    policy binding: 8 bytes (GMAC mode: last 8 bytes of SHA-256(policy body))
    ephemeral public key: compressed point of the curve

The DEK is HKDF-SHA256(ECDH(KAS private key, ephemeral key), salt=SHA-256("L1L"), no info).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from host.errors import InvalidArgument, PermissionDenied

MAGIC = b"L1L"
NANO_SALT = hashlib.sha256(MAGIC).digest()
BINDING_LENGTH = 8
# curve id -> (KAS algorithm name, compressed point size)
CURVES = {0: ("ec:secp256r1", 33), 1: ("ec:secp384r1", 49), 2: ("ec:secp521r1", 67)}
_IDENTIFIER_SIZES = {0: 0, 1: 2, 2: 8, 3: 32}
_PROTOCOLS = {0: "http://", 1: "https://"}
POLICY_REMOTE, POLICY_PLAIN, POLICY_ENCRYPTED, POLICY_ENCRYPTED_WITH_KEY_ACCESS = 0, 1, 2, 3
MAX_HEADER_BYTES = 70_000


@dataclass(frozen=True)
class NanoHeader:
    kas_url: str
    kid: str                 # the locator's identifier ("" when absent)
    algorithm: str           # "ec:secp256r1" ...
    ecdsa_binding: bool
    policy_type: int
    policy_body: bytes
    binding: bytes
    ephemeral_key: bytes     # compressed point

    def check_binding(self) -> None:
        """GMAC-mode binding: the last 8 bytes of SHA-256(policy body)."""
        if self.ecdsa_binding:
            raise InvalidArgument("NanoTDF ECDSA policy binding is not supported; use GMAC binding")
        expected = hashlib.sha256(self.policy_body).digest()[-BINDING_LENGTH:]
        if not hmac.compare_digest(expected, self.binding):
            raise PermissionDenied("policy binding mismatch: the NanoTDF policy was altered")


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise InvalidArgument(f"NanoTDF header is truncated (in the {what})")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def byte(self, what: str) -> int:
        return self.take(1, what)[0]


def parse_header(data: bytes) -> NanoHeader:
    if len(data) > MAX_HEADER_BYTES:
        raise InvalidArgument("NanoTDF header is too large")
    r = _Reader(data)
    if r.take(3, "magic number") != MAGIC:
        raise InvalidArgument("NanoTDF header has a wrong magic number/version (want L1L)")
    proto_and_id = r.byte("resource locator")
    protocol, id_size = proto_and_id & 0x0F, (proto_and_id >> 4) & 0x0F
    if id_size not in _IDENTIFIER_SIZES:
        raise InvalidArgument("NanoTDF resource locator has an invalid identifier size")
    body = r.take(r.byte("resource locator"), "resource locator")
    identifier = r.take(_IDENTIFIER_SIZES[id_size], "resource locator identifier")
    try:
        url = _PROTOCOLS.get(protocol, "") + body.decode("utf-8")
        kid = identifier.rstrip(b"\x00").decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidArgument("NanoTDF resource locator is not UTF-8") from None
    mode = r.byte("ECC mode")
    curve = mode & 0x07
    if curve not in CURVES:
        raise InvalidArgument(f"NanoTDF header names an unsupported curve (id {curve})")
    algorithm, point_size = CURVES[curve]
    r.byte("payload config")
    policy_type = r.byte("policy")
    if policy_type == POLICY_REMOTE:
        raise InvalidArgument("NanoTDF remote policies are not supported")
    if policy_type not in (POLICY_PLAIN, POLICY_ENCRYPTED, POLICY_ENCRYPTED_WITH_KEY_ACCESS):
        raise InvalidArgument(f"NanoTDF header has an unknown policy type {policy_type}")
    policy_body = r.take(int.from_bytes(r.take(2, "policy"), "big"), "policy")
    ecdsa = bool(mode & 0x80)
    binding = r.take(BINDING_LENGTH, "policy binding") if not ecdsa else b""
    ephemeral = r.take(point_size, "ephemeral key") if not ecdsa else b""
    return NanoHeader(url, kid, algorithm, ecdsa, policy_type, policy_body, binding, ephemeral)
