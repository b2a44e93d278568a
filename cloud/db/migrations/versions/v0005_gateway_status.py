"""Scheduling: each gateway's latest status and resources; run-time strategy per site.

Revision ID: 0005
Revises: 0002 (the lead rechains the wave's revisions at merge)
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create gateway_status and site_strategies."""
    op.create_table(
        "gateway_status",
        sa.Column("gateway", sa.String(64), primary_key=True),
        sa.Column("resources_json", sa.Text(), nullable=False),
        sa.Column("status_json", sa.Text(), nullable=False),
        sa.Column("interval_ms", sa.BigInteger(), nullable=False),
        sa.Column("received_ms", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "site_strategies",
        sa.Column("site", sa.String(64), primary_key=True),
        sa.Column("strategy", sa.String(32), nullable=False),
        sa.Column("changed_by", sa.String(128), nullable=False),
        sa.Column("changed_ms", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    """Drop both tables."""
    op.drop_table("site_strategies")
    op.drop_table("gateway_status")
