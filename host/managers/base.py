"""The manager protocol shared by built-in and plugin-backed managers.

This is the seed document's KeyManager interface (wrap, unwrap, public key)
plus `probe` and `close`. The registry and the key service only ever see
this protocol, never whether a manager is Python or a C plugin.
"""

from __future__ import annotations

import enum
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Protocol, runtime_checkable


class Capability(enum.IntFlag):
    """Same bits as KM_CAP_* in include/keymanager.h."""

    THREAD_SAFE = 1
    WRAP = 2
    UNWRAP = 4
    PUBLIC_KEY = 8
    PROBE = 16
    KEM = 32   # unwrap decapsulates remote KEM keys


@dataclass(frozen=True, slots=True)
class CallContext:
    """Deadline and request id for one manager call.

    `deadline` is a time.monotonic() value or None (no deadline).
    """

    request_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    deadline: float | None = None

    @classmethod
    def with_timeout(cls, seconds: float | None, request_id: str | None = None) -> "CallContext":
        deadline = None if seconds is None else time.monotonic() + seconds
        return cls(request_id=request_id or uuid.uuid4().hex[:16], deadline=deadline)

    def remaining_ms(self) -> int:
        """Milliseconds left (>= 1), or 0 when there is no deadline."""
        if self.deadline is None:
            return 0
        return max(1, int((self.deadline - time.monotonic()) * 1000))

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline


@runtime_checkable
class KeyManager(Protocol):
    """A live manager built from one provider configuration.

    `key_id` names a key inside the external system; "" means the default key
    of the manager's config. Errors are host.errors.PlatformError subclasses.
    """

    def wrap(self, key_id: str, plain: bytes, ctx: CallContext | None = None) -> bytes: ...

    def unwrap(self, key_id: str, wrapped: bytes, ctx: CallContext | None = None) -> bytes: ...

    def public_key(self, key_id: str, ctx: CallContext | None = None) -> str: ...

    def probe(self, ctx: CallContext | None = None) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ManagerFactory:
    """A named way to build managers: a built-in class or a plugin factory."""

    name: str
    capabilities: Capability
    create: Callable[[bytes], KeyManager]
    source: str = "built-in"  # plugin path for plugin factories
    plugin_name: str = ""
    plugin_version: str = ""
    abi_version: str = ""

    @property
    def thread_safe(self) -> bool:
        return bool(self.capabilities & Capability.THREAD_SAFE)

    def describe(self) -> dict:
        caps = [c.name.lower() for c in Capability if c in self.capabilities and c is not Capability.THREAD_SAFE]
        return {
            "name": self.name,
            "path": self.source,
            "plugin": self.plugin_name,
            "abi_version": self.abi_version,
            "plugin_version": self.plugin_version,
            "thread_safe": self.thread_safe,
            "capabilities": caps,
        }
