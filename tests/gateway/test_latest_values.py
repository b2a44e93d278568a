"""Specification of the live values: the newest reading per channel, coalesced and bounded."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tandem.gateway.pipeline.ingress import Ingress
from tandem.gateway.pipeline.journal import Journal
from tandem.gateway.pipeline.latest import LatestValues, LiveValue
from tandem.gateway.reports import DeviceReport
from tandem.gateway.store.database import GatewayDatabase
from tandem.gateway.store.outbox import Outbox
from tandem.wire.report import Report


def _report(device: str, seq: int, t_ms: int, **values: float) -> DeviceReport:
    return DeviceReport(device, Report(seq, 1, t_ms, dict(values)), t_ms)


def test_the_newest_value_per_channel_wins_and_channels_accumulate() -> None:
    latest = LatestValues()
    latest.take(_report("n1", 1, 1000, temp=20.0, vib=0.1))
    latest.take(_report("n1", 2, 2000, temp=21.5))
    latest.take(_report("n1", 3, 1500, temp=99.0))  # a late resend is not the newest
    values = latest.device("n1")
    assert values is not None
    assert values.channels == {"temp": LiveValue(21.5, 2000), "vib": LiveValue(0.1, 1000)}
    assert latest.device("n2") is None


def test_only_devices_changed_since_a_version_are_shipped() -> None:
    latest = LatestValues()
    latest.take(_report("n1", 1, 1000, temp=20.0))
    latest.take(_report("n2", 1, 1000, temp=30.0))
    cursor = latest.version
    assert latest.changed_since(cursor, ["n1", "n2"]) == []
    latest.take(_report("n2", 2, 2000, temp=31.0))
    latest.take(_report("n3", 1, 2000, temp=5.0))  # not selected: not shipped
    changed = latest.changed_since(cursor, ["n1", "n2"])
    assert [(v.device, v.channels["temp"].value) for v in changed] == [("n2", 31.0)]


def test_the_map_is_bounded_forgetting_the_device_heard_from_longest_ago() -> None:
    latest = LatestValues(max_devices=2)
    for i, device in enumerate(["a", "b", "a", "c"]):
        latest.take(_report(device, i + 1, 1000 + i, x=float(i)))
    assert latest.devices() == ["a", "c"]
    assert latest.forgotten == 1


def test_the_ingress_feeds_it_before_the_journal_commit(tmp_path: Path) -> None:
    async def scenario() -> LatestValues:
        database = GatewayDatabase(tmp_path / "gateway.db")
        journal = Journal(database, Outbox(database))
        ingress = Ingress(journal, 100, journal.recover().last)
        latest = LatestValues()
        ingress.observers.append(latest.take)
        stop = asyncio.Event()
        task = asyncio.create_task(ingress.run(stop))
        try:
            assert await ingress.submit(_report("n1", 1, 1000, temp=20.0))
        finally:
            stop.set()
            await task
            database.close()
        return latest

    latest = asyncio.run(scenario())
    values = latest.device("n1")
    assert values is not None and values.channels == {"temp": LiveValue(20.0, 1000)}
