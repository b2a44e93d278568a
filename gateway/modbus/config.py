"""The `[[modbus.bus]]` part of the gateway configuration (typed by gateway/config.py).

    [[modbus.bus]]
    name = "line1"
    kind = "rtu"                  # rtu | tcp
    port = "/dev/ttyUSB0"         # rtu: serial device
    baudrate = 19200
    parity = "E"                  # N | E | O (N means 2 stop bits, per the spec)
    timeout_s = 0.5
    inter_frame_ms = 0            # 0: 3.5 characters at the baud rate (rtu), none (tcp)
    units = [{name = "node-01", unit_id = 1, map = "../hw/registers/sensor-node.toml",
              poll_s = 1.0}]

    [[modbus.bus]]
    name = "plc"
    kind = "tcp"
    host = "10.0.0.5"
    tcp_port = 502
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

KINDS = ("rtu", "tcp")
PARITIES = ("N", "E", "O")


class ModbusConfigError(ValueError):
    """A bus or unit setting out of range; the message names the dotted field."""


@dataclass(frozen=True)
class ModbusUnit:
    """One device on a bus and the register map it answers to."""

    name: str
    unit_id: int
    map: Path
    poll_s: float = 1.0
    timeout_s: float = 0.0  # 0: the bus's timeout_s


@dataclass(frozen=True)
class ModbusBus:
    """One serial line or TCP endpoint, polled by one coordinator."""

    name: str
    kind: str = "rtu"
    port: str = ""
    baudrate: int = 19200
    parity: str = "E"
    host: str = ""
    tcp_port: int = 502
    timeout_s: float = 0.5
    inter_frame_ms: float = 0.0
    backoff_max_s: float = 30.0
    units: tuple[ModbusUnit, ...] = ()


@dataclass(frozen=True)
class ModbusSection:
    """Every Modbus bus the gateway polls (none by default)."""

    bus: tuple[ModbusBus, ...] = ()

    def validate(self, source: str) -> None:
        """Raise ModbusConfigError naming `source` and the field for anything unusable."""
        names: set[str] = set()
        for i, bus in enumerate(self.bus):
            where = f"{source}: modbus.bus[{i}]"
            _check(bus.name not in names and bool(bus.name), f"{where}.name",
                   f"expected a unique non-empty name, got {bus.name!r}")
            names.add(bus.name)
            _check(bus.kind in KINDS, f"{where}.kind", f"expected rtu or tcp, got {bus.kind!r}")
            _check(bus.kind != "rtu" or bool(bus.port), f"{where}.port", "rtu needs a port")
            _check(bus.kind != "tcp" or bool(bus.host), f"{where}.host", "tcp needs a host")
            _check(bus.parity in PARITIES, f"{where}.parity", f"expected N, E or O, got "
                   f"{bus.parity!r}")
            _check(300 <= bus.baudrate <= 4_000_000, f"{where}.baudrate", "outside 300..4000000")
            _check(0 < bus.timeout_s <= 60, f"{where}.timeout_s", "outside 0..60")
            _check(0 <= bus.inter_frame_ms <= 1000, f"{where}.inter_frame_ms", "outside 0..1000")
            _check(bus.backoff_max_s >= bus.timeout_s, f"{where}.backoff_max_s",
                   "below timeout_s")
            ids: set[int] = set()
            for j, unit in enumerate(bus.units):
                at = f"{where}.units[{j}]"
                _check(1 <= unit.unit_id <= 247 and unit.unit_id not in ids, f"{at}.unit_id",
                       f"expected a unique id in 1..247, got {unit.unit_id}")
                ids.add(unit.unit_id)
                _check(0.01 <= unit.poll_s <= 86_400, f"{at}.poll_s", "outside 0.01..86400")
                _check(0 <= unit.timeout_s <= 60, f"{at}.timeout_s", "outside 0..60")


def _check(ok: bool, field: str, message: str) -> None:
    if not ok:
        raise ModbusConfigError(f"{field}: {message}")
