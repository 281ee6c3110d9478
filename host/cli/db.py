"""`platform db upgrade|current`: the policy database schema (Alembic)."""

from __future__ import annotations

import click

from host.cli import main
from host.cli.output import echo_json


@main.group("db")
def db():
    """Policy database schema."""


def _open(platform):
    from host.store.db import Database

    return Database.open(platform.settings.effective_db_url)


@db.command("upgrade")
@click.pass_obj
def upgrade(platform):
    """Apply all migrations (creates the schema in an empty database)."""
    from host.store import schema
    from host.store.db import describe

    database = _open(platform)
    try:
        before, after = schema.upgrade(database)
    finally:
        database.close()
    where = describe(database.url)
    if before == after:
        click.echo(f"{where} is up to date at revision {after}")
    else:
        click.echo(f"{where} upgraded from revision {before or '(empty)'} to {after}")


@db.command("current")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def current(platform, as_json):
    """Show the schema revision of the database and the one this platform needs."""
    from host.store import schema
    from host.store.db import describe

    database = _open(platform)
    try:
        with database.connection() as conn:
            st = schema.status(conn)
    finally:
        database.close()
    state = ("up to date" if st.up_to_date else "empty" if st.empty
             else "newer than this platform" if st.current not in schema.known_revisions() and st.current
             else "needs `platform db upgrade`")
    if as_json:
        echo_json({"database": describe(database.url), "current": st.current, "head": st.head, "state": state})
    else:
        click.echo(f"database: {describe(database.url)}")
        click.echo(f"current:  {st.current or '(none)'}")
        click.echo(f"head:     {st.head}")
        click.echo(f"state:    {state}")
