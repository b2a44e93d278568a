"""Device ownership, events keyed with their gateway, batch epochs and digests, sessions, throttles.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05

- devices: keyed by device alone (its owner is `gateway`); a device filed by
  two gateways before keeps the row of the gateway that saw it first.
- ts_events: keyed (gateway, device, name, t_ms), so gateways cannot
  overwrite each other's events.
- ingested_batches: `epoch` (0 for rows from before) and the payload's
  `digest` (NULL for rows from before); unique (gateway, epoch, seq).
- users.session_generation; new tables login_failures and audit_refusals.

Tables whose primary key changes are rebuilt (SQLite cannot alter a key):
the old table is renamed, the new one created, the rows copied, the old one
dropped, all inside the upgrade's transaction.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

NEW = sa.MetaData()
# Only named so foreign keys resolve; never created or changed here.
sa.Table("gateways", NEW, sa.Column("name", sa.String(64), primary_key=True))

DEVICES = sa.Table(
    "devices", NEW,
    sa.Column("device", sa.String(64), primary_key=True),
    sa.Column("gateway", sa.String(64), sa.ForeignKey("gateways.name"), nullable=False),
    sa.Column("first_seen_ms", sa.BigInteger(), nullable=False),
    sa.Column("last_seen_ms", sa.BigInteger(), nullable=False),
    sa.Index("ix_devices_gateway", "gateway"),
)
TS_EVENTS = sa.Table(
    "ts_events", NEW,
    sa.Column("gateway", sa.String(64), primary_key=True),
    sa.Column("device", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("t_ms", sa.BigInteger(), primary_key=True),
    sa.Column("severity", sa.Integer(), nullable=False),
    sa.Column("values_json", sa.Text(), nullable=False),
    sa.Index("ix_ts_events_t", "t_ms"),
)
BATCHES = sa.Table(
    "ingested_batches", NEW,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("gateway", sa.String(64), sa.ForeignKey("gateways.name"), nullable=False),
    sa.Column("seq", sa.BigInteger(), nullable=False),
    sa.Column("sent_ms", sa.BigInteger(), nullable=False),
    sa.Column("received_ms", sa.BigInteger(), nullable=False),
    sa.Column("record_count", sa.Integer(), nullable=False),
    sa.Column("epoch", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("digest", sa.String(64), nullable=True),
    sa.UniqueConstraint("gateway", "epoch", "seq", name="uq_batch_gateway_epoch_seq"),
)
LOGIN_FAILURES = sa.Table(
    "login_failures", NEW,
    sa.Column("key", sa.String(160), primary_key=True),
    sa.Column("window_start_ms", sa.BigInteger(), nullable=False),
    sa.Column("failures", sa.Integer(), nullable=False),
    sa.Index("ix_login_failures_window", "window_start_ms"),
)
AUDIT_REFUSALS = sa.Table(
    "audit_refusals", NEW,
    sa.Column("event", sa.String(64), primary_key=True),
    sa.Column("source", sa.String(160), primary_key=True),
    sa.Column("window_start_ms", sa.BigInteger(), primary_key=True),
    sa.Column("count", sa.Integer(), nullable=False),
    sa.Column("last_ms", sa.BigInteger(), nullable=False),
)

_DEVICE_OWNERS = """
INSERT INTO devices (device, gateway, first_seen_ms, last_seen_ms)
SELECT o.device, o.gateway, o.first_seen_ms, o.last_seen_ms FROM devices_old o
WHERE NOT EXISTS (
    SELECT 1 FROM devices_old e WHERE e.device = o.device
    AND (e.first_seen_ms < o.first_seen_ms
         OR (e.first_seen_ms = o.first_seen_ms AND e.gateway < o.gateway)))
