"""A small bounded cache with optional TTL, safe to read from many threads.

Reads are a dict lookup and a clock compare (the unwrap path is hot);
writes take a lock and evict beyond `max_entries`: the oldest entry, or with
evict="random" a random one. Oldest-first keeps nothing when traffic cycles
over more keys than the cache holds (every call a miss: a cliff at exactly
`max_entries`); random eviction keeps a share of them, so hits fall off
gradually past the bound instead.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any, Callable, Hashable


class BoundedCache:
    def __init__(self, name: str, max_entries: int, ttl: float | None = None,
                 clock: Callable[[], float] = time.monotonic, evict: str = "oldest"):
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        if evict not in ("oldest", "random"):
            raise ValueError("evict must be 'oldest' or 'random'")
        self.name = name
        self.max_entries = max_entries
        self.ttl = ttl
        self._clock = clock
        self._data: dict[Hashable, tuple[float, Any]] = {}
        self._lock = threading.Lock()
        # evict="random": the keys in a list (and each key's index), for an O(1) random victim
        self._slots: list[Hashable] | None = [] if evict == "random" else None
        self._slot_of: dict[Hashable, int] = {}
        self.hits = 0
        self.misses = 0
        # Prometheus children bound once: a lookup costs one counter increment.
        from host.metrics import CACHE_EVENTS
        self._hit_counter = CACHE_EVENTS.labels(name, "hit")
        self._miss_counter = CACHE_EVENTS.labels(name, "miss")

    def get(self, key: Hashable) -> Any | None:
        entry = self._data.get(key)
        if entry is not None and (entry[0] == 0.0 or entry[0] > self._clock()):
            self.hits += 1
            self._hit_counter.inc()
            return entry[1]
        self.misses += 1
        self._miss_counter.inc()
        return None

    def peek(self, key: Hashable, margin: float = 0.0) -> Any | None:
        """The value when present and not expiring within `margin` seconds; not a lookup (no hit/miss counted)."""
        entry = self._data.get(key)
        if entry is not None and (entry[0] == 0.0 or entry[0] > self._clock() + margin):
            return entry[1]
        return None

    def put(self, key: Hashable, value: Any, ttl: float | None = None) -> None:
        ttl = self.ttl if ttl is None else ttl
        expires = 0.0 if not ttl else self._clock() + ttl
        with self._lock:
            if self._slots is None:
                self._data.pop(key, None)
                self._data[key] = (expires, value)
                while len(self._data) > self.max_entries:
                    del self._data[next(iter(self._data))]
                return
            if key not in self._data:
                if len(self._data) >= self.max_entries:
                    self._remove(self._slots[random.randrange(len(self._slots))])
                self._slot_of[key] = len(self._slots)
                self._slots.append(key)
            self._data[key] = (expires, value)

    def _remove(self, key: Hashable) -> None:
        """Drop `key` (lock held); random mode moves the last slot into its place."""
        if self._data.pop(key, None) is None or self._slots is None:
            return
        i = self._slot_of.pop(key)
        last = self._slots.pop()
        if last != key:
            self._slots[i] = last
            self._slot_of[last] = i

    def pop(self, key: Hashable) -> None:
        with self._lock:
            self._remove(key)

    def pop_where(self, predicate: Callable[[Hashable, Any], bool]) -> int:
        """Drop every entry for which predicate(key, value) holds; how many were dropped."""
        with self._lock:
            doomed = [k for k, (_, v) in self._data.items() if predicate(k, v)]
            for k in doomed:
                self._remove(k)
            return len(doomed)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            if self._slots is not None:
                self._slots.clear()
                self._slot_of.clear()

    def __len__(self) -> int:
        return len(self._data)

    def stats(self) -> dict:
        total = self.hits + self.misses
        return {"entries": len(self._data), "max_entries": self.max_entries, "ttl_seconds": self.ttl,
                "hits": self.hits, "misses": self.misses,
                "hit_ratio": round(self.hits / total, 4) if total else None}
