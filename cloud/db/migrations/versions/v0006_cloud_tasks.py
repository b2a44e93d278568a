"""The cloud task ledger: tasks placed by the scheduler, their leases and their one result.

Revision ID: 0006
Revises: 0002
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create cloud_tasks."""
    op.create_table(
        "cloud_tasks",
        sa.Column("task_id", sa.String(128), primary_key=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("job_json", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("placed", sa.String(64), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_ms", sa.BigInteger(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("finished_ms", sa.BigInteger(), nullable=True),
        sa.Column("result_json", sa.Text(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
    )
    op.create_index("ix_cloud_tasks_state", "cloud_tasks", ["state"])


def downgrade() -> None:
    """Drop cloud_tasks."""
    op.drop_index("ix_cloud_tasks_state", table_name="cloud_tasks")
    op.drop_table("cloud_tasks")
