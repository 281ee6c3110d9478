"""Provider configurations: the rules operators rely on (see issue 3).

(name, manager) is unique, the name stored lower-case and matched
case-insensitively (as OpenTDF); changing manager or config_json bumps revision
(every process rebuilds its cached manager on the next use); a config that
keys reference cannot be deleted. With a root key, config_json is stored as
AES-256-GCM ciphertext with the config id as AAD, so a row copied onto
another id does not decrypt.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, Mapping

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from host.errors import AlreadyExists, CryptoError, FailedPrecondition, InvalidArgument, NotFound
from host.store import validation as v
from host.store.models import KasKeyRow, KeyAccessServerRow, ProviderConfigRow
from host.store.records import ProviderConfig
from host.store.sessions import SessionSource, page_rows, utcnow

log = logging.getLogger("host.store")
_plaintext_warned = False


def _warn_plaintext_once() -> None:
    global _plaintext_warned
    if not _plaintext_warned:
        _plaintext_warned = True
        log.warning("warning: no root key configured (PLATFORM_ROOT_KEY or --root-key-file): "
                    "provider config secrets are stored unencrypted")


class ProviderConfigCodec:
    """Encrypts config_json at rest when a root key is set; rows -> records."""

    def __init__(self, root_key=None):
        self.root_key = root_key

    def seal(self, config_id: str, plain: bytes) -> tuple[bytes, bool]:
        if self.root_key is None:
            _warn_plaintext_once()
            return plain, False
        return self.root_key.encrypt(plain, aad=config_id.encode("ascii")), True

    def open(self, row: ProviderConfigRow) -> bytes:
        if not row.config_encrypted:
            return bytes(row.config_json)
        if self.root_key is None:
            raise FailedPrecondition(
                f"provider config {row.id} is encrypted at rest; configure the root key "
                f"(PLATFORM_ROOT_KEY or --root-key-file) to use it")
        try:
            return self.root_key.decrypt(bytes(row.config_json), aad=row.id.encode("ascii"))
        except CryptoError:
            raise CryptoError(f"provider config {row.id} cannot be decrypted: wrong root key or tampered row") from None

    def record(self, row: ProviderConfigRow) -> ProviderConfig:
        return ProviderConfig(
            id=row.id, name=row.name, manager=row.manager, config_json=self.open(row),
            labels=dict(row.labels or {}), created_at=row.created_at, updated_at=row.updated_at,
            revision=row.revision)


class ProviderRepository:
    def __init__(self, sessions: SessionSource, codec: ProviderConfigCodec):
        self._sessions = sessions
        self._codec = codec

    def create(self, name: str, manager: str, config_json: bytes | str | Mapping[str, Any],
               labels: Mapping[str, str] | None = None) -> ProviderConfig:
        name = v.name("name", name)
        manager = v.text("manager", manager)
        raw = v.config_json(config_json)
        labels = v.labels(labels)
        config_id = str(uuid.uuid4())
        blob, encrypted = self._codec.seal(config_id, raw)
        now = utcnow()
        row = ProviderConfigRow(id=config_id, name=name, manager=manager, config_json=blob,
                                config_encrypted=encrypted, labels=labels, created_at=now,
                                updated_at=now, revision=1)
        with self._sessions.session(write=True) as s:
            if self._find(s, name, manager) is not None:
                raise _exists(name, manager)
            s.add(row)
            try:
                s.flush()
            except IntegrityError:  # lost a race with another process
                raise _exists(name, manager) from None
            return self._codec.record(row)

    def get(self, id: str | None = None, name: str | None = None, manager: str | None = None) -> ProviderConfig:
        with self._sessions.session() as s:
            return self._codec.record(self._row(s, id, name, manager))

    def by_name(self, name: str) -> ProviderConfig:
        """The one config of that name, whatever its manager (the seed document's name-only lookup;
        the API refuses it, as OpenTDF). Several managers share the name -> InvalidArgument naming them."""
        name = v.name("name", name)
        with self._sessions.session() as s:
            rows = s.scalars(select(ProviderConfigRow).where(func.lower(ProviderConfigRow.name) == name)
                             .order_by(ProviderConfigRow.manager)).all()
            if not rows:
                raise NotFound(f"provider config with name {name!r} not found")
            if len(rows) > 1:
                managers = ", ".join(r.manager for r in rows)
                raise InvalidArgument(f"several provider configs are named {name!r} (managers: {managers}); "
                                      f"give --manager to choose one")
            return self._codec.record(rows[0])

    def list(self, limit: int | None = None, offset: int = 0) -> tuple[list[ProviderConfig], int]:
        """Newest first."""
        limit, offset = v.page(limit, offset)
        with self._sessions.session() as s:
            total = s.scalar(select(func.count()).select_from(ProviderConfigRow))
            rows = page_rows(s, ProviderConfigRow, (), "created_at", "desc", limit, offset, total)
            return [self._codec.record(r) for r in rows], int(total)

    def update(self, id: str, name: str | None = None, manager: str | None = None,
               config_json: bytes | str | Mapping[str, Any] | None = None,
               labels: Mapping[str, str] | None = None, extend_labels: bool = False) -> ProviderConfig:
        config_id = v.uuid_text("id", id)
        if name is None and manager is None and config_json is None and labels is None:
            raise InvalidArgument("nothing to update: give at least one of name, manager, config_json, labels")
        name = None if name is None else v.name("name", name)
        manager = None if manager is None else v.text("manager", manager)
        raw = None if config_json is None else v.config_json(config_json)
        labels = None if labels is None else v.labels(labels)
        with self._sessions.session(write=True) as s:
            row = s.scalars(select(ProviderConfigRow).where(ProviderConfigRow.id == config_id)
                            .with_for_update()).one_or_none()
            if row is None:
                raise NotFound(f"provider config {config_id} not found")
            new_name = row.name if name is None else name
            new_manager = row.manager if manager is None else manager
            if (new_name, new_manager) != (row.name, row.manager):
                other = self._find(s, new_name, new_manager)
                if other is not None and other.id != row.id:
                    raise _exists(new_name, new_manager)
            bump = manager is not None and manager != row.manager
            if raw is not None and raw != self._codec.open(row):
                row.config_json, row.config_encrypted = self._codec.seal(row.id, raw)
                bump = True
            row.name, row.manager = new_name, new_manager
            if labels is not None:
                row.labels = {**(row.labels or {}), **labels} if extend_labels else labels
            if bump:
                row.revision = row.revision + 1
            row.updated_at = utcnow()
            try:
                s.flush()
            except IntegrityError:
                raise _exists(new_name, new_manager) from None
            return self._codec.record(row)

    def delete(self, id: str) -> ProviderConfig:
        config_id = v.uuid_text("id", id)
        with self._sessions.session(write=True) as s:
            row = s.scalars(select(ProviderConfigRow).where(ProviderConfigRow.id == config_id)
                            .with_for_update()).one_or_none()
            if row is None:
                raise NotFound(f"provider config {config_id} not found")
            used = s.execute(select(KasKeyRow.key_id, KeyAccessServerRow.uri)
                             .join(KeyAccessServerRow, KasKeyRow.kas_id == KeyAccessServerRow.id)
                             .where(KasKeyRow.provider_config_id == config_id)
                             .order_by(KasKeyRow.key_id).limit(11)).all()
            if used:
                raise _in_use(config_id, [f"{kid} ({uri})" for kid, uri in used])
            record = ProviderConfig(id=row.id, name=row.name, manager=row.manager, config_json=b"",
                                    labels=dict(row.labels or {}), created_at=row.created_at,
                                    updated_at=row.updated_at, revision=row.revision)
            s.delete(row)
            try:
                s.flush()
            except IntegrityError:  # a key was added meanwhile; RESTRICT held
                raise _in_use(config_id, []) from None
            return record

    def revision(self, id: str) -> int:
        """The current revision alone: a cheap check for changes made by other processes."""
        config_id = v.uuid_text("id", id)
        with self._sessions.session() as s:
            rev = s.scalar(select(ProviderConfigRow.revision).where(ProviderConfigRow.id == config_id))
            if rev is None:
                raise NotFound(f"provider config {config_id} not found")
            return int(rev)

    def changed_since(self, since) -> dict[str, int]:
        """{config id: revision} of the configs updated at or after `since` (a UTC datetime): one
        indexed query whatever the number of configs, for processes that cache what depends on them."""
        with self._sessions.session() as s:
            rows = s.execute(select(ProviderConfigRow.id, ProviderConfigRow.revision)
                             .where(ProviderConfigRow.updated_at >= since)).all()
            return {id: int(rev) for id, rev in rows}

    # -- helpers

    @staticmethod
    def _find(s, name: str, manager: str) -> ProviderConfigRow | None:
        return s.scalars(select(ProviderConfigRow).where(
            func.lower(ProviderConfigRow.name) == name.lower(), ProviderConfigRow.manager == manager)).one_or_none()

    def _row(self, s, id, name, manager) -> ProviderConfigRow:
        if id is not None:
            if name is not None or manager is not None:
                raise InvalidArgument("get a provider config by id, or by name and manager, not both")
            config_id = v.uuid_text("id", id)
            row = s.get(ProviderConfigRow, config_id)
            if row is None:
                raise NotFound(f"provider config {config_id} not found")
            return row
        if name is None and manager is None:
            raise InvalidArgument("give the provider config id, or its name and manager")
        if name is None:
            raise InvalidArgument("could not match identifier to known type: name is required with manager "
                                  "(a provider config is identified by its id, or by name and manager)")
        if manager is None:
            raise InvalidArgument("identifier is deprecated: manager is required with name "
                                  "(a provider config is identified by its id, or by name and manager)")
        name, manager = v.name("name", name), v.text("manager", manager)
        row = self._find(s, name, manager)
        if row is None:
            raise NotFound(f"provider config with name {name!r} and manager {manager!r} not found")
        return row


def _exists(name: str, manager: str) -> AlreadyExists:
    return AlreadyExists(f"provider config with name {name!r} and manager {manager!r} already exists")


def _in_use(config_id: str, keys: list[str]) -> InvalidArgument:
    """OpenTDF answers a restricted delete with invalid_argument; we also say which keys."""
    shown = ", ".join(keys[:10]) + (", ..." if len(keys) > 10 else "")
    which = f" {shown}" if keys else ""
    return InvalidArgument(f"intended action would violate a restriction: provider config {config_id} is used by "
                           f"keys{which}; delete or rotate those keys before deleting the config")
