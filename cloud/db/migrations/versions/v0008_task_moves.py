"""Count how often the scheduler moved each queued task (cloud_tasks.moves).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add cloud_tasks.moves (0 for every existing task)."""
    with op.batch_alter_table("cloud_tasks") as batch:
        batch.add_column(sa.Column("moves", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    """Drop cloud_tasks.moves."""
    with op.batch_alter_table("cloud_tasks") as batch:
        batch.drop_column("moves")
