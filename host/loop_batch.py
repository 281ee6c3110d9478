"""Work queued during one pass of an event loop and done once at the end of the pass.

The access line and the RPC counters of a call are written this way (host.server.logs,
host.metrics): done right after a Rewrap's crypto, their code runs cache-cold and costs
several times what a run of them costs at the end of the pass. Off an event loop (threads,
the CLI) an item is handled at once. Pending items are handled at exit, and whoever stops
a loop for good (a worker's shutdown) calls flush().
"""

from __future__ import annotations

import asyncio
import atexit
import collections
from typing import Callable


class LoopBatch:
    def __init__(self, handle: Callable[[list], None]):
        # A deque, so that an item queued by another thread while a loop handles the batch is
        # either in that batch or scheduled anew.
        self._items: collections.deque = collections.deque()
        self._handle = handle
        self._loop = None  # the loop on which a flush is scheduled
        atexit.register(self.flush)

    def add(self, item) -> None:
        self._items.append(item)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop here: now
            self.flush()
            return
        if loop is not self._loop:  # (another loop's pending flush may never run: that loop may close)
            loop.call_soon(self.flush)
            self._loop = loop

    def flush(self) -> None:
        """Handle what is queued (at the end of a loop pass; before a reader needs it; at exit)."""
        self._loop = None
        items = []
        while self._items:
            items.append(self._items.popleft())
        if items:
            self._handle(items)
