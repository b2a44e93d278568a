"""The gateway's Modbus buses: one coordinator each, started and stopped with the gateway.

Emergency stops write through coordinators too: a stop naming a configured
bus, or the address of a configured TCP bus, shares that bus's coordinator
(and its lock with the polls); a stop at any other address gets a coordinator
of its own with no units to poll. So every safety write takes the same path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from prometheus_client import CollectorRegistry

from tandem.gateway.actuator import ActuatorPort, PortFactory
from tandem.gateway.modbus.config import ModbusBus, ModbusSection
from tandem.gateway.modbus.coordinator import BusCoordinator
from tandem.gateway.modbus.metrics import ModbusMetrics
from tandem.gateway.modbus.registers import RegisterMap
from tandem.gateway.reports import DeviceReport, ReportSink


class ModbusService:
    """Builds a coordinator per `[[modbus.bus]]`; register maps are loaded (and checked) here."""

    def __init__(self, section: ModbusSection, sink: ReportSink,
                 registry: CollectorRegistry | None = None,
                 metrics: ModbusMetrics | None = None) -> None:
        self.metrics = metrics or ModbusMetrics(registry)  # a reload keeps the registered ones
        maps: dict[str, RegisterMap] = {}
        self.coordinators = {bus.name: BusCoordinator(bus, sink, self.metrics, maps=maps)
                             for bus in section.bus}

    def tasks(self, stop: asyncio.Event) -> list[tuple[str, Coroutine[Any, Any, None]]]:
        """(task name, coroutine) per bus, for the gateway to spawn."""
        return [(f"modbus-{name}", c.run(stop)) for name, c in self.coordinators.items()]

    def actuator_factory(self) -> PortFactory:
        """An `ActuatorPorts` factory: a configured TCP bus's coordinator for its own address
        (so a stop shares the bus lock with the polls), else a coordinator of its own."""
        by_address = {(c.bus.host, c.bus.tcp_port): c for c in self.coordinators.values()
                      if c.bus.kind == "tcp"}

        def factory(host: str, port: int, timeout_s: float) -> ActuatorPort:
            found = by_address.get((host, port))
            return found or actuator_port(host, port, timeout_s, self.metrics)

        return factory

    async def close(self) -> None:
        """Close every bus."""
        for coordinator in self.coordinators.values():
            await coordinator.close()


class _NoReports:
    """The sink of a coordinator that only writes: it has no units, so it never reports."""

    async def submit(self, item: DeviceReport) -> bool:
        """Refuse: nothing should arrive here."""
        return False


def actuator_port(host: str, port: int, timeout_s: float,
                  metrics: ModbusMetrics | None = None) -> BusCoordinator:
    """A coordinator for a Modbus TCP controller that is only written to (an emergency stop)."""
    bus = ModbusBus(name=f"{host}:{port}", kind="tcp", host=host, tcp_port=port,
                    timeout_s=timeout_s)
    return BusCoordinator(bus, _NoReports(), metrics)
