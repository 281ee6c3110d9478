"""Schema versioning with Alembic, run programmatically (no alembic.ini).

Policy at open (Store.open): an empty database is upgraded to head; a
database at head is used; an older one is refused with "run `platform db
upgrade`"; one newer than this code knows is refused. The check and the
upgrade run under a lock (BEGIN IMMEDIATE on SQLite, an advisory lock on
PostgreSQL) so that processes starting together do not both create tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from host.errors import FailedPrecondition
from host.store.db import Database
from host.store.models import Base

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
VERSION_TABLE = "alembic_version"
_PG_LOCK_KEY = 0x4B4D_5354  # "KMST": serializes schema changes across processes


# The newest migration in migrations/versions. Kept as a constant so that opening
# an up-to-date database does not import Alembic (a test checks it stays in step).
HEAD = "0006_kas_key_list_by_kas"


def _config(connection: Connection | None = None):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    return HEAD


def script_head() -> str:
    """The head according to the migration scripts themselves."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config()).get_current_head()


def known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return {s.revision for s in ScriptDirectory.from_config(_config()).walk_revisions()}


def _current_revision(conn: Connection) -> str | None:
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    versions = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    if len(versions) > 1:
        raise FailedPrecondition(f"database records several schema versions ({', '.join(versions)}); "
                                 f"fix it with `platform db upgrade`")
    return versions[0] if versions else None


@dataclass(frozen=True)
class SchemaStatus:
    current: str | None   # None: no version recorded
    head: str
    has_tables: bool      # any of our tables present

    @property
    def empty(self) -> bool:
        return self.current is None and not self.has_tables

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def status(conn: Connection) -> SchemaStatus:
    current = _current_revision(conn)
    names = set(inspect(conn).get_table_names())
    return SchemaStatus(current=current, head=head_revision(), has_tables=bool(names & set(Base.metadata.tables)))


def _lock(db: Database, conn: Connection) -> None:
    if db.backend == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
    # SQLite: the connection already holds BEGIN IMMEDIATE (write=True).


def _refuse_unknown(st: SchemaStatus, where: str) -> None:
    if st.current is not None and st.current not in known_revisions():
        raise FailedPrecondition(
            f"{where} has schema revision {st.current}, newer than this platform knows (head {st.head}); "
            f"upgrade the platform software")


def ensure_schema(db: Database, auto_upgrade_empty: bool = True) -> SchemaStatus:
    where = _where(db)
    with db.connection() as conn:
        st = status(conn)
    if st.up_to_date:
        return st
    _refuse_unknown(st, where)
    if not st.empty or not auto_upgrade_empty:
        raise FailedPrecondition(_outdated_message(st, where))
    with db.connection(write=True) as conn:
        _lock(db, conn)
        st = status(conn)  # another process may have created it meanwhile
        if st.empty:
            _run_upgrade(conn, "head")
            return status(conn)
    if st.up_to_date:
        return st
    _refuse_unknown(st, where)
    raise FailedPrecondition(_outdated_message(st, where))


def _outdated_message(st: SchemaStatus, where: str) -> str:
    if st.current is None:
        return (f"{where} holds policy tables but no schema version; it was not created by this platform "
                f"(run `platform db upgrade` only if it is empty)")
    return f"{where} has schema revision {st.current}, this platform needs {st.head}: run `platform db upgrade`"


def upgrade(db: Database, target: str = "head") -> tuple[str | None, str | None]:
    """Apply migrations up to target; returns (before, after)."""
    where = _where(db)
    with db.connection(write=True) as conn:
        _lock(db, conn)
        before = status(conn)
        _refuse_unknown(before, where)
        if before.current is None and before.has_tables:
            raise FailedPrecondition(_outdated_message(before, where))
        _run_upgrade(conn, target)
        after = status(conn)
    return before.current, after.current


def _run_upgrade(conn: Connection, target: str) -> None:
    from alembic import command

    command.upgrade(_config(conn), target)


def _where(db: Database) -> str:
    from host.store.db import describe

    return describe(db.url)
