"""Indexes for every lookup the key service makes and every List order.

Revision ID: 0004_scale_indexes
Revises: 0003_kas_public_key
Create Date: 2026-12-02

- kas_key(key_id, id): a key by kid alone (no KAS named) was a full scan; also ORDER BY key_id.
- kas_key(created_at | updated_at | status, id): the List orders (the field, then id as tie-breaker),
  so a page walks an index instead of sorting the table.
- provider_config(updated_at): the revision watcher's "changed since T" query.
- provider_config(created_at, id), key_access_server(created_at, id): their List order.
"""

from alembic import op

revision = "0004_scale_indexes"
down_revision = "0003_kas_public_key"
branch_labels = None
depends_on = None

INDEXES = (
    ("ix_kas_key_key_id_id", "kas_key", ["key_id", "id"]),
    ("ix_kas_key_created_at_id", "kas_key", ["created_at", "id"]),
    ("ix_kas_key_updated_at_id", "kas_key", ["updated_at", "id"]),
    ("ix_kas_key_status_id", "kas_key", ["status", "id"]),
    ("ix_provider_config_updated_at", "provider_config", ["updated_at"]),
    ("ix_provider_config_created_at_id", "provider_config", ["created_at", "id"]),
    ("ix_key_access_server_created_at_id", "key_access_server", ["created_at", "id"]),
)


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
