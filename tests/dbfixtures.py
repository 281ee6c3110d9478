"""Database fixtures for any test folder: a fresh SQLite file or a fresh
PostgreSQL database per test.

Use from a conftest.py:

    from tests.dbfixtures import db_url, pg_db_url, pg_server, sqlite_db_url  # noqa: F401

- sqlite_db_url: sqlite:/// URL of a new file under tmp_path (not created yet).
- pg_db_url:     postgresql+psycopg:// URL of a newly created, empty database,
                 dropped after the test (uniquely named, so parallel runs do
                 not collide).
- db_url:        parametrized over both ("sqlite", "postgres"); tests using it
                 run twice.
- pg_server:     (session) libpq conninfo of the admin connection.

The PostgreSQL server comes from PLATFORM_TEST_PG_URL (e.g.
postgresql+psycopg://postgres@127.0.0.1:5432/test). Unset or unreachable:
the PostgreSQL variants are skipped with the reason printed (-ra), except
under CI=true, where they fail.
"""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy.engine import make_url

PG_ENV = "PLATFORM_TEST_PG_URL"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _unavailable(reason: str):
    if _in_ci():
        pytest.fail(f"{reason}; under CI=true the PostgreSQL tests must run", pytrace=False)
    pytest.skip(f"{reason}; PostgreSQL tests skipped")


def _conninfo(url) -> str:
    """A libpq URL (psycopg.connect) for a SQLAlchemy URL."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_server() -> str:
    raw = os.environ.get(PG_ENV)
    if not raw:
        _unavailable(f"{PG_ENV} is not set (e.g. {PG_ENV}=postgresql+psycopg://postgres@127.0.0.1:5432/test)")
    import psycopg

    url = make_url(raw)
    conninfo = _conninfo(url)
    try:
        with psycopg.connect(conninfo, connect_timeout=5, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        _unavailable(f"PostgreSQL from {PG_ENV} ({url.host}:{url.port or 5432}) is unreachable: {first}")
    return conninfo


def create_pg_database(pg_server: str) -> tuple[str, str]:
    """Create an empty uniquely named database: (name, SQLAlchemy URL)."""
    import psycopg

    name = f"kmtest_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(os.environ[PG_ENV]).set(drivername="postgresql+psycopg", database=name)
    return name, url.render_as_string(hide_password=False)


def drop_pg_database(pg_server: str, name: str) -> None:
    import psycopg

    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_db_url(pg_server):
    name, url = create_pg_database(pg_server)
    try:
        yield url
    finally:
        drop_pg_database(pg_server, name)


@pytest.fixture
def sqlite_db_url(tmp_path):
    return f"sqlite:///{tmp_path / 'state' / 'platform.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request):
    return request.getfixturevalue("sqlite_db_url" if request.param == "sqlite" else "pg_db_url")
