"""Sign-in throttling: failed attempts counted per source address and per account, in SQL.

A key ("source:<address>" or "account:<name>") that reached its limit of
failures within the window is refused before any password is hashed, so
guessing costs the server nothing and cannot starve ingest of CPU.

The counters live in the cloud's own database, so every worker process of
the server shares them. (Flask-Limiter's storage library, `limits`, has
memory, Redis, Memcached and MongoDB back-ends but none in SQL; a deployment
without Redis would otherwise throttle per process, i.e. not at all.) A
counter is a fixed window: the first failure after the window has passed
starts a new one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from sqlalchemy import BigInteger, Index, Integer, String, Table, case, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from tandem.cloud.db.base import Base
from tandem.cloud.db.upsert import dialect_insert


class LoginFailures(Base):
    """Failed sign-ins of one key within the window that started at window_start_ms."""

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_window", "window_start_ms"),)

    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    window_start_ms: Mapped[int] = mapped_column(BigInteger)
    failures: Mapped[int] = mapped_column(Integer)


@dataclass(frozen=True, slots=True)
class Limit:
    """At most `failures` failed attempts per key within window_ms."""

    key: str
    failures: int


def limits(source: str, account: str, per_source: int, per_account: int) -> list[Limit]:
    """The two limits a sign-in attempt is held to."""
    return [Limit(f"source:{source}"[:160], per_source),
            Limit(f"account:{account}"[:160], per_account)]


def exhausted(session: Session, wanted: Sequence[Limit], now_ms: int,
              window_ms: int) -> Limit | None:
    """The first limit already used up within the window, or None."""
    by_key = {limit.key: limit for limit in wanted}
    rows = session.execute(select(LoginFailures.key, LoginFailures.failures).where(
        LoginFailures.key.in_(by_key), LoginFailures.window_start_ms > now_ms - window_ms))
    for key, failures in rows:
        if failures >= by_key[key].failures:
            return by_key[key]
    return None


def record_failure(session: Session, wanted: Sequence[Limit], now_ms: int,
                   window_ms: int) -> None:
    """Count one failure against every key (a fresh window where the old one has passed)."""
    table = cast(Table, LoginFailures.__table__)
    expired = table.c.window_start_ms <= now_ms - window_ms
    stmt = dialect_insert(session.connection(), table)
    stmt = stmt.on_conflict_do_update(index_elements=["key"], set_={
        "failures": case((expired, 1), else_=table.c.failures + 1),
        "window_start_ms": case((expired, now_ms), else_=table.c.window_start_ms),
    })
    session.execute(stmt, [{"key": limit.key, "window_start_ms": now_ms, "failures": 1}
                           for limit in wanted])
    # forget windows long gone, so the table holds only the recently active keys
    session.execute(table.delete().where(table.c.window_start_ms <= now_ms - 2 * window_ms))
