"""Initial policy schema: provider_config, key_access_server, kas_key.

Revision ID: 0001_initial
Revises:
Create Date: 2025-01-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None

STATUSES = ("active", "rotated")
MODES = ("local", "provider", "remote", "public_key")
ALGORITHMS = ("rsa:2048", "rsa:4096", "ec:secp256r1", "ec:secp384r1", "ec:secp521r1")


def _in(column, values):
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _ts(name, nullable=False):
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "provider_config",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("manager", sa.String(255), nullable=False),
        sa.Column("config_json", sa.LargeBinary(), nullable=False),
        sa.Column("config_encrypted", sa.Boolean(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_provider_config"),
        sa.UniqueConstraint("name", "manager", name="uq_provider_config_name_manager"),
    )
    op.create_table(
        "key_access_server",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("uri", sa.String(2048), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_key_access_server"),
        sa.UniqueConstraint("uri", name="uq_key_access_server_uri"),
        sa.UniqueConstraint("name", name="uq_key_access_server_name"),
    )
    op.create_table(
        "kas_key",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("key_id", sa.String(255), nullable=False),
        sa.Column("kas_id", sa.String(36), nullable=False),
        sa.Column("algorithm", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("public_key_pem", sa.Text(), nullable=True),
        sa.Column("private_key_ctx", sa.JSON(), nullable=True),
        sa.Column("provider_config_id", sa.String(36), nullable=True),
        sa.Column("labels", sa.JSON(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        _ts("rotated_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_kas_key"),
        sa.UniqueConstraint("kas_id", "key_id", name="uq_kas_key_kas_id_key_id"),
        sa.ForeignKeyConstraint(["kas_id"], ["key_access_server.id"], ondelete="RESTRICT",
                                name="fk_kas_key_kas_id_key_access_server"),
        sa.ForeignKeyConstraint(["provider_config_id"], ["provider_config.id"], ondelete="RESTRICT",
                                name="fk_kas_key_provider_config_id_provider_config"),
        sa.CheckConstraint(_in("status", STATUSES), name="ck_kas_key_status"),
        sa.CheckConstraint(_in("mode", MODES), name="ck_kas_key_mode"),
        sa.CheckConstraint(_in("algorithm", ALGORITHMS), name="ck_kas_key_algorithm"),
    )
    op.create_index("ix_kas_key_kas_id", "kas_key", ["kas_id"])
    op.create_index("ix_kas_key_provider_config_id", "kas_key", ["provider_config_id"])


def downgrade() -> None:
    op.drop_table("kas_key")
    op.drop_table("key_access_server")
    op.drop_table("provider_config")
