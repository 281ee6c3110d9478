"""KAS keys: rows of kas_key joined with their KAS and provider config.

The store checks shapes and references; which mode/algorithm/provider
combinations make sense is the key service's decision.
"""

from __future__ import annotations

import uuid
from typing import Any, Iterator, Mapping

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from host.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from host.store import validation as v
from host.store.kas import KasRepository
from host.store.models import (ALGORITHMS, MODES, STATUSES, BaseKeyRow, KasKeyRow, KeyAccessServerRow,
                               ProviderConfigRow)
from host.store.providers import ProviderConfigCodec
from host.store.records import KasKey
from host.store.sessions import SessionSource, keyset_rows, page_rows, utcnow

SORT_FIELDS = ("key_id", "created_at", "updated_at", "status")


def _choice(field: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise InvalidArgument(f"{field} must be one of {', '.join(allowed)}, got {value!r}")
    return value


class KeyRepository:
    def __init__(self, sessions: SessionSource, codec: ProviderConfigCodec):
        self._sessions = sessions
        self._codec = codec

    def _record(self, row: KasKeyRow) -> KasKey:
        pc = row.provider_config
        return KasKey(
            id=row.id, kas_id=row.kas_id, kas_uri=row.kas.uri, key_id=row.key_id, algorithm=row.algorithm,
            status=row.status, mode=row.mode, public_key_pem=row.public_key_pem,
            private_key_ctx=None if row.private_key_ctx is None else dict(row.private_key_ctx),
            provider_config_id=row.provider_config_id,
            provider_config=None if pc is None else self._codec.record(pc),
            labels=dict(row.labels or {}), created_at=row.created_at, updated_at=row.updated_at,
            rotated_at=row.rotated_at, legacy=bool(row.legacy))

    def create(self, kas_id: str, key_id: str, algorithm: str, mode: str, public_key_pem: str | None = None,
               private_key_ctx: Mapping[str, str] | None = None, provider_config_id: str | None = None,
               labels: Mapping[str, str] | None = None, status: str = "active", legacy: bool = False) -> KasKey:
        """A new key row. An unknown KAS or provider config is InvalidArgument: a broken reference is
        the caller's error (OpenTDF answers a foreign-key violation so)."""
        kas_id = v.uuid_text("kas_id", kas_id)
        key_id = v.text("key_id", key_id)
        algorithm = _choice("algorithm", algorithm, ALGORITHMS)
        mode = _choice("mode", mode, MODES)
        status = _choice("status", status, STATUSES)
        if public_key_pem is not None:
            public_key_pem = v.text("public_key_pem", public_key_pem, 16384)
        ctx = v.private_key_ctx(private_key_ctx)
        pc_id = None if provider_config_id is None else v.uuid_text("provider_config_id", provider_config_id)
        labels = v.labels(labels)
        now = utcnow()
        with self._sessions.session(write=True) as s:
            kas = s.get(KeyAccessServerRow, kas_id)
            if kas is None:
                raise InvalidArgument(f"kas_id {kas_id} does not reference a registered KAS (resource relation invalid)")
            if pc_id is not None and s.get(ProviderConfigRow, pc_id) is None:
                raise InvalidArgument(f"provider_config_id {pc_id} does not reference a provider config "
                                      f"(resource relation invalid)")
            if s.scalar(select(KasKeyRow.id).where(KasKeyRow.kas_id == kas_id, KasKeyRow.key_id == key_id)):
                raise _exists(key_id, kas.uri)
            if legacy and s.scalar(select(KasKeyRow.key_id).where(KasKeyRow.kas_id == kas_id, KasKeyRow.legacy)):
                raise AlreadyExists(f"KAS {kas.uri} already has a legacy key; a KAS has at most one")
            row = KasKeyRow(id=str(uuid.uuid4()), key_id=key_id, kas_id=kas_id, algorithm=algorithm,
                            status=status, mode=mode, public_key_pem=public_key_pem, private_key_ctx=ctx,
                            provider_config_id=pc_id, labels=labels, created_at=now, updated_at=now,
                            rotated_at=now if status == "rotated" else None, legacy=bool(legacy))
            s.add(row)
            try:
                s.flush()
            except IntegrityError:  # a concurrent create, or the KAS/config vanished meanwhile
                raise AlreadyExists(f"key {key_id!r} could not be created on KAS {kas.uri}: it already exists "
                                    f"or its KAS/provider config was removed concurrently") from None
            s.refresh(row)
            return self._record(row)

    def get(self, id: str) -> KasKey:
        key_uuid = v.uuid_text("id", id)
        with self._sessions.session() as s:
            row = s.get(KasKeyRow, key_uuid)
            if row is None:
                raise NotFound(f"key {key_uuid} not found")
            return self._record(row)

    def get_by_kid(self, key_id: str, kas_id: str | None = None) -> KasKey:
        key_id = v.text("key_id", key_id)
        query = select(KasKeyRow).where(KasKeyRow.key_id == key_id)
        if kas_id is not None:
            query = query.where(KasKeyRow.kas_id == v.uuid_text("kas_id", kas_id))
        with self._sessions.session() as s:
            rows = s.scalars(query.limit(2)).all()
            if not rows:
                where = "" if kas_id is None else f" on KAS {kas_id}"
                raise NotFound(f"key {key_id!r} not found{where}")
            if len(rows) > 1:
                raise InvalidArgument(f"key id {key_id!r} exists on several KAS; name the KAS")
            return self._record(rows[0])

    def list(self, kas_id: str | None = None, limit: int | None = None, offset: int = 0,
             algorithm: str | None = None, status: str | None = None, legacy: bool | None = None,
             sort: tuple[str, str] | None = None, search: str | None = None) -> tuple[list[KasKey], int]:
        """Newest first unless `sort` = (field, "asc"|"desc") says otherwise; legacy None -> all keys;
        search (OpenTDF's `search.term`): a case-insensitive substring of the key id."""
        limit, offset = v.page(limit, offset)
        field, direction = v.sort(sort, SORT_FIELDS)
        conds = _filters(kas_id, algorithm, status, legacy)
        if search:
            conds += (func.lower(KasKeyRow.key_id).contains(search.lower(), autoescape=True),)
        with self._sessions.session() as s:
            total = int(s.scalar(select(func.count()).select_from(KasKeyRow).where(*conds)))
            rows = page_rows(s, KasKeyRow, conds, field, direction, limit, offset, total)
            return [self._record(r) for r in rows], total

    def iterate(self, kas_id: str | None = None, algorithm: str | None = None, status: str | None = None,
                legacy: bool | None = None, sort: tuple[str, str] | None = None,
                batch: int = 500) -> Iterator[KasKey]:
        """Every key list() would return, in its order, `batch` rows a query: each batch starts
        after the last key of the one before (keyset), so the walk is linear, not quadratic as
        offset pages are. Each batch is its own transaction."""
        field, direction = v.sort(sort, SORT_FIELDS)
        conds = _filters(kas_id, algorithm, status, legacy)
        after = None
        while True:
            with self._sessions.session() as s:
                keys = [self._record(r) for r in keyset_rows(s, KasKeyRow, conds, field, direction, batch, after)]
            yield from keys
            if len(keys) < batch:
                return
            after = keys[-1]

    def active_for(self, kas_id: str, algorithm: str) -> KasKey | None:
        """The newest active key of that algorithm on the KAS, or None."""
        kas_id = v.uuid_text("kas_id", kas_id)
        algorithm = _choice("algorithm", algorithm, ALGORITHMS)
        with self._sessions.session() as s:
            row = s.scalars(select(KasKeyRow).where(
                KasKeyRow.kas_id == kas_id, KasKeyRow.algorithm == algorithm, KasKeyRow.status == "active")
                .order_by(KasKeyRow.created_at.desc(), KasKeyRow.id.desc()).limit(1)).unique().one_or_none()
            return None if row is None else self._record(row)

    def mark_rotated(self, id: str) -> KasKey:
        key_uuid = v.uuid_text("id", id)
        with self._sessions.session(write=True) as s:
            row = s.scalars(select(KasKeyRow).where(KasKeyRow.id == key_uuid).with_for_update(of=KasKeyRow)
                            ).unique().one_or_none()
            if row is None:
                raise NotFound(f"key {key_uuid} not found")
            if row.status == "rotated":
                raise FailedPrecondition(f"key {row.key_id!r} is already rotated")
            now = utcnow()
            row.status, row.rotated_at, row.updated_at = "rotated", now, now
            s.flush()
            return self._record(row)


    def unsafe_update(self, id: str, mode: str | None, provider_config_id: str | None) -> KasKey:
        """Set a key's mode and/or provider config in place (the unsafe update; the service checks
        which changes are allowed). Everything else of the key stays as it is."""
        key_uuid = v.uuid_text("id", id)
        with self._sessions.session(write=True) as s:
            row = self._locked(s, key_uuid)
            if mode is not None:
                row.mode = _choice("mode", mode, MODES)
            row.provider_config_id = provider_config_id
            row.updated_at = utcnow()
            s.flush()
            s.expire(row, ["provider_config"])
            return self._record(row)

    def update_labels(self, id: str, labels: Mapping[str, str], extend: bool) -> KasKey:
        key_uuid = v.uuid_text("id", id)
        labels = v.labels(labels)
        with self._sessions.session(write=True) as s:
            row = self._locked(s, key_uuid)
            row.labels = {**(row.labels or {}), **labels} if extend else labels
            row.updated_at = utcnow()
            s.flush()
            return self._record(row)

    def delete(self, id: str) -> KasKey:
        """Remove a key row for good (the unsafe delete); the base key goes with it."""
        key_uuid = v.uuid_text("id", id)
        with self._sessions.session(write=True) as s:
            row = self._locked(s, key_uuid)
            record = self._record(row)
            s.execute(BaseKeyRow.__table__.delete().where(BaseKeyRow.key_id == key_uuid))
            s.delete(row)
            s.flush()
            return record

    def base_key(self) -> KasKey | None:
        with self._sessions.session() as s:
            row = s.get(BaseKeyRow, 1)
            return None if row is None else self._record(s.get(KasKeyRow, row.key_id))

    def by_kas(self, kas_ids) -> dict[str, list[KasKey]]:
        """{KAS id: all its keys, active and rotated, newest first} for a page of KAS (one query):
        the `kas_keys` a KAS is answered with, in a list as in a get (as OpenTDF's)."""
        ids = [v.uuid_text("kas_id", i) for i in kas_ids]
        out: dict[str, list[KasKey]] = {i: [] for i in ids}
        if not ids:
            return out
        with self._sessions.session() as s:
            rows = s.scalars(select(KasKeyRow).where(KasKeyRow.kas_id.in_(ids))
                             .order_by(KasKeyRow.created_at.desc(), KasKeyRow.id.desc())).unique().all()
            for row in rows:
                out[row.kas_id].append(self._record(row))
        return out

    def set_base_key(self, id: str) -> tuple[KasKey, KasKey | None]:
        """Make the key the platform's base key; returns (new, previous)."""
        key_uuid = v.uuid_text("id", id)
        with self._sessions.session(write=True) as s:
            key = self._locked(s, key_uuid)
            if key.mode == "public_key":
                raise InvalidArgument("cannot set key of mode KEY_MODE_PUBLIC_KEY_ONLY as default key: "
                                      "this platform holds no private key for it")
            if key.status != "active":
                raise InvalidArgument(f"cannot set key of status KEY_STATUS_{key.status.upper()} as default key")
            current = s.scalars(select(BaseKeyRow).where(BaseKeyRow.singleton == 1).with_for_update()).one_or_none()
            previous = None
            now = utcnow()
            if current is None:
                s.add(BaseKeyRow(singleton=1, key_id=key_uuid, updated_at=now))
            else:
                if current.key_id != key_uuid:
                    previous = self._record(s.get(KasKeyRow, current.key_id))
                else:
                    previous = self._record(key)
                current.key_id, current.updated_at = key_uuid, now
            s.flush()
            return self._record(key), previous

    def _locked(self, s, key_uuid: str) -> KasKeyRow:
        row = s.scalars(select(KasKeyRow).where(KasKeyRow.id == key_uuid).with_for_update(of=KasKeyRow)
                        ).unique().one_or_none()
        if row is None:
            raise NotFound(f"key {key_uuid} not found")
        return row


def _filters(kas_id: str | None, algorithm: str | None, status: str | None, legacy: bool | None) -> tuple:
    conds = []
    if legacy is not None:
        conds.append(KasKeyRow.legacy == bool(legacy))
    if kas_id is not None:
        conds.append(KasKeyRow.kas_id == v.uuid_text("kas_id", kas_id))
    if algorithm is not None:
        conds.append(KasKeyRow.algorithm == _choice("algorithm", algorithm, ALGORITHMS))
    if status is not None:
        conds.append(KasKeyRow.status == _choice("status", status, STATUSES))
    return tuple(conds)


def _exists(key_id: str, kas_uri: str) -> AlreadyExists:
    return AlreadyExists(f"key {key_id!r} already exists on KAS {kas_uri}")
