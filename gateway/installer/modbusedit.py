"""Modbus on the installer page: validate a register map, a bus, a unit; the Modbus file they make.

Validation is the loaders' own, so messages read `file:line: field: problem`
as they would at the daemon's start. A new unit's map goes to
`<data_dir>/registers/<name>.toml`; the buses and units added on site go to
the Modbus file (gateway/modbus/busfile.py), which is validated as a whole,
text and all, before anything is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pydantic

from tandem.gateway.modbus import busfile
from tandem.gateway.modbus.config import ModbusBus, ModbusSection, ModbusUnit
from tandem.gateway.modbus.registers import RegisterMap, RegisterMapError, parse_register_map
from tandem.wire.tomlconfig import ConfigError, Document, convert, describe, parse_toml

MAX_TEXT = 256 * 1024
MAPS_DIR = "registers"
_MAP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,59}\.toml$")
_TOML_LINE = re.compile(r"\(at line (\d+), column \d+\)")


@dataclass(frozen=True, slots=True)
class MapVerdict:
    """A candidate register map: the map, or the loader's message and the line it names."""

    regmap: RegisterMap | None
    error: str = ""
    line: int = 0


def check_map(text: str, path: Path) -> MapVerdict:
    """Validate register map text as if it were the file at `path`."""
    if len(text) > MAX_TEXT:
        return MapVerdict(None, f"{path}: larger than {MAX_TEXT} bytes")
    try:
        doc = parse_toml(text, str(path), path.parent, RegisterMapError)
        return MapVerdict(parse_register_map(doc.data, str(path), text))
    except RegisterMapError as exc:
        return MapVerdict(None, str(exc), line_named(str(exc), path))


def line_named(message: str, path: Path) -> int:
    """The line a loader's message names (`file:12: ...` or tomllib's `(at line 12, ...)`)."""
    found = re.match(rf"{re.escape(str(path))}:(\d+):", message) or _TOML_LINE.search(message)
    return int(found[1]) if found else 0


def new_map_path(data_dir: Path, name: str) -> Path:
    """Where a new unit's map goes; a name that is not a plain `*.toml` file name is refused."""
    if not _MAP_NAME.match(name):
        raise ConfigError(f"map file name {name!r}: expected letters, digits, '_', '-', '.' "
                          "ending in .toml", "map")
    return data_dir / MAPS_DIR / name


def parse_bus(data: dict[str, Any], data_dir: Path) -> ModbusBus:
    """A bus from the page's form (JSON), without units; ConfigError names the field."""
    fields = {k: v for k, v in data.items() if v != "" and k != "units"}
    return convert(ModbusBus, Document("new bus", "", fields, data_dir))


def parse_unit(data: dict[str, Any], map_path: Path) -> ModbusUnit:
    """A unit from the page's form (JSON) whose map is at `map_path`."""
    fields = {k: v for k, v in data.items() if v != "" and k in ("name", "unit_id", "poll_s",
                                                                  "timeout_s")}
    return convert(ModbusUnit, Document("unit", "", {**fields, "map": map_path}, Path("/")))


def with_bus(buses: tuple[ModbusBus, ...], bus: ModbusBus) -> tuple[ModbusBus, ...]:
    """The file's buses with `bus` added (a name already there is refused)."""
    if any(b.name == bus.name for b in buses):
        raise ConfigError(f"new bus: name: bus {bus.name!r} exists already", "name")
    return (*buses, bus)


def with_unit(buses: tuple[ModbusBus, ...], bus_name: str,
              unit: ModbusUnit) -> tuple[ModbusBus, ...]:
    """The file's buses with `unit` added to (or replacing its namesake on) bus `bus_name`."""
    if not any(b.name == bus_name for b in buses):
        raise ConfigError(f"unit: bus: no bus {bus_name!r} added on this page", "bus")
    return tuple(_put(b, unit) if b.name == bus_name else b for b in buses)


def _put(bus: ModbusBus, unit: ModbusUnit) -> ModbusBus:
    units = [u for u in bus.units if u.name != unit.name]
    at = next((i for i, u in enumerate(bus.units) if u.name == unit.name), len(units))
    units.insert(at, unit)
    try:
        return replace(bus, units=tuple(units))
    except pydantic.ValidationError as exc:  # the bus's own rules: a unit id used twice
        dotted, problem = describe(exc.errors()[0])
        raise ConfigError(f"unit: {dotted.removeprefix(f'units[{at}].')}: {problem}",
                          dotted) from None


def file_text(buses: tuple[ModbusBus, ...], path: Path,
              gateway_toml: ModbusSection) -> tuple[str, ModbusSection]:
    """The Modbus file's text for `buses` and the section the gateway would then poll.

    The text is parsed back through the file's own loader, so whatever the page
    writes, the daemon reads at its next start (ConfigError names file:line otherwise).
    """
    text = busfile.render(buses, path.parent)
    return text, busfile.merged(gateway_toml, busfile.parse_buses(text, path), path)
