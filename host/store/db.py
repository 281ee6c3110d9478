"""Engine, sessions and database-error translation for the policy store.

SQLite gets foreign keys enforced on every connection (RESTRICT must hold
there too) and BEGIN IMMEDIATE for write transactions, so two processes
writing at once queue on the busy timeout instead of failing with
"database is locked". Driver errors become one-line host.errors with the
database named by host/port or path, never by its password.
"""

from __future__ import annotations

import os
import re
import time
from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import (ArgumentError, DataError, DBAPIError, DisconnectionError, IntegrityError, InterfaceError,
                            NoSuchModuleError, OperationalError, SQLAlchemyError)
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from host.errors import FailedPrecondition, InvalidArgument, PlatformError, Unavailable

_BACKEND_NAMES = {"postgresql": "PostgreSQL"}
SQLITE_HEADER = b"SQLite format 3\x00"
SQLITE_BUSY_TIMEOUT_S = 30
PG_CONNECT_TIMEOUT_S = 10
PING_IDLE_SECONDS = 10.0


def parse_url(url: str) -> URL:
    try:
        return make_url(url)
    except ArgumentError:
        raise InvalidArgument("database URL is not valid (expected e.g. sqlite:///path.db or postgresql+psycopg://user@host:5432/db)") from None


def describe(url: URL) -> str:
    """A human name for the database, never including the password."""
    if url.get_backend_name() == "sqlite":
        return f"SQLite database {url.database}" if is_sqlite_file(url) else "in-memory SQLite database"
    return f"{_BACKEND_NAMES.get(url.get_backend_name(), url.get_backend_name())} server {url.host or 'localhost'}:{url.port or 5432}" + (
        f" (database {url.database})" if url.database else "")


def is_sqlite_file(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:") and not (
        url.database.startswith("file:") and "mode=memory" in url.database)


