"""What a rule does when it fires or clears: small Action objects built from the rules file.

Every action implements `Action.run(firing) -> bool` (True: done and, where
the device allows, verified). Implementations are chosen from a dict keyed by
the spec's class; the I/O behind them sits behind small interfaces
(`ActuatorPort` for Modbus, `NodeCommander` for CoAP) so tests and other
transports plug in.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from tandem.gateway.actuator import (
    ActuatorError,
    ActuatorPort,
    Attempt,
    HandOverPort,
    PortFactory,
)
from tandem.gateway.modbus.service import actuator_port
from tandem.gateway.rules.definitions import (
    ActionSpec,
    EmergencyStopSpec,
    LocalAlarmSpec,
    NodeAlarmSpec,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Firing:
    """A rule changed state for a device: what actions are told."""

    rule: str
    device: str
    t_ms: int
    active: bool
    severity: int
    values: Mapping[str, float]


class Action(Protocol):
    """One configured action."""

    name: str
    kind: str

    async def run(self, firing: Firing) -> bool:
        """Carry the action out; True when done (and verified, where possible)."""
        ...


class NodeCommander(Protocol):
    """Sends a command to a node (gateway/nodes/commands.py: queued until the node polls GET /c)."""

    async def command(self, device: str, path: str, payload: Mapping[str, Any]) -> bool:
        """Deliver `payload` to `path` on `device`; True when the node acknowledged it."""
        ...


class LoggingNodeCommander:
    """Stand-in where no commander is wired (a bare Reflex in tests and tools): only logs."""

    async def command(self, device: str, path: str, payload: Mapping[str, Any]) -> bool:
        """Log the command; report it undelivered."""
        log.warning("node command not sent (no commander wired): %s /%s %s", device, path,
                    dict(payload))
        return False


class ActuatorPorts:
    """One ActuatorPort per controller address, shared by every action that uses it.

    `buses` are the gateway's configured Modbus buses by name (their coordinators),
    for stops that name a bus instead of a host; the buses close with their service.
    """

    def __init__(self, factory: PortFactory = actuator_port,
                 buses: Mapping[str, ActuatorPort] | None = None) -> None:
        self._factory = factory
        self._buses = dict(buses or {})
        self._ports: dict[tuple[str, int], ActuatorPort] = {}

    def rebind(self, factory: PortFactory, buses: Mapping[str, ActuatorPort]) -> None:
        """Take a reloaded Modbus service's buses; ports made from the old ones are forgotten."""
        old = set(map(id, self._buses.values()))
        self._factory = factory
        self._buses = dict(buses)
        self._ports = {k: p for k, p in self._ports.items() if id(p) not in old}

    def bus(self, name: str) -> ActuatorPort:
        """The configured bus called name; a port that always fails if there is none."""
        return self._buses.get(name) or _MissingBus(name)

    def get(self, host: str, port: int, timeout_s: float) -> ActuatorPort:
        """The port to (host, port), created on first use."""
        key = (host, port)
        if key not in self._ports:
            self._ports[key] = self._factory(host, port, timeout_s)
        return self._ports[key]

    async def close(self) -> None:
        """Close every connection."""
        ports, self._ports = list(self._ports.values()), {}
        for port in ports:
            await port.close()


class _MissingBus:
    """Stands in for a bus the rules name but the gateway config lacks: every write fails."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def write_coil(self, unit: int, address: int, value: bool) -> bool:
        """Fail: there is no such bus."""
        raise ActuatorError(f"no modbus bus {self.name!r} in the gateway config")

    async def write_register(self, unit: int, address: int, value: int) -> bool:
        """Fail: there is no such bus."""
        raise ActuatorError(f"no modbus bus {self.name!r} in the gateway config")

    async def close(self) -> None:
        """Nothing to release."""


class EmergencyStop:
    """Writes the stop coil or register and confirms it by reading it back."""

    kind = "emergency_stop"

    def __init__(self, name: str, spec: EmergencyStopSpec, port: ActuatorPort) -> None:
        self.name = name
        self.spec = spec
        self.port = port

    async def run(self, firing: Firing) -> bool:
        """Write and verify; the write is the same whether the rule fired or cleared."""
        s = self.spec
        if s.coil is not None:
            return await self.port.write_coil(s.unit, s.coil, bool(s.value))
        assert s.register is not None
        return await self.port.write_register(s.unit, s.register, s.value)

    def hand_over(self) -> Awaitable[Attempt] | None:
        """The write sent now, when the port takes writes synchronously (the actuator
        process); None when it must run as a coroutine (`run`)."""
        if not isinstance(self.port, HandOverPort):
            return None
        s = self.spec
        if s.coil is not None:
            return self.port.hand_over("coil", s.unit, s.coil, int(bool(s.value)))
        assert s.register is not None
        return self.port.hand_over("register", s.unit, s.register, s.value & 0xFFFF)


class NodeAlarm:
    """Tells a node (the one the rule fired for, unless `node` is set) about the alarm."""

    kind = "node_alarm"

    def __init__(self, name: str, spec: NodeAlarmSpec, commander: NodeCommander) -> None:
        self.name = name
        self.spec = spec
        self.commander = commander

    async def run(self, firing: Firing) -> bool:
        """Send {rule, active, severity} to the node."""
        payload = {"rule": firing.rule, "active": firing.active, "sev": firing.severity}
        return await self.commander.command(self.spec.node or firing.device, self.spec.path,
                                            payload)


class LocalAlarm:
    """Logs the alarm and, when configured, writes a file (a GPIO value, a flag file)."""

    kind = "local_alarm"

    def __init__(self, name: str, spec: LocalAlarmSpec) -> None:
        self.name = name
        self.spec = spec

    async def run(self, firing: Firing) -> bool:
        """Log at a level matching the state; write the hook file off the event loop."""
        level = logging.CRITICAL if firing.active and firing.severity >= 3 else logging.WARNING
        log.log(level, "ALARM %s %s on %s at %d: %s", firing.rule,
                "FIRED" if firing.active else "cleared", firing.device, firing.t_ms,
                dict(firing.values))
        if self.spec.file is not None:
            await asyncio.to_thread(self.spec.file.write_text, self.spec.text)
        return True


@dataclass(frozen=True)
class ActionContext:
    """What building actions needs: the controller connections and the node commander."""

    ports: ActuatorPorts
    commander: NodeCommander


def _emergency_stop(name: str, spec: Any, ctx: ActionContext) -> Action:
    port = ctx.ports.bus(spec.bus) if spec.bus else \
        ctx.ports.get(spec.host, spec.port, spec.timeout_s)
    return EmergencyStop(name, spec, port)


def _node_alarm(name: str, spec: Any, ctx: ActionContext) -> Action:
    return NodeAlarm(name, spec, ctx.commander)


def _local_alarm(name: str, spec: Any, ctx: ActionContext) -> Action:
    return LocalAlarm(name, spec)


# Actions whose I/O belongs on the field-bus thread (gateway/modbus/fieldbus.py), when there is one.
FIELDBUS_KINDS = frozenset({EmergencyStop.kind})

_BUILDERS: dict[type[ActionSpec], Callable[[str, Any, ActionContext], Action]] = {
    EmergencyStopSpec: _emergency_stop, NodeAlarmSpec: _node_alarm, LocalAlarmSpec: _local_alarm,
}


def build_actions(specs: Mapping[str, ActionSpec], ctx: ActionContext) -> dict[str, Action]:
    """Actions by name, from the specs of a rules file."""
    return {name: _BUILDERS[type(spec)](name, spec, ctx) for name, spec in specs.items()}
