"""The Modbus file: buses and units added on site (the installer page), kept beside gateway.toml's.

`<data_dir>/modbus.toml` holds `version = 1` and `[[bus]]` tables of exactly
the `[[modbus.bus]]` schema (gateway/modbus/config.py). The daemon polls
gateway.toml's buses followed by this file's; a bus name used in both is an
error naming the file and line. The installer page is the only writer: it
renders the file with tomli-w and replaces it in one step.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any, Literal

import tomli_w
from pydantic.dataclasses import dataclass

from tandem.gateway.modbus.config import ModbusBus, ModbusSection, ModbusUnit
from tandem.wire.tomlconfig import (
    SECTION,
    ConfigError,
    FieldError,
    NotFlag,
    convert,
    parse_toml,
)

FILE_NAME = "modbus.toml"
FILE_VERSION = 1
_HEADER = ("# Modbus buses added on the installer page; the gateway polls them after "
           "gateway.toml's [[modbus.bus]].\n# Written by the gateway: edit on the page "
           "(a hand edit is read at the next start).\n")


@dataclass(frozen=True, config=SECTION)
class BusFile:
    """The Modbus file as written: a version and its buses."""

    version: Annotated[Literal[1], NotFlag]
    bus: tuple[ModbusBus, ...] = ()

    def __post_init__(self) -> None:
        names: set[str] = set()
        for i, bus in enumerate(self.bus):
            if bus.name in names:
                raise FieldError(f"bus[{i}].name", f"bus name {bus.name!r} is used twice")
            names.add(bus.name)


def path_in(data_dir: Path) -> Path:
    """Where a gateway keeps its Modbus file."""
    return data_dir / FILE_NAME


def parse_buses(text: str, path: Path) -> tuple[ModbusBus, ...]:
    """Validate Modbus file text as if it were `path`; ConfigError names file:line: field."""
    doc = parse_toml(text, str(path), path.resolve().parent)
    return convert(BusFile, dataclasses.replace(doc, name_items=True)).bus


def load_buses(path: Path) -> tuple[ModbusBus, ...]:
    """The file's buses; none when it does not exist yet."""
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return ()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    return parse_buses(text, path)


def merged(section: ModbusSection, extra: tuple[ModbusBus, ...], source: Path) -> ModbusSection:
    """gateway.toml's buses followed by the file's; a name used twice is a ConfigError."""
    names = {bus.name for bus in section.bus}
    for i, bus in enumerate(extra):
        if bus.name in names:
            raise ConfigError(f"{source}: bus[{i}].name: {bus.name!r} is also in gateway.toml",
                              f"bus[{i}].name")
    return ModbusSection(bus=section.bus + extra, actuator=section.actuator,
                         actuator_priority=section.actuator_priority)


def effective(section: ModbusSection, data_dir: Path) -> ModbusSection:
    """The buses the gateway polls: gateway.toml's plus the Modbus file's."""
    path = path_in(data_dir)
    return merged(section, load_buses(path), path)


def render(buses: tuple[ModbusBus, ...], folder: Path) -> str:
    """The file's text for `buses` (defaults left out; map paths relative to `folder`)."""
    data = {"version": FILE_VERSION, "bus": [_bus_table(b, folder) for b in buses]}
    return _HEADER + tomli_w.dumps(data)


def _bus_table(bus: ModbusBus, folder: Path) -> dict[str, Any]:
    table = _changed(bus, skip=("units",))
    table["units"] = [_unit_table(u, folder) for u in bus.units]
    return table


def _unit_table(unit: ModbusUnit, folder: Path) -> dict[str, Any]:
    table = _changed(unit, skip=("map",))
    table["map"] = str(unit.map.relative_to(folder)) if unit.map.is_relative_to(folder) \
        else str(unit.map)
    return table


def _changed(item: Any, skip: tuple[str, ...]) -> dict[str, Any]:
    """The fields of a config dataclass that differ from their defaults (required ones too)."""
    table: dict[str, Any] = {}
    for f in dataclasses.fields(item):
        value = getattr(item, f.name)
        if f.name in skip or (f.default is not dataclasses.MISSING and value == f.default):
            continue
        table[f.name] = value
    return table
