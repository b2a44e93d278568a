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
import tomllib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from tandem.wire.tomlconfig import ConfigError, line_of

MAP_VERSION = 1
MAX_NAME = 16  # wire.report.MAX_CHANNEL_NAME: point names become report channels
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_ORDERS = ("big", "little")


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
    try:
        text = path.read_text()
        data = tomllib.loads(text)
    except OSError as exc:
        raise RegisterMapError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise RegisterMapError(f"{path}: {exc}") from None
    return parse_register_map(data, str(path), text)


def parse_register_map(data: dict[str, Any], source: str = "<map>",
                       text: str = "") -> RegisterMap:
    """Validate a parsed map; `text` (the TOML) lets errors carry line numbers."""
    return _Parser(source, text).parse(data)


class _Parser:
    """Checks one document, turning each problem into a RegisterMapError with a line."""

    def __init__(self, source: str, text: str) -> None:
        self.source = source
        self.text = text

    def fail(self, index: int | None, key: str, message: str, name: str = "") -> RegisterMapError:
        where = key if index is None else f"point[{index}]{f' ({name})' if name else ''}.{key}"
        line = self._line(index, key)
        at = f"{self.source}:{line}" if line else self.source
        return RegisterMapError(f"{at}: {where}: {message}")

    def _line(self, index: int | None, key: str) -> int | None:
        """Line of `key` at top level (index None) or inside the index-th [[point]]."""
        return line_of(self.text, key if index is None else f"point[{index}].{key}")

    def parse(self, data: dict[str, Any]) -> RegisterMap:
        known = {"version", "name", "byte_order", "word_order", "point"}
        for key in data:
            if key not in known:
                raise self.fail(None, key, f"unknown field (known: {', '.join(sorted(known))})")
        if data.get("version") != MAP_VERSION:
            raise self.fail(None, "version", f"expected {MAP_VERSION}, got {data.get('version')!r}")
        name = data.get("name")
        if not isinstance(name, str) or not name:
            raise self.fail(None, "name", "expected a non-empty string")
        defaults = {k: self._order(None, k, data.get(k, "big")) for k in ("byte_order",
                                                                          "word_order")}
        raw_points = data.get("point", [])
        if not isinstance(raw_points, list) or not raw_points:
            raise self.fail(None, "point", "expected one or more [[point]] tables")
        points = tuple(self._point(i, p, defaults) for i, p in enumerate(raw_points))
        self._check_overlaps(points)
        return RegisterMap(name, points, self.source)

    def _order(self, index: int | None, key: str, value: Any) -> str:
        if value not in _ORDERS:
            raise self.fail(index, key, f"expected big or little, got {value!r}")
        return str(value)

    def _point(self, i: int, raw: Any, defaults: dict[str, str]) -> Point:
        if not isinstance(raw, dict):
            raise self.fail(i, "point", "expected a table")
        name = raw.get("name")
        if not isinstance(name, str) or not _NAME.match(name) or len(name) > MAX_NAME:
            raise self.fail(i, "name", f"expected a lower_case name of 1..{MAX_NAME} characters, "
                            f"got {name!r}")
        fields = _PointFields(self, i, name, raw)
        fields.reject_unknown()
        table = fields.enum("table", Table, None)
        assert isinstance(table, Table)
        dtype = fields.enum("type", DataType, DataType.BOOL if table.is_bits else None)
        assert isinstance(dtype, DataType)
        if table.is_bits != (dtype is DataType.BOOL):
            raise fields.error("type", f"{table} points must be "
                               f"{'bool' if table.is_bits else 'a register type'}")
        access = fields.choice("access", ("r", "rw"), "r")
        if access == "rw" and not table.writable:
            raise fields.error("access", f"{table} points are read-only")
        point = Point(
            name=name, table=table, address=fields.integer("address", 0, 0xFFFF - dtype.words + 1),
            type=dtype, scale=fields.number("scale", 1.0, positive=True),
            word_order=self._order(i, "word_order", raw.get("word_order",
                                                            defaults["word_order"])),
            byte_order=self._order(i, "byte_order", raw.get("byte_order",
                                                            defaults["byte_order"])),
            unit=fields.text("unit", ""), access=access,
            poll_s=fields.optional_number("poll_s", positive=True),
            min=fields.optional_number("min"), max=fields.optional_number("max"),
            default=fields.number("default", 0.0), source=fields.text("source", name),
            report=fields.flag("report", True), description=fields.text("description", ""))
        fields.check_bounds(point)
        return point

    def _check_overlaps(self, points: tuple[Point, ...]) -> None:
        owner: dict[tuple[Table, int], str] = {}
        seen: set[str] = set()
        for i, p in enumerate(points):
            if p.name in seen:
                raise self.fail(i, "name", f"duplicate point name {p.name!r}", p.name)
            seen.add(p.name)
            for address in range(p.address, p.end):
                other = owner.setdefault((p.table, address), p.name)
                if other != p.name:
                    raise self.fail(i, "address", f"{p.table} {address} is already used by "
                                    f"{other!r}", p.name)


