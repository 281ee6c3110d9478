"""Key formats and the DEK wrap formats TDF clients use (DESIGN.md "Formats").

- RSA: OAEP with SHA-1 and MGF1-SHA-1.
- EC: ephemeral ECDH on the key's curve, HKDF-SHA256 (salt SHA-256("TDF"),
  no info, 32 bytes), AES-256-GCM: `nonce(12) || ciphertext || tag(16)`.
  `seal_dek` is the one place a DEK is sealed to a public key, whoever seals it
  (a TDF writer to the KAS key, the KAS to the Rewrap client).
- ML-KEM and the ML-KEM + EC hybrids: host.kem.
"""

from __future__ import annotations

import hashlib
import os

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hmac import HMAC
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from host import kem
from host.errors import CryptoError, InvalidArgument

RSA_BITS = {"rsa:2048": 2048, "rsa:4096": 4096}
EC_CURVES = {"ec:secp256r1": ec.SECP256R1, "ec:secp384r1": ec.SECP384R1, "ec:secp521r1": ec.SECP521R1}
KEMS = kem.KEMS
ALGORITHMS = tuple(RSA_BITS) + tuple(EC_CURVES) + tuple(KEMS)
# The key access object `type` a client writes for a key of each algorithm.
KAO_TYPES = {**{a: "wrapped" for a in RSA_BITS}, **{a: "ec-wrapped" for a in EC_CURVES},
             **{a: k.kao_type for a, k in KEMS.items()}}
TDF_SALT = hashlib.sha256(b"TDF").digest()
OAEP_SHA1 = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
_SHA256 = hashes.SHA256()  # stateless: one instance for every HKDF and HMAC

# SHA-256 on the request path with CPython's own implementation: measured inside the served
# Rewrap call, hashlib's OpenSSL-backed sha256 (Python 3.11, OpenSSL 3.0) costs ~3.8 us a call
# against ~1.2 us, though alone both take ~0.35 us: the OpenSSL path runs cache-cold between
# requests. Same digest (tests/tdf and tests/server check every binding and token through it).
try:
    from _sha256 import sha256 as _builtin_sha256  # CPython 3.11
except ImportError:  # pragma: no cover - CPython 3.12+ names it _sha2; anything else: hashlib's
    try:
        from _sha2 import sha256 as _builtin_sha256
    except ImportError:
        _builtin_sha256 = hashlib.sha256


def sha256(data: bytes) -> bytes:
    """SHA-256 digest of `data`."""
    return _builtin_sha256(data).digest()


def check_algorithm(algorithm: str) -> str:
    if algorithm not in ALGORITHMS:
        raise InvalidArgument(f"algorithm must be one of {', '.join(ALGORITHMS)}; got {algorithm!r}")
    return algorithm


def is_ec(algorithm: str) -> bool:
    return algorithm in EC_CURVES


def generate_private_key(algorithm: str):
    check_algorithm(algorithm)
    if algorithm in RSA_BITS:
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS[algorithm])
    if algorithm in KEMS:
        return kem.generate(KEMS[algorithm])
    return ec.generate_private_key(EC_CURVES[algorithm]())


private_pem = kem.private_pem  # PKCS#8 for every key type (the hybrids written by host.kem)
public_pem = kem.public_pem    # SPKI for every key type


def _check_matches(key, algorithm: str, what: str) -> None:
    if algorithm in KEMS or kem.kem_of(key) is not None:
        if kem.kem_of(key) is not KEMS.get(algorithm):
            raise InvalidArgument(f"{what} is not an {algorithm} key")
    elif algorithm in RSA_BITS:
        if not isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)) or key.key_size != RSA_BITS[algorithm]:
            raise InvalidArgument(f"{what} is not an {algorithm} key")
    elif not isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)) \
            or not isinstance(key.curve, EC_CURVES[algorithm]):
        raise InvalidArgument(f"{what} is not an {algorithm} key")


