"""Register maps (hw/registers/*.toml): declarative Modbus data points, validated at load.

One file describes a device's registers for both ends: the gateway's master
reads it here, the firmware's slave reads the JSON that `firmware_json()`
makes of it (tools/hw_registers.py ships it as firmware/registers.json).
Every error names the file, the line and the field, e.g.
`hw/registers/sensor-node.toml:88: point[7] (temp_alarm).scale: expected a number > 0`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic.dataclasses
from pydantic import AfterValidator, Field

from tandem.wire.tomlconfig import (
    SECTION,
    ConfigError,
    Document,
    FieldError,
    Flag,
    Float,
    Int,
    convert,
    read_toml,
)

MAP_VERSION = 1
MAX_NAME = 16  # wire.report.MAX_CHANNEL_NAME: point names become report channels
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class RegisterMapError(ConfigError):
    """A register map that cannot be used; the message names file, line and field."""


class Table(StrEnum):
    """The four Modbus data tables, in firmware index order."""

    COIL = "coil"
    DISCRETE = "discrete"
    HOLDING = "holding"
    INPUT = "input"

    @property
    def is_bits(self) -> bool:
        """Coils and discrete inputs hold bits; the others 16-bit registers."""
        return self in (Table.COIL, Table.DISCRETE)

    @property
    def writable(self) -> bool:
        """Only coils and holding registers can be written by a master."""
        return self in (Table.COIL, Table.HOLDING)


class DataType(StrEnum):
    """How a point's registers are read; the value is its struct format character."""

    BOOL = "bool"
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    FLOAT32 = "float32"

    @property
    def words(self) -> int:
        """Registers (or bits, for bool) the type occupies."""
        return 2 if self in (DataType.INT32, DataType.UINT32, DataType.FLOAT32) else 1

    @property
    def fmt(self) -> str:
        """struct format character of the raw value."""
        return _FORMATS[self]

    @property
    def raw_range(self) -> tuple[float, float]:
        """Smallest and largest raw value."""
        return _RANGES[self]


_FORMATS = {DataType.BOOL: "?", DataType.INT16: "h", DataType.UINT16: "H",
            DataType.INT32: "i", DataType.UINT32: "I", DataType.FLOAT32: "f"}
_RANGES: dict[DataType, tuple[float, float]] = {
    DataType.BOOL: (0, 1), DataType.INT16: (-0x8000, 0x7FFF), DataType.UINT16: (0, 0xFFFF),
    DataType.INT32: (-0x80000000, 0x7FFFFFFF), DataType.UINT32: (0, 0xFFFFFFFF),
    DataType.FLOAT32: (-3.4028234663852886e38, 3.4028234663852886e38)}


@dataclass(frozen=True, slots=True)
class Point:
    """One data point: where it lives, how its raw value maps to engineering units."""

    name: str
    table: Table
    address: int
    type: DataType = DataType.BOOL
    scale: float = 1.0
    word_order: str = "big"
    byte_order: str = "big"
    unit: str = ""
    access: str = "r"
    poll_s: float | None = None
    min: float | None = None
    max: float | None = None
    default: float = 0.0
    source: str = ""
    report: bool = True
    description: str = ""

    @property
    def words(self) -> int:
        """Registers (bits) occupied."""
        return self.type.words

    @property
    def end(self) -> int:
        """First address after the point."""
        return self.address + self.words

    @property
    def writable(self) -> bool:
        """True when a master may write it."""
        return self.access == "rw"


@dataclass(frozen=True)
class RegisterMap:
    """A device's data points, by table and address."""

    name: str
    points: tuple[Point, ...]
    source: str = "<map>"

    def point(self, name: str) -> Point:
        """The point called name (KeyError if none)."""
        for p in self.points:
            if p.name == name:
                return p
        raise KeyError(f"{self.source}: no point {name!r}")

    def size(self, table: Table) -> int:
        """Addresses the table must hold: one past the highest point."""
        return max((p.end for p in self.points if p.table is table), default=0)


def load_register_map(path: Path) -> RegisterMap:
    """Read and validate a register map TOML file."""
    doc = replace(read_toml(path, RegisterMapError), name_items=True)
    return _to_map(convert(MapFile, doc, RegisterMapError), str(path))


def parse_register_map(data: dict[str, Any], source: str = "<map>",
                       text: str = "") -> RegisterMap:
    """Validate a parsed map; `text` (the TOML) lets errors carry line numbers."""
    doc = Document(source, text, data, Path("."), name_items=True)
    return _to_map(convert(MapFile, doc, RegisterMapError), source)


def _point_name(name: str) -> str:
    if not _NAME.match(name) or len(name) > MAX_NAME:
        raise ValueError(f"expected a lower_case name of 1..{MAX_NAME} characters")
    return name


Order = Literal["big", "little"]


