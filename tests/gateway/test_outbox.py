"""Specification of the durable outbox: order, sealing, confirmation, crash safety."""

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest

from tandem.gateway.store.database import GatewayDatabase
from tandem.gateway.store.outbox import Outbox, OutboxFull, Priority
from tandem.wire.batch import Event, Record, Summary


def _summary(i: int) -> Summary:
    return Summary("n1", "temp", i * 1000, i * 1000 + 1000, 1, float(i), float(i), float(i),
                   float(i))


def _outbox(path: Path, max_records: int = 1_000_000) -> Outbox:
    return Outbox(GatewayDatabase(path), max_records)


ALARM = Event("n1", "overheat", 5, 3, {"temp": 99.0})


def _build(log: list[tuple[int, int]]):  # type: ignore[no-untyped-def]
    def build(seq: int, records: Sequence[Record]) -> bytes:
        log.append((seq, len(records)))
        return f"envelope-{seq}-{len(records)}".encode()
    return build


def test_alarms_overtake_summaries_and_batches_are_numbered(tmp_path: Path) -> None:
    async def scenario() -> None:
        outbox = _outbox(tmp_path / "o.db")
        await outbox.put([_summary(i) for i in range(3)], Priority.SUMMARY)
        await outbox.put([ALARM], Priority.ALARM)
        sealed: list[tuple[int, int]] = []
        first = await outbox.seal_or_pending(2, _build(sealed), now_ms=0)
        assert first is not None and first.seq == 1 and first.records == 2
        again = await outbox.seal_or_pending(2, _build(sealed), now_ms=0)
        assert again == first and sealed == [(1, 2)]  # resent as is, not rebuilt
        await outbox.confirm(1)
        second = await outbox.seal_or_pending(10, _build(sealed), now_ms=0)
        assert second is not None and (second.seq, second.records) == (2, 2)
        await outbox.confirm(2)
        assert await outbox.seal_or_pending(10, _build(sealed), now_ms=0) is None
        assert await outbox.depth() == (0, 0)
        outbox.database.close()

    asyncio.run(scenario())


def test_first_batch_holds_the_alarm(tmp_path: Path) -> None:
    captured: list[Sequence[Record]] = []

    def build(seq: int, records: Sequence[Record]) -> bytes:
        captured.append(records)
        return b"x"

    outbox = _outbox(tmp_path / "o.db")
    outbox.put_sync([_summary(1)], Priority.SUMMARY)
    outbox.put_sync([ALARM], Priority.ALARM)
    outbox.seal_or_pending_sync(1, build, 0)
    assert captured == [[ALARM]]
    outbox.database.close()


def test_sealed_batch_and_sequence_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    outbox = _outbox(path)
    outbox.put_sync([_summary(1), _summary(2)], Priority.SUMMARY)
    sealed = outbox.seal_or_pending_sync(10, lambda s, r: b"env", 0)
    outbox.database.close()  # as after a crash: nothing confirmed

    reopened = _outbox(path)
    assert reopened.seal_or_pending_sync(10, lambda s, r: b"other", 0) == sealed
    reopened.confirm_sync(1)
    reopened.put_sync([_summary(3)], Priority.SUMMARY)
    third = reopened.seal_or_pending_sync(10, lambda s, r: b"env2", 0)
    assert third is not None and third.seq == 2  # numbers are never reused
    reopened.database.close()


def test_refused_batch_is_set_aside_not_resent(tmp_path: Path) -> None:
    outbox = _outbox(tmp_path / "o.db")
    outbox.put_sync([_summary(1)], Priority.SUMMARY)
    outbox.seal_or_pending_sync(10, lambda s, r: b"env", 0)
    outbox.set_aside_sync(1, "422 invalid_batch")
    assert outbox.seal_or_pending_sync(10, lambda s, r: b"env", 0) is None
    assert outbox.depth_sync() == (0, 0)
    outbox.database.close()


def test_a_corrupt_row_is_moved_aside_and_the_rest_flows(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    outbox = _outbox(path)
    outbox.put_sync([_summary(1), _summary(2)], Priority.SUMMARY)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE records SET body = x'ff00' WHERE id = 1")
    captured: list[Sequence[Record]] = []
    outbox.seal_or_pending_sync(10, lambda s, r: captured.append(r) or b"e", 0)  # type: ignore[func-returns-value]
    assert captured == [[_summary(2)]]
    assert outbox.corrupt_rows == 1
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM corrupt_records").fetchone() == (1,)
    outbox.database.close()


def _waiting(outbox: Outbox) -> list[Record]:
    rows = outbox.database.connection.execute("SELECT id, body FROM records ORDER BY id")
    return outbox._decode_rows(outbox.database.connection, rows.fetchall())


def test_a_full_outbox_merges_old_windows_and_keeps_every_reading(tmp_path: Path) -> None:
    outbox = _outbox(tmp_path / "o.db", max_records=100)
    outbox.put_sync([_summary(i) for i in range(100)], Priority.SUMMARY)
    assert not outbox.degraded
    outbox.put_sync([_summary(100)], Priority.SUMMARY)
    assert outbox.degraded and outbox.merged > 0
    waiting = [r for r in _waiting(outbox) if isinstance(r, Summary)]
    assert len(waiting) <= 100
    assert sum(r.count for r in waiting) == 101  # coarser, but nothing lost
    assert sorted(r.t0_ms for r in waiting) == sorted({r.t0_ms for r in waiting})
    merged = next(r for r in waiting if r.count == 2)
    assert merged.t1_ms - merged.t0_ms == 2000
    outbox.database.close()


def test_alarms_are_kept_even_when_summaries_are_refused(tmp_path: Path) -> None:
    outbox = _outbox(tmp_path / "o.db", max_records=100)
    # 100 different series, one window each: nothing can be merged.
    outbox.put_sync([Summary(f"n{i}", "t", 0, 1000, 1, 1.0, 1.0, 1.0, 1.0) for i in range(100)],
                    Priority.SUMMARY)
    with pytest.raises(OutboxFull):
        outbox.put_sync([_summary(1)], Priority.SUMMARY)
    outbox.put_sync([ALARM] * 50, Priority.ALARM)
    assert outbox.depth_sync() == (150, 0)
    outbox.database.close()


def test_an_alarm_jumps_a_summary_batch_that_is_stuck_retrying(tmp_path: Path) -> None:
    outbox = _outbox(tmp_path / "o.db")
    outbox.put_sync([_summary(1)], Priority.SUMMARY)
    stuck = outbox.seal_or_pending_sync(10, lambda s, r: b"summaries", 0)
    outbox.put_sync([ALARM], Priority.ALARM)
    urgent = outbox.seal_or_pending_sync(10, lambda s, r: b"alarm", 0)
    assert urgent is not None and stuck is not None
    assert (urgent.seq, urgent.envelope) == (2, b"alarm")
    assert outbox.seal_or_pending_sync(10, lambda s, r: b"x", 0) == urgent  # until confirmed
    outbox.confirm_sync(urgent.seq)
    assert outbox.seal_or_pending_sync(10, lambda s, r: b"x", 0) == stuck
    outbox.database.close()
