"""Model registry: versions, signed release manifests, gateway reports, staged rollouts.

Revision ID: 0004
Revises: 0002
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create model_versions, model_releases, model_reports, model_rollouts."""
    op.create_table(
        "model_versions",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("version", sa.String(64), nullable=False, unique=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("parent", sa.String(64), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("card_json", sa.Text(), nullable=False),
        sa.Column("artefact_sha256", sa.String(64), nullable=False),
        sa.Column("artefact_size", sa.BigInteger(), nullable=False),
        sa.Column("chunks_json", sa.Text(), nullable=False),
        sa.Column("promoted", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "model_releases",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("rollback", sa.Boolean(), nullable=False),
        sa.Column("issued_ms", sa.BigInteger(), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
    )
    op.create_table(
        "model_reports",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("gateway", sa.String(64), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("received_ms", sa.BigInteger(), nullable=False),
        sa.Column("windows", sa.Integer(), nullable=False),
        sa.Column("score_mean", sa.Float(), nullable=False),
        sa.Column("score_max", sa.Float(), nullable=False),
        sa.Column("alarms", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("latency_p99_ms", sa.Float(), nullable=False),
        sa.Column("detail_json", sa.Text(), nullable=False),
    )
    op.create_index("ix_model_reports_gateway", "model_reports", ["gateway"])
    op.create_index("ix_model_reports_version", "model_reports", ["version"])
    op.create_table(
        "model_rollouts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("group", sa.String(64), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("previous", sa.String(64), nullable=True),
        sa.Column("canaries_json", sa.Text(), nullable=False),
        sa.Column("wave_size", sa.Integer(), nullable=False),
        sa.Column("limits_json", sa.Text(), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("stage_started_ms", sa.BigInteger(), nullable=False),
        sa.Column("log_json", sa.Text(), nullable=False),
        sa.Column("release", sa.LargeBinary(), nullable=False),
        sa.Column("back", sa.LargeBinary(), nullable=True),
    )
    op.create_index("ix_model_rollouts_group", "model_rollouts", ["group"])


def downgrade() -> None:
    """Drop them."""
    op.drop_table("model_rollouts")
    op.drop_table("model_reports")
    op.drop_table("model_releases")
    op.drop_table("model_versions")
