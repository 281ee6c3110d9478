"""Service unwrap (one thread, warm caches) vs the raw `cryptography` work it needs.

Raw RSA: OAEP-SHA1 decrypt with the private key object.
Raw EC:  parse the client's ephemeral public key (PEM, as TDF clients send
         it), ECDH, HKDF-SHA256, AES-256-GCM open -- the same steps in a loop.
Subject: KeyService.unwrap(kid, wrapped, ephemeral PEM) for a local-mode key
         and a provider-mode key (file-kek), its private key already cached.
"""

from __future__ import annotations

import os

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bench.results import Figure
from bench.timing import Budget, paired
from host import crypto

CASES = [("rsa:2048", 0.95), ("rsa:4096", None), ("ec:secp256r1", 0.80)]
MODES = [("local", None), ("provider", "fk")]


def client_wrap(public_key_pem: str, algorithm: str, dek: bytes):
    """What a TDF client sends: (wrapped DEK, ephemeral public key PEM or None)."""
    pub = crypto.load_public_pem(public_key_pem, algorithm)
    if crypto.is_ec(algorithm):
        wrapped, eph_pem = crypto.ec_wrap(pub, dek)
        return wrapped, eph_pem.encode()
    return crypto.rsa_wrap(pub, dek), None


def raw_unwrap(private_pem: bytes, algorithm: str, wrapped: bytes, eph_pem: bytes | None):
    """A zero-argument callable doing exactly the cryptographic work of one unwrap."""
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
