"""Specification: one unusable record never stops the others, and is kept where people see it.

Reports here reach the ingress without the wire's range checks, as a Modbus
poll or a journal row written by an older release would: the journal, the
windows and the quarantine run on a real SQLite database.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
from pathlib import Path

import cbor2
import pytest

from tandem.gateway.cli.main import main as gateway_cli
from tandem.gateway.metrics import GatewayMetrics
from tandem.gateway.pipeline.ingress import Ingress
from tandem.gateway.pipeline.journal import Journal
from tandem.gateway.pipeline.quarantine import QuarantineLog, list_records
from tandem.gateway.pipeline.summarise import SummaryPipeline
from tandem.gateway.pipeline.windows import TumblingWindows
from tandem.gateway.reports import DeviceReport
from tandem.gateway.store.database import GatewayDatabase
from tandem.gateway.store.outbox import Outbox
from tandem.wire.report import Report
from tests.gateway.pipeline_stack import Stack, count_readings

T0 = 1_764_230_400_000


class QuarantineStack(Stack):
    """The runtime's stack with the quarantine counted and logged, as runtime.py wires it."""

    def __init__(self, path: Path) -> None:
        self.metrics = GatewayMetrics()
        self.database = GatewayDatabase(path)
        self.outbox = Outbox(self.database)
        self.journal = Journal(self.database, self.outbox,
                               QuarantineLog(self.metrics.quarantined))
        recovery = self.journal.recover()
        self.ingress = Ingress(self.journal, 1000, recovery.last)
        self.pipeline = SummaryPipeline(self.ingress.queue, TumblingWindows(1000), self.journal,
                                        self.metrics, flush_interval_s=0.01)
        self.pipeline.recover(recovery)

    def quarantined(self, reason: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "tandem_gw_quarantined_records_total", {"reason": reason})
        return value or 0.0

    def records(self) -> list[tuple[str, str]]:
        rows = self.database.call_sync(lambda: list_records(self.database.connection))
        return [(r.device, r.reason) for r in rows]


def _good(device: str, seq: int = 1, t_ms: int = T0) -> DeviceReport:
    return DeviceReport(device, Report(seq, 1, t_ms, {"temp": 20.0 + seq}), received_ms=T0)


def _poison(t_ms: int, **values: float) -> DeviceReport:
    return DeviceReport("node-bad", Report(1, 1, t_ms, values or {"temp": 1.0}), received_ms=T0)


@pytest.mark.parametrize("poison", [
    _poison(2**64 - 1), _poison(2**63), _poison(2**63 - 1), _poison(T0, temp=math.nan),
    _poison(T0, temp=math.inf), _poison(T0, temp=1e308),
], ids=["t=2^64-1", "t=2^63", "t=2^63-1", "NaN", "inf", "1e308"])
def test_one_bad_record_does_not_fail_its_journal_group(
        tmp_path: Path, poison: DeviceReport, caplog: pytest.LogCaptureFixture) -> None:
    stack = QuarantineStack(tmp_path / "g.db")
    good = [_good(f"node-{i:02}") for i in range(20)]
    with caplog.at_level(logging.WARNING):
        results = asyncio.run(stack.submit_all([*good[:10], poison, *good[10:]]))

    assert results == [True] * 21  # the bad one is kept too: a resend would not help
    assert stack.ingress.queue.qsize() == 20
    assert stack.ingress.counts["journal_failed"] == 0
    assert stack.records() == [("node-bad", stack.records()[0][1])]
    reason = stack.records()[0][1]
    assert reason.startswith("range_") and stack.quarantined(reason) == 1
    assert any("node-bad" in m and reason in m for m in caplog.messages)
    asyncio.run(stack.process_queue())
    stack.database.close()


def _journal_row_of_an_older_release(path: Path, t_ms: int, vals: object, seq: int) -> None:
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO journal (device, boot, seq, t_ms, received_ms, vals) "
                   "VALUES ('node-bad', 1, ?, ?, ?, ?)", (seq, t_ms, T0, cbor2.dumps(vals)))


def test_a_poisoned_journal_row_is_quarantined_on_replay_and_the_rest_is_summarised(
        tmp_path: Path) -> None:
    first = QuarantineStack(tmp_path / "g.db")
    asyncio.run(first.submit_all([_good("node-01", seq, T0 + 100 * seq) for seq in range(5)]))
    first.database.close()  # crash: five good reports only journaled
    _journal_row_of_an_older_release(tmp_path / "g.db", 2**63 - 1, {"temp": 1.0}, 1)
    _journal_row_of_an_older_release(tmp_path / "g.db", T0, {"temp": "hot"}, 2)
    _journal_row_of_an_older_release(tmp_path / "g.db", T0, {"temp": 2.0, "x": None}, 3)

    second = QuarantineStack(tmp_path / "g.db")  # the replay no longer crashes
    asyncio.run(second.pipeline.drain())
    assert count_readings(second.summaries()) == {"temp": 5}
    assert [device for device, _ in second.records()] == ["node-bad"] * 3
    assert second.quarantined("range_time") == 1 and second.quarantined("range_value") == 2
    second.database.close()

    third = QuarantineStack(tmp_path / "g.db")  # and the quarantined rows do not come back
    asyncio.run(third.pipeline.drain())
    assert third.summaries() == [] and len(third.records()) == 3
    assert third.quarantined("range_time") == 0
    third.database.close()


def test_quarantine_list_shows_device_and_reason(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    stack = QuarantineStack(_database_path(data))
    asyncio.run(stack.submit_all([_poison(2**64 - 1), _good("node-01")]))
    stack.database.close()
    config = tmp_path / "gateway.toml"
    config.write_text(f'version = 1\n[gateway]\nid = "gw-q"\ndata_dir = "{data}"\n'
                      '[identity]\ncert = "c.pem"\nkey = "k.pem"\nca = "ca.pem"\n')

    assert gateway_cli(["quarantine", "list", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "node-bad range_time: t 18446744073709551615 outside" in out
    assert "1 quarantined record(s) shown" in out
    assert gateway_cli(["quarantine", "list", "--json", "--config", str(config)]) == 0
    line = capsys.readouterr().out.strip()
    assert '"device": "node-bad"' in line and '"t": "18446744073709551615"' in line


def _database_path(data_dir: Path) -> Path:
    return data_dir / "gateway.sqlite3"