class _PointFields:
    """Typed access to one [[point]] table's fields."""

    KNOWN = frozenset(Point.__dataclass_fields__)

    def __init__(self, parser: _Parser, index: int, name: str, raw: dict[str, Any]) -> None:
        self.parser = parser
        self.index = index
        self.name = name
        self.raw = raw

    def error(self, key: str, message: str) -> RegisterMapError:
        return self.parser.fail(self.index, key, message, self.name)

    def reject_unknown(self) -> None:
        for key in self.raw:
            if key not in self.KNOWN:
                raise self.error(key, f"unknown field (known: {', '.join(sorted(self.KNOWN))})")

    def enum(self, key: str, kind: type[StrEnum], default: StrEnum | None) -> StrEnum:
        value = self.raw.get(key, default)
        try:
            return kind(str(value))
        except ValueError:
            raise self.error(key, f"expected one of {', '.join(kind)}, got {value!r}") from None

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.raw.get(key, default)
        if value not in choices:
            raise self.error(key, f"expected one of {', '.join(choices)}, got {value!r}")
        return str(value)

    def integer(self, key: str, low: int, high: int) -> int:
        value = self.raw.get(key)
        if type(value) is not int or not low <= value <= high:
            raise self.error(key, f"expected an integer in {low}..{high}, got {value!r}")
        return value

    def number(self, key: str, default: float, positive: bool = False) -> float:
        value = self.optional_number(key, positive)
        return default if value is None else value

    def optional_number(self, key: str, positive: bool = False) -> float | None:
        value = self.raw.get(key)
        if value is None:
            return None
        if type(value) not in (int, float) or not math.isfinite(value) \
                or (positive and value <= 0):
            raise self.error(key, f"expected a {'number > 0' if positive else 'number'}, "
                             f"got {value!r}")
        return float(value)

    def text(self, key: str, default: str) -> str:
        value = self.raw.get(key, default)
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {value!r}")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.raw.get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {value!r}")
        return value

    def check_bounds(self, p: Point) -> None:
        if (p.min is not None or p.max is not None) and not p.writable:
            raise self.error("min" if p.min is not None else "max",
                             "bounds apply to writable points only")
        if p.min is not None and p.max is not None and p.min > p.max:
            raise self.error("min", f"min {p.min:g} is above max {p.max:g}")
        low, high = p.type.raw_range
        lo = low * p.scale if p.min is None else p.min
        hi = high * p.scale if p.max is None else p.max
        if not lo <= p.default <= hi:
            raise self.error("default", f"{p.default:g} outside {lo:g}..{hi:g}")
        for key, bound in (("min", p.min), ("max", p.max)):
            if bound is not None and not low <= bound / p.scale <= high:
                raise self.error(key, f"{bound:g} does not fit {p.type} at scale {p.scale:g}")


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
