"""Post-quantum KAS keys and their DEK wrap, byte-compatible with OpenTDF's lib/ocrypto
(formats: tests/fixtures/vectors/README.md, produced by OpenTDF's own code).

Keys
  mlkem:768 / mlkem:1024      NIST OIDs; `cryptography` reads and writes them natively
                              (PKCS#8 holds the 64-byte seed only).
  hpqt:secp256r1-mlkem768     composite-KEM OIDs 1.3.6.1.5.5.7.6.59 / .63, no parameters.
  hpqt:secp384r1-mlkem1024    SPKI bit string = ML-KEM encapsulation key || uncompressed EC point;
                              PKCS#8 octet string = ML-KEM seed (64) || RFC 5915 ECPrivateKey DER.
Wrap (what the client sends as `wrappedKey`)
  DER SEQUENCE { [0] IMPLICIT OCTET STRING kem_ct, [1] IMPLICIT OCTET STRING nonce||gcm_ct||tag }
  mlkem-wrapped   kem_ct = ML-KEM ciphertext; AES-256 key = the ML-KEM secret as is (no KDF)
  hybrid-wrapped  kem_ct = ML-KEM ciphertext || ephemeral EC point; AES-256 key =
                  SHA3-256(mlkem_ss || ecdh_x || ephemeral point || KAS point || label)
                  (OpenTDF's prose says HKDF; its code, and so this, does not use one)
Remote mode (include/keymanager.h KM_CAP_KEM): the plugin returns the secret(s) for kem_ct and
unwrap_remote does the rest.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, mlkem
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from host.errors import CryptoError, Internal, InvalidArgument

NONCE, TAG = 12, 16
SECRET = 32  # ML-KEM shared secret
SEED = 64  # ML-KEM private key seed d || z (FIPS 203)
_UNCOMPRESSED = serialization.PublicFormat.UncompressedPoint


@dataclass(frozen=True)
class Kem:
    """One post-quantum key type."""

    name: str                    # OpenTDF's CLI name
    kao_type: str                # the key access object `type` that wraps to it
    private_cls: type            # the ML-KEM private key class
    public_cls: type
    public_len: int              # ML-KEM encapsulation key
    ciphertext_len: int          # ML-KEM ciphertext
    curve: type | None = None    # hybrids: the EC curve
    point_len: int = 0           # hybrids: uncompressed EC point
    oid_der: bytes = b""         # hybrids: the composite-KEM OID, DER content octets
    label: bytes = b""           # hybrids: the combiner label


def _oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    out = bytearray([40 * parts[0] + parts[1]])
    for p in parts[2:]:
        chunk = [p & 0x7F]
        while p > 0x7F:
            p >>= 7
            chunk.append(0x80 | (p & 0x7F))
        out += bytes(reversed(chunk))
    return bytes(out)


KEMS = {k.name: k for k in (
    Kem("mlkem:768", "mlkem-wrapped", mlkem.MLKEM768PrivateKey, mlkem.MLKEM768PublicKey, 1184, 1088),
    Kem("mlkem:1024", "mlkem-wrapped", mlkem.MLKEM1024PrivateKey, mlkem.MLKEM1024PublicKey, 1568, 1568),
    Kem("hpqt:secp256r1-mlkem768", "hybrid-wrapped", mlkem.MLKEM768PrivateKey, mlkem.MLKEM768PublicKey, 1184, 1088,
        ec.SECP256R1, 65, _oid("1.3.6.1.5.5.7.6.59"), b"MLKEM768-P256"),
    Kem("hpqt:secp384r1-mlkem1024", "hybrid-wrapped", mlkem.MLKEM1024PrivateKey, mlkem.MLKEM1024PublicKey, 1568, 1568,
        ec.SECP384R1, 97, _oid("1.3.6.1.5.5.7.6.63"), b"MLKEM1024-P384"),
)}
_HYBRID_BY_OID = {k.oid_der: k for k in KEMS.values() if k.curve}


# ---- hybrid key objects ----------------------------------------------------------

class HybridPublicKey:
    __slots__ = ("kem", "mlkem", "ec", "point")

    def __init__(self, kem: Kem, mlkem_public, ec_public):
        self.kem, self.mlkem, self.ec = kem, mlkem_public, ec_public
        self.point = ec_public.public_bytes(serialization.Encoding.X962, _UNCOMPRESSED)

    def spki_der(self) -> bytes:
        bits = b"\x00" + self.mlkem.public_bytes_raw() + self.point
        return _tlv(0x30, _tlv(0x30, _tlv(0x06, self.kem.oid_der)) + _tlv(0x03, bits))

    def __repr__(self) -> str:
        return f"<HybridPublicKey {self.kem.name}>"


class HybridPrivateKey:
    """An ML-KEM private key and an EC private key used together. No secret in repr."""

    __slots__ = ("kem", "mlkem", "ec", "_public")

    def __init__(self, kem: Kem, mlkem_private, ec_private):
        self.kem, self.mlkem, self.ec = kem, mlkem_private, ec_private
        self._public = HybridPublicKey(kem, mlkem_private.public_key(), ec_private.public_key())

    def public_key(self) -> HybridPublicKey:
        return self._public

    def pkcs8_der(self) -> bytes:
        ec_der = self.ec.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption())
        body = _tlv(0x02, b"\x00") + _tlv(0x30, _tlv(0x06, self.kem.oid_der)) + \
            _tlv(0x04, self.mlkem.private_bytes_raw() + ec_der)
        return _tlv(0x30, body)

    def __repr__(self) -> str:
        return f"<HybridPrivateKey {self.kem.name}>"


def generate(kem: Kem):
    if kem.curve is None:
        return kem.private_cls.generate()
    return HybridPrivateKey(kem, kem.private_cls.generate(), ec.generate_private_key(kem.curve()))


def kem_of(key) -> Kem | None:
    """The key type of a parsed KEM key (private or public), None for any other key."""
    if isinstance(key, (HybridPrivateKey, HybridPublicKey)):
        return key.kem
    for k in KEMS.values():
        if k.curve is None and isinstance(key, (k.private_cls, k.public_cls)):
            return k
    return None


# ---- PEM ---------------------------------------------------------------------------

def pem_encode(der: bytes, label: str) -> str:
    b64 = base64.b64encode(der).decode("ascii")
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n"


def _pem_der(data: bytes, label: str) -> bytes | None:
    text = data.decode("ascii", "replace").strip()
    begin, end = f"-----BEGIN {label}-----", f"-----END {label}-----"
    if not text.startswith(begin) or not text.endswith(end):
        return None
    try:
        return base64.b64decode("".join(text[len(begin):-len(end)].split()), validate=True)
    except (binascii.Error, ValueError):
        return None


def private_pem(key) -> bytes:
    if isinstance(key, HybridPrivateKey):
        return pem_encode(key.pkcs8_der(), "PRIVATE KEY").encode("ascii")
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def public_pem(key) -> str:
    pub = key.public_key() if hasattr(key, "public_key") else key
    if isinstance(pub, HybridPublicKey):
        return pem_encode(pub.spki_der(), "PUBLIC KEY")
    return pub.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def load_hybrid_private(data: bytes, what: str):
    """A hybrid PKCS#8 PEM, or None when `data` is not one (another key type: the caller's loader)."""
    der = _pem_der(data, "PRIVATE KEY")
    if der is None:
        return None
    try:
        seq = _one(der, 0x30)
        version, rest = _take(seq, 0x02)
        alg, rest = _take(rest, 0x30)
        octets, rest = _take(rest, 0x04)  # PKCS#8 attributes / public key are not used by OpenTDF
        oid, _ = _take(alg, 0x06)
    except ValueError:
        return None
    kem = _HYBRID_BY_OID.get(oid)
    if kem is None:
        return None
    if version != b"\x00" or len(octets) <= SEED:
        raise InvalidArgument(f"{what} is not a {kem.name} private key (seed || ECPrivateKey)")
    try:
        mk = kem.private_cls.from_seed_bytes(octets[:SEED])
        ek = serialization.load_der_private_key(octets[SEED:], password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise InvalidArgument(f"{what} is not a {kem.name} private key (seed || ECPrivateKey)") from None
    if not isinstance(ek, ec.EllipticCurvePrivateKey) or not isinstance(ek.curve, kem.curve):
        raise InvalidArgument(f"{what}: the EC part is not on {kem.curve.name}")
    return HybridPrivateKey(kem, mk, ek)


def load_hybrid_public(data: bytes, what: str):
    """A hybrid SPKI PEM, or None when `data` is not one."""
    der = _pem_der(data, "PUBLIC KEY")
    if der is None:
        return None
    try:
        seq = _one(der, 0x30)
        alg, rest = _take(seq, 0x30)
        bits, _ = _take(rest, 0x03)
        oid, _ = _take(alg, 0x06)
    except ValueError:
        return None
    kem = _HYBRID_BY_OID.get(oid)
    if kem is None:
        return None
    ek_len = kem.public_len
    if bits[:1] != b"\x00" or len(bits) != 1 + ek_len + kem.point_len:
        raise InvalidArgument(f"{what} is not a {kem.name} public key ({ek_len}+{kem.point_len} bytes)")
    try:
        mk = kem.public_cls.from_public_bytes(bits[1:1 + ek_len])
        ek = ec.EllipticCurvePublicKey.from_encoded_point(kem.curve(), bits[1 + ek_len:])
    except ValueError:
        raise InvalidArgument(f"{what} is not a valid {kem.name} public key") from None
    return HybridPublicKey(kem, mk, ek)


# ---- wrap ------------------------------------------------------------------------------

def _hybrid_key(kem: Kem, mlkem_ss: bytes, ecdh: bytes, eph_point: bytes, kas_point: bytes) -> bytes:
    return hashlib.sha3_256(mlkem_ss + ecdh + eph_point + kas_point + kem.label).digest()


def wrap(public_key, kem: Kem, dek: bytes) -> bytes:
    """Client side, as OpenTDF's SDK: the whole `wrappedKey` envelope for `dek`."""
    if kem.curve is None:
        secret, ct = public_key.encapsulate()
        key = secret
    else:
        mlkem_ss, mlkem_ct = public_key.mlkem.encapsulate()
        eph = ec.generate_private_key(kem.curve())
        eph_point = eph.public_key().public_bytes(serialization.Encoding.X962, _UNCOMPRESSED)
        key = _hybrid_key(kem, mlkem_ss, eph.exchange(ec.ECDH(), public_key.ec), eph_point, public_key.point)
        ct = mlkem_ct + eph_point
    nonce = os.urandom(NONCE)
    return _tlv(0x30, _tlv(0x80, ct) + _tlv(0x81, nonce + AESGCM(key).encrypt(nonce, dek, None)))


def _dek_layout(kem: Kem) -> tuple[int, bytes, int, bytes]:
    """(length, bytes before the KEM ciphertext, its end, the [1] header) of the envelope of a 32-byte
    DEK, which every OpenTDF client sends: DER's minimal lengths give it exactly one layout."""
    ct, sealed = bytes(kem.ciphertext_len + kem.point_len), bytes(NONCE + 32 + TAG)
    envelope = _tlv(0x30, _tlv(0x80, ct) + _tlv(0x81, sealed))
    ct_end = len(envelope) - len(sealed) - 2
    return len(envelope), envelope[:ct_end - len(ct)], ct_end, envelope[ct_end:ct_end + 2]


def split(envelope: bytes, kem: Kem) -> tuple[bytes, bytes]:
    """(KEM ciphertext, sealed DEK) of a `wrappedKey`, every length checked (InvalidArgument)."""
    size, head, ct_end, sealed_head = _DEK_LAYOUTS[kem.name]
    if len(envelope) == size and envelope.startswith(head) and envelope.startswith(sealed_head, ct_end):
        # a 32-byte DEK's envelope, recognized whole: ~1 µs less per unwrap (docs/performance.md)
        return envelope[len(head):ct_end], envelope[ct_end + 2:]
    try:
        start, end = _field(envelope, 0, 0x30)
        if end != len(envelope):
            raise ValueError("trailing bytes")
        ct_start, ct_end = _field(envelope, start, 0x80)
        sealed_start, sealed_end = _field(envelope, ct_end, 0x81)
    except ValueError as e:
        raise InvalidArgument(f"{kem.kao_type} wrappedKey is not OpenTDF's DER envelope ({e})") from None
    if sealed_end != end:
        raise InvalidArgument(f"{kem.kao_type} wrappedKey has bytes after its two fields")
    want = kem.ciphertext_len + kem.point_len
    if ct_end - ct_start != want:
        parts = f"{kem.ciphertext_len}-byte ML-KEM ciphertext" + (
            f" + {kem.point_len}-byte EC point" if kem.curve else "")
        raise InvalidArgument(f"{kem.name} KEM ciphertext must be {want} bytes ({parts}), got {ct_end - ct_start}")
    if sealed_end - sealed_start < NONCE + TAG:
        raise InvalidArgument(f"{kem.kao_type} wrappedKey: the sealed DEK is shorter than nonce and tag")
    return envelope[ct_start:ct_end], envelope[sealed_start:sealed_end]


def unwrap(private_key, kem: Kem, envelope: bytes) -> bytes:
    """KAS side: the DEK, with the private key here (local and provider modes)."""
    ct, sealed = split(envelope, kem)
    if kem.curve is None:
        key = private_key.decapsulate(ct)
    else:
        key = hybrid_wrap_key(kem, private_key.mlkem.decapsulate(ct[:kem.ciphertext_len]),
                              private_key.ec, private_key.public_key().point, ct[kem.ciphertext_len:])
    return open_sealed(key, sealed)


def hybrid_wrap_key(kem: Kem, mlkem_ss: bytes, ec_private, kas_point: bytes, eph_point: bytes) -> bytes:
    eph = _ephemeral(kem, eph_point)
    return _hybrid_key(kem, mlkem_ss, ec_private.exchange(ec.ECDH(), eph), eph_point, kas_point)


def _ephemeral(kem: Kem, eph_point: bytes):
    if eph_point[:1] != b"\x04":
        raise InvalidArgument(f"{kem.name}: the ephemeral EC point must be uncompressed")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(kem.curve(), eph_point)
    except ValueError:
        raise InvalidArgument(f"{kem.name}: the ephemeral EC point is not on {kem.curve.name}") from None


def unwrap_remote(decapsulate, kem: Kem, envelope: bytes, kas_public_pem: str) -> bytes:
    """KAS side, remote mode: the DEK, with `decapsulate(kem_ct)` done by the key's plugin
    (keymanager.h KM_CAP_KEM: the ML-KEM secret, for hybrids followed by the ECDH x coordinate)."""
    ct, sealed = split(envelope, kem)
    if kem.curve is None:
        return open_sealed(_secret(decapsulate(ct), kem, SECRET), sealed)
    eph_point = ct[kem.ciphertext_len:]
    _ephemeral(kem, eph_point)  # checked here: the plugin gets only points on the curve
    secrets = _secret(decapsulate(ct), kem, SECRET + (kem.point_len - 1) // 2)
    key = _hybrid_key(kem, secrets[:SECRET], secrets[SECRET:], eph_point, _kas_point(kas_public_pem, kem))
    return open_sealed(key, sealed)


def _secret(data: bytes, kem: Kem, want: int) -> bytes:
    if len(data) != want:
        raise Internal(f"the key manager returned {len(data)} bytes for a {kem.name} decapsulation, "
                       f"keymanager.h says {want}")
    return data


@functools.lru_cache(maxsize=1024)  # public data: the stored PEM of a remote hybrid key
def _kas_point(public_pem: str, kem: Kem) -> bytes:
    key = load_hybrid_public(public_pem.encode("ascii"), "stored public key")
    if key is None or key.kem is not kem:
        raise Internal(f"the stored public key is not a {kem.name} key")
    return key.point


def open_sealed(key: bytes, sealed: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(sealed[:NONCE], sealed[NONCE:], None)
    except InvalidTag:
        # ML-KEM decapsulation never fails: a wrong key or altered ciphertext shows up here
        raise CryptoError("wrapped key failed authentication (tampered, or wrapped to another key)") from None


# ---- DER (the few shapes above; definite lengths only) --------------------------------------

def _tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def _field(data: bytes, pos: int, tag: int) -> tuple[int, int]:
    """(start, end) of the content of the element with `tag` at data[pos]; ValueError on any mismatch."""
    if len(data) < pos + 2 or data[pos] != tag:
        raise ValueError(f"expected tag 0x{tag:02x}")
    first = data[pos + 1]
    if first < 0x80:
        start, n = pos + 2, first
    else:
        k = first & 0x7F
        if k == 0 or k > 4 or len(data) < pos + 2 + k:
            raise ValueError("bad length")
        n = int.from_bytes(data[pos + 2:pos + 2 + k], "big")
        start = pos + 2 + k
    if len(data) < start + n:
        raise ValueError("truncated")
    return start, start + n


def _take(data: bytes, tag: int) -> tuple[bytes, bytes]:
    """(content of the leading element with `tag`, what follows); ValueError on any mismatch."""
    start, end = _field(data, 0, tag)
    return data[start:end], data[end:]


def _one(data: bytes, tag: int) -> bytes:
    content, rest = _take(data, tag)
    if rest:
        raise ValueError("trailing bytes")
    return content


_DEK_LAYOUTS = {k.name: _dek_layout(k) for k in KEMS.values()}
