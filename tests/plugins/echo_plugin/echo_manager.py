"""Test manager for the pyembed adapter: each special key id triggers one path.

wrap/unwrap: "ECHO:" + plain; the special key ids raise the adapter's error
kinds, host.errors kinds, unknown exceptions (with a secret in the message),
wrong return types, or wait on a barrier to prove concurrent calls.
"""

from __future__ import annotations

import threading
import time

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import km_pyembed
from km_pyembed import (CryptoError, Deadline, DeadlineExceeded, InvalidArgument, NotFound,
                        PermissionDenied, Unavailable)

PREFIX = b"ECHO:"


class EchoManager:
    def __init__(self, config: dict):
        unknown = set(config) - {"secret", "parties"}
        if unknown:
            raise InvalidArgument(f"unknown config keys: {sorted(unknown)}")
        self._secret = config.get("secret", "")
        parties = config.get("parties", 4)
        if not isinstance(parties, int) or parties < 1:
            raise InvalidArgument("parties must be a positive integer")
        self._barrier = threading.Barrier(parties)
        self._active = 0
        self._max_active = 0
        self._count_lock = threading.Lock()
        self._key = ec.generate_private_key(ec.SECP256R1())
        km_pyembed.log(km_pyembed.INFO, "echo manager created")

    def _special(self, key_id: str, timeout: float | None) -> None:
        if key_id == "missing":
            raise NotFound("key 'missing' does not exist")
        if key_id == "denied":
            raise PermissionDenied("credentials refused")
        if key_id == "down":
            raise Unavailable("backend unavailable")
        if key_id == "boom":
            raise RuntimeError(f"unexpected failure holding {self._secret}")
        if key_id == "notimpl":
            raise NotImplementedError(self._secret)
        if key_id.startswith("host-"):
            from host import errors as host_errors

            cls = {"host-unavailable": host_errors.Unavailable, "host-notfound": host_errors.NotFound,
                   "host-crypto": host_errors.CryptoError}[key_id]
            raise cls(f"host error {key_id}")
        if key_id == "wait-deadline":
            # Blocks until the call's deadline, then gives up as the ABI asks.
            deadline = Deadline(timeout)
            if timeout is None:
                raise InvalidArgument("wait-deadline needs a deadline")
            while not deadline.expired():
                time.sleep(0.005)
            raise DeadlineExceeded("gave up at the deadline")
        if key_id == "log":
            km_pyembed.log(km_pyembed.WARN, f"request {km_pyembed.request_id()} timeout={timeout}")
        if key_id == "barrier":
            # Only passes when `parties` calls are inside the manager at once.
            self._barrier.wait(timeout=30)
        if key_id == "count":
            with self._count_lock:
                self._active += 1
                self._max_active = max(self._max_active, self._active)
            time.sleep(0.01)  # let other threads try to enter
            with self._count_lock:
                self._active -= 1

    def wrap(self, key_id: str, plain: bytes, timeout: float | None) -> bytes:
        self._special(key_id, timeout)
        if key_id == "badtype":
            return "not bytes"
        if key_id == "max-active":
            return str(self._max_active).encode()
        return PREFIX + plain

    def unwrap(self, key_id: str, wrapped: bytes, timeout: float | None) -> bytes:
        self._special(key_id, timeout)
        if not wrapped.startswith(PREFIX):
            raise CryptoError("ciphertext was not produced by this manager")
        return wrapped[len(PREFIX):]

    def public_key(self, key_id: str, timeout: float | None) -> str:
        self._special(key_id, timeout)
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def probe(self, timeout: float | None) -> None:
        if self._secret == "fail-probe":
            raise Unavailable("probe failed")

    def close(self) -> None:
        if self._secret == "fail-close":
            raise RuntimeError("close failed with " + self._secret)
