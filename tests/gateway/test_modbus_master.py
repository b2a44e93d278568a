"""The gateway's Modbus master: against pymodbus's own TCP server and the firmware's RTU slave.

Polls decode (scale, word order), a dead unit does not stall a live one on the
same bus, and a verified write of the stop coil is read back by another client.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pymodbus import FramerType
from pymodbus.client import AsyncModbusTcpClient, ModbusSerialClient
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import SimData, SimDevice
from pymodbus.simulator.simutils import DataType

from tandem.gateway.actuator import ActuatorError
from tandem.gateway.modbus.config import ModbusBus, ModbusSection, ModbusUnit
from tandem.gateway.modbus.coordinator import BusCoordinator
from tandem.gateway.modbus.metrics import ModbusMetrics
from tandem.gateway.modbus.service import ModbusService
from tandem.gateway.reports import DeviceReport
from tests.modbus_rig import PtyPair, SlaveProcess
from tests.nodeproc import REPO
from tests.ports import free_port
from tests.waiting import until

pytestmark = pytest.mark.timeout(60)

SENSOR_MAP = REPO / "hw" / "registers" / "sensor-node.toml"


class Sink:
    """A ReportSink that keeps what it is given."""

    def __init__(self) -> None:
        self.reports: list[DeviceReport] = []

    async def submit(self, item: DeviceReport) -> bool:
        self.reports.append(item)
        return True


def _f32_words(value: float, little_words: bool = False) -> list[int]:
    hi, lo = struct.unpack(">HH", struct.pack(">f", value))
    return [lo, hi] if little_words else [hi, lo]


def _sensor_device(unit: int) -> SimDevice:
    """The sensor-node map served by pymodbus: temp 21.5 (ABCD), vib 0.75 (CDAB), ..."""
    inputs = [*_f32_words(21.5), *_f32_words(0.75, little_words=True),
              (-1234) & 0xFFFF, 750, 1, 7, 0] + [0] * 13
    return SimDevice(id=unit, simdata=(
        [SimData(0, count=8, values=False, datatype=DataType.BITS)],
        [SimData(0, values=[True, False, False, True, False, False, False, False],
                 datatype=DataType.BITS)],
        [SimData(0, values=[0, 1000, 8000, 2500, 0, 0, 0, 0], datatype=DataType.REGISTERS)],
        [SimData(0, values=inputs, datatype=DataType.REGISTERS)]))


@asynccontextmanager
async def tcp_server(*units: int) -> AsyncIterator[int]:
    """pymodbus's ModbusTcpServer with the sensor map for each unit; yields its port."""
    server = ModbusTcpServer([_sensor_device(u) for u in units], address=("127.0.0.1", 0))
    await server.serve_forever(background=True)
    try:
        listener: Any = server.transport
        yield int(listener.sockets[0].getsockname()[1])
    finally:
        await server.shutdown()  # type: ignore[no-untyped-call]


def _tcp_bus(port: int, *units: ModbusUnit, timeout_s: float = 0.3) -> ModbusBus:
    return ModbusBus(name="plc", kind="tcp", host="127.0.0.1", tcp_port=port,
                     timeout_s=timeout_s, backoff_max_s=2.0, units=units)


def _unit(name: str, unit_id: int, poll_s: float = 0.05, timeout_s: float = 0.0) -> ModbusUnit:
    return ModbusUnit(name=name, unit_id=unit_id, map=SENSOR_MAP, poll_s=poll_s,
                      timeout_s=timeout_s)


async def _run_for(coordinator: BusCoordinator, seconds: float) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(coordinator.run(stop))
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.wait_for(task, 5)



# -- TCP, pymodbus's own server ------------------------------------------------------


