"""Name the Redis run id a prediction or training run was last sent to for what it is:
`broker_epoch` becomes `redis_run_id`.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 17:30:00.000000

"""
from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("predictions", "training_runs")


def upgrade() -> None:
    """Upgrade schema: a plain column rename (SQLite and PostgreSQL), no table copy."""
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} RENAME COLUMN broker_epoch TO redis_run_id")


def downgrade() -> None:
    """Downgrade schema."""
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} RENAME COLUMN redis_run_id TO broker_epoch")
