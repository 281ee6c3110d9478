"""The conformance checks of build/km-conformance, run through the Python host.

`check_manager(factory, config)` exercises one ManagerFactory the way the
key service will: bad configs, probe, round trips, tampering, unknown keys,
public key + RSA-OAEP/ECDH remote unwrap, concurrency, close.
"""

from __future__ import annotations

import os
import threading

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from host import crypto, errors
from host.managers.base import CallContext, Capability


def check_bad_configs(factory) -> None:
    for bad in (b"{not json", b"[1, 2]", b"", b"\xff\xfe"):
        with pytest.raises(errors.PlatformError) as e:
            factory.create(bad).close()
        assert e.value.code in ("invalid_argument", "failed_precondition"), (bad, e.value)


def check_manager(factory, config: bytes, *, key_id: str = "", unknown_key_id: str = "no-such-key-xyz",
                  threads: int = 4) -> dict:
    """Returns what was exercised, so callers can assert coverage."""
    done = {}
    check_bad_configs(factory)
    m = factory.create(config)
    try:
        ctx = CallContext.with_timeout(30)
        m.probe(ctx)
        caps = factory.capabilities
        can_wrap = Capability.WRAP in caps and Capability.UNWRAP in caps
        if can_wrap:
            try:  # like the C runner: a default key that cannot wrap (RSA/EC in an HSM) skips round trips
                m.wrap(key_id, b"probe", ctx)
            except (errors.Unimplemented, errors.InvalidArgument):
                can_wrap = False
        if can_wrap:
            for size in (1, 32, 4096):
                plain = os.urandom(size)
                wrapped = m.wrap(key_id, plain, ctx)
                assert wrapped != plain
                assert m.unwrap(key_id, wrapped, ctx) == plain
            tampered = bytearray(m.wrap(key_id, b"k" * 32, ctx))
            tampered[len(tampered) // 2] ^= 1
            with pytest.raises(errors.CryptoError):
                m.unwrap(key_id, bytes(tampered), ctx)
            with pytest.raises((errors.NotFound, errors.InvalidArgument)):
                m.wrap(unknown_key_id, b"x", ctx)
            done["round_trip"] = True
        if Capability.PUBLIC_KEY in caps:
            pem = m.public_key(key_id, ctx)
            pub = serialization.load_pem_public_key(pem.encode())
            done["public_key"] = True
            if Capability.UNWRAP in caps and isinstance(pub, rsa.RSAPublicKey):
                dek = os.urandom(32)
                assert m.unwrap(key_id, crypto.rsa_wrap(pub, dek), ctx) == dek
                done["remote_rsa"] = True
            elif Capability.UNWRAP in caps and isinstance(pub, ec.EllipticCurvePublicKey):
                eph = ec.generate_private_key(pub.curve)
                shared = m.unwrap(key_id, crypto.ephemeral_der(eph.public_key()), ctx)
                assert shared == eph.exchange(ec.ECDH(), pub)
                done["remote_ec"] = True
        if factory.thread_safe and "round_trip" in done:
            failures = []

            def work():
                try:
                    for _ in range(25):
                        p = os.urandom(32)
                        assert m.unwrap(key_id, m.wrap(key_id, p), None) == p
                except Exception as e:  # collected and reported below
                    failures.append(e)

            ts = [threading.Thread(target=work) for _ in range(threads)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            assert not failures, failures
            done["threads"] = True
    finally:
        m.close()
    with pytest.raises(errors.Unavailable):
        m.unwrap(key_id, b"x")
    return done
