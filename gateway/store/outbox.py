"""Durable store-and-forward queue of records and sealed batches (SQLite, WAL).

Records wait in `records` by priority. The uplink seals a batch in one
transaction: the records move out of `records` and the signed envelope, with
the next batch number, goes into `batches`. A sealed batch is resent byte for
byte until the cloud confirms it, and only then deleted, so a crash at any
moment neither loses records nor gives the cloud two different batches under
one number.

Batch numbers belong to an epoch, a random number drawn when the database is
new and kept in `meta`: a gateway whose data directory was reset numbers from
1 in a new epoch, so the cloud stores its batches instead of taking them for
ones it already has. If the cloud still holds a number with other content
(a directory restored from an old backup), `renumber` moves the batch past
the cloud's highest number and re-signs it.

The outbox is bounded: past `max_records` waiting summaries it degrades
gracefully, merging the oldest summaries pairwise into coarser windows before
refusing any. Alarms and events are never merged, refused or dropped.

Alarms and events are urgent: once committed, `put` calls every `on_urgent`
callback (the uplink's urgent lane), so they leave without waiting for the
next flush.
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

import cbor2

from tandem.gateway.store.database import GatewayDatabase
from tandem.wire.batch import Record, Summary, decode_record, encode_record
from tandem.wire.clock import now_ms

log = logging.getLogger(__name__)

# Tables: gateway/store/migrations.py (the database makes them on open).


class Priority(IntEnum):
    """Lower drains first: an alarm overtakes every summary."""

    ALARM = 0
    EVENT = 1
    SUMMARY = 2
    BULK = 3


_NEVER_REFUSED = (Priority.ALARM, Priority.EVENT)
BULK_PER_BATCH = 1  # bulk records (raw snippets, up to 60 KB each) per batch


@dataclass(frozen=True, slots=True)
class SealedBatch:
    """A numbered, signed batch waiting for the cloud's confirmation."""

    seq: int
    records: int
    envelope: bytes
    priority: int = Priority.SUMMARY


class OutboxFull(Exception):
    """Even after merging, the outbox holds its configured maximum of summaries."""


BuildEnvelope = Callable[[int, Sequence[Record]], bytes]
Renumber = Callable[[int, bytes], bytes]  # (new seq, old envelope) -> new envelope
EPOCH_BITS = 62  # fits SQLite's signed 64-bit INTEGER and CBOR's uint


class Admission(Protocol):
    """What every record passes on its way in (the privacy gate), in the insert's transaction."""

    def admit(self, db: sqlite3.Connection, records: Sequence[Record]) -> Sequence[Record]:
        """The records to store in place of records."""
        ...


