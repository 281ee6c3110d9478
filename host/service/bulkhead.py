"""A bound on the calls in flight into each live manager, so one slow backend cannot take them all.

A KMS that accepts connections and never answers holds every call made into it until the
call's deadline. Without a bound, a burst of Rewraps for its keys would occupy every worker
thread and stall keys served by other managers, local keys included. With one, the calls
beyond the bound fail at once with `unavailable` and a retry hint, and the rest of the
platform never notices.

    PLATFORM_MANAGER_MAX_CONCURRENCY   16   calls in flight per live manager (provider config)
"""

from __future__ import annotations

import threading

from host import errors

ENV = "PLATFORM_MANAGER_MAX_CONCURRENCY"
DEFAULT_LIMIT = 16
RETRY_AFTER_SECONDS = 1


class Bulkhead:
    def __init__(self, limit: int = DEFAULT_LIMIT):
        if limit < 1:
            raise errors.InvalidArgument(f"{ENV} must be at least 1")
        self.limit = limit
        self._in_flight: dict[str, int] = {}   # provider config id -> calls in flight
        self._lock = threading.Lock()

    def enter(self, slot: str, manager_name: str) -> None:
        """Take a place for one call into the manager of provider config `slot`, or refuse."""
        with self._lock:
            n = self._in_flight.get(slot, 0)
            if n >= self.limit:
                raise errors.Unavailable(
                    f"manager {manager_name!r} has {n} calls in flight, its limit; retry after "
                    f"{RETRY_AFTER_SECONDS} s", retry_after=RETRY_AFTER_SECONDS)
            self._in_flight[slot] = n + 1

    def leave(self, slot: str) -> None:
        with self._lock:
            n = self._in_flight[slot] - 1
            if n:
                self._in_flight[slot] = n
            else:
                del self._in_flight[slot]

    def in_flight(self) -> dict[str, int]:
        with self._lock:
            return dict(self._in_flight)


def limit_from_env(env) -> int:
    raw = (env.get(ENV) or "").strip()
    if not raw:
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= 4096:
        raise errors.InvalidArgument(f"{ENV} must be an integer from 1 to 4096, got {raw[:20]!r}")
    return int(raw)
