"""KAS keys: rows of kas_key joined with their KAS and provider config.

The store checks shapes and references; which mode/algorithm/provider
combinations make sense is the key service's decision.
"""

from __future__ import annotations

import uuid
from typing import Any, Mapping

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from host.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from host.store import validation as v
from host.store.kas import KasRepository
from host.store.models import ALGORITHMS, MODES, STATUSES, KasKeyRow, KeyAccessServerRow, ProviderConfigRow
from host.store.providers import ProviderConfigCodec
from host.store.records import KasKey
from host.store.sessions import SessionSource, utcnow


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
            rotated_at=row.rotated_at)

    def create(self, kas_id: str, key_id: str, algorithm: str, mode: str, public_key_pem: str | None = None,
               private_key_ctx: Mapping[str, str] | None = None, provider_config_id: str | None = None,
               labels: Mapping[str, str] | None = None, status: str = "active") -> KasKey:
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
                raise NotFound(f"KAS {kas_id} not found")
            if pc_id is not None and s.get(ProviderConfigRow, pc_id) is None:
                raise NotFound(f"provider config {pc_id} not found")
            if s.scalar(select(KasKeyRow.id).where(KasKeyRow.kas_id == kas_id, KasKeyRow.key_id == key_id)):
                raise _exists(key_id, kas.uri)
            row = KasKeyRow(id=str(uuid.uuid4()), key_id=key_id, kas_id=kas_id, algorithm=algorithm,
                            status=status, mode=mode, public_key_pem=public_key_pem, private_key_ctx=ctx,
                            provider_config_id=pc_id, labels=labels, created_at=now, updated_at=now,
                            rotated_at=now if status == "rotated" else None)
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
             algorithm: str | None = None, status: str | None = None) -> tuple[list[KasKey], int]:
        limit, offset = v.page(limit, offset)
        conds = []
        if kas_id is not None:
            conds.append(KasKeyRow.kas_id == v.uuid_text("kas_id", kas_id))
        if algorithm is not None:
            conds.append(KasKeyRow.algorithm == _choice("algorithm", algorithm, ALGORITHMS))
        if status is not None:
            conds.append(KasKeyRow.status == _choice("status", status, STATUSES))
        with self._sessions.session() as s:
            total = s.scalar(select(func.count()).select_from(KasKeyRow).where(*conds))
            rows = s.scalars(select(KasKeyRow).where(*conds)
                             .order_by(KasKeyRow.created_at, KasKeyRow.id).limit(limit).offset(offset)).unique().all()
            return [self._record(r) for r in rows], int(total)

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


def _exists(key_id: str, kas_uri: str) -> AlreadyExists:
    return AlreadyExists(f"key {key_id!r} already exists on KAS {kas_uri}")
