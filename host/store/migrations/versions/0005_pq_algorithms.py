"""Post-quantum key algorithms: ML-KEM-768/1024 and the ML-KEM + EC hybrids (issue 18).

Revision ID: 0005_pq_algorithms
Revises: 0004_scale_indexes
Create Date: 2026-12-01

Only the kas_key algorithm check constraint changes. Each revision spells out its own list
(a migration must not follow later edits of the models).
"""

from alembic import op

revision = "0005_pq_algorithms"
down_revision = "0004_scale_indexes"
branch_labels = None
depends_on = None

CLASSICAL = ("rsa:2048", "rsa:4096", "ec:secp256r1", "ec:secp384r1", "ec:secp521r1")
POST_QUANTUM = ("mlkem:768", "mlkem:1024", "hpqt:secp256r1-mlkem768", "hpqt:secp384r1-mlkem1024")


def _in(values):
    return f"algorithm IN ({', '.join(repr(v) for v in values)})"


def _set(values) -> None:
    with op.batch_alter_table("kas_key") as batch:
        batch.drop_constraint("ck_kas_key_algorithm", type_="check")
        batch.create_check_constraint("ck_kas_key_algorithm", _in(values))


def upgrade() -> None:
    _set(CLASSICAL + POST_QUANTUM)


def downgrade() -> None:
    _set(CLASSICAL)  # fails while post-quantum keys exist, as it should: they would become unreadable
