"""Specification of the field-bus thread and of how emergency stops find their Modbus port."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from pymodbus.client import AsyncModbusTcpClient

from tandem.gateway.actuator import ActuatorError
from tandem.gateway.metrics import GatewayMetrics
from tandem.gateway.modbus.config import ModbusBus, ModbusSection, ModbusUnit
from tandem.gateway.modbus.coordinator import BusCoordinator
from tandem.gateway.modbus.fieldbus import CrossLoopSink, FieldbusThread
from tandem.gateway.modbus.service import ModbusService
from tandem.gateway.reports import DeviceReport
from tandem.gateway.rules.actions import ActuatorPorts, EmergencyStop
from tandem.gateway.rules.loader import parse_rules_text
from tandem.gateway.rules.reflex import Outcome, Reflex
from tandem.tools.modbus_sim import modbus_controller
from tandem.wire.batch import Record
from tandem.wire.report import Report
from tests.waiting import until

SENSOR_MAP = Path(__file__).resolve().parents[2] / "hw" / "registers" / "sensor-node.toml"

RULES = """\
version = 1
[action.by_address]
kind = "emergency_stop"
host = "127.0.0.1"
port = {port}
coil = 0
[action.by_bus]
kind = "emergency_stop"
bus = "plc"
coil = 1
[action.elsewhere]
kind = "emergency_stop"
host = "127.0.0.1"
port = {other}
coil = 0
[action.nowhere]
kind = "emergency_stop"
bus = "no-such-bus"
coil = 0
[[rule]]
name = "overheat"
when = {{ input = "temp", above = 80.0 }}
actions = ["by_address", "by_bus"]
"""


class _Store:
    def __init__(self) -> None:
        self.records: list[Record] = []

    async def put(self, records: list[Record], priority: object) -> None:
        self.records.extend(records)


class _Sink:
    def __init__(self) -> None:
        self.items: list[DeviceReport] = []
        self.threads: set[str] = set()

    async def submit(self, item: DeviceReport) -> bool:
        self.threads.add(threading.current_thread().name)
        self.items.append(item)
        return True


def _section(port: int) -> ModbusSection:
    unit = ModbusUnit(name="press", unit_id=1, map=SENSOR_MAP, poll_s=0.05)
    return ModbusSection((ModbusBus(name="plc", kind="tcp", host="127.0.0.1", tcp_port=port,
                                    timeout_s=0.5, units=(unit,)),))


def _fieldbus_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "fieldbus"]


def test_coroutines_run_on_the_fieldbus_thread_and_close_ends_it() -> None:
    async def scenario() -> None:
        fieldbus = FieldbusThread()

        async def where() -> str:
            return threading.current_thread().name

        assert await fieldbus.run(where()) == "fieldbus"
        ticks: list[int] = []

        async def ticker(stop: asyncio.Event) -> None:
            while not stop.is_set():
                ticks.append(1)
                await asyncio.sleep(0.001)

        fieldbus.spawn(lambda stop: [("ticker", ticker(stop))])
        await until(lambda: len(ticks) > 3, "more than 3 ticks")
        closed: list[str] = []

        async def closer() -> None:
            closed.append(threading.current_thread().name)

        await fieldbus.close(closer)
        assert closed == ["fieldbus"]
        assert _fieldbus_threads() == []

    asyncio.run(scenario())


def test_a_fieldbus_never_started_closes_without_a_thread() -> None:
    fieldbus = FieldbusThread()
    asyncio.run(fieldbus.close())
    assert _fieldbus_threads() == []


def test_stops_use_the_bus_coordinator_for_its_address_or_name_else_a_port_of_their_own() -> None:
    service = ModbusService(_section(1502), _Sink())
    ports = ActuatorPorts(service.actuator_factory(), service.coordinators)
    reflex = Reflex(parse_rules_text(RULES.format(port=1502, other=1503)), _Store(),
                    GatewayMetrics(), ports=ports)
    actions = {name: a for name, a in reflex._actions.items() if isinstance(a, EmergencyStop)}
    coordinator = service.coordinators["plc"]
    assert actions["by_address"].port is coordinator
    assert actions["by_bus"].port is coordinator
    elsewhere = actions["elsewhere"].port
    assert isinstance(elsewhere, BusCoordinator) and elsewhere is not coordinator
    assert (elsewhere.bus.host, elsewhere.bus.tcp_port, elsewhere.units) == ("127.0.0.1", 1503,
                                                                              [])
    assert elsewhere.metrics is service.metrics  # one set of metrics for every stop

    async def unknown_bus() -> None:
        try:
            await actions["nowhere"].port.write_coil(1, 0, True)
        except ActuatorError as exc:
            assert "no-such-bus" in str(exc)
        else:
            raise AssertionError("a stop on an unknown bus must fail")

    asyncio.run(unknown_bus())


def test_polls_and_stops_run_on_the_fieldbus_thread_sharing_the_bus_lock() -> None:
    async def scenario() -> None:
        async with modbus_controller() as port:
            sink = _Sink()
            cross = CrossLoopSink(sink)
            cross.bind(asyncio.get_running_loop())
            service = ModbusService(_section(port), cross)
            fieldbus = FieldbusThread()
            outcomes: list[Outcome] = []
            reflex = Reflex(parse_rules_text(RULES.format(port=port, other=1)), _Store(),
                            GatewayMetrics(), on_outcome=outcomes.append, offload=fieldbus.run,
                            ports=ActuatorPorts(service.actuator_factory(),
                                                service.coordinators))
            fieldbus.spawn(service.tasks)
            await until(lambda: len(sink.items) >= 2, "2 reports in the sink")
            now = time.time_ns() // 1_000_000
            reflex.take(DeviceReport("press-01", Report(1, 1, now, {"temp": 90.0}), now))
            await until(lambda: len(outcomes) == 2, "2 outcomes")
            assert all(o.ok for o in outcomes), outcomes
            await reflex.close()
            await fieldbus.close(service.close)
            coordinator: BusCoordinator = service.coordinators["plc"]
            assert coordinator.metrics.writes.labels("plc", "press", "verified")._value.get() == 2
            assert sink.threads == {threading.current_thread().name}  # reports crossed back
            other = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1, retries=0)
            assert await other.connect()
            assert (await other.read_coils(0, count=2, device_id=1)).bits[:2] == [True, True]
            other.close()
        assert _fieldbus_threads() == []

    asyncio.run(scenario())


async def _until(check: Callable[[], bool]) -> None:
    while not check():
        await asyncio.sleep(0.005)


def test_the_modbus_layer_does_not_import_the_rules() -> None:
    probe = ("import sys, tandem.gateway.modbus.service, tandem.gateway.modbus.coordinator; "
             "print(sorted(m for m in sys.modules if m.startswith('tandem.gateway.rules')))")
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                           check=True, timeout=60)
    assert found.stdout.strip() == "[]"