"""
_EVENTS = """
INSERT INTO ts_events (gateway, device, name, t_ms, severity, values_json)
SELECT gateway, device, name, t_ms, severity, values_json FROM ts_events_old
"""
_BATCHES = """
INSERT INTO ingested_batches (id, gateway, seq, sent_ms, received_ms, record_count, epoch, digest)
SELECT id, gateway, seq, sent_ms, received_ms, record_count, 0, NULL FROM ingested_batches_old
"""


def upgrade() -> None:
    """Rebuild the re-keyed tables with their rows; add the new column and tables."""
    _rebuild(DEVICES, _DEVICE_OWNERS, indexes=())
    _rebuild(TS_EVENTS, _EVENTS, indexes=("ix_ts_events_t",))
    _rebuild(BATCHES, _BATCHES, indexes=(), unique="uq_batch_gateway_seq")
    _restart_ids()
    with op.batch_alter_table("users") as users:
        users.add_column(sa.Column("session_generation", sa.Integer(), nullable=False,
                                   server_default="0"))
    bind = op.get_bind()
    LOGIN_FAILURES.create(bind)
    AUDIT_REFUSALS.create(bind)


OLD = sa.MetaData()
sa.Table("gateways", OLD, sa.Column("name", sa.String(64), primary_key=True))
OLD_DEVICES = sa.Table(
    "devices", OLD,
    sa.Column("device", sa.String(64), primary_key=True),
    sa.Column("gateway", sa.String(64), sa.ForeignKey("gateways.name"), primary_key=True),
    sa.Column("first_seen_ms", sa.BigInteger(), nullable=False),
    sa.Column("last_seen_ms", sa.BigInteger(), nullable=False),
)
OLD_TS_EVENTS = sa.Table(
    "ts_events", OLD,
    sa.Column("device", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("t_ms", sa.BigInteger(), primary_key=True),
    sa.Column("gateway", sa.String(64), nullable=False),
    sa.Column("severity", sa.Integer(), nullable=False),
    sa.Column("values_json", sa.Text(), nullable=False),
    sa.Index("ix_ts_events_t", "t_ms"),
)
OLD_BATCHES = sa.Table(
    "ingested_batches", OLD,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("gateway", sa.String(64), sa.ForeignKey("gateways.name"), nullable=False),
    sa.Column("seq", sa.BigInteger(), nullable=False),
    sa.Column("sent_ms", sa.BigInteger(), nullable=False),
    sa.Column("received_ms", sa.BigInteger(), nullable=False),
    sa.Column("record_count", sa.Integer(), nullable=False),
    sa.UniqueConstraint("gateway", "seq", name="uq_batch_gateway_seq"),
)


def downgrade() -> None:
    """Back to 0001's keys; events of one device, name and time keep one gateway's row."""
    op.drop_table("audit_refusals")
    op.drop_table("login_failures")
    with op.batch_alter_table("users") as users:
        users.drop_column("session_generation")
    _rebuild(OLD_DEVICES, "INSERT INTO devices SELECT device, gateway, first_seen_ms, "
             "last_seen_ms FROM devices_old", indexes=("ix_devices_gateway",))
    _rebuild(OLD_TS_EVENTS, "INSERT INTO ts_events (device, name, t_ms, gateway, severity, "
             "values_json) SELECT device, name, t_ms, MIN(gateway), MIN(severity), "
             "MIN(values_json) FROM ts_events_old GROUP BY device, name, t_ms",
             indexes=("ix_ts_events_t",))
    _rebuild(OLD_BATCHES, "INSERT INTO ingested_batches SELECT id, gateway, seq, sent_ms, "
             "received_ms, record_count FROM ingested_batches_old WHERE epoch = 0",
             indexes=(), unique="uq_batch_gateway_epoch_seq")
    _restart_ids()


def _restart_ids() -> None:
    """PostgreSQL: the new ledger's ids go on after the copied rows."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("SELECT setval(pg_get_serial_sequence('ingested_batches', 'id'), "
                   "COALESCE((SELECT MAX(id) FROM ingested_batches), 0) + 1, false)")


def _rebuild(table: sa.Table, copy_sql: str, indexes: tuple[str, ...],
             unique: str | None = None) -> None:
    """Rename the old table aside, create the new one, copy the rows, drop the old one."""
    bind = op.get_bind()
    old = f"{table.name}_old"
    for index in indexes:
        op.drop_index(index, table_name=table.name)
    op.rename_table(table.name, old)
    if bind.dialect.name == "postgresql":  # the key's index keeps its name across a rename
        op.execute(f"ALTER TABLE {old} RENAME CONSTRAINT {table.name}_pkey TO {old}_pkey")
        if unique is not None:
            op.execute(f"ALTER TABLE {old} DROP CONSTRAINT {unique}")
        if table.name == "ingested_batches":
            op.execute(f"ALTER SEQUENCE {table.name}_id_seq RENAME TO {old}_id_seq")
    table.create(bind)
    op.execute(copy_sql)
    op.drop_table(old)
