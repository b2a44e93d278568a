"""The audit log table: append-only, each row chained to the one before by SHA-256.

Row n stores hash_n = sha256(hash_{n-1} || canonical(n)), where canonical(n)
is the compact, key-sorted JSON of (seq, at_ms, event, actor, detail) and
hash_0 is GENESIS. Changing or deleting a row breaks the chain at that row
or the next (`verify` names it); deleting rows at the end is detected only
against a head hash kept elsewhere (`verify(expect_head=...)`). This module
has `append` and `verify` and no way to update or delete; SQLite triggers
and a PostgreSQL trigger refuse UPDATE, DELETE (and TRUNCATE) as well (made
by the schema migrations: cloud/db/migrations/versions/v0001_initial.py).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, String, Text, select, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from tandem.cloud.db.base import Base

GENESIS = "0" * 64
MAX_DETAIL = 4096


class AuditEntry(Base):
    """One audited event."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at_ms: Mapped[int] = mapped_column(BigInteger)
    event: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(160))
    detail: Mapped[str] = mapped_column(Text)  # canonical JSON object
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


@dataclass(frozen=True, slots=True)
class Verdict:
    """What `verify` found: ok, or the first bad row and why."""

    rows: int
    head: str
    bad_seq: int | None = None
    problem: str = ""

    @property
    def ok(self) -> bool:
        """True when the whole chain checks out."""
        return self.bad_seq is None


def canonical(seq: int, at_ms: int, event_name: str, actor: str, detail: str) -> bytes:
    """The bytes a row's hash covers (detail is already canonical JSON)."""
    return json.dumps({"seq": seq, "at_ms": at_ms, "event": event_name, "actor": actor,
                       "detail": json.loads(detail)}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def chain_hash(prev_hash: str, row: bytes) -> str:
    """hash_n from hash_{n-1} and row n's canonical bytes."""
    return hashlib.sha256(bytes.fromhex(prev_hash) + row).hexdigest()


def append(session: Session, event_name: str, actor: str, detail: Mapping[str, Any],
           now_ms: int) -> AuditEntry:
    """Add a row at the end of the chain, in session's transaction."""
    _lock(session)
    last = session.execute(select(AuditEntry.seq, AuditEntry.hash)
                           .order_by(AuditEntry.seq.desc()).limit(1)).first()
    seq, prev = (last[0] + 1, last[1]) if last is not None else (1, GENESIS)
    body = _detail_json(detail)
    actor = actor[:160]
    entry = AuditEntry(seq=seq, at_ms=now_ms, event=event_name[:64], actor=actor, detail=body,
                       prev_hash=prev)
    entry.hash = chain_hash(prev, canonical(seq, now_ms, entry.event, actor, body))
    session.add(entry)
    session.flush()
    return entry


def entries(session: Session, after_seq: int = 0, limit: int | None = None
            ) -> Iterator[AuditEntry]:
    """Rows with seq > after_seq in order, read in chunks."""
    query = select(AuditEntry).where(AuditEntry.seq > after_seq).order_by(AuditEntry.seq)
    if limit is not None:
        query = query.limit(limit)
    yield from session.scalars(query.execution_options(yield_per=500))


def verify(session: Session, expect_head: str | None = None) -> Verdict:
    """Recompute the chain; name the first row whose seq, link or hash is wrong."""
    prev, count, expected_seq = GENESIS, 0, 1
    for row in entries(session):
        problem = _row_problem(row, prev, expected_seq)
        if problem:
            return Verdict(count, prev, row.seq, problem)
        prev, count, expected_seq = row.hash, count + 1, row.seq + 1
    if expect_head is not None and expect_head != prev:
        return Verdict(count, prev, expected_seq, f"head is {prev}, expected {expect_head} "
                                                  "(rows missing or added at the end)")
    return Verdict(count, prev)


def _row_problem(row: AuditEntry, prev: str, expected_seq: int) -> str:
    if row.seq != expected_seq:
        return f"expected seq {expected_seq} (rows deleted before it)"
    if row.prev_hash != prev:
        return "prev_hash does not match the previous row (a row before it changed or vanished)"
    try:
        content = canonical(row.seq, row.at_ms, row.event, row.actor, row.detail)
    except ValueError:
        return "detail is not JSON (row modified)"
    if chain_hash(prev, content) != row.hash:
        return "hash does not match the row's content (row modified)"
    return ""


def _detail_json(detail: Mapping[str, Any]) -> str:
    text_ = json.dumps(dict(detail), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                       default=str)
    if len(text_) > MAX_DETAIL:
        text_ = json.dumps({"truncated": text_[:MAX_DETAIL]}, separators=(",", ":"),
                           ensure_ascii=False)
    return text_


def _lock(session: Session) -> None:
    """Serialise appends (SQLite's BEGIN IMMEDIATE already holds the write lock)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("LOCK TABLE audit_log IN SHARE ROW EXCLUSIVE MODE"))


