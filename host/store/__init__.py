"""The policy store: provider configurations, the KAS registry and KAS keys.

    store = Store.open("sqlite:///.platform/platform.db", root_key=None)
    cfg = store.providers.create("aws-prod", "aws-kms", {"region": "us-east-1"})
    with store.transaction() as tx:          # several calls, one commit
        new = tx.keys.create(...)
        tx.keys.mark_rotated(old.id)

Repositories return frozen records (host.store.records), never ORM objects.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from host.store.db import Database
from host.store.kas import KasRepository
from host.store.keys import KeyRepository
from host.store.providers import ProviderConfigCodec, ProviderRepository
from host.store.records import KasKey, KeyAccessServer, ProviderConfig
from host.store.schema import SchemaStatus, ensure_schema
from host.store.sessions import PerCall, SessionSource, Shared

__all__ = ["Store", "Transaction", "ProviderConfig", "KeyAccessServer", "KasKey", "SchemaStatus"]


class _Repositories:
    def __init__(self, sessions: SessionSource, codec: ProviderConfigCodec):
        self.providers = ProviderRepository(sessions, codec)
        self.kas = KasRepository(sessions)
        self.keys = KeyRepository(sessions, codec)


class Transaction(_Repositories):
    """Repositories whose calls share one transaction (see Store.transaction)."""


class Store(_Repositories):
    def __init__(self, db: Database, root_key=None):
        self.db = db
        self._codec = ProviderConfigCodec(root_key)
        super().__init__(PerCall(db), self._codec)

    @classmethod
    def open(cls, url: str, root_key=None, auto_upgrade_empty: bool = True) -> "Store":
        """Open the database; create the schema in an empty one; refuse older or newer schemas."""
        db = Database.open(url)
        try:
            ensure_schema(db, auto_upgrade_empty=auto_upgrade_empty)
        except BaseException:
            db.close()
            raise
        return cls(db, root_key)

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """All repository calls on the yielded object commit together, or not at all."""
        with self.db.session(write=True) as s:
            yield Transaction(Shared(self.db, s), self._codec)

    @property
    def url(self) -> str:
        return self.db.url.render_as_string(hide_password=True)

    def close(self) -> None:
        self.db.close()
