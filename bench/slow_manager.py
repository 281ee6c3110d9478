"""A key manager that behaves like a cloud KMS for provider mode: a fixed latency per call,
and it counts its calls (how many, and how many at once).

Real work, no stubs: wrap/unwrap are AES-256-GCM under a KEK from its config; each unwrap
sleeps `latency_ms` first (the GIL is released, as in a network call). Used by the cold
suite (bench/cold.py) and by tests/service/test_single_flight.py.

    counter = CallCounter()
    registry.register(factory(counter))      # manager name "bench-slow-kms"
    providers.create("kms", NAME, json.dumps({"kek": secrets.token_hex(32), "latency_ms": 20}))
"""

from __future__ import annotations

import json
import os
import threading
import time

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from host import errors
from host.managers.base import Capability, ManagerFactory

NAME = "bench-slow-kms"


class CallCounter:
    """Unwrap calls into every manager of one factory: total, in flight now, most at once."""

    def __init__(self):
        self._lock = threading.Lock()
        self.unwraps = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.fail = False  # True: every unwrap answers unavailable after its latency (a KMS outage)

    def enter(self) -> None:
        with self._lock:
            self.unwraps += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1


class SlowKms:
    def __init__(self, config: bytes, counter: CallCounter):
        conf = json.loads(config or b"{}")
        try:
            self._aead = AESGCM(bytes.fromhex(conf["kek"]))
        except (KeyError, ValueError, TypeError):
            raise errors.InvalidArgument(f"{NAME}: config needs kek (64 hex characters)") from None
        self.latency = float(conf.get("latency_ms", 20)) / 1000
        self.counter = counter

    def wrap(self, key_id: str, plain: bytes, ctx=None) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, plain, key_id.encode())

    def unwrap(self, key_id: str, wrapped: bytes, ctx=None) -> bytes:
        self.counter.enter()
        try:
            time.sleep(self.latency)
            if self.counter.fail:
                raise errors.Unavailable(f"{NAME}: the KMS is down")
            try:
                return self._aead.decrypt(wrapped[:12], wrapped[12:], key_id.encode())
            except Exception:
                raise errors.CryptoError(f"{NAME}: the wrapped key does not decrypt") from None
        finally:
            self.counter.leave()

    def public_key(self, key_id: str, ctx=None) -> str:
        raise errors.Unimplemented(f"{NAME} holds no asymmetric keys")

    def probe(self, ctx=None) -> None:
        pass

    def close(self) -> None:
        pass


def factory(counter: CallCounter) -> ManagerFactory:
    return ManagerFactory(NAME, Capability.THREAD_SAFE | Capability.WRAP | Capability.UNWRAP,
                          lambda config: SlowKms(config, counter), source="bench/slow_manager.py")
