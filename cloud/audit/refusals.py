"""Anonymous refusals, aggregated: one audit row per source and interval, the rest counted.

A refused batch with an unknown key, a bad signature or a revoked key, and a
failed or throttled sign-in, come from someone who proved nothing. Writing
an audit row for each would let anyone grow the append-only log without
limit. Instead the first refusal of an (event, source) in an interval is
audited as usual, and the others only add to its counter in
`audit_refusals`. When a later interval begins, the counts of the finished
ones are written to the log as one `refusals.summary` row and deleted, so
the log still says how many there were, at a rate of one row per interval.
A cap on audited sources per interval bounds the log even against many
sources.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from sqlalchemy import BigInteger, Integer, String, Table, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from tandem.cloud.audit import chain as auditlog
from tandem.cloud.db.base import Base
from tandem.cloud.db.upsert import dialect_insert

SUMMARY = "refusals.summary"
MAX_AUDITED_SOURCES = 100  # per interval: beyond it, refusals are only counted


class RefusalCount(Base):
    """How often source was refused for event in the interval starting at window_start_ms."""

    __tablename__ = "audit_refusals"

    event: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(String(160), primary_key=True)
    window_start_ms: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    last_ms: Mapped[int] = mapped_column(BigInteger)


def note(session: Session, event: str, source: str, detail: Mapping[str, Any], now_ms: int,
         interval_ms: int, kind: str | None = None) -> bool:
    """Count one refusal; audit it if it is its source's first in the interval. True if audited.

    kind (default: event) is what is counted, so that refusals of one event
    for different reasons are audited once each.
    """
    window = now_ms - now_ms % interval_ms
    _summarise_before(session, window, now_ms)
    count = _count(session, (kind or event)[:64], source[:160], window, now_ms)
    if count != 1 or _sources_in(session, window) > MAX_AUDITED_SOURCES:
        return False
    auditlog.append(session, event, source, {**detail, "aggregated": True}, now_ms)
    return True


def _count(session: Session, event: str, source: str, window: int, now_ms: int) -> int:
    table = _table()
    stmt = dialect_insert(session.connection(), table)
    stmt = stmt.on_conflict_do_update(
        index_elements=["event", "source", "window_start_ms"],
        set_={"count": table.c.count + 1, "last_ms": now_ms}).returning(table.c.count)
    return int(session.execute(stmt, {"event": event, "source": source, "window_start_ms": window,
                                      "count": 1, "last_ms": now_ms}).scalar_one())


def _sources_in(session: Session, window: int) -> int:
    return int(session.scalar(select(func.count()).select_from(RefusalCount).where(
        RefusalCount.window_start_ms == window)) or 0)


def _summarise_before(session: Session, window: int, now_ms: int) -> None:
    """Move the counts of finished intervals into one audit row (taken once: DELETE RETURNING)."""
    table = _table()
    finished = session.execute(table.delete().where(table.c.window_start_ms < window).returning(
        table.c.event, table.c.source, table.c.window_start_ms, table.c.count)).all()
    if not finished:
        return
    totals: dict[str, dict[str, int]] = {}
    for event, _source, _window, count in finished:
        entry = totals.setdefault(event, {"refusals": 0, "sources": 0})
        entry["refusals"] += count
        entry["sources"] += 1
    auditlog.append(session, SUMMARY, "cloud", {
        "from_ms": min(r[2] for r in finished), "until_ms": window, "events": totals}, now_ms)


def _table() -> Table:
    return cast(Table, RefusalCount.__table__)
