"""Where a repository gets its session: a fresh transaction per call, or the
one transaction of a Store.transaction() block (so several repository calls
commit or roll back together)."""

from __future__ import annotations

import datetime as dt
from contextlib import contextmanager
from typing import Iterator, Protocol

from sqlalchemy.orm import Session

from host.store.db import Database


class SessionSource(Protocol):
    db: Database

    def session(self, write: bool = False) -> "contextmanager[Session]": ...


class PerCall:
    """Each repository call runs in its own transaction."""

    def __init__(self, db: Database):
        self.db = db

    def session(self, write: bool = False):
        return self.db.session(write=write)


class Shared:
    """All calls share one open transaction, committed by its owner."""

    def __init__(self, db: Database, session: Session):
        self.db = db
        self._session = session

    @contextmanager
    def session(self, write: bool = False) -> Iterator[Session]:
        yield self._session


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def ordering(model, field: str, direction: str) -> tuple:
    """ORDER BY terms for a List call: the field in the direction, then id ascending (a stable tie-breaker)."""
    column = getattr(model, field)
    return (column.desc() if direction == "desc" else column.asc(), model.id.asc())
