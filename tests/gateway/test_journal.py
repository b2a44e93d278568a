"""Specification: an acknowledged reading is counted exactly once, across crashes.

The journal, the windows and the outbox share one database; these tests crash
the pipeline (close the database without flushing) at awkward moments and
check that after recovery every reading is in exactly one summary.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from tandem.gateway.reports import DeviceReport
from tandem.wire.report import Report
from tests.gateway.pipeline_stack import Stack, count_readings


def _report(seq: int, t_ms: int, boot: int = 1, device: str = "n1",
            **values: float) -> DeviceReport:
    return DeviceReport(device, Report(seq, boot, t_ms, values), received_ms=t_ms)


def test_repeats_are_dropped_even_after_a_restart(tmp_path: Path) -> None:
    first = Stack(tmp_path / "g.db")
    assert asyncio.run(first.submit_all([_report(1, 1000, a=1), _report(2, 1100, a=2)]))
    first.database.close()  # crash: nothing processed, nothing flushed
    second = Stack(tmp_path / "g.db")
    assert asyncio.run(second.submit_all([_report(2, 1100, a=2)])) == [True]  # resend
    assert second.ingress.queue.empty() and second.ingress.counts["duplicate"] == 1
    assert asyncio.run(second.submit_all([_report(1, 1200, boot=2, a=3)])) == [True]  # reboot
    assert second.ingress.queue.qsize() == 1
    second.database.close()


def test_a_crash_with_open_windows_loses_and_repeats_nothing(tmp_path: Path) -> None:
    first = Stack(tmp_path / "g.db")
    # Channel b pauses: a's first window closes and is filed, b's stays open.
    reports = [_report(1, 1000, a=1, b=10), _report(2, 1500, a=2, b=20),
               _report(3, 2000, a=3), _report(4, 2500, a=4)]
    asyncio.run(first.submit_all(reports))
    asyncio.run(first.process_queue())
    assert count_readings(first.summaries()) == {"a": 2}
    asyncio.run(first.submit_all([_report(5, 2600, a=5, b=50)]))  # journaled, not yet taken
    first.database.close()  # crash: b's windows and a's second window never filed

    second = Stack(tmp_path / "g.db")
    asyncio.run(second.pipeline.drain())
    # a: 3, 4, 5; b: 10, 20 and 50 - each exactly once across both runs.
    assert count_readings(second.summaries()) == {"a": 3, "b": 3}
    second.database.close()


def test_a_crash_after_a_partial_filing_does_not_count_a_value_twice(tmp_path: Path) -> None:
    first = Stack(tmp_path / "g.db")
    asyncio.run(first.submit_all([_report(1, 1000, a=1, b=1), _report(2, 1200, a=2)]))
    asyncio.run(first.process_queue())
    asyncio.run(first.submit_all([_report(3, 2100, a=3)]))  # closes a:[1000,2000); b open
    asyncio.run(first.process_queue())
    filed = first.summaries()
    assert count_readings(filed) == {"a": 2}
    first.database.close()  # report 1 stays journaled: b's window is still open

    second = Stack(tmp_path / "g.db")
    asyncio.run(second.pipeline.drain())
    assert count_readings(second.summaries()) == {"a": 1, "b": 1}  # a=1 and a=2 not counted again
    second.database.close()


def test_a_late_reading_after_a_restart_does_not_reopen_a_filed_window(tmp_path: Path) -> None:
    first = Stack(tmp_path / "g.db")
    asyncio.run(first.submit_all([_report(1, 1000, a=1), _report(2, 2000, a=2)]))
    asyncio.run(first.process_queue())
    assert [(s.t0_ms, s.count) for s in first.summaries()] == [(1000, 1)]
    first.database.close()

    second = Stack(tmp_path / "g.db")
    asyncio.run(second.submit_all([_report(1, 1500, boot=9, a=9)]))  # another boot, old time
    asyncio.run(second.pipeline.drain())
    keys = sorted((s.t0_ms, s.count) for s in second.summaries())
    assert keys == [(1500, 1), (2000, 1)]  # 1500 is its own summary, not a second [1000..)
    second.database.close()


def test_ingress_is_bounded_and_says_so(tmp_path: Path) -> None:
    stack = Stack(tmp_path / "g.db", max_pending=2)
    results = asyncio.run(stack.submit_all([_report(i, 1000 + i, a=i) for i in range(1, 4)]))
    assert results == [True, True, False]
    assert stack.ingress.counts["queue_full"] == 1
    stack.database.close()