def _prepare_sqlite_file(path: str) -> None:
    """Create the directory; refuse files that are not SQLite or not writable."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as e:
        raise InvalidArgument(f"cannot create database directory {directory}: {e.strerror or e}") from None
    if os.path.isdir(path):
        raise InvalidArgument(f"database path {path} is a directory, not a SQLite file")
    if os.path.exists(path):
        try:
            with open(path, "rb") as f:
                header = f.read(len(SQLITE_HEADER))
        except OSError as e:
            raise InvalidArgument(f"cannot read database file {path}: {e.strerror or e}") from None
        if header and header != SQLITE_HEADER:
            raise InvalidArgument(f"{path} is not a SQLite database")
        if not os.access(path, os.W_OK):
            raise InvalidArgument(f"database file {path} is not writable")
    elif not os.access(directory, os.W_OK):
        raise InvalidArgument(f"cannot create database file {path}: directory {directory} is not writable")


def make_engine(url: URL) -> Engine:
    backend = url.get_backend_name()
    try:
        if backend == "sqlite":
            if is_sqlite_file(url):
                _prepare_sqlite_file(url.database)
                engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
            else:  # one shared connection, or every session would see a fresh empty database
                engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
            _sqlite_pragmas(engine)
        elif backend == "postgresql":
            engine = create_engine(url, connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S})
            _ping_when_idle(engine)
        else:
            raise InvalidArgument(f"unsupported database {backend!r}: use sqlite:///PATH or postgresql+psycopg://...")
    except (NoSuchModuleError, ArgumentError, ImportError) as e:
        raise InvalidArgument(f"unsupported database URL scheme {url.drivername!r}: {type(e).__name__}") from None
    return engine


def _file_identity(url: URL) -> tuple[int, int] | None:
    """(device, inode) of a SQLite file, None for other databases or when the file is gone."""
    if not is_sqlite_file(url):
        return None
    try:
        st = os.stat(url.database)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see _on_begin)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        immediate = conn.get_execution_options().get("sqlite_immediate")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _ping_when_idle(engine: Engine) -> None:
    """Ping a pooled connection at checkout only when it sat idle longer than PING_IDLE_SECONDS.

    pool_pre_ping pings on every checkout: a second round trip for every transaction. A busy
    connection is known alive; one idle for a while may have been dropped by a server restart or
    a firewall, and a failed ping discards it (the pool then opens a fresh one)."""
    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn, record):
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn, record, _proxy):
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < PING_IDLE_SECONDS:
            return
        try:
            with dbapi_conn.cursor() as cur:
                cur.execute("SELECT 1")
        except Exception:
            raise DisconnectionError("pooled connection is gone") from None


_PG_PREFIX = re.compile(r'^(connection failed: )?(connection to server at "[^"]*"( \([^)]*\))?, port \d+ failed: )?')


def translate(exc: BaseException, url: URL) -> PlatformError:
    """A driver/SQLAlchemy error as a one-line PlatformError without secrets or SQL."""
    where = describe(url)
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip()
    if url.password:
        text = text.replace(url.password, "***")
    first = text.splitlines()[0] if text else type(orig).__name__
    if url.get_backend_name() == "sqlite" and not isinstance(exc, (IntegrityError, DataError)):
        low = first.lower()
        if "file is not a database" in low:
            return InvalidArgument(f"{url.database} is not a SQLite database")
        if "readonly database" in low:
            return InvalidArgument(f"{where} is not writable")
        if "unable to open database file" in low:
            return InvalidArgument(f"cannot open {where} (missing directory or no permission)")
        if "locked" in low or "busy" in low:
            return Unavailable(f"{where} is busy (locked by another process); try again")
        return Unavailable(f"{where}: {first}")
    if isinstance(exc, IntegrityError):  # first lines name the constraint, never the values
        return FailedPrecondition(f"{where}: constraint violated: {first}")
    if isinstance(exc, DataError):
        return InvalidArgument(f"{where} rejected a value: {first}")
    reason = _PG_PREFIX.sub("", first).replace("FATAL:  ", "").strip() or type(orig).__name__
    if isinstance(exc, (OperationalError, InterfaceError)) or not isinstance(exc, DBAPIError):
        return Unavailable(f"cannot reach {where}: {reason}")
    return Unavailable(f"{where}: {reason}")


class Database:
    """An engine plus session helpers that translate driver errors."""

    def __init__(self, url: URL, engine: Engine):
        self.url = url
        self.engine = engine
        self.backend = url.get_backend_name()
        self._file_identity = None  # (device, inode) of a SQLite file, learned at the first check

    @classmethod
    def open(cls, url: str | URL) -> "Database":
        parsed = url if isinstance(url, URL) else parse_url(url)
        return cls(parsed, make_engine(parsed))

    @contextmanager
    def session(self, write: bool = False) -> Iterator[Session]:
        """One transaction: commit on success, roll back on any error."""
        try:
            with Session(self.engine, expire_on_commit=False, autoflush=False) as s:
                with s.begin():
                    if write and self.backend == "sqlite":
                        s.connection(execution_options={"sqlite_immediate": True})
                    yield s
        except PlatformError:
            raise
        except SQLAlchemyError as e:
            raise self.translate(e) from None

    @contextmanager
    def connection(self, write: bool = False):
        """A Core connection in one transaction (used by migrations)."""
        try:
            with self.engine.connect() as conn:
                if write and self.backend == "sqlite":
                    conn.execution_options(sqlite_immediate=True)
                with conn.begin():
                    yield conn
        except PlatformError:
            raise
        except SQLAlchemyError as e:
            raise self.translate(e) from None

    def translate(self, exc: BaseException) -> PlatformError:
        return translate(exc, self.url)

    def check(self) -> None:
        """Raise a PlatformError unless the database answers a query on the schema now.

        `SELECT 1` on a pooled SQLite connection keeps succeeding after the file is deleted or
        replaced (the connection holds the old inode), so for a file the path is checked too:
        gone is an error; replaced (another inode) closes the pool, so that the next
        connection opens the file now at the path, and is checked like any other.
        """
        if is_sqlite_file(self.url):
            now = _file_identity(self.url)
            if now is None:
                raise Unavailable(f"{describe(self.url)}: the file is gone")
            if self._file_identity is not None and now != self._file_identity:
                self.engine.dispose()
            self._file_identity = now
        from sqlalchemy import text

        from host.store.schema import VERSION_TABLE

        with self.connection() as conn:  # a table every schema version has, read for real
            conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).fetchall()

    def close(self) -> None:
        self.engine.dispose()
