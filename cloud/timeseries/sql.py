"""The SQL time-series store: summaries and events as two tables in the registry's database.

Backend "sqlite" of `cloud/timeseries/store.py`; it runs on any database the
registry runs on (SQLite, PostgreSQL). Points are written through the
ingest transaction, so a batch's points and its ledger entry commit together.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Float,
    Index,
    Integer,
    Select,
    String,
    Table,
    Text,
    func,
    select,
    text,
)

from tandem.cloud.config import CloudConfig
from tandem.cloud.db.base import Base
from tandem.cloud.db.engine import reading
from tandem.cloud.db.upsert import upsert_statement
from tandem.cloud.timeseries.queries import EventQuery, SummaryQuery
from tandem.cloud.timeseries.rollup import StoredEvent, StoredSummary
from tandem.wire.batch import Event, Record, Summary

DAY_MS = 86_400_000
STREAM_ROWS = 1000
_MEAN_SCALE = 4_294_967_296.0  # 2^32 > any n (ingest refuses n >= 2^31): exact scaling

# The tables join the cloud's one MetaData, so the schema migrations own them too.
_metadata = Base.metadata

summaries_table = Table(
    "ts_summaries", _metadata,
    Column("gateway", String(64), primary_key=True),
    Column("device", String(64), primary_key=True),
    Column("channel", String(64), primary_key=True),
    Column("t0_ms", BigInteger, primary_key=True),
    # t1 is part of the key: a late reading's own summary may start where a
    # filed window starts, and neither may overwrite the other.
    Column("t1_ms", BigInteger, primary_key=True),
    Column("n", Integer, nullable=False),
    Column("min", Float, nullable=False),
    Column("max", Float, nullable=False),
    Column("mean", Float, nullable=False),
    Column("last", Float, nullable=False),
    Index("ix_ts_summaries_device_channel_t0", "device", "channel", "t0_ms"),
    Index("ix_ts_summaries_t0", "t0_ms"),
)

events_table = Table(
    "ts_events", _metadata,
    # the gateway is part of the key: one gateway's event never overwrites another's
    Column("gateway", String(64), primary_key=True),
    Column("device", String(64), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("t_ms", BigInteger, primary_key=True),
    Column("severity", Integer, nullable=False),
    Column("values_json", Text, nullable=False),
    Index("ix_ts_events_t", "t_ms"),
)

_SUMMARY_VALUES = ("n", "min", "max", "mean", "last")
_EVENT_VALUES = ("severity", "values_json")


class SQLiteTimeSeries:
    """Summaries and events as two tables in the registry's own database (made by migrations)."""

    shares_transaction = True

    def __init__(self, config: CloudConfig, engine: Engine) -> None:
        self._engine = engine
        self._retention_days = {"summaries": config.timeseries.summary_retention_days,
                                "events": config.timeseries.event_retention_days}

    def write(self, gateway: str, records: Sequence[Record], tx: Connection | None) -> None:
        """Upsert through the caller's transaction, so a batch commits all or nothing."""
        if tx is None:
            with self._engine.begin() as own:
                self.write(gateway, records, own)
            return
        summaries = [_summary_row(gateway, r) for r in records if isinstance(r, Summary)]
        events = [_event_row(gateway, r) for r in records if isinstance(r, Event)]
        if summaries:
            tx.execute(upsert_statement(tx, summaries_table, ("gateway", "device", "channel",
                                                              "t0_ms", "t1_ms"),
                                        _SUMMARY_VALUES),
                       summaries)
        if events:
            tx.execute(upsert_statement(tx, events_table, ("gateway", "device", "name", "t_ms"),
                                        _EVENT_VALUES), events)

    def summaries(self, query: SummaryQuery) -> list[StoredSummary]:
        """Select; for a window, merge in the database (only the merged rows come back)."""
        with reading(self._engine) as conn:
            if query.window_ms is None:
                rows = conn.execute(_summary_select(query).limit(query.limit)).all()
                return [_stored_summary(row) for row in rows]
            merged = conn.execute(_rollup_select(query, query.window_ms)).all()
            return [_merged_summary(row) for row in merged]

    def events(self, query: EventQuery) -> list[StoredEvent]:
        """Select events in time order."""
        with reading(self._engine) as conn:
            return [_stored_event(row)
                    for row in conn.execute(_event_select(query).limit(query.limit))]

    def iter_summaries(self, query: SummaryQuery) -> Iterator[StoredSummary]:
        """Stream the selected rows (the connection is held until the iterator ends)."""
        with reading(self._engine) as conn:
            rows = conn.execution_options(yield_per=STREAM_ROWS).execute(_summary_select(query))
            for row in rows:
                yield _stored_summary(row)

    def iter_events(self, query: EventQuery) -> Iterator[StoredEvent]:
        """Stream the selected rows (the connection is held until the iterator ends)."""
        with reading(self._engine) as conn:
            rows = conn.execution_options(yield_per=STREAM_ROWS).execute(_event_select(query))
            for row in rows:
                yield _stored_event(row)

    def prune(self, now_ms: int) -> dict[str, int]:
        """Delete summaries (by t0) and events (by t) older than their retention in days."""
        columns = {"summaries": summaries_table.c.t0_ms, "events": events_table.c.t_ms}
        deleted: dict[str, int] = {}
        with self._engine.begin() as tx:
            for name, days in self._retention_days.items():
                if days:
                    column = columns[name]
                    cutoff = now_ms - days * DAY_MS
                    result = tx.execute(column.table.delete().where(column < cutoff))
                    deleted[name] = int(getattr(result, "rowcount", 0) or 0)
        return deleted

    def check(self) -> None:
        """Query the database."""
        with reading(self._engine) as conn:
            conn.execute(text("SELECT 1"))

    def close(self) -> None:
        """Nothing of its own to release: the engine belongs to the database resource."""


