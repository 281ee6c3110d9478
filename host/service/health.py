"""What each live manager's calls say about its backend: healthy, failing since when, or not yet called.

Like the status a Kubernetes KMS v2 plugin reports, but learned from the calls the platform
makes anyway (Rewraps, probes, key creation) instead of an extra call per health check. A
call whose answer came from the backend (even a refusal) counts as healthy; a call that could
not reach it (unavailable, deadline exceeded, internal) counts as failing. /readyz shows it;
a failing manager does not make the server unready, since its other keys still serve.
"""

from __future__ import annotations

import threading
import time

FAILING_CODES = frozenset({"unavailable", "deadline_exceeded", "internal", "unknown"})


class ManagerHealth:
    def __init__(self):
        # provider config id -> [manager name, failing since (wall time) or None, last code, last call time]
        self._by_slot: dict[str, list] = {}
        self._lock = threading.Lock()

    def record(self, slot: str, manager_name: str, code: str) -> None:
        now = time.time()
        entry = self._by_slot.get(slot)
        if entry is None:
            with self._lock:
                entry = self._by_slot.setdefault(slot, [manager_name, None, "ok", now])
        if code in FAILING_CODES:
            if entry[1] is None:
                entry[1] = now
        else:
            entry[1] = None
        entry[2], entry[3] = code, now

    def snapshot(self) -> dict[str, dict]:
        """provider config id -> {"manager", "status": healthy|failing, "since"?, "last_code", "last_call"}."""
        out = {}
        for slot, (name, failing_since, code, last) in list(self._by_slot.items()):
            doc = {"manager": name, "status": "failing" if failing_since else "healthy", "last_code": code,
                   "last_call": _iso(last)}
            if failing_since:
                doc["since"] = _iso(failing_since)
            out[slot] = doc
        return out


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