def test_tcp_poll_decodes_scale_and_word_order() -> None:
    async def scenario() -> None:
        async with tcp_server(1) as port:
            sink = Sink()
            bus = BusCoordinator(_tcp_bus(port, _unit("node-01", 1)), sink)
            try:
                assert await bus.poll(bus.units[0])
            finally:
                await bus.close()
            (report,) = sink.reports
            assert report.device == "plc/node-01" and report.report.seq == 1
            assert report.report.values == {
                "stop": 0.0, "relay": 0.0, "buzzer": 0.0, "temp_alarm_on": 1.0,
                "vib_alarm_on": 0.0, "stopped": 0.0, "link_up": 1.0, "temp": 21.5,
                "vib": 0.75}
            kept = bus.units[0].values  # report = false points are polled, not reported
            assert kept["temp_c"] == pytest.approx(-12.34)
            assert kept["vib_g"] == pytest.approx(0.75)
            assert kept["temp_alarm"] == pytest.approx(80.0) and kept["period_ms"] == 1000
            assert kept["samples"] == 7

    asyncio.run(scenario())


def test_tcp_verified_write_of_the_stop_coil_is_read_back_by_another_client() -> None:
    async def scenario() -> None:
        async with tcp_server(1) as port:
            bus = BusCoordinator(_tcp_bus(port, _unit("node-01", 1)), Sink())
            other = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1, retries=0)
            try:
                assert await bus.write_coil(1, 0, True) is True
                assert await bus.write_register(1, 2, 5000) is True
                assert await other.connect()
                assert (await other.read_coils(0, count=1, device_id=1)).bits[0] is True
                hr = await other.read_holding_registers(2, count=1, device_id=1)
                assert hr.registers == [5000]
            finally:
                other.close()
                await bus.close()

    asyncio.run(scenario())


def test_tcp_unreachable_bus_backs_off_and_counts() -> None:
    async def scenario() -> None:
        registry = CollectorRegistry()
        bus = BusCoordinator(_tcp_bus(free_port(), _unit("ghost", 1, poll_s=0.05)), Sink(),
                             ModbusMetrics(registry))
        await _run_for(bus, 0.6)
        ghost = bus.units[0]
        assert ghost.polls == 0 and 1 <= ghost.failed <= 5  # 0.05, 0.1, 0.2, 0.4: backoff
        assert ghost.backoff_s > 0.05 and ghost.skipped > 0
        with pytest.raises(ActuatorError, match="connect"):  # a stop that cannot be verified
            await bus.write_coil(1, 0, True)
        errors = registry.get_sample_value("tandem_gw_modbus_errors_total",
                                           {"bus": "plc", "unit": "ghost", "cause": "connect"})
        assert errors is not None and errors >= ghost.failed
        assert registry.get_sample_value("tandem_gw_modbus_unit_backoff_seconds",
                                         {"bus": "plc", "unit": "ghost"}) == ghost.backoff_s

    asyncio.run(scenario())


def test_tcp_unknown_unit_answers_exception_04_and_backs_off_alone() -> None:
    # pymodbus's server answers an unknown device id with exception 04: a failed unit
    async def scenario() -> None:
        async with tcp_server(1) as port:
            bus = BusCoordinator(_tcp_bus(port, _unit("live", 1), _unit("gone", 9)), Sink())
            await _run_for(bus, 0.8)
            await bus.close()
        live, gone = bus.units
        assert live.polls >= 8 and live.failed == 0
        assert gone.polls == 0 and gone.backoff_s > 0 and gone.failed < live.polls

    asyncio.run(scenario())


# -- RTU, the firmware's slave in MicroPython on a pty ---------------------------------


@pytest.fixture
def rtu(tmp_path: Path) -> Iterator[tuple[PtyPair, SlaveProcess]]:
    with PtyPair(tmp_path) as pty, SlaveProcess(pty.a, unit=7) as slave:
        yield pty, slave
        slave.stop()
        assert "Traceback" not in slave.output, slave.output


def _rtu_bus(pty: PtyPair, *units: ModbusUnit) -> ModbusBus:
    # parity N: Linux refuses to re-open a pty with PARENB set (tcsetattr EINVAL)
    return ModbusBus(name="line1", kind="rtu", port=str(pty.b), baudrate=115200, parity="N",
                     timeout_s=0.3, backoff_max_s=2.0, units=units)