def _summary_select(query: SummaryQuery) -> Select[Any]:
    t = summaries_table.c
    stmt = _time_filtered(select(summaries_table), t.t0_ms, query.start_ms, query.end_ms)
    stmt = _matching(stmt, (t.device, query.device), (t.channel, query.channel),
                     (t.gateway, query.gateway))
    return stmt.order_by(t.t0_ms, t.device, t.channel, t.gateway, t.t1_ms)


def _rollup_select(query: SummaryQuery, window_ms: int) -> Select[Any]:
    """Summaries merged per (gateway, device, channel, window) by the database, as rollup() does.

    Window functions over each bucket give the totals and, from its latest member
    (row_number 1), the last value. The mean is weighed with n / 2^32 per row, so
    a sum of extreme values cannot overflow (PostgreSQL raises, SQLite gives inf).
    """
    t = summaries_table.c
    bucket = (t.t0_ms - t.t0_ms % window_ms).label("bucket")
    group = [t.gateway, t.device, t.channel, t.t0_ms - t.t0_ms % window_ms]
    weighted = t.mean * (t.n / _MEAN_SCALE)
    inner = _matching(
        _time_filtered(select(
            t.gateway, t.device, t.channel, bucket, t.last,
            func.sum(t.n).over(partition_by=group).label("n"),
            func.min(t.min).over(partition_by=group).label("low"),
            func.max(t.max).over(partition_by=group).label("high"),
            func.max(t.t1_ms).over(partition_by=group).label("t1_ms"),
            func.sum(weighted).over(partition_by=group).label("weighted"),
            func.row_number().over(partition_by=group, order_by=(t.t0_ms.desc(),
                                                                  t.t1_ms.desc())).label("rn"),
        ), t.t0_ms, query.start_ms, query.end_ms),
        (t.device, query.device), (t.channel, query.channel), (t.gateway, query.gateway),
    ).subquery()
    m = inner.c
    return (select(inner).where(m.rn == 1)
            .order_by(m.bucket, m.device, m.channel, m.gateway).limit(query.limit))


def _merged_summary(row: Any) -> StoredSummary:
    mean = row.weighted / (row.n / _MEAN_SCALE)
    return StoredSummary(row.gateway, Summary(
        device=row.device, channel=row.channel, t0_ms=row.bucket, t1_ms=row.t1_ms,
        count=int(row.n), minimum=row.low, maximum=row.high,
        mean=min(max(mean, row.low), row.high),  # rounding may step outside
        last=row.last))


def _event_select(query: EventQuery) -> Select[Any]:
    t = events_table.c
    stmt = _time_filtered(select(events_table), t.t_ms, query.start_ms, query.end_ms)
    stmt = _matching(stmt, (t.device, query.device), (t.name, query.name),
                     (t.gateway, query.gateway))
    if query.min_severity:
        stmt = stmt.where(t.severity >= query.min_severity)
    return stmt.order_by(t.t_ms, t.device, t.name, t.gateway)


def _time_filtered(stmt: Select[Any], column: Any, start: int | None,
                   end: int | None) -> Select[Any]:
    if start is not None:
        stmt = stmt.where(column >= start)
    if end is not None:
        stmt = stmt.where(column < end)
    return stmt


def _matching(stmt: Select[Any], *pairs: tuple[Any, str | None]) -> Select[Any]:
    for column, wanted in pairs:
        if wanted is not None:
            stmt = stmt.where(column == wanted)
    return stmt


def _summary_row(gateway: str, s: Summary) -> dict[str, Any]:
    return {"gateway": gateway, "device": s.device, "channel": s.channel, "t0_ms": s.t0_ms,
            "t1_ms": s.t1_ms, "n": s.count, "min": s.minimum, "max": s.maximum,
            "mean": s.mean, "last": s.last}


def _event_row(gateway: str, e: Event) -> dict[str, Any]:
    return {"device": e.device, "name": e.name, "t_ms": e.t_ms, "gateway": gateway,
            "severity": e.severity, "values_json": json.dumps(e.values, sort_keys=True)}


def _stored_summary(row: Any) -> StoredSummary:
    return StoredSummary(row.gateway, Summary(
        device=row.device, channel=row.channel, t0_ms=row.t0_ms, t1_ms=row.t1_ms,
        count=row.n, minimum=row.min, maximum=row.max, mean=row.mean, last=row.last))


def _stored_event(row: Any) -> StoredEvent:
    return StoredEvent(row.gateway, Event(device=row.device, name=row.name, t_ms=row.t_ms,
                                          severity=row.severity,
                                          values=json.loads(row.values_json)))
