"""SQLAlchemy 2.x models of the policy database.

These ORM classes never leave the store: repositories convert rows into the
frozen records of host.store.records. The Alembic migrations in
host/store/migrations are the source of truth for the schema; these models
must describe the same tables (tests/store checks that they agree).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Index,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

STATUSES = ("active", "rotated")
MODES = ("local", "provider", "remote", "public_key")
ALGORITHMS = ("rsa:2048", "rsa:4096", "ec:secp256r1", "ec:secp384r1", "ec:secp521r1",
              "mlkem:768", "mlkem:1024", "hpqt:secp256r1-mlkem768", "hpqt:secp384r1-mlkem1024")  # 0005

# Deterministic constraint names, so migrations can refer to them on every backend.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        value = value.astimezone(dt.timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class ProviderConfigRow(Base):
    __tablename__ = "provider_config"
    __table_args__ = (UniqueConstraint("name", "manager", name="uq_provider_config_name_manager"),
                      Index("ix_provider_config_updated_at", "updated_at"),  # revision watcher
                      Index("ix_provider_config_created_at_id", "created_at", "id"))  # List order

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    manager: Mapped[str] = mapped_column(String(255))
    # The JSON document as given, or root-key ciphertext of it (AAD = id) when config_encrypted.
    config_json: Mapped[bytes] = mapped_column(LargeBinary)
    config_encrypted: Mapped[bool] = mapped_column(Boolean, default=False)
    labels: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    revision: Mapped[int] = mapped_column(Integer, default=1)


class KeyAccessServerRow(Base):
    __tablename__ = "key_access_server"
    __table_args__ = (Index("ix_key_access_server_created_at_id", "created_at", "id"),)  # List order

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    uri: Mapped[str] = mapped_column(String(2048), unique=True)
    name: Mapped[str | None] = mapped_column(String(255), unique=True, nullable=True)  # lower-case; optional
    # OpenTDF's deprecated KAS public key ({"remote": uri} or {"cached": {...}}) and source type, as sent
    public_key: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    source_type: Mapped[str | None] = mapped_column(String(16), nullable=True)
    labels: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class KasKeyRow(Base):
    __tablename__ = "kas_key"
    __table_args__ = (
        UniqueConstraint("kas_id", "key_id", name="uq_kas_key_kas_id_key_id"),
        CheckConstraint(_in("status", STATUSES), name="status"),
        CheckConstraint(_in("mode", MODES), name="mode"),
        CheckConstraint(_in("algorithm", ALGORITHMS), name="algorithm"),
        # at most one legacy key per KAS
        Index("uq_kas_key_legacy_per_kas", "kas_id", unique=True,
              sqlite_where=text("legacy"), postgresql_where=text("legacy")),
        Index("ix_kas_key_key_id_id", "key_id", "id"),  # a key by kid with no KAS named
        # List orders: the sort field, then id (host.store.sessions.ordering)
        Index("ix_kas_key_created_at_id", "created_at", "id"),
        Index("ix_kas_key_updated_at_id", "updated_at", "id"),
        Index("ix_kas_key_status_id", "status", "id"),
        Index("ix_kas_key_kas_id_created_at_id", "kas_id", "created_at", "id"),  # a KAS's keys (0006)
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(255))
    kas_id: Mapped[str] = mapped_column(String(36), ForeignKey("key_access_server.id", ondelete="RESTRICT"), index=True)
    algorithm: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="active")
    mode: Mapped[str] = mapped_column(String(16))
    public_key_pem: Mapped[str | None] = mapped_column(Text, nullable=True)
    private_key_ctx: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    provider_config_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("provider_config.id", ondelete="RESTRICT"), nullable=True, index=True)
    labels: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    rotated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    legacy: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    kas: Mapped[KeyAccessServerRow] = relationship(lazy="joined")
    provider_config: Mapped[ProviderConfigRow | None] = relationship(lazy="joined")


class BaseKeyRow(Base):
    """The platform's base key: at most one row (singleton = 1)."""

    __tablename__ = "base_key"
    __table_args__ = (CheckConstraint("singleton = 1", name="singleton"),)

    singleton: Mapped[int] = mapped_column(Integer, primary_key=True, default=1)
    key_id: Mapped[str] = mapped_column(String(36), ForeignKey("kas_key.id", ondelete="CASCADE"))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
