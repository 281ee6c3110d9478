"""Opening databases: schema creation and version checks, and bad targets."""

from __future__ import annotations

import os

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from host.errors import FailedPrecondition, InvalidArgument, Unavailable
from host.store import Store, schema
from host.store.models import Base
from tests.conftest import free_port


def test_fresh_sqlite_created_with_directory_and_schema(tmp_path):
    path = tmp_path / "a" / "b" / "platform.db"
    store = Store.open(f"sqlite:///{path}")
    try:
        assert path.is_file()
        with store.db.connection() as conn:
            st = schema.status(conn)
        assert st.up_to_date and st.current == schema.head_revision()
    finally:
        store.close()
    Store.open(f"sqlite:///{path}").close()  # reopening an up-to-date database is fine


def test_models_match_migrations(store):
    """The ORM models and the Alembic migrations describe the same schema."""
    with store.db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []


def _set_version(store, version):
    with store.db.engine.begin() as conn:
        if version is None:
            conn.execute(text("DELETE FROM alembic_version"))
        else:
            conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": version})


def test_newer_schema_refused(db_url):
    s = Store.open(db_url)
    _set_version(s, "9999_from_the_future")
    s.close()
    with pytest.raises(FailedPrecondition, match="9999_from_the_future, newer than this platform knows"):
        Store.open(db_url)


def test_outdated_schema_refused_with_upgrade_hint(db_url, monkeypatch):
    Store.open(db_url).close()
    # Pretend this code ships a newer migration than the database has.
    known = schema.known_revisions()
    monkeypatch.setattr(schema, "head_revision", lambda: "9998_next")
    monkeypatch.setattr(schema, "known_revisions", lambda: known | {"9998_next"})
    with pytest.raises(FailedPrecondition, match=r"this platform needs 9998_next: run `platform db upgrade`"):
        Store.open(db_url)


def test_tables_without_version_refused(db_url):
    s = Store.open(db_url)
    _set_version(s, None)
    s.close()
    with pytest.raises(FailedPrecondition, match="no schema version"):
        Store.open(db_url)


def test_empty_database_not_auto_upgraded_when_asked(db_url):
    with pytest.raises(FailedPrecondition, match="platform db upgrade"):
        Store.open(db_url, auto_upgrade_empty=False)


def test_db_upgrade_then_current(db_url):
    from host.store.db import Database

    db = Database.open(db_url)
    try:
        assert schema.upgrade(db) == (None, schema.head_revision())
        assert schema.upgrade(db) == (schema.head_revision(), schema.head_revision())
    finally:
        db.close()
    Store.open(db_url, auto_upgrade_empty=False).close()


def test_not_a_sqlite_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello, this is not a database\n" * 10)
    with pytest.raises(InvalidArgument, match=f"{path} is not a SQLite database"):
        Store.open(f"sqlite:///{path}")
    assert path.read_text().startswith("hello")  # untouched


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(InvalidArgument, match="is a directory"):
        Store.open(f"sqlite:///{tmp_path}")


def test_parent_is_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidArgument, match="cannot create database directory"):
        Store.open(f"sqlite:///{tmp_path / 'file' / 'sub' / 'platform.db'}")


def test_unwritable_location():
    # /proc refuses new files even for root; an unprivileged user is refused by permissions too.
    with pytest.raises(InvalidArgument, match=r"cannot create|not writable|cannot open"):
        Store.open("sqlite:////proc/platform-test/platform.db")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_file(tmp_path):
    path = tmp_path / "platform.db"
    Store.open(f"sqlite:///{path}").close()
    path.chmod(0o444)
    with pytest.raises(InvalidArgument, match="not writable"):
        Store.open(f"sqlite:///{path}")


def test_postgres_unreachable_names_host_port_not_password():
    port = free_port()
    with pytest.raises(Unavailable) as err:
        Store.open(f"postgresql+psycopg://admin:hunter2-secret@127.0.0.1:{port}/policy")
    message = err.value.message
    assert f"127.0.0.1:{port}" in message and "hunter2" not in message and "\n" not in message
    assert "refused" in message.lower()


def test_postgres_unknown_host():
    with pytest.raises(Unavailable) as err:
        Store.open("postgresql+psycopg://admin:hunter2-secret@no-such-host.invalid:6543/policy")
    assert "no-such-host.invalid:6543" in err.value.message and "hunter2" not in err.value.message


def test_postgres_missing_database(pg_server):
    from sqlalchemy.engine import make_url

    url = make_url(os.environ["PLATFORM_TEST_PG_URL"]).set(database="kmtest_does_not_exist", password="pw-secret")
    with pytest.raises(Unavailable) as err:
        Store.open(url.render_as_string(hide_password=False))
    assert "kmtest_does_not_exist" in err.value.message and "pw-secret" not in err.value.message


