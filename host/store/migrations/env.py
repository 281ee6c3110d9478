"""Alembic environment: always online, on the connection the store hands over.

host.store.schema puts an open connection (inside a transaction it owns)
into config.attributes["connection"]; there is no alembic.ini.
"""

from alembic import context

from host.store.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `platform db upgrade` (host.store.schema.upgrade)")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
