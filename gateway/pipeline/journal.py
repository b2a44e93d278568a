"""The report journal: every accepted report is on disk before the node gets its 2.04.

Reports stay in the journal until the windows they fed are summarised; the
summaries enter the outbox and the journal rows leave it in one transaction.
After a crash the journal is replayed into fresh windows, and the last
(boot, seq) per device is restored, so a node resending an acknowledged
report is recognised. Window boundaries already filed are kept too, so a late
reading never reopens (and so overwrites) a window the cloud already has.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import cbor2

from tandem.gateway.pipeline import quarantine
from tandem.gateway.pipeline.quarantine import DATA_ERRORS, Fault, record_fault
from tandem.gateway.reports import DeviceReport
from tandem.gateway.store.database import GatewayDatabase
from tandem.gateway.store.outbox import Outbox, Priority
from tandem.wire.batch import Summary
from tandem.wire.report import Report

# Tables: gateway/store/migrations.py (the database makes them on open).


@dataclass(frozen=True, slots=True)
class Journaled:
    """A report and its journal row id (ids grow in commit order)."""

    row_id: int
    item: DeviceReport


@dataclass(frozen=True, slots=True)
class Watermark:
    """Journal rows of `device` up to `max_row_id` with t < `before_ms` are summarised."""

    device: str
    before_ms: int
    max_row_id: int


@dataclass(frozen=True, slots=True)
class Recovery:
    """The journal's state at start-up.

    Rows up to `filed_through` were seen by windows whose closed parts are
    filed: a value of such a row older than its channel's `closed` end is
    already in a summary and must not be counted again; its other values
    were in open windows and are replayed. Later rows are replayed in full.
    """

    rows: list[Journaled]
    last: dict[str, tuple[int, int]]
    closed: dict[tuple[str, str], int]
    filed_through: int


OnQuarantine = Callable[[DeviceReport, Fault], None]


class Journal:
    """Durable record of acknowledged reports not yet summarised."""

    def __init__(self, database: GatewayDatabase, outbox: Outbox,
                 on_quarantine: OnQuarantine | None = None) -> None:
        self.database = database
        self.outbox = outbox
        self.on_quarantine: OnQuarantine = on_quarantine or (lambda item, fault: None)

    async def append(self, items: Sequence[DeviceReport]) -> list[int | None]:
        """Write reports (one transaction, one fsync); return their row ids.

        A report the journal cannot hold is quarantined instead (its id is
        None), in the same transaction: one bad record never fails its group.
        A disk error still fails the whole group.
        """
        results = await self.database.call(self._append, items)
        for item, result in zip(items, results, strict=True):
            if isinstance(result, Fault):
                self.on_quarantine(item, result)
        return [result if isinstance(result, int) else None for result in results]

    async def quarantine(self, rows: Sequence[tuple[Journaled, Fault]]) -> None:
        """Move journal rows the pipeline could not process into quarantine (atomically)."""
        await self.database.call(self._quarantine, list(rows))
        for row, fault in rows:
            self.on_quarantine(row.item, fault)

    async def file(self, summaries: Sequence[Summary], watermarks: Iterable[Watermark],
                   closed: dict[tuple[str, str], int], filed_through: int) -> None:
        """Summaries into the outbox, their journal rows out, window ends kept: atomically.

        `filed_through` is the last journal row the windows had taken in when
        they produced these summaries; recovery relies on it.
        """
        await self.database.call(self._file, list(summaries), list(watermarks), dict(closed),
                                 filed_through)

    def recover(self) -> Recovery:
        """What start-up needs to continue exactly where the last run stopped."""
        return self.database.call_sync(self._recover)

    def _append(self, items: Sequence[DeviceReport]) -> list[int | Fault]:
        db = self.database.connection
        results: list[int | Fault] = []
        with db:
            for item in items:
                fault = record_fault(item)
                if fault is None:
                    try:
                        results.append(self._insert(db, item))
                        continue
                    except DATA_ERRORS as exc:  # raised while binding: nothing was written
                        fault = quarantine.fault_of(exc)
                quarantine.insert(db, item, fault)
                results.append(fault)
        return results

    @staticmethod
    def _insert(db: sqlite3.Connection, item: DeviceReport) -> int:
        r = item.report
        vals = cbor2.dumps(r.values)
        cursor = db.execute(
            "INSERT INTO journal (device, boot, seq, t_ms, received_ms, vals) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (item.device, r.boot, r.seq, item.t_ms, item.received_ms, vals))
        db.execute("INSERT OR REPLACE INTO last_report (device, boot, seq) VALUES (?,?,?)",
                   (item.device, r.boot, r.seq))
        return int(cursor.lastrowid or 0)

    def _quarantine(self, rows: list[tuple[Journaled, Fault]]) -> None:
        db = self.database.connection
        with db:
            for row, fault in rows:
                quarantine.insert(db, row.item, fault)
                db.execute("DELETE FROM journal WHERE id = ?", (row.row_id,))

    def _file(self, summaries: list[Summary], watermarks: list[Watermark],
              closed: dict[tuple[str, str], int], filed_through: int) -> None:
        db = self.database.connection
        with db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('filed_through', ?)",
                       (filed_through,))
            if summaries:
                self.outbox.insert(db, summaries, Priority.SUMMARY)
            db.executemany("DELETE FROM journal WHERE device = ? AND t_ms < ? AND id <= ?",
                           [(w.device, w.before_ms, w.max_row_id) for w in watermarks])
            db.executemany("INSERT OR REPLACE INTO closed_windows (device, channel, until_ms) "
                           "VALUES (?, ?, ?)", [(d, c, u) for (d, c), u in closed.items()])

    def _recover(self) -> Recovery:
        db = self.database.connection
        rows = db.execute("SELECT id, device, boot, seq, t_ms, received_ms, vals FROM journal "
                          "ORDER BY id").fetchall()
        replay = [_row_to_journaled(row) for row in rows]
        last = {d: (b, s) for d, b, s in db.execute("SELECT device, boot, seq FROM last_report")}
        closed = {(d, c): u for d, c, u in
                  db.execute("SELECT device, channel, until_ms FROM closed_windows")}
        row = db.execute("SELECT value FROM meta WHERE key = 'filed_through'").fetchone()
        return Recovery(replay, last, closed, int(row[0]) if row else 0)


def _row_to_journaled(row: sqlite3.Row | tuple[int, str, int, int, int, int, bytes]) -> Journaled:
    row_id, device, boot, seq, t_ms, received_ms, vals = row
    report = Report(seq=seq, boot=boot, t_ms=t_ms, values=cbor2.loads(vals))
    return Journaled(row_id, DeviceReport(device, report, received_ms))
