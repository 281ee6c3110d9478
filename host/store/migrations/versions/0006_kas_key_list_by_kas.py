"""An index for ListKeys filtered by KAS (a KAS's keys, newest first, as the CLI and
GetKeyAccessServer ask for them).

Revision ID: 0006_kas_key_list_by_kas
Revises: 0005_pq_algorithms
Create Date: 2026-12-01

kas_key(kas_id, created_at, id): the KAS's rows in List order, so such a page walks the index
instead of sorting every key of the KAS (0004's (created_at, id) serves only unfiltered lists).
"""

from alembic import op

revision = "0006_kas_key_list_by_kas"
down_revision = "0005_pq_algorithms"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_kas_key_kas_id_created_at_id", "kas_key", ["kas_id", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_kas_key_kas_id_created_at_id", table_name="kas_key")
