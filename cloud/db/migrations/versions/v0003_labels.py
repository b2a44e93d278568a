"""Operator labels (cloud/labels/store.py).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create the labels table."""
    op.create_table(
        "labels",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("device", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(64), nullable=True),
        sa.Column("start_ms", sa.BigInteger(), nullable=False),
        sa.Column("end_ms", sa.BigInteger(), nullable=False),
        sa.Column("alarm_name", sa.String(64), nullable=True),
        sa.Column("alarm_t_ms", sa.BigInteger(), nullable=True),
        sa.Column("label", sa.String(16), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_labels_device", "labels", ["device"])
    op.create_index("ix_labels_created_ms", "labels", ["created_ms"])


def downgrade() -> None:
    """Drop the labels table."""
    op.drop_index("ix_labels_created_ms", table_name="labels")
    op.drop_index("ix_labels_device", table_name="labels")
    op.drop_table("labels")
