"""KAS registry: the deprecated public_key (remote URI or cached keys) and source_type, kept as sent.

Revision ID: 0003_kas_public_key
Revises: 0002_opentdf_parity
Create Date: 2026-12-01

Plain ADD COLUMNs (nullable), which every backend does in place.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_kas_public_key"
down_revision = "0002_opentdf_parity"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("key_access_server", sa.Column("public_key", sa.JSON(), nullable=True))
    op.add_column("key_access_server", sa.Column("source_type", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("key_access_server") as batch:
        batch.drop_column("source_type")
        batch.drop_column("public_key")
