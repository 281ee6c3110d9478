"""The KAS registry: Key Access Servers by id, URI or name (each unique)."""

from __future__ import annotations

import uuid
from typing import Mapping

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError

from host.errors import AlreadyExists, InvalidArgument, NotFound
from host.store import validation as v
from host.store.models import KeyAccessServerRow
from host.store.records import KeyAccessServer
from host.store.sessions import SessionSource, utcnow


def kas_record(row: KeyAccessServerRow) -> KeyAccessServer:
    return KeyAccessServer(id=row.id, uri=row.uri, name=row.name, labels=dict(row.labels or {}),
                           created_at=row.created_at, updated_at=row.updated_at)


class KasRepository:
    def __init__(self, sessions: SessionSource):
        self._sessions = sessions

    def create(self, uri: str, name: str, labels: Mapping[str, str] | None = None) -> KeyAccessServer:
        uri = v.uri(uri)
        name = v.text("name", name)
        labels = v.labels(labels)
        now = utcnow()
        row = KeyAccessServerRow(id=str(uuid.uuid4()), uri=uri, name=name, labels=labels,
                                 created_at=now, updated_at=now)
        with self._sessions.session(write=True) as s:
            clash = s.scalars(select(KeyAccessServerRow).where(
                or_(KeyAccessServerRow.uri == uri, KeyAccessServerRow.name == name))).first()
            if clash is not None:
                field, value = ("uri", uri) if clash.uri == uri else ("name", name)
                raise AlreadyExists(f"a KAS with {field} {value!r} already exists")
            s.add(row)
            try:
                s.flush()
            except IntegrityError:
                raise AlreadyExists(f"a KAS with uri {uri!r} or name {name!r} already exists") from None
            return kas_record(row)

    def get(self, ref: str) -> KeyAccessServer:
        """ref is the KAS id, its URI or its name (matched in that order)."""
        with self._sessions.session() as s:
            return kas_record(self.row(s, ref))

    def list(self, limit: int | None = None, offset: int = 0) -> tuple[list[KeyAccessServer], int]:
        limit, offset = v.page(limit, offset)
        with self._sessions.session() as s:
            total = s.scalar(select(func.count()).select_from(KeyAccessServerRow))
            rows = s.scalars(select(KeyAccessServerRow)
                             .order_by(KeyAccessServerRow.created_at, KeyAccessServerRow.id)
                             .limit(limit).offset(offset)).all()
            return [kas_record(r) for r in rows], int(total)

    @staticmethod
    def row(s, ref: str) -> KeyAccessServerRow:
        if not isinstance(ref, str) or not ref:
            raise InvalidArgument("KAS reference (id, uri or name) must not be empty")
        v.text("KAS reference", ref, v.MAX_URI)
        conds = [KeyAccessServerRow.uri == ref, KeyAccessServerRow.name == ref]
        if v.is_uuid(ref):
            conds.append(KeyAccessServerRow.id == str(uuid.UUID(ref)))
        rows = s.scalars(select(KeyAccessServerRow).where(or_(*conds))).all()
        if not rows:
            raise NotFound(f"KAS {ref!r} not found (looked up by id, uri and name)")
        rank = {"id": 0, "uri": 1, "name": 2}
        return min(rows, key=lambda r: rank["id"] if v.is_uuid(ref) and r.id == str(uuid.UUID(ref))
                   else rank["uri"] if r.uri == ref else rank["name"])
