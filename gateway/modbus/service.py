"""The gateway's Modbus buses: one coordinator each, started and stopped with the gateway."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from prometheus_client import CollectorRegistry

from tandem.gateway.modbus.config import ModbusSection
from tandem.gateway.modbus.coordinator import BusCoordinator
from tandem.gateway.modbus.metrics import ModbusMetrics
from tandem.gateway.modbus.registers import RegisterMap
from tandem.gateway.reports import ReportSink
from tandem.gateway.rules.actuator import ActuatorPort, ModbusTcpPort


class ModbusService:
    """Builds a coordinator per `[[modbus.bus]]`; register maps are loaded (and checked) here."""

    def __init__(self, section: ModbusSection, sink: ReportSink,
                 registry: CollectorRegistry | None = None) -> None:
        self.metrics = ModbusMetrics(registry)
        maps: dict[str, RegisterMap] = {}
        self.coordinators = {bus.name: BusCoordinator(bus, sink, self.metrics, maps=maps)
                             for bus in section.bus}

    def tasks(self, stop: asyncio.Event) -> list[tuple[str, Coroutine[Any, Any, None]]]:
        """(task name, coroutine) per bus, for the gateway to spawn."""
        return [(f"modbus-{name}", c.run(stop)) for name, c in self.coordinators.items()]

    def actuator_factory(self) -> Callable[[str, int, float], ActuatorPort]:
        """An `ActuatorPorts` factory: a configured TCP bus's coordinator for its own address
        (so a stop shares the bus lock with the polls), else a ModbusTcpPort of its own."""
        by_address = {(c.bus.host, c.bus.tcp_port): c for c in self.coordinators.values()
                      if c.bus.kind == "tcp"}

        def factory(host: str, port: int, timeout_s: float) -> ActuatorPort:
            return by_address.get((host, port)) or ModbusTcpPort(host, port, timeout_s)

        return factory

    async def close(self) -> None:
        """Close every bus."""
        for coordinator in self.coordinators.values():
            await coordinator.close()
