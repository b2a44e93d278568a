"""The schema as `create_all` made it before migrations existed.

Revision ID: 0001
Revises:
Create Date: 2026-12-05

The tables are a frozen copy (not the live models), so this revision builds
the same schema forever; `cloud/db/migrate.py` also compares an unversioned
database with SCHEMA before adopting it as 0001.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

SCHEMA = sa.MetaData()

sa.Table(
    "gateways", SCHEMA,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("public_key_pem", sa.Text(), nullable=False),
    sa.Column("cert_pem", sa.Text(), nullable=False),
    sa.Column("fingerprint", sa.String(71), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_ms", sa.BigInteger(), nullable=False),
)
sa.Table(
    "devices", SCHEMA,
    sa.Column("device", sa.String(64), primary_key=True),
    sa.Column("gateway", sa.String(64), sa.ForeignKey("gateways.name"), primary_key=True),
    sa.Column("first_seen_ms", sa.BigInteger(), nullable=False),
    sa.Column("last_seen_ms", sa.BigInteger(), nullable=False),
)
sa.Table(
    "ingested_batches", SCHEMA,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("gateway", sa.String(64), sa.ForeignKey("gateways.name"), nullable=False),
    sa.Column("seq", sa.BigInteger(), nullable=False),
    sa.Column("sent_ms", sa.BigInteger(), nullable=False),
    sa.Column("received_ms", sa.BigInteger(), nullable=False),
    sa.Column("record_count", sa.Integer(), nullable=False),
    sa.UniqueConstraint("gateway", "seq", name="uq_batch_gateway_seq"),
)
sa.Table(
    "users", SCHEMA,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("password_hash", sa.String(256), nullable=True),
    sa.Column("email", sa.Text(), nullable=True),  # ciphertext (EncryptedText)
    sa.Column("active", sa.Boolean(), nullable=False),
    sa.Column("created_ms", sa.BigInteger(), nullable=False),
)
sa.Table(
    "api_tokens", SCHEMA,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("note", sa.Text(), nullable=True),  # ciphertext (EncryptedText)
    sa.Column("created_ms", sa.BigInteger(), nullable=False),
    sa.Column("expires_ms", sa.BigInteger(), nullable=True),
    sa.Column("revoked_ms", sa.BigInteger(), nullable=True),
    sa.UniqueConstraint("user_id", "name", name="uq_token_user_name"),
)
sa.Table(
    "audit_log", SCHEMA,
    sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("at_ms", sa.BigInteger(), nullable=False),
    sa.Column("event", sa.String(64), nullable=False),
    sa.Column("actor", sa.String(160), nullable=False),
    sa.Column("detail", sa.Text(), nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)
sa.Table(
    "installer_tokens", SCHEMA,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("gateway", sa.String(64), nullable=False),
    sa.Column("group", sa.String(64), nullable=False),
    sa.Column("created_ms", sa.BigInteger(), nullable=False),
    sa.Column("expires_ms", sa.BigInteger(), nullable=False),
    sa.Column("used_ms", sa.BigInteger(), nullable=True),
)
sa.Table(
    "gateway_groups", SCHEMA,
    sa.Column("gateway", sa.String(64), primary_key=True),
    sa.Column("group", sa.String(64), nullable=False),
)
sa.Table(
    "sealed_records", SCHEMA,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("gateway", sa.String(64), nullable=False),
    sa.Column("device", sa.String(64), nullable=False),
    sa.Column("of", sa.String(1), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("t_ms", sa.BigInteger(), nullable=False),
    sa.Column("received_ms", sa.BigInteger(), nullable=False),
    sa.Column("body", sa.LargeBinary(), nullable=False),
)
sa.Table(
    "raw_requests", SCHEMA,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("device", sa.String(64), nullable=False, index=True),
    sa.Column("gateway", sa.String(64), nullable=False, index=True),
    sa.Column("t_ms", sa.BigInteger(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("detail", sa.Text(), nullable=False),
    sa.Column("requested_by", sa.String(128), nullable=False),
    sa.Column("created_ms", sa.BigInteger(), nullable=False),
    sa.Column("updated_ms", sa.BigInteger(), nullable=False),
    sa.Column("snippet_id", sa.Integer(), nullable=True),
)
sa.Table(
    "raw_snippets", SCHEMA,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("gateway", sa.String(64), nullable=False),
    sa.Column("device", sa.String(64), nullable=False, index=True),
    sa.Column("t_ms", sa.BigInteger(), nullable=False),
    sa.Column("rate_hz", sa.Integer(), nullable=False),
    sa.Column("scale", sa.Float(), nullable=False),
    sa.Column("axes", sa.String(3), nullable=False),
    sa.Column("samples", sa.LargeBinary(), nullable=False),
    sa.Column("request_id", sa.Integer(), nullable=True, index=True),
    sa.Column("received_ms", sa.BigInteger(), nullable=False),
)
sa.Table(
    "policy_releases", SCHEMA,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("group", sa.String(64), nullable=False),
    sa.Column("version", sa.BigInteger(), nullable=False),
    sa.Column("issued_ms", sa.BigInteger(), nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("envelope", sa.LargeBinary(), nullable=False),
    sa.UniqueConstraint("group", "version", name="uq_policy_group_version"),
)
sa.Table(
    "policy_acks", SCHEMA,
    sa.Column("gateway", sa.String(64), primary_key=True),
    sa.Column("group", sa.String(64), nullable=False),
    sa.Column("version", sa.BigInteger(), nullable=False),
    sa.Column("ok", sa.Boolean(), nullable=False),
    sa.Column("reason", sa.String(400), nullable=False),
    sa.Column("acked_ms", sa.BigInteger(), nullable=False),
)
# Before migrations these two were made only by the SQL time-series backend.
TIMESERIES_TABLES = ("ts_summaries", "ts_events")
sa.Table(
    "ts_summaries", SCHEMA,
    sa.Column("gateway", sa.String(64), primary_key=True),
    sa.Column("device", sa.String(64), primary_key=True),
    sa.Column("channel", sa.String(64), primary_key=True),
    sa.Column("t0_ms", sa.BigInteger(), primary_key=True),
    sa.Column("t1_ms", sa.BigInteger(), primary_key=True),
    sa.Column("n", sa.Integer(), nullable=False),
    sa.Column("min", sa.Float(), nullable=False),
    sa.Column("max", sa.Float(), nullable=False),
    sa.Column("mean", sa.Float(), nullable=False),
    sa.Column("last", sa.Float(), nullable=False),
    sa.Index("ix_ts_summaries_device_channel_t0", "device", "channel", "t0_ms"),
    sa.Index("ix_ts_summaries_t0", "t0_ms"),
)
sa.Table(
    "ts_events", SCHEMA,
    sa.Column("device", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("t_ms", sa.BigInteger(), primary_key=True),
    sa.Column("gateway", sa.String(64), nullable=False),
    sa.Column("severity", sa.Integer(), nullable=False),
    sa.Column("values_json", sa.Text(), nullable=False),
    sa.Index("ix_ts_events_t", "t_ms"),
)

_REFUSE = "audit_log is append-only"
# The audit log refuses UPDATE and DELETE (and TRUNCATE) in the database itself.
AUDIT_TRIGGERS = {
    "sqlite": (
        "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
        f"BEGIN SELECT RAISE(ABORT, '{_REFUSE}'); END",
        "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
        f"BEGIN SELECT RAISE(ABORT, '{_REFUSE}'); END",
    ),
    "postgresql": (
        "CREATE OR REPLACE FUNCTION audit_log_refuse() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$ BEGIN RAISE EXCEPTION '{_REFUSE}'; END $$",
        "CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION audit_log_refuse()",
        "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse()",
    ),
}


def upgrade() -> None:
    """Create every table, then the audit log's triggers."""
    bind = op.get_bind()
    SCHEMA.create_all(bind, checkfirst=False)
    for statement in AUDIT_TRIGGERS[bind.dialect.name]:
        op.execute(statement)


def downgrade() -> None:
    """Drop every table (their triggers go with them) and the trigger function."""
    bind = op.get_bind()
    SCHEMA.drop_all(bind, checkfirst=False)
    if bind.dialect.name == "postgresql":
        op.execute("DROP FUNCTION audit_log_refuse()")