@pytest.mark.parametrize("url, message", [
    ("mysql+pymysql://u:p@localhost/db", "unsupported database"),
    ("not a url", "database URL is not valid"),
    ("oracle://u:p@h/db", "unsupported database"),
])
def test_unsupported_urls(url, message):
    with pytest.raises(InvalidArgument, match=message) as err:
        Store.open(url)
    assert "\n" not in err.value.message


def test_in_memory_sqlite_works():
    s = Store.open("sqlite://")
    try:
        cfg = s.providers.create("p", "m", b"{}")
        assert s.providers.get(id=cfg.id) == cfg
    finally:
        s.close()


def test_head_constant_matches_migration_scripts():
    assert schema.HEAD == schema.script_head()


def test_corrupt_sqlite_file_with_valid_header(tmp_path):
    path = tmp_path / "corrupt.db"
    path.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 16)
    with pytest.raises(InvalidArgument, match="is not a SQLite database"):
        Store.open(f"sqlite:///{path}")


@pytest.mark.parametrize("driver_message, cls, expected", [
    ("attempt to write a readonly database", InvalidArgument, "is not writable"),
    ("database is locked", Unavailable, "is busy"),
    ("unable to open database file", InvalidArgument, "cannot open SQLite database"),
])
def test_sqlite_driver_errors_translated(driver_message, cls, expected):
    """Driver errors that need a second process or another user to provoke, mapped one by one."""
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from host.store.db import parse_url, translate

    err = OperationalError("INSERT INTO provider_config ...", {"config_json": b"SECRET"},
                           sqlite3.OperationalError(driver_message))
    mapped = translate(err, parse_url("sqlite:////srv/platform.db"))
    assert isinstance(mapped, cls) and expected in mapped.message
    assert "SECRET" not in mapped.message and "INSERT" not in mapped.message


def test_postgres_constraint_error_names_constraint_not_values(pg_db_url):
    """A raw duplicate insert (bypassing the repository checks) maps to one line without the values."""
    from sqlalchemy.exc import IntegrityError

    from host.store.db import translate

    s = Store.open(pg_db_url)
    try:
        cfg = s.providers.create("p", "m", b'{"s": "SECRET"}')
        with pytest.raises(IntegrityError) as raw:
            with s.db.engine.begin() as conn:
                conn.execute(text("INSERT INTO provider_config SELECT * FROM provider_config WHERE id = :id"),
                             {"id": cfg.id})
        mapped = translate(raw.value, s.db.url)
        assert "pk_provider_config" in mapped.message and "SECRET" not in mapped.message
        assert "\n" not in mapped.message
    finally:
        s.close()


def test_upgrade_0001_to_0002_keeps_rows_and_lowercases_names(db_url):
    """A database made by 0001 with mixed-case names upgrades in place: names lower-cased,
    keys not legacy, no base key; afterwards a KAS may have no name."""
    from host.store.db import Database

    db = Database.open(db_url)
    try:
        schema.upgrade(db, "0001_initial")
        with db.engine.begin() as conn:
            conn.execute(text("INSERT INTO key_access_server (id, uri, name, labels, created_at, updated_at) "
                              "VALUES ('6b1f4c5e-0000-4000-8000-00000000000a', 'https://a.example.com', 'Kas-A', "
                              "'{}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
            conn.execute(text("INSERT INTO provider_config (id, name, manager, config_json, config_encrypted, labels, "
                              "created_at, updated_at, revision) VALUES ('6b1f4c5e-0000-4000-8000-00000000000b', "
                              "'AWS-Prod', 'aws-kms', :cfg, false, '{}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 1)"),
                         {"cfg": b"{}"})
            conn.execute(text("INSERT INTO kas_key (id, key_id, kas_id, algorithm, status, mode, labels, created_at, "
                              "updated_at) VALUES ('6b1f4c5e-0000-4000-8000-00000000000c', 'k1', "
                              "'6b1f4c5e-0000-4000-8000-00000000000a', 'rsa:2048', 'active', 'local', '{}', "
                              "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
        assert schema.upgrade(db, "head") == ("0001_initial", schema.HEAD)
    finally:
        db.close()
    s = Store.open(db_url)
    try:
        assert s.kas.get("KAS-a").name == "kas-a"
        assert s.providers.get(name="aws-PROD", manager="aws-kms").name == "aws-prod"
        assert s.keys.get_by_kid("k1").legacy is False and s.keys.base_key() is None
        assert s.kas.create("https://b.example.com").name == ""
    finally:
        s.close()
