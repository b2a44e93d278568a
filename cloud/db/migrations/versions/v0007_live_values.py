"""Live values: watched devices and the newest value per channel of each.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create live_watches and live_values."""
    op.create_table(
        "live_watches",
        sa.Column("device", sa.String(64), primary_key=True),
        sa.Column("until_ms", sa.BigInteger(), nullable=False),
        sa.Column("watched_by", sa.String(128), nullable=False),
        sa.Column("since_ms", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "live_values",
        sa.Column("device", sa.String(64), primary_key=True),
        sa.Column("channel", sa.String(64), primary_key=True),
        sa.Column("gateway", sa.String(64), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("t_ms", sa.BigInteger(), nullable=False),
        sa.Column("received_ms", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    """Drop live_values and live_watches."""
    op.drop_table("live_values")
    op.drop_table("live_watches")
