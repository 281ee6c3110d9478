"""Which provider configs changed: one query per period per process, off the request path.

A daemon thread asks the store every `period` seconds for the configs updated
in the last WINDOW_SECONDS ({id: revision}, one indexed query whatever the
number of configs or keys) and hands the revisions it has not announced twice
yet to `on_change`, which drops whatever was cached under another revision.
Announcing twice covers a lookup that read the old revision just before the
change committed (it is dropped one check later); the window covers writer
clocks up to WINDOW_SECONDS apart and long write transactions.

Each wait is uniform in [period/2, period], so nodes started together drift
apart and a change is seen within `period` plus one query. A slow or failing
database delays how soon a change is seen, never a request.

period 0: no thread; the owner calls check() inline on every lookup (tests, tools).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import random
import threading
import time
import weakref
from typing import Callable

log = logging.getLogger(__name__)

WINDOW_SECONDS = 60.0
ANNOUNCE_TIMES = 2


class RevisionWatch:
    def __init__(self, providers, period: float, on_change: Callable[[dict[str, int]], None]):
        self._providers = providers
        self.period = period
        self._on_change = on_change
        self._lock = threading.Lock()          # single flight: one query at a time per process
        self._announced: dict[str, tuple[int, int]] = {}   # config id -> (revision, times announced)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.next_check = 0.0                  # monotonic time of the thread's next query
        self.checks = self.failures = 0
        self.last_ok: float | None = None
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: (w := ref()) is not None and w._forked())

    def _forked(self) -> None:
        # The thread did not survive the fork; the next start() makes this process its own.
        self._thread = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Run the thread (idempotent; nothing when period is 0 or after close)."""
        if self._thread is not None or self.period <= 0 or self._stop.is_set():
            return
        with self._lock:
            if self._thread is None:
                self.next_check = time.monotonic() + self._delay()
                self._thread = threading.Thread(target=_loop, args=(weakref.ref(self), self._stop),
                                                name="revision-watch", daemon=True)
                self._thread.start()

    def _delay(self) -> float:
        return self.period * random.uniform(0.5, 1.0)

    def check(self) -> None:
        """One query now; on_change gets the revisions that are new (or new one check ago)."""
        since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=WINDOW_SECONDS)
        with self._lock:
            self.checks += 1
            try:
                current = self._providers.changed_since(since)
            except Exception as e:  # the database is down or slow: keep serving what is cached
                self.failures += 1
                log.warning("provider-config revision check failed: %s", e)
                return
            self.last_ok = time.monotonic()
            news = {}
            for config_id, revision in current.items():
                rev, times = self._announced.get(config_id, (None, 0))
                if rev != revision:
                    rev, times = revision, 0
                if times < ANNOUNCE_TIMES:
                    news[config_id] = revision
                    self._announced[config_id] = (rev, times + 1)
            for config_id in [c for c in self._announced if c not in current]:
                del self._announced[config_id]  # out of the window: forget it
        if news:
            self._on_change(news)

    def close(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def stats(self) -> dict:
        return {"period_seconds": self.period, "checks": self.checks, "failures": self.failures,
                "seconds_since_ok": None if self.last_ok is None else round(time.monotonic() - self.last_ok, 3)}


def _loop(ref, stop: threading.Event) -> None:
    """The thread: holds the watch only while it checks, so a dropped owner ends it."""
    while True:
        watch = ref()
        if watch is None:
            return
        delay = watch.next_check - time.monotonic()
        del watch
        if stop.wait(max(0.0, delay)):
            return
        watch = ref()
        if watch is None:
            return
        if watch.period > 0:
            watch.check()
            watch.next_check = time.monotonic() + watch._delay()
        else:  # switched to inline checks: idle until switched back
            watch.next_check = time.monotonic() + 1.0
        del watch
