"""NanoTDF header, as the KAS reads it (opentdf/spec, schema/nanotdf).

    magic+version "L1L" (3)
    KAS resource locator: protocol|identifier-size (1), body length (1), body, identifier (0/2/8/32)
    ECC and binding mode (1): bit 7 = ECDSA binding, bits 0-2 = curve
    symmetric and payload config (1): bits 0-3 = AES-256-GCM tag size (policy and payload)
    policy: type (1), body length (2, big endian), body
    policy binding: GMAC mode 8 bytes; ECDSA mode len(r) (1), r, len(s) (1), s
    ephemeral public key: compressed point of the curve

The DEK (payload key) is HKDF-SHA256(ECDH(KAS private key, ephemeral key), salt=SHA-256("L1L"), no info).

Policy binding, over D = SHA-256(policy body) as the specification defines it:
    GMAC   the first 8 bytes of the AES-256-GCM tag under the DEK with D as associated
           data and nothing to encrypt; nonce GMAC_NONCE (twelve 0xFF bytes: every nonce
           NanoTDF itself uses with the DEK - payload IVs, the reserved policy IV - starts
           with nine zero bytes, so this one never repeats them)
    ECDSA  a signature of D (prehashed) by the ephemeral private key, checked with the
           header's ephemeral public key: whoever re-signs with another key changes the DEK
    unkeyed  the last 8 bytes of D, which OpenTDF's SDKs (and otdf-python 0.11) write in
           GMAC mode: anyone can recompute it for any policy, so it authenticates nothing
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from functools import cached_property

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from host import crypto
from host.errors import InvalidArgument, PermissionDenied

MAGIC = b"L1L"
NANO_SALT = hashlib.sha256(MAGIC).digest()
GMAC_LENGTH = 8
GMAC_NONCE = b"\xff" * 12
_POLICY_NONCE = bytes(12)  # the reserved IV 000000, padded as the payload IVs are
# curve id -> (KAS algorithm name, compressed point size)
CURVES = {0: ("ec:secp256r1", 33), 1: ("ec:secp384r1", 49), 2: ("ec:secp521r1", 67)}
_TAG_SIZES = {0: 8, 1: 12, 2: 13, 3: 14, 4: 15, 5: 16}
_IDENTIFIER_SIZES = {0: 0, 1: 2, 2: 8, 3: 32}
_PROTOCOLS = {0: "http://", 1: "https://"}
POLICY_REMOTE, POLICY_PLAIN, POLICY_ENCRYPTED, POLICY_ENCRYPTED_WITH_KEY_ACCESS = 0, 1, 2, 3
MAX_HEADER_BYTES = 70_000
UNKEYED_REFUSED = ("the NanoTDF policy binding is an unkeyed SHA-256 of the policy (as otdf-python writes it), "
                   "which does not bind the policy to the key; with an access decision configured this KAS "
                   "needs a GMAC (keyed with the payload key) or ECDSA binding")
MISMATCH = "policy binding mismatch: the NanoTDF policy was altered"


@dataclass(frozen=True)
class NanoHeader:
    kas_url: str
    kid: str                 # the locator's identifier ("" when absent)
    algorithm: str           # "ec:secp256r1" ...
    ecdsa_binding: bool
    tag_size: int            # AES-GCM tag bytes of the policy and payload
    policy_type: int
    policy_body: bytes
    binding: bytes           # the binding section as written (GMAC: 8 bytes; ECDSA: len, r, len, s)
    ephemeral_key: bytes     # compressed point

    @cached_property
    def policy_digest(self) -> bytes:
        """SHA-256 of the policy body: what every binding form covers (computed once a header)."""
        return crypto.sha256(self.policy_body)

    def unkeyed_binding(self) -> bool:
        """Whether the binding is the unkeyed form (GMAC mode only); no key needed to tell."""
        return not self.ecdsa_binding and hmac.compare_digest(self.policy_digest[-GMAC_LENGTH:], self.binding)

    def check_signature(self, ephemeral_public_key: ec.EllipticCurvePublicKey) -> None:
        """ECDSA mode: the ephemeral key signed SHA-256(policy body)."""
        r_len = self.binding[0]
        r, s = self.binding[1:1 + r_len], self.binding[2 + r_len:]
        signature = encode_dss_signature(int.from_bytes(r, "big"), int.from_bytes(s, "big"))
        try:
            ephemeral_public_key.verify(signature, self.policy_digest,
                                        ec.ECDSA(Prehashed(hashes.SHA256())))
        except InvalidSignature:
            raise PermissionDenied(MISMATCH) from None

    def check_gmac(self, dek: bytes) -> None:
        """GMAC mode: the binding is the GMAC of SHA-256(policy body) under the payload key."""
        tag = AESGCM(dek).encrypt(GMAC_NONCE, b"", self.policy_digest)
        if not hmac.compare_digest(tag[:GMAC_LENGTH], self.binding):
            raise PermissionDenied(MISMATCH)

    def policy(self, dek: bytes):
        """The policy as parsed JSON (an encrypted one decrypted with the payload key), else None."""
        body = self.policy_body
        try:
            if self.policy_type == POLICY_ENCRYPTED:
                if len(body) <= self.tag_size:
                    return None
                decryptor = Cipher(algorithms.AES(dek), modes.GCM(_POLICY_NONCE, body[-self.tag_size:],
                                                                  min_tag_length=self.tag_size)).decryptor()
                body = decryptor.update(body[:-self.tag_size]) + decryptor.finalize()
            elif self.policy_type != POLICY_PLAIN:
                return None
            return json.loads(body)
        except (InvalidTag, ValueError, RecursionError):
            return None


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
    cipher = r.byte("payload config") & 0x0F
    if cipher not in _TAG_SIZES:
        raise InvalidArgument(f"NanoTDF header names an unknown symmetric cipher (id {cipher})")
    policy_type = r.byte("policy")
    if policy_type == POLICY_REMOTE:
        raise InvalidArgument("NanoTDF remote policies are not supported")
    if policy_type not in (POLICY_PLAIN, POLICY_ENCRYPTED, POLICY_ENCRYPTED_WITH_KEY_ACCESS):
        raise InvalidArgument(f"NanoTDF header has an unknown policy type {policy_type}")
    policy_body = r.take(int.from_bytes(r.take(2, "policy"), "big"), "policy")
    ecdsa = bool(mode & 0x80)
    if ecdsa:
        start = r.pos
        for part in ("r", "s"):
            size = r.byte("policy binding")
            if not 0 < size < point_size:
                raise InvalidArgument(f"NanoTDF ECDSA policy binding has an invalid {part} length")
            r.take(size, "policy binding")
        binding = data[start:r.pos]
    else:
        binding = r.take(GMAC_LENGTH, "policy binding")
    ephemeral = r.take(point_size, "ephemeral key")
    return NanoHeader(url, kid, algorithm, ecdsa, _TAG_SIZES[cipher], policy_type, policy_body, binding, ephemeral)
