"""The `[[modbus.bus]]` part of the gateway configuration (owned here, loaded by gateway/config.py).

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
    connections = 1               # tcp: connections for answering units (one more for silent ones)
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field
from pydantic.dataclasses import dataclass

from tandem.wire.tomlconfig import SECTION, FieldError, FilePath, Float, Int

KINDS = ("rtu", "tcp")
PARITIES = ("N", "E", "O")


@dataclass(frozen=True, config=SECTION)
class ModbusUnit:
    """One device on a bus and the register map it answers to."""

    name: Annotated[str, Field(min_length=1, max_length=64)]
    unit_id: Annotated[Int, Field(ge=1, le=247)]
    map: FilePath
    poll_s: Annotated[Float, Field(ge=0.01, le=86_400)] = 1.0
    timeout_s: Annotated[Float, Field(ge=0, le=60)] = 0.0  # 0: the bus's timeout_s


@dataclass(frozen=True, config=SECTION)
class ModbusBus:
    """One serial line or TCP endpoint, polled by one coordinator (also in <data_dir>/modbus.toml).

    Buses added on the installer page go to <data_dir>/modbus.toml as `[[bus]]` with the
    same fields, polled after gateway.toml's (gateway/modbus/busfile.py).
    """

    name: Annotated[str, Field(min_length=1, max_length=64)]
    kind: Literal["rtu", "tcp"] = "rtu"
    port: str = ""  # rtu: the serial device
    baudrate: Annotated[Int, Field(ge=300, le=4_000_000)] = 19200
    parity: Literal["N", "E", "O"] = "E"
    host: str = ""  # tcp
    tcp_port: Annotated[Int, Field(ge=1, le=65535)] = 502
    timeout_s: Annotated[Float, Field(gt=0, le=60)] = 0.5
    inter_frame_ms: Annotated[Float, Field(ge=0, le=1000)] = 0.0
    backoff_max_s: Annotated[Float, Field(gt=0, le=86_400)] = 30.0
    connections: Annotated[Int, Field(ge=1, le=16)] = 1  # tcp only: polls in flight at once
    units: tuple[ModbusUnit, ...] = ()

    def __post_init__(self) -> None:
        if self.kind == "rtu" and not self.port:
            raise FieldError("port", "rtu needs a port")
        if self.kind == "tcp" and not self.host:
            raise FieldError("host", "tcp needs a host")
        if self.backoff_max_s < self.timeout_s:
            raise FieldError("backoff_max_s", "below timeout_s")
        ids: set[int] = set()
        for j, unit in enumerate(self.units):
            if unit.unit_id in ids:
                raise FieldError(f"units[{j}].unit_id", f"unit id {unit.unit_id} is used twice")
            ids.add(unit.unit_id)


@dataclass(frozen=True, config=SECTION)
class ModbusSection:
    """Every Modbus bus the gateway polls (none by default), and where emergency stops write.

    `actuator = "thread"` (default): every stop runs on the field-bus thread. `"process"`:
    stops to a Modbus TCP controller are written and read back by the actuator process
    (gateway/modbus/actuatorproc.py), an interpreter of its own that ingest cannot hold up;
    a stop on an RTU bus stays with that bus's coordinator (a serial line has one owner).
    The process is not the default: at normal priority it measured no better than the
    thread (README, reflex rows); it pays off with `actuator_priority` on a unit that
    allows real-time scheduling (docs/deployment.md).
    """

    bus: tuple[ModbusBus, ...] = ()
    actuator: Literal["process", "thread"] = "thread"
    # The actuator process's SCHED_FIFO priority (needs CAP_SYS_NICE; refused: a WARNING and
    # normal scheduling; the shipped systemd unit forbids it: docs/deployment.md); 0 leaves it
    # a normal process.
    actuator_priority: Annotated[Int, Field(ge=0, le=99)] = 0

    def __post_init__(self) -> None:
        names: set[str] = set()
        for i, bus in enumerate(self.bus):
            if bus.name in names:
                raise FieldError(f"bus[{i}].name", f"bus name {bus.name!r} is used twice")
            names.add(bus.name)