def load_private_pem(pem: bytes | str, algorithm: str, what: str = "private key PEM", *, authenticated: bool = False):
    """`authenticated`: the PEM came out of an authenticated decryption of what
    this platform stored after validating it (root key or manager unwrap), so
    the RSA consistency check -- primality tests costing ~35 ms for RSA-2048
    and ~250 ms for RSA-4096 on every provider-mode cache refill -- is skipped."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_private_key(data, password=None, unsafe_skip_rsa_key_validation=authenticated)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        key = kem.load_hybrid_private(data, what)  # composite-KEM OIDs, which OpenSSL does not know
        if key is None:
            raise InvalidArgument(f"{what} does not parse as an unencrypted PEM private key") from None
    _check_matches(key, algorithm, what)
    return key


def load_public_pem(pem: bytes | str, algorithm: str, what: str = "public key PEM"):
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        key = kem.load_hybrid_public(data, what)
        if key is None:
            raise InvalidArgument(f"{what} does not parse as a PEM public key") from None
    _check_matches(key, algorithm, what)
    return key


def same_public_key(a, b) -> bool:
    return public_pem(a) == public_pem(b)


# ---- RSA ---------------------------------------------------------------------

def rsa_wrap(public_key, dek: bytes) -> bytes:
    return public_key.encrypt(dek, OAEP_SHA1)


def rsa_unwrap(private_key, wrapped: bytes) -> bytes:
    try:
        return private_key.decrypt(wrapped, OAEP_SHA1)
    except ValueError:
        raise CryptoError("wrapped key does not decrypt with this KAS key (tampered, or wrapped to another key)") from None


# ---- EC ----------------------------------------------------------------------

def hmac_sha256(key: bytes, data: bytes) -> bytes:
    """HMAC-SHA256 (a TDF policy binding) with the OpenSSL `cryptography` links, the one the
    rest of a Rewrap's crypto runs in: in a Rewrap it costs ~3.5 us against ~9 us for
    `hmac.digest(.., hashlib.sha256)` through the interpreter's own libcrypto (2 us each alone)."""
    mac = HMAC(key, _SHA256)
    mac.update(data)
    return mac.finalize()


def derive_wrap_key(shared_secret: bytes, salt: bytes = TDF_SALT) -> bytes:
    return HKDF(_SHA256, 32, salt, None).derive(shared_secret)


def load_ephemeral_public_key(data: bytes | str, algorithm: str):
    """The client's ephemeral EC public key: PEM, DER SPKI or an uncompressed/compressed point."""
    raw = data.encode() if isinstance(data, str) else data
    curve = EC_CURVES[algorithm]()
    try:
        if raw.startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(raw)
        elif raw[:1] in (b"\x02", b"\x03", b"\x04"):
            key = ec.EllipticCurvePublicKey.from_encoded_point(curve, raw)
        else:
            key = serialization.load_der_public_key(raw)
    except (ValueError, TypeError, UnsupportedAlgorithm, IndexError):
        raise InvalidArgument(f"ephemeral public key does not parse as a point on {algorithm}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != curve.name:
        raise InvalidArgument(f"ephemeral public key is not on the KAS key's curve ({algorithm})")
    return key


def ephemeral_der(key) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def aes_gcm_open(key: bytes, blob: bytes, what: str = "wrapped key") -> bytes:
    if len(blob) < 12 + 16:
        raise CryptoError(f"{what} is too short for AES-256-GCM")
    try:
        return AESGCM(key).decrypt(blob[:12], blob[12:], None)
    except InvalidTag:
        raise CryptoError(f"{what} failed authentication (tampered, or wrapped to another key)") from None


def aes_gcm_seal(key: bytes, plain: bytes) -> bytes:
    nonce = os.urandom(12)
    return nonce + AESGCM(key).encrypt(nonce, plain, None)


def seal_dek(public_key, dek: bytes, session_key=None, salt: bytes = TDF_SALT) -> bytes:
    """A DEK sealed to an RSA or EC public key, as OpenTDF wraps and rewraps them.

    RSA: OAEP-SHA1. EC: AES-256-GCM (`nonce || ciphertext || tag`) under
    HKDF-SHA256(ECDH(session_key, public_key), salt, no info, 32 bytes), where
    `session_key` is the sealer's EC private key on the same curve: a fresh one per
    wrap for a TDF writer (`ec_wrap`), one per Rewrap response for the KAS, whose
    public half goes to the client. Salt SHA-256("TDF"), or SHA-256("L1L") for NanoTDF.
    """
    if isinstance(public_key, rsa.RSAPublicKey):
        return rsa_wrap(public_key, dek)
    shared = session_key.exchange(ec.ECDH(), public_key)
    return aes_gcm_seal(derive_wrap_key(shared, salt), dek)


def ec_wrap(public_key, dek: bytes) -> tuple[bytes, str]:
    """Wrap a DEK to an EC public key: (wrapped, ephemeral public key PEM)."""
    eph = ec.generate_private_key(public_key.curve)
    return seal_dek(public_key, dek, eph), public_pem(eph)


def ec_unwrap(private_key, ephemeral_public_key, wrapped: bytes) -> bytes:
    shared = private_key.exchange(ec.ECDH(), ephemeral_public_key)
    return aes_gcm_open(derive_wrap_key(shared), wrapped)