class Outbox:
    """The gateway's durable queue of records and sealed batches."""

    def __init__(self, database: GatewayDatabase, max_records: int = 1_000_000) -> None:
        self.database = database
        self.max_records = max_records
        self.corrupt_rows = 0
        self.merged = 0
        self.degraded = False
        self.admission: Admission | None = None
        # Called on the event loop after urgent records committed (the uplink's urgent lane).
        self.on_urgent: list[Callable[[], None]] = []
        self.epoch = database.call_sync(self._epoch)

    # -- async facade ----------------------------------------------------------

    async def put(self, records: Sequence[Record], priority: Priority) -> None:
        """Store records durably (returns after the commit reached the disk)."""
        await self.database.call(self.put_sync, records, priority)
        if priority in _NEVER_REFUSED:
            for notify in self.on_urgent:
                notify()

    async def seal_or_pending(self, max_records: int, build: BuildEnvelope, now_ms: int,
                              max_priority: Priority = Priority.BULK) -> SealedBatch | None:
        """The oldest unconfirmed batch, or a newly sealed one, or None when nothing waits."""
        return await self.database.call(self.seal_or_pending_sync, max_records, build, now_ms,
                                        max_priority)

    async def confirm(self, seq: int) -> None:
        """The cloud has committed batch seq: forget it."""
        await self.database.call(self.confirm_sync, seq)

    async def set_aside(self, seq: int, reason: str) -> None:
        """The cloud refused batch seq for good: keep it for an operator, stop sending it."""
        await self.database.call(self.set_aside_sync, seq, reason)

    async def renumber(self, seq: int, at_least: int, rebuild: Renumber) -> SealedBatch:
        """Move batch seq to a number >= at_least never used here, re-built by rebuild."""
        return await self.database.call(self.renumber_sync, seq, at_least, rebuild)

    async def depth(self) -> tuple[int, int]:
        """(records waiting, batches sealed and unconfirmed)."""
        return await self.database.call(self.depth_sync)

    # -- synchronous core: these run on the database thread -------------------

    def put_sync(self, records: Sequence[Record], priority: Priority) -> None:
        """Insert records in a transaction of their own."""
        db = self.database.connection
        with db:
            self.insert(db, records, priority)

    def insert(self, db: sqlite3.Connection, records: Sequence[Record],
               priority: Priority) -> None:
        """Insert inside the caller's transaction (so a caller can combine writes)."""
        if self.admission is not None:
            records = self.admission.admit(db, records)
        if priority not in _NEVER_REFUSED:
            self._make_room(db, len(records))
        now = now_ms()
        db.executemany(
            "INSERT INTO records (priority, created_ms, body) VALUES (?, ?, ?)",
            [(int(priority), now, cbor2.dumps(encode_record(r))) for r in records])

    def seal_or_pending_sync(self, max_records: int, build: BuildEnvelope, now_ms: int,
                             max_priority: Priority = Priority.BULK) -> SealedBatch | None:
        """Most urgent unconfirmed batch; alarms waiting behind a summary batch get their own."""
        db = self.database.connection
        row = db.execute("SELECT seq, records, envelope, priority FROM batches "
                         "WHERE dead_reason IS NULL ORDER BY priority, seq LIMIT 1").fetchone()
        if row is not None and (row[3] <= Priority.EVENT or not self._urgent_waiting(db)):
            return SealedBatch(*row)
        if row is not None:
            max_priority = Priority.EVENT  # jump the queue: seal only the urgent records
        rows = self._pick(db, max_priority, max_records)
        records = self._decode_rows(db, [(r[0], r[1]) for r in rows])
        if not records:
            return None
        top = rows[0][2]
        with db:
            seq = self._next_seq(db)
            envelope = build(seq, records)
            db.execute("INSERT INTO batches (seq, priority, created_ms, records, envelope) "
                       "VALUES (?,?,?,?,?)", (seq, top, now_ms, len(records), envelope))
            db.executemany("DELETE FROM records WHERE id = ?", [(r[0],) for r in rows])
        return SealedBatch(seq, len(records), envelope, top)

    def _pick(self, db: sqlite3.Connection, max_priority: Priority,
              max_records: int) -> list[tuple[int, bytes, int]]:
        """The next batch's records; bulk ones (raw snippets) alone, BULK_PER_BATCH at most.

        So a batch of summaries never grows past the cloud's size limit by a snippet.
        """
        query = "SELECT id, body, priority FROM records WHERE priority <= ? ORDER BY priority, " \
                "id LIMIT ?"
        rows = db.execute(query, (min(int(max_priority), Priority.SUMMARY),
                                  max_records)).fetchall()
        if rows or max_priority < Priority.BULK:
            return list(rows)
        return list(db.execute(query, (int(Priority.BULK), min(max_records, BULK_PER_BATCH))))

    def _urgent_waiting(self, db: sqlite3.Connection) -> bool:
        return db.execute("SELECT 1 FROM records WHERE priority <= ? LIMIT 1",
                          (int(Priority.EVENT),)).fetchone() is not None

    def confirm_sync(self, seq: int) -> None:
        db = self.database.connection
        with db:
            db.execute("DELETE FROM batches WHERE seq = ?", (seq,))

    def renumber_sync(self, seq: int, at_least: int, rebuild: Renumber) -> SealedBatch:
        db = self.database.connection
        row = db.execute("SELECT records, envelope, priority FROM batches WHERE seq = ?",
                         (seq,)).fetchone()
        if row is None:
            raise KeyError(f"no sealed batch {seq}")
        with db:
            self._skip_to(db, at_least)
            new = self._next_seq(db)
            envelope = rebuild(new, row[1])
            db.execute("UPDATE batches SET seq = ?, envelope = ? WHERE seq = ?",
                       (new, envelope, seq))
        return SealedBatch(new, row[0], envelope, row[2])

    def set_aside_sync(self, seq: int, reason: str) -> None:
        db = self.database.connection
        with db:
            db.execute("UPDATE batches SET dead_reason = ? WHERE seq = ?", (reason, seq))

    def depth_sync(self) -> tuple[int, int]:
        db = self.database.connection
        (records,) = db.execute("SELECT COUNT(*) FROM records").fetchone()
        (batches,) = db.execute("SELECT COUNT(*) FROM batches WHERE dead_reason IS NULL").fetchone()
        return records, batches

    # -- bounds ----------------------------------------------------------------

    def _make_room(self, db: sqlite3.Connection, incoming: int) -> None:
        waiting = self._refusable_count(db)
        if waiting + incoming <= self.max_records:
            self._set_degraded(False, waiting)
            return
        self._set_degraded(True, waiting)
        while waiting + incoming > self.max_records:
            merged = self._merge_oldest_summaries(db, max(2, waiting // 2))
            if merged == 0:
                raise OutboxFull(f"{waiting} summaries waiting, limit {self.max_records}; "
                                 "nothing left to merge")
            waiting -= merged

    def _refusable_count(self, db: sqlite3.Connection) -> int:
        (count,) = db.execute("SELECT COUNT(*) FROM records WHERE priority >= ?",
                              (int(Priority.SUMMARY),)).fetchone()
        return int(count)

    def _merge_oldest_summaries(self, db: sqlite3.Connection, how_many: int) -> int:
        """Merge neighbouring windows of one channel pairwise; return rows saved."""
        rows = db.execute("SELECT id, body FROM records WHERE priority = ? ORDER BY id LIMIT ?",
                          (int(Priority.SUMMARY), how_many)).fetchall()
        series: dict[tuple[str, str], list[tuple[int, Summary]]] = {}
        for row_id, record in zip((r[0] for r in rows), self._decode_rows(db, rows),
                                  strict=False):
            if isinstance(record, Summary):
                series.setdefault((record.device, record.channel), []).append((row_id, record))
        saved = 0
        for items in series.values():
            items.sort(key=lambda item: item[1].t0_ms)
            for (keep_id, first), (drop_id, second) in zip(items[::2], items[1::2],
                                                             strict=False):
                merged = merge_summaries(first, second)
                db.execute("UPDATE records SET body = ? WHERE id = ?",
                           (cbor2.dumps(encode_record(merged)), keep_id))
                db.execute("DELETE FROM records WHERE id = ?", (drop_id,))
                saved += 1
        self.merged += saved
        return saved

    def _set_degraded(self, degraded: bool, waiting: int) -> None:
        if degraded != self.degraded:
            self.degraded = degraded
            if degraded:
                log.warning("outbox DEGRADED: %d summaries waiting (limit %d); merging old "
                            "windows, alarms and events still kept", waiting, self.max_records)
            else:
                log.info("outbox back to normal: %d summaries waiting", waiting)

    # -- internals -----------------------------------------------------------

    def _decode_rows(self, db: sqlite3.Connection, rows: list[tuple[int, bytes]]) -> list[Record]:
        records: list[Record] = []
        corrupt: list[tuple[int]] = []
        for row_id, body in rows:
            try:
                records.append(decode_record(cbor2.loads(body), row_id))
            except Exception:  # noqa: BLE001 - any undecodable row is set aside, never fatal
                corrupt.append((row_id,))
        if corrupt:
            # A torn or corrupt row must not block the queue forever: move it aside.
            with db:
                db.executemany("INSERT INTO corrupt_records SELECT * FROM records WHERE id = ?",
                               corrupt)
                db.executemany("DELETE FROM records WHERE id = ?", corrupt)
            self.corrupt_rows += len(corrupt)
            log.error("outbox: %d corrupt record rows moved to corrupt_records", len(corrupt))
        return records

    def _epoch(self) -> int:
        db = self.database.connection
        row = db.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
        if row is not None:
            return int(row[0])
        epoch = secrets.randbits(EPOCH_BITS) | 1  # never 0: that means "no epoch" on the wire
        with db:
            db.execute("INSERT INTO meta (key, value) VALUES ('epoch', ?)", (epoch,))
        log.info("outbox: new batch epoch %d (a new data directory)", epoch)
        return epoch

    def _skip_to(self, db: sqlite3.Connection, at_least: int) -> None:
        """Make the next batch number at least at_least (the cloud has seen those below)."""
        db.execute("INSERT INTO meta (key, value) VALUES ('next_seq', ?) ON CONFLICT (key) "
                   "DO UPDATE SET value = MAX(value, excluded.value)", (at_least,))

    def _next_seq(self, db: sqlite3.Connection) -> int:
        row = db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
        seq = row[0] if row else 1
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('next_seq', ?)", (seq + 1,))
        return int(seq)


def merge_summaries(first: Summary, second: Summary) -> Summary:
    """One summary covering both windows (first must start earlier)."""
    count = first.count + second.count
    minimum, maximum = min(first.minimum, second.minimum), max(first.maximum, second.maximum)
    mean = (first.mean * first.count + second.mean * second.count) / count
    return Summary(device=first.device, channel=first.channel, t0_ms=first.t0_ms,
                   t1_ms=max(first.t1_ms, second.t1_ms), count=count, minimum=minimum,
                   maximum=maximum, mean=min(max(mean, minimum), maximum), last=second.last)