def test_rtu_poll_of_the_firmware_slave(rtu: tuple[PtyPair, SlaveProcess]) -> None:
    pty, _ = rtu

    async def scenario() -> None:
        sink = Sink()
        bus = BusCoordinator(_rtu_bus(pty, _unit("node-07", 7)), sink)
        try:
            for _ in range(3):
                assert await bus.poll(bus.units[0])
                bus.units[0].next_point.clear()  # everything due again
        finally:
            await bus.close()
        assert [r.report.seq for r in sink.reports] == [1, 2, 3]
        values = sink.reports[-1].report.values
        assert values["temp"] == 21.5 and values["vib"] == 0.75 and values["link_up"] == 1.0
        kept = bus.units[0].values
        assert kept["temp_c"] == pytest.approx(21.5) and kept["samples"] == 7
        assert kept["unit_msgs"] >= 8  # the slave's own counters, read as input registers

    asyncio.run(scenario())


def test_rtu_dead_unit_does_not_stall_the_live_one(rtu: tuple[PtyPair, SlaveProcess]) -> None:
    pty, _ = rtu

    async def scenario() -> None:
        bus = BusCoordinator(_rtu_bus(pty, _unit("live", 7), _unit("dead", 8, timeout_s=0.2)),
                             Sink())
        stop = asyncio.Event()
        task = asyncio.create_task(bus.run(stop))
        try:
            live, dead = bus.units
            await until(lambda: dead.failed >= 2, "2 failed polls of the dead unit", timeout=5)
            for _ in range(3):  # the live unit is polled while the dead one backs off
                live_before, dead_before = live.polls, dead.failed
                await until(lambda d=dead_before: dead.failed > d,
                            "the dead unit's next attempt", timeout=10)
                assert live.polls - live_before >= 2, (live.polls, live_before, dead.backoff_s)
            assert dead.polls == 0 and dead.backoff_s >= 0.4 and dead.skipped > 0
        finally:
            stop.set()
            await asyncio.wait_for(task, 5)
            await bus.close()

    asyncio.run(scenario())


def test_rtu_verified_stop_then_read_back_by_another_client(
        rtu: tuple[PtyPair, SlaveProcess]) -> None:
    pty, slave = rtu

    async def scenario() -> None:
        bus = BusCoordinator(_rtu_bus(pty, _unit("node-07", 7)), Sink())
        try:
            assert await bus.write_coil(7, 0, True) is True
            with pytest.raises(ActuatorError, match="exception_03"):  # 200 degC: refused
                await bus.write_register(7, 2, 20000)
        finally:
            await bus.close()

    asyncio.run(scenario())
    slave.wait_for("modbus_write", point="stop", value=1)
    other = ModbusSerialClient(str(pty.b), framer=FramerType.RTU, timeout=1, retries=0)
    assert other.connect()
    try:
        assert other.read_coils(0, count=1, device_id=7).bits[0] is True
        assert other.read_discrete_inputs(2, count=1, device_id=7).bits[0] is True  # stopped
    finally:
        other.close()


def test_service_runs_buses_from_config_and_stops_cleanly(
        rtu: tuple[PtyPair, SlaveProcess]) -> None:
    pty, _ = rtu

    async def scenario() -> None:
        sink = Sink()
        registry = CollectorRegistry()
        service = ModbusService(ModbusSection((_rtu_bus(pty, _unit("n7", 7)),)), sink, registry)
        stop = asyncio.Event()
        tasks = [asyncio.create_task(c, name=n) for n, c in service.tasks(stop)]
        await until(lambda: len(sink.reports) >= 3, "3 reports", timeout=5)
        stop.set()
        await asyncio.gather(*tasks)
        await service.close()
        assert asyncio.all_tasks() == {asyncio.current_task()}
        assert registry.get_sample_value("tandem_gw_modbus_polls_total",
                                         {"bus": "line1", "unit": "n7", "result": "ok"}) >= 3
        assert registry.get_sample_value("tandem_gw_modbus_poll_seconds_count",
                                         {"bus": "line1"}) >= 3

    asyncio.run(scenario())
