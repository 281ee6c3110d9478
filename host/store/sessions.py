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


def ordering(model, field: str, direction: str, reverse: bool = False) -> tuple:
    """ORDER BY terms for a List call: the field, then id (a stable tie-breaker), both in the
    direction, so that one (field, id) index serves the order walked either way;
    reverse=True: the same order backwards."""
    descending = (direction == "desc") != reverse
    column = getattr(model, field)
    return (column.desc(), model.id.desc()) if descending else (column.asc(), model.id.asc())


def page_rows(s: Session, model, conds, field: str, direction: str, limit: int, offset: int, total: int) -> list:
    """The rows of one List page (OpenTDF's offset semantics), in order. The page's ids come first
    from the sort index alone, then only those rows are loaded, with their joins. Skipping
    `offset` index entries is O(offset), so a page nearer the end is taken from the end (the
    order reversed, `total - offset - limit` skipped): no page skips more than half the rows."""
    if offset >= total:
        return []
    from_end = max(0, total - offset - limit)
    if from_end < offset:
        query = select(model.id).where(*conds).order_by(*ordering(model, field, direction, reverse=True))
        ids = s.scalars(query.limit(min(limit, total - offset)).offset(from_end)).all()[::-1]
    else:
        ids = s.scalars(select(model.id).where(*conds).order_by(*ordering(model, field, direction))
                        .limit(limit).offset(offset)).all()
    return _rows(s, model, ids)


def keyset_rows(s: Session, model, conds, field: str, direction: str, limit: int, after=None) -> list:
    """Up to `limit` rows in List order after the row `after` (None: from the start): a range
    scan of the sort index from where the previous batch ended, the same cost wherever it is."""
    if after is not None:
        column, value = getattr(model, field), getattr(after, field)
        if direction == "desc":
            conds = (*conds, column <= value, (column < value) | (model.id < after.id))
        else:
            conds = (*conds, column >= value, (column > value) | (model.id > after.id))
    ids = s.scalars(select(model.id).where(*conds).order_by(*ordering(model, field, direction)).limit(limit)).all()
    return _rows(s, model, ids)


def _rows(s: Session, model, ids: list) -> list:
    if not ids:
        return []
    by_id = {r.id: r for r in s.scalars(select(model).where(model.id.in_(ids))).unique().all()}
    return [by_id[i] for i in ids if i in by_id]
