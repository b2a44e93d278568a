"""Durable store-and-forward queue: SQLite in WAL mode.

Records wait in `records` by priority. The uplink seals a batch in one
transaction: the records move out of `records` and the signed envelope, with
the next batch number, goes into `batches`. A sealed batch is resent byte for
byte until the cloud confirms it, and only then deleted, so a crash at any
moment neither loses records nor gives the cloud two different batches under
one number. All SQLite work runs on one dedicated thread, never on the event
loop.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any, TypeVar

import cbor2

from wire.batch import Record, decode_record, encode_record

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    priority INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS records_by_priority ON records (priority, id);
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY,
    created_ms INTEGER NOT NULL,
    records INTEGER NOT NULL,
    envelope BLOB NOT NULL,
    dead_reason TEXT
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class Priority(IntEnum):
    """Lower drains first: an alarm overtakes every summary."""

    ALARM = 0
    EVENT = 1
    SUMMARY = 2
    BULK = 3


@dataclass(frozen=True, slots=True)
class SealedBatch:
    """A numbered, signed batch waiting for the cloud's confirmation."""

    seq: int
    records: int
    envelope: bytes


class OutboxFull(Exception):
    """The outbox holds its configured maximum of records."""


BuildEnvelope = Callable[[int, Sequence[Record]], bytes]


class Outbox:
    """The gateway's durable queue of records and sealed batches."""

    def __init__(self, path: Path, max_records: int = 1_000_000) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_records = max_records
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        self._db: sqlite3.Connection | None = None
        self._run_sync(self._open)
        self.corrupt_rows = 0

    # -- async facade (what the runtime uses) --------------------------------

    async def put(self, records: Sequence[Record], priority: Priority) -> None:
        """Store records durably (returns after the commit reached the disk)."""
        await self._run(self.put_sync, records, priority)

    async def seal_or_pending(self, max_records: int, build: BuildEnvelope,
                              now_ms: int) -> SealedBatch | None:
        """The oldest unconfirmed batch, or a newly sealed one, or None when empty."""
        return await self._run(self.seal_or_pending_sync, max_records, build, now_ms)

    async def confirm(self, seq: int) -> None:
        """The cloud has committed batch seq: forget it."""
        await self._run(self.confirm_sync, seq)

    async def set_aside(self, seq: int, reason: str) -> None:
        """The cloud refused batch seq for good: keep it for an operator, stop sending it."""
        await self._run(self.set_aside_sync, seq, reason)

    async def depth(self) -> tuple[int, int]:
        """(records waiting, batches sealed and unconfirmed)."""
        return await self._run(self.depth_sync)

    async def close(self) -> None:
        """Close the database and the outbox thread."""
        await self._run(self._close)
        self._executor.shutdown(wait=True)

    # -- synchronous core (runs on the outbox thread) ------------------------

    def put_sync(self, records: Sequence[Record], priority: Priority) -> None:
        db = self._conn()
        (waiting,) = db.execute("SELECT COUNT(*) FROM records").fetchone()
        if waiting + len(records) > self.max_records:
            raise OutboxFull(f"{waiting} records waiting, limit {self.max_records}")
        now = _now_ms()
        with db:
            db.executemany(
                "INSERT INTO records (priority, created_ms, body) VALUES (?, ?, ?)",
                [(int(priority), now, cbor2.dumps(encode_record(r))) for r in records])

    def seal_or_pending_sync(self, max_records: int, build: BuildEnvelope,
                             now_ms: int) -> SealedBatch | None:
        db = self._conn()
        row = db.execute("SELECT seq, records, envelope FROM batches WHERE dead_reason IS NULL "
                         "ORDER BY seq LIMIT 1").fetchone()
        if row is not None:
            return SealedBatch(*row)
        rows = db.execute("SELECT id, body FROM records ORDER BY priority, id LIMIT ?",
                          (max_records,)).fetchall()
        records = self._decode_rows(db, rows)
        if not records:
            return None
        with db:
            seq = self._next_seq(db)
            envelope = build(seq, records)
            db.execute("INSERT INTO batches (seq, created_ms, records, envelope) VALUES (?,?,?,?)",
                       (seq, now_ms, len(records), envelope))
            db.executemany("DELETE FROM records WHERE id = ?", [(r[0],) for r in rows])
        return SealedBatch(seq, len(records), envelope)

    def confirm_sync(self, seq: int) -> None:
        db = self._conn()
        with db:
            db.execute("DELETE FROM batches WHERE seq = ?", (seq,))

    def set_aside_sync(self, seq: int, reason: str) -> None:
        db = self._conn()
        with db:
            db.execute("UPDATE batches SET dead_reason = ? WHERE seq = ?", (reason, seq))

    def depth_sync(self) -> tuple[int, int]:
        db = self._conn()
        (records,) = db.execute("SELECT COUNT(*) FROM records").fetchone()
        (batches,) = db.execute("SELECT COUNT(*) FROM batches WHERE dead_reason IS NULL").fetchone()
        return records, batches

    # -- internals -----------------------------------------------------------

    def _decode_rows(self, db: sqlite3.Connection, rows: list[tuple[int, bytes]]) -> list[Record]:
        records: list[Record] = []
        corrupt: list[tuple[int]] = []
        for row_id, body in rows:
            try:
                records.append(decode_record(cbor2.loads(body), row_id))
            except Exception:
                corrupt.append((row_id,))
        if corrupt:
            # A torn or corrupt row must not block the queue forever: move it aside.
            with db:
                db.execute("CREATE TABLE IF NOT EXISTS corrupt_records AS SELECT * FROM records "
                           "WHERE 0")
                db.executemany("INSERT INTO corrupt_records SELECT * FROM records WHERE id = ?",
                               corrupt)
                db.executemany("DELETE FROM records WHERE id = ?", corrupt)
            self.corrupt_rows += len(corrupt)
        return records

    def _next_seq(self, db: sqlite3.Connection) -> int:
        row = db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
        seq = row[0] if row else 1
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('next_seq', ?)", (seq + 1,))
        return int(seq)

    def _open(self) -> None:
        # Only the outbox thread touches the connection; tests may call the
        # *_sync methods from their own thread while that one is idle.
        db = sqlite3.connect(self.path, isolation_level="DEFERRED", check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(_SCHEMA)
        self._db = db

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("outbox is closed")
        return self._db

    def _run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        return self._executor.submit(fn, *args).result()

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
