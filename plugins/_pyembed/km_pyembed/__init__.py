"""What a Python key-manager plugin imports: errors, logging, call context.

    from km_pyembed import InvalidArgument, NotFound, PermissionDenied, log, INFO

A manager class (declared in the plugin's plugin.toml) implements

    __init__(self, config: dict)                       raise InvalidArgument on bad config
    wrap(self, key_id: str, plain: bytes, timeout: float | None) -> bytes
    unwrap(self, key_id: str, wrapped: bytes, timeout: float | None) -> bytes
    public_key(self, key_id: str, timeout: float | None) -> str   (PEM)
    probe(self, timeout: float | None) -> None
    close(self) -> None

`timeout` is the seconds left for the call (None = no deadline); give up
with DeadlineExceeded rather than block past it.
"""

from __future__ import annotations

import logging
import threading
import time

from km_pyembed.errors import (
    CryptoError,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    ManagerError,
    NotFound,
    PermissionDenied,
    Unavailable,
    Unimplemented,
)

DEBUG, INFO, WARN, ERROR = 10, 20, 30, 40

__all__ = [
    "CryptoError", "DeadlineExceeded", "FailedPrecondition", "Internal", "InvalidArgument", "ManagerError",
    "NotFound", "PermissionDenied", "Unavailable", "Unimplemented",
    "DEBUG", "INFO", "WARN", "ERROR", "log", "request_id", "Deadline",
]

# Set by the runtime around every call: which plugin's host log to use and
# the request id to pass with it. Outside a call (e.g. unit tests of the
# class), log() falls back to Python logging.
_call = threading.local()
_fallback = logging.getLogger("km_pyembed")


def log(level: int, message: str) -> None:
    """Log through the host's km_host.log callback. Never log secrets."""
    sink = getattr(_call, "sink", None)
    if sink is not None:
        sink(level, getattr(_call, "request_id", None), message)
    else:
        _fallback.log(level, message)


def request_id() -> str | None:
    """The host's request id of the call in progress (None outside calls)."""
    return getattr(_call, "request_id", None)


class Deadline:
    """A call's deadline from its timeout; remaining() feeds SDK timeouts."""

    __slots__ = ("at",)

    def __init__(self, timeout: float | None):
        self.at = None if timeout is None else time.monotonic() + timeout

    def remaining(self) -> float | None:
        """Seconds left (may be <= 0), or None without a deadline."""
        return None if self.at is None else self.at - time.monotonic()

    def expired(self) -> bool:
        return self.at is not None and time.monotonic() >= self.at

    def check(self, what: str = "call") -> None:
        if self.expired():
            raise DeadlineExceeded(f"{what}: deadline exceeded")

    def left(self, what: str = "call") -> float | None:
        """Seconds left for an SDK timeout (None: no deadline); DeadlineExceeded once passed."""
        if self.at is None:
            return None
        left = self.at - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded(f"{what}: the call's deadline passed")
        return left