@pydantic.dataclasses.dataclass(frozen=True, config=SECTION)
class PointSpec:
    """One [[point]] table as written: Point's fields, the map's defaults not yet applied."""

    name: Annotated[str, AfterValidator(_point_name)]
    table: Table
    address: Annotated[Int, Field(ge=0, le=0xFFFF)]
    type: DataType | None = None  # bool for coils and discrete inputs; required otherwise
    scale: Annotated[Float, Field(gt=0)] = 1.0
    word_order: Order | None = None  # the map's word_order when unset
    byte_order: Order | None = None  # the map's byte_order when unset
    unit: str = ""
    access: Literal["r", "rw"] = "r"
    poll_s: Annotated[Float, Field(gt=0)] | None = None
    min: Float | None = None
    max: Float | None = None
    default: Float = 0.0
    source: str = ""  # the firmware value it mirrors; the point's name when unset
    report: Flag = True
    description: str = ""

    def __post_init__(self) -> None:
        dtype = self.resolved_type
        if self.table.is_bits != (dtype is DataType.BOOL):
            raise FieldError("type", f"{self.table} points must be "
                             f"{'bool' if self.table.is_bits else 'a register type'}")
        if self.address + dtype.words - 1 > 0xFFFF:
            raise FieldError("address", f"a {dtype} at {self.address} ends past 65535")
        if self.access == "rw" and not self.table.writable:
            raise FieldError("access", f"{self.table} points are read-only")
        _check_bounds(self, dtype)

    @property
    def resolved_type(self) -> DataType:
        """The point's type, bool by default for bit tables."""
        if self.type is not None:
            return self.type
        if not self.table.is_bits:
            raise FieldError("type", "required field missing")
        return DataType.BOOL


@pydantic.dataclasses.dataclass(frozen=True, config=SECTION)
class MapFile:
    """A register map file (hw/registers/*.toml)."""

    version: Literal[1]
    name: Annotated[str, Field(min_length=1, max_length=64)]
    point: Annotated[tuple[PointSpec, ...], Field(min_length=1)]
    byte_order: Order = "big"
    word_order: Order = "big"

    def __post_init__(self) -> None:
        owner: dict[tuple[Table, int], str] = {}
        seen: set[str] = set()
        for i, p in enumerate(self.point):
            if p.name in seen:
                raise FieldError(f"point[{i}].name", f"duplicate point name {p.name!r}")
            seen.add(p.name)
            for address in range(p.address, p.address + p.resolved_type.words):
                other = owner.setdefault((p.table, address), p.name)
                if other != p.name:
                    raise FieldError(f"point[{i}].address",
                                     f"{p.table} {address} is already used by {other!r}")


def _check_bounds(p: PointSpec, dtype: DataType) -> None:
    """min, max and default must fit the point's type at its scale (cross-field rules)."""
    if (p.min is not None or p.max is not None) and p.access != "rw":
        raise FieldError("min" if p.min is not None else "max",
                         "bounds apply to writable points only")
    if p.min is not None and p.max is not None and p.min > p.max:
        raise FieldError("min", f"min {p.min:g} is above max {p.max:g}")
    low, high = dtype.raw_range
    lo = low * p.scale if p.min is None else p.min
    hi = high * p.scale if p.max is None else p.max
    if not lo <= p.default <= hi:
        raise FieldError("default", f"{p.default:g} outside {lo:g}..{hi:g}")
    for key, bound in (("min", p.min), ("max", p.max)):
        if bound is not None and not low <= bound / p.scale <= high:
            raise FieldError(key, f"{bound:g} does not fit {dtype} at scale {p.scale:g}")


def _to_map(declared: MapFile, source: str) -> RegisterMap:
    points = tuple(Point(
        name=p.name, table=p.table, address=p.address, type=p.resolved_type, scale=p.scale,
        word_order=p.word_order or declared.word_order,
        byte_order=p.byte_order or declared.byte_order, unit=p.unit, access=p.access,
        poll_s=p.poll_s, min=p.min, max=p.max, default=p.default, source=p.source or p.name,
        report=p.report, description=p.description) for p in declared.point)
    return RegisterMap(declared.name, points, source)


# -- firmware export -------------------------------------------------------------

FIRMWARE_COLUMNS = ("source", "table", "address", "fmt", "scale", "swap_words", "swap_bytes",
                    "lo", "hi", "default", "writable")
_TABLE_INDEX = {Table.COIL: 0, Table.DISCRETE: 1, Table.HOLDING: 2, Table.INPUT: 3}


def firmware_json(regmap: RegisterMap, origin: str = "") -> str:
    """The map as the firmware loads it: table sizes plus one row per point, raw units.

    Bounds and defaults are converted to raw values here, so the slave compares
    integers (the ESP32's floats are single precision) and never scales.
    """
    rows = [json.dumps(_firmware_row(p)) for p in regmap.points]
    sizes = [regmap.size(t) for t in Table]
    head = {"version": MAP_VERSION, "name": regmap.name, "generated_from": origin or
            regmap.source, "sizes": sizes, "columns": list(FIRMWARE_COLUMNS)}
    body = json.dumps(head)[:-1]
    return body + ',\n "points": [\n  ' + ",\n  ".join(rows) + "\n ]}\n"


def _firmware_row(p: Point) -> list[Any]:
    return [p.source, _TABLE_INDEX[p.table], p.address, p.type.fmt, p.scale,
            int(p.word_order == "little"), int(p.byte_order == "little"),
            _raw_bound(p, p.min, math.ceil), _raw_bound(p, p.max, math.floor),
            _raw_bound(p, p.default, round), int(p.writable)]


def _raw_bound(p: Point, value: float | None, rounding: Any) -> float | int | None:
    if value is None:
        return None
    if p.type is DataType.FLOAT32:
        return value / p.scale
    raw = value / p.scale
    return int(rounding(round(raw, 9)))  # round(…, 9): 150 / 0.01 is 15000.000000000002
