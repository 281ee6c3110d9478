"""OpenTDF parity: KAS without a name, lower-cased names, legacy keys, the base key.

Revision ID: 0002_opentdf_parity
Revises: 0001_initial
Create Date: 2026-12-01

- key_access_server.name becomes nullable (OpenTDF registers a KAS by URI alone).
- KAS and provider-config names are lower-cased (they are matched case-insensitively).
  Two existing names that differ only in case make this migration fail on the unique
  constraint; rename one of them first.
- kas_key.legacy, at most one legacy key per KAS (a partial unique index).
- base_key: at most one row (singleton = 1) naming the platform's base key; it goes
  with the key when the key is deleted.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_opentdf_parity"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite rebuilds key_access_server to relax NOT NULL (drop + rename). Dropping a table that
        # kas_key rows reference fails with foreign keys on, and they cannot be turned off inside the
        # upgrade's transaction: park the keys aside while the table is rebuilt.
        op.execute("CREATE TABLE _kas_key_parked AS SELECT * FROM kas_key")
        op.execute("DELETE FROM kas_key")
        with op.batch_alter_table("key_access_server") as batch:
            batch.alter_column("name", existing_type=sa.String(255), nullable=True)
        op.execute("INSERT INTO kas_key SELECT * FROM _kas_key_parked")
        op.execute("DROP TABLE _kas_key_parked")
    else:
        op.alter_column("key_access_server", "name", existing_type=sa.String(255), nullable=True)
    op.execute("UPDATE key_access_server SET name = lower(name) WHERE name IS NOT NULL")
    op.execute("UPDATE provider_config SET name = lower(name)")
    op.add_column("kas_key", sa.Column("legacy", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_index("uq_kas_key_legacy_per_kas", "kas_key", ["kas_id"], unique=True,
                    sqlite_where=sa.text("legacy"), postgresql_where=sa.text("legacy"))
    op.create_table(
        "base_key",
        sa.Column("singleton", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.String(36), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("singleton", name="pk_base_key"),
        sa.ForeignKeyConstraint(["key_id"], ["kas_key.id"], ondelete="CASCADE", name="fk_base_key_key_id_kas_key"),
        sa.CheckConstraint("singleton = 1", name="ck_base_key_singleton"),
    )


def downgrade() -> None:
    op.drop_table("base_key")
    op.drop_index("uq_kas_key_legacy_per_kas", table_name="kas_key")
    with op.batch_alter_table("kas_key") as batch:
        batch.drop_column("legacy")
    with op.batch_alter_table("key_access_server") as batch:
        batch.alter_column("name", existing_type=sa.String(255), nullable=False)
