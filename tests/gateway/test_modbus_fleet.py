"""A fleet of Modbus TCP units behind one address: polls never wait on the journal's fsync,
every poll is accounted for exactly once, and a unit that stops answering does not hold up
the others. Against pymodbus's own TCP server (tools/modbus_sim.py) and the real journal.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from tandem.gateway.modbus.config import ModbusBus, ModbusUnit
from tandem.gateway.modbus.coordinator import BusCoordinator
from tandem.gateway.pipeline.ingress import Ingress
from tandem.gateway.pipeline.journal import Journal
from tandem.gateway.reports import DeviceReport
from tandem.gateway.store.database import GatewayDatabase
from tandem.gateway.store.outbox import Outbox
from tandem.tools.bench.modbus_fleet import write_fleet_map
from tandem.tools.modbus_sim import modbus_controller
from tests.waiting import until

pytestmark = pytest.mark.timeout(60)


class HeldSink:
    """A ReportSink whose answers wait for `release` (a journal stuck in a long fsync)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.reports: list[DeviceReport] = []

    async def submit(self, item: DeviceReport) -> bool:
        self.reports.append(item)
        await self.release.wait()
        return True


def _bus(port: int, units: list[ModbusUnit], connections: int = 1) -> ModbusBus:
    return ModbusBus(name="fleet", kind="tcp", host="127.0.0.1", tcp_port=port, timeout_s=0.5,
                     backoff_max_s=5.0, connections=connections, units=tuple(units))


def _units(regmap: Path, ids: list[int], poll_s: float = 0.05,
           timeout_s: float = 0.0) -> list[ModbusUnit]:
    return [ModbusUnit(name=f"u{i:03d}", unit_id=i, map=regmap, poll_s=poll_s,
                       timeout_s=timeout_s) for i in ids]


def test_polls_go_on_while_the_sink_has_not_answered(tmp_path: Path) -> None:
    async def scenario() -> None:
        regmap = write_fleet_map(tmp_path)
        async with modbus_controller(units=[1, 2, 3]) as port:
            sink = HeldSink()
            bus = BusCoordinator(_bus(port, _units(regmap, [1, 2, 3])), sink)
            stop = asyncio.Event()
            runner = asyncio.create_task(bus.run(stop))
            try:
                await until(lambda: all(u.polls >= 3 for u in bus.units),
                            "three polls of each unit while no report has been answered")
                assert bus.submitted == {"accepted": 0, "sink_full": 0}
            finally:
                sink.release.set()
                stop.set()
                await asyncio.wait_for(runner, 10)
                await bus.close()
        polls = sum(u.polls for u in bus.units)
        assert len(sink.reports) == polls == bus.submitted["accepted"]

    asyncio.run(scenario())


def test_every_poll_is_journaled_exactly_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        regmap = write_fleet_map(tmp_path)
        database = GatewayDatabase(tmp_path / "gateway.db")
        ingress = Ingress(Journal(database, Outbox(database)), max_pending=10_000)
        ids = list(range(1, 21))
        async with modbus_controller(units=ids) as port:
            bus = BusCoordinator(_bus(port, _units(regmap, ids, poll_s=0.02), connections=3),
                                 ingress)
            stop = asyncio.Event()
            committer = asyncio.create_task(ingress.run(stop))
            runner = asyncio.create_task(bus.run(stop))
            try:
                await until(lambda: all(u.polls >= 10 for u in bus.units), "ten polls per unit")
            finally:
                stop.set()
                await asyncio.wait_for(runner, 10)
                await asyncio.wait_for(committer, 10)
                await bus.close()
        rows = database.connection.execute("SELECT device, seq FROM journal").fetchall()
        database.close()
        assert bus.submitted == {"accepted": sum(u.polls for u in bus.units), "sink_full": 0}
        assert max(Counter(rows).values()) == 1, "a poll journaled twice"
        for unit in bus.units:
            seqs = sorted(seq for device, seq in rows if device == unit.device)
            assert seqs == list(range(1, unit.polls + 1)), unit.device
        assert ingress.counts["accepted"] == len(rows)

    asyncio.run(scenario())


def test_a_unit_that_stopped_answering_does_not_hold_up_the_others(tmp_path: Path) -> None:
    # Unit 9 is not served and the server stays silent: each of its requests is outstanding
    # for its whole 2 s timeout. After its first timeout it retries on a connection of its own:
    # while that retry is outstanding, the live units on the bus keep their schedule.
    async def scenario() -> None:
        regmap = write_fleet_map(tmp_path)
        async with modbus_controller(units=[1, 2], silent=True) as port:
            units = _units(regmap, [9], timeout_s=2.0) + _units(regmap, [1, 2])
            sink = HeldSink()
            sink.release.set()
            bus = BusCoordinator(_bus(port, units), sink)
            stop = asyncio.Event()
            runner = asyncio.create_task(bus.run(stop))
            dead, *live = bus.units
            try:
                await until(lambda: dead.failed == 1, "the silent unit's first timeout")
                retry_at = dead.next_due
                await until(lambda: bus.clock() > retry_at + 0.05, "the silent unit's retry")
                before = [u.polls for u in live]
                await until(lambda: all(u.polls >= n + 5 for u, n in zip(live, before, strict=True))
                            or dead.failed > 1, "five more polls of each live unit")
                assert dead.failed == 1, "the live units waited for the silent unit's retry"
                await until(lambda: dead.failed == 2, "the silent unit's retry to time out")
                assert dead.polls == 0 and dead.backoff_s > 0
            finally:
                stop.set()
                await asyncio.wait_for(runner, 10)
                await bus.close()
        assert all(u.failed == 0 for u in live)

    asyncio.run(scenario())


def test_a_late_poll_keeps_the_unit_on_its_grid(tmp_path: Path) -> None:
    # A poll that starts 30 ms late (the lane was busy) must not push every later poll
    # 30 ms back: over a run that would be a rate below the configured one.
    async def scenario() -> None:
        regmap = write_fleet_map(tmp_path)
        now = [0.0]
        async with modbus_controller(units=[1]) as port:
            bus = BusCoordinator(_bus(port, _units(regmap, [1], poll_s=0.1)), HeldSink(),
                                 clock=lambda: now[0])
            (unit,) = bus.units
            try:
                assert await bus.read_unit(unit) is not None
                assert unit.next_due == pytest.approx(0.1)
                now[0] = 0.13
                assert await bus.read_unit(unit) is not None
                assert unit.next_due == pytest.approx(0.2)
                now[0] = 0.45  # more than a period late: the missed slots are not made up
                assert await bus.read_unit(unit) is not None
                assert unit.next_due == pytest.approx(0.55)
            finally:
                await bus.close()

    asyncio.run(scenario())
