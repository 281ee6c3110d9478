"""The KAS registry: Key Access Servers by id, URI or name (each unique).

Names are optional, stored lower-case and matched case-insensitively (as OpenTDF).
"""

from __future__ import annotations

import uuid
from typing import Mapping

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError

from host.errors import AlreadyExists, InvalidArgument, NotFound
from host.store import validation as v
from host.store.models import KasKeyRow, KeyAccessServerRow
from host.store.records import KeyAccessServer
from host.store.sessions import SessionSource, page_rows, utcnow

SORT_FIELDS = ("name", "uri", "created_at", "updated_at")


def kas_record(row: KeyAccessServerRow) -> KeyAccessServer:
    return KeyAccessServer(id=row.id, uri=row.uri, name=row.name or "", labels=dict(row.labels or {}),
                           created_at=row.created_at, updated_at=row.updated_at,
                           public_key=None if row.public_key is None else dict(row.public_key),
                           source_type=row.source_type)


class KasRepository:
    def __init__(self, sessions: SessionSource):
        self._sessions = sessions

    def create(self, uri: str, name: str | None = None, labels: Mapping[str, str] | None = None,
               public_key: Mapping | None = None, source_type: str | None = None) -> KeyAccessServer:
        """public_key/source_type: OpenTDF's deprecated registry fields, kept and returned as given
        (this platform serves keys from CreateKey, never from them)."""
        uri = v.uri(uri)
        name = v.name("name", name) if name else None
        labels = v.labels(labels)
        public_key = None if public_key is None else v.kas_public_key(public_key)
        source_type = None if source_type is None else v.source_type(source_type)
        now = utcnow()
        row = KeyAccessServerRow(id=str(uuid.uuid4()), uri=uri, name=name, labels=labels, public_key=public_key,
                                 source_type=source_type, created_at=now, updated_at=now)
        with self._sessions.session(write=True) as s:
            self._check_unique(s, uri, name, None)
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

    def list(self, limit: int | None = None, offset: int = 0,
             sort: tuple[str, str] | None = None, search: str | None = None) -> tuple[list[KeyAccessServer], int]:
        """search (OpenTDF's `search.term`): a case-insensitive substring of the name or the URI."""
        limit, offset = v.page(limit, offset)
        field, direction = v.sort(sort, SORT_FIELDS)
        conds = () if not search else (or_(
            func.lower(KeyAccessServerRow.name).contains(search.lower(), autoescape=True),
            func.lower(KeyAccessServerRow.uri).contains(search.lower(), autoescape=True)),)
        with self._sessions.session() as s:
            total = s.scalar(select(func.count()).select_from(KeyAccessServerRow).where(*conds))
            rows = page_rows(s, KeyAccessServerRow, conds, field, direction, limit, offset, total)
            return [kas_record(r) for r in rows], int(total)

    def update(self, id: str, uri: str | None = None, name: str | None = None,
               labels: Mapping[str, str] | None = None, extend_labels: bool = False,
               public_key: Mapping | None = None, source_type: str | None = None) -> KeyAccessServer:
        kas_id = v.uuid_text("id", id)
        uri = None if uri is None else v.uri(uri)
        name = None if name is None else v.name("name", name)
        labels = None if labels is None else v.labels(labels)
        public_key = None if public_key is None else v.kas_public_key(public_key)
        source_type = None if source_type is None else v.source_type(source_type)
        if uri is None and name is None and labels is None and public_key is None and source_type is None:
            # OpenTDF's ErrCannotUpdateToUnspecified: a source type left unspecified and nothing else
            raise InvalidArgument("cannot update to unspecified value: give at least one of uri, name, "
                                  "metadata, public_key or source_type")
        with self._sessions.session(write=True) as s:
            row = s.scalars(select(KeyAccessServerRow).where(KeyAccessServerRow.id == kas_id)
                            .with_for_update()).one_or_none()
            if row is None:
                raise NotFound(f"KAS {kas_id} not found")
            self._check_unique(s, uri, name, row.id)
            if uri is not None:
                row.uri = uri
            if name is not None:
                row.name = name
            if labels is not None:
                row.labels = {**(row.labels or {}), **labels} if extend_labels else labels
            if public_key is not None:
                row.public_key = public_key
            if source_type is not None:
                row.source_type = source_type
            row.updated_at = utcnow()
            try:
                s.flush()
            except IntegrityError:
                raise AlreadyExists(f"a KAS with uri {uri!r} or name {name!r} already exists") from None
            return kas_record(row)

    def delete(self, id: str) -> KeyAccessServer:
        """Delete a KAS that holds no keys (as OpenTDF, keys restrict the deletion)."""
        kas_id = v.uuid_text("id", id)
        with self._sessions.session(write=True) as s:
            row = s.scalars(select(KeyAccessServerRow).where(KeyAccessServerRow.id == kas_id)
                            .with_for_update()).one_or_none()
            if row is None:
                raise NotFound(f"KAS {kas_id} not found")
            kids = s.scalars(select(KasKeyRow.key_id).where(KasKeyRow.kas_id == kas_id)
                             .order_by(KasKeyRow.key_id).limit(11)).all()
            if kids:
                raise _in_use(row.uri, kids)
            record = kas_record(row)
            s.delete(row)
            try:
                s.flush()
            except IntegrityError:  # a key was added meanwhile; RESTRICT held
                raise _in_use(row.uri, []) from None
            return record

    def matching(self, id: str | None = None, uri: str | None = None, name: str | None = None,
                 limit: int | None = None, offset: int = 0) -> tuple[list[KeyAccessServer], int]:
        """The KAS matching every filter given (exact id, URI, name), newest first: the page of the
        deprecated ListKeyAccessServerGrants. No match is an empty page, as OpenTDF's."""
        limit, offset = v.page(limit, offset)
        conds = []
        if id is not None:
            conds.append(KeyAccessServerRow.id == v.uuid_text("kas_id", id))
        if uri is not None:
            conds.append(KeyAccessServerRow.uri == v.text("kas_uri", uri, v.MAX_URI))
        if name is not None:
            conds.append(func.lower(KeyAccessServerRow.name) == v.name("kas_name", name))
        with self._sessions.session() as s:
            total = s.scalar(select(func.count()).select_from(KeyAccessServerRow).where(*conds))
            rows = page_rows(s, KeyAccessServerRow, conds, "created_at", "desc", limit, offset, total)
            return [kas_record(r) for r in rows], int(total)

    @staticmethod
    def _check_unique(s, uri: str | None, name: str | None, own_id: str | None) -> None:
        conds = []
        if uri is not None:
            conds.append(KeyAccessServerRow.uri == uri)
        if name is not None:
            conds.append(func.lower(KeyAccessServerRow.name) == name)
        if not conds:
            return
        for clash in s.scalars(select(KeyAccessServerRow).where(or_(*conds))).all():
            if clash.id == own_id:
                continue
            field, value = ("uri", uri) if clash.uri == uri else ("name", name)
            raise AlreadyExists(f"a KAS with {field} {value!r} already exists")

    @staticmethod
    def row(s, ref: str) -> KeyAccessServerRow:
        if not isinstance(ref, str) or not ref:
            raise InvalidArgument("KAS reference (id, uri or name) must not be empty")
        v.text("KAS reference", ref, v.MAX_URI)
        conds = [KeyAccessServerRow.uri == ref, func.lower(KeyAccessServerRow.name) == ref.lower()]
        if v.is_uuid(ref):
            conds.append(KeyAccessServerRow.id == str(uuid.UUID(ref)))
        rows = s.scalars(select(KeyAccessServerRow).where(or_(*conds))).all()
        if not rows:
            raise NotFound(f"KAS {ref!r} not found (looked up by id, uri and name)")
        by_id = str(uuid.UUID(ref)) if v.is_uuid(ref) else None
        return min(rows, key=lambda r: 0 if r.id == by_id else 1 if r.uri == ref else 2)


def _in_use(uri: str, kids) -> InvalidArgument:
    shown = ", ".join(repr(k) for k in kids[:10]) + (", ..." if len(kids) > 10 else "")
    which = f": {shown}" if kids else ""
    return InvalidArgument(f"intended action would violate a restriction: KAS {uri} still holds keys{which}; "
                           f"delete them first (policy unsafe delete-kas-key)")
