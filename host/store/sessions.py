"""Where a repository gets its session: a fresh transaction per call, or the
one transaction of a Store.transaction() block (so several repository calls
commit or roll back together)."""

from __future__ import annotations

import datetime as dt
from contextlib import contextmanager
from typing import Iterator, Protocol

from sqlalchemy import select
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


def page_rows(s: Session, model, conds, order, limit: int, offset: int) -> list:
    """The rows of one List page, in order. The page's ids come first from the sort index alone
    (`offset` index entries skipped, no table row read: a page deep in a large table costs about
    what the first does), then only those rows are loaded, with their joins."""
    ids = s.scalars(select(model.id).where(*conds).order_by(*order).limit(limit).offset(offset)).all()
    if not ids:
        return []
    by_id = {r.id: r for r in s.scalars(select(model).where(model.id.in_(ids))).unique().all()}
    return [by_id[i] for i in ids if i in by_id]
