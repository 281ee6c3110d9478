"""Service unwrap (one thread, warm caches) vs the raw `cryptography` work it needs.

Raw RSA: OAEP-SHA1 decrypt with the private key object.
Raw EC:  parse the client's ephemeral public key (PEM, as TDF clients send
         it), ECDH, HKDF-SHA256, AES-256-GCM open -- the same steps in a loop.
Raw ML-KEM: decapsulate the ciphertext at its fixed offset, AES-256-GCM open.
Raw hybrid:  the same, plus ECDH with the ephemeral point and the SHA3-256
             combiner (host.kem's construction, written out here).
Subject: KeyService.unwrap(kid, wrapped, ephemeral PEM) for a local-mode key
         and a provider-mode key (file-kek), its private key already cached
         (for the KEM keys: the whole DER envelope, parsed and checked).
"""

from __future__ import annotations

import hashlib
import os

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bench.results import Figure
from bench.timing import Budget, paired
from host import crypto

CASES = [("rsa:2048", 0.95), ("rsa:4096", None), ("ec:secp256r1", 0.80),
         ("mlkem:768", 0.90), ("hpqt:secp256r1-mlkem768", 0.90)]
MODES = [("local", None), ("provider", "fk")]


def client_wrap(public_key_pem: str, algorithm: str, dek: bytes):
    """What a TDF client sends: (wrapped DEK, ephemeral public key PEM or None)."""
    pub = crypto.load_public_pem(public_key_pem, algorithm)
    if crypto.is_ec(algorithm):
        wrapped, eph_pem = crypto.ec_wrap(pub, dek)
        return wrapped, eph_pem.encode()
    if algorithm in crypto.KEMS:
        return crypto.kem.wrap(pub, crypto.KEMS[algorithm], dek), None
    return crypto.rsa_wrap(pub, dek), None


def raw_unwrap(private_pem: bytes, algorithm: str, wrapped: bytes, eph_pem: bytes | None):
    """A zero-argument callable doing exactly the cryptographic work of one unwrap."""
    if algorithm in crypto.KEMS:
        return _raw_kem(crypto.load_private_pem(private_pem, algorithm), crypto.KEMS[algorithm], wrapped)
    private = serialization.load_pem_private_key(private_pem, password=None)
    if not crypto.is_ec(algorithm):
        oaep = crypto.OAEP_SHA1
        return lambda: private.decrypt(wrapped, oaep)
    salt = crypto.TDF_SALT
    nonce, body = wrapped[:12], wrapped[12:]

    def ec_raw():
        eph = serialization.load_pem_public_key(eph_pem)
        shared = private.exchange(ec.ECDH(), eph)
        kek = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=None).derive(shared)
        return AESGCM(kek).decrypt(nonce, body, None)

    return ec_raw


def _raw_kem(private, spec, wrapped: bytes):
    """Decapsulation (+ ECDH and the combiner for a hybrid) + AES-GCM, at the envelope's known offsets
    (4-byte SEQUENCE and [0] headers; the [1] header is 2 bytes for a 32-byte DEK)."""
    n, start = spec.ciphertext_len, 8
    end = start + n + spec.point_len
    sealed = wrapped[end + 2:]
    if spec.curve is None:
        def mlkem_raw():
            key = private.decapsulate(wrapped[start:end])
            return AESGCM(key).decrypt(sealed[:12], sealed[12:], None)
        return mlkem_raw
    curve, label, static_point = spec.curve(), spec.label, private.public_key().point

    def hybrid_raw():
        ss = private.mlkem.decapsulate(wrapped[start:start + n])
        point = wrapped[start + n:end]
        ecdh = private.ec.exchange(ec.ECDH(), ec.EllipticCurvePublicKey.from_encoded_point(curve, point))
        key = hashlib.sha3_256(ss + ecdh + point + static_point + label).digest()
        return AESGCM(key).decrypt(sealed[:12], sealed[12:], None)
    return hybrid_raw


def run(env, budget: Budget) -> list[Figure]:
    figures = []
    for algorithm, target in CASES:
        for mode, config in MODES:
            key, pem = env.key(algorithm, mode, config)
            dek = os.urandom(32)
            wrapped, eph = client_wrap(key.public_key_pem, algorithm, dek)
            service = env.keys
            kid = key.key_id

            def subject(kid=kid, wrapped=wrapped, eph=eph):
                return service.unwrap(kid, wrapped, eph)

            baseline = raw_unwrap(pem, algorithm, wrapped, eph)
            assert subject() == dek and baseline() == dek
            result = paired(baseline, subject, budget)
            figures.append(Figure.ratio(
                f"unwrap {algorithm} {mode}", result.ratio, "x raw", target,
                note=f"service {result.subject_rate:,.0f}/s vs raw cryptography {result.baseline_rate:,.0f}/s "
                     f"per CPU-second; wall-clock ratio {result.wall_ratio:.3f}",
                **result.detail()))
    return figures
