"""Board definitions (hw/boards/*.toml): pins, buses, sensors, flashing, power.

One TOML file per board kind, loaded into a frozen dataclass and checked with
errors that name the file and the field. `runtime_json()` is what the
firmware reads as board.json; the [flash] table is for `tandem flash`.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tandem.wire.tomlconfig import ConfigError, Document, read_toml

REPO = Path(__file__).resolve().parent.parent


def sensor_models(firmware: Path = REPO / "firmware") -> tuple[str, ...]:
    """The model names of the firmware's sensor table (`MODELS = {...}` in config_sensing)."""
    tree = ast.parse((firmware / "config_sensing.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "MODELS" for t in node.targets):
            return tuple(ast.literal_eval(node.value))
    raise RuntimeError("firmware/config_sensing.py has no MODELS table")

BOARDS_DIR = REPO / "hw" / "boards"
MCUS = ("esp32", "host")
# The firmware's one table of sensor models (firmware/config_sensing.py), read, not copied.
SENSOR_MODELS = sensor_models()
# Keys copied into board.json for the firmware (firmware/config_sensing.py).
_RUNTIME_KEYS = ("name", "mcu", "sensor_model", "wdt_ms", "ntp", "pins", "i2c", "uart")
_ESP32_PINS = ("i2c_sda", "i2c_scl", "uart_tx", "uart_rx", "rs485_de", "led")


class BoardError(ConfigError):
    """A board definition that cannot be used: `file:line: field: problem`."""


@dataclass(frozen=True)
class FlashSpec:
    """How to flash a MicroPython image onto the board with esptool."""

    chip: str
    baud: int
    image_offset: int
    image: str


@dataclass(frozen=True)
class Board:
    """One board definition."""

    path: Path
    name: str
    mcu: str
    sensor_model: str
    description: str
    flash: FlashSpec | None
    pins: dict[str, int] = field(default_factory=dict)
    table: dict[str, Any] = field(default_factory=dict)

    def runtime_json(self) -> dict[str, Any]:
        """The subset the firmware reads at boot (board.json)."""
        return {k: self.table[k] for k in _RUNTIME_KEYS if k in self.table}


def resolve_board(name_or_path: str | Path) -> Path:
    """A board file given as a path, or as a name under hw/boards."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        return path
    return BOARDS_DIR / f"{name_or_path}.toml"


def load_board(name_or_path: str | Path) -> Board:
    """Load and check a board definition."""
    path = resolve_board(name_or_path)
    doc = read_toml(path, BoardError)
    table = doc.data
    if table.get("version") != 1 or type(table.get("version")) is not int:
        raise _fault(doc, "version", "must be 1")
    name = _text(doc, "name")
    mcu = _text(doc, "mcu")
    if mcu not in MCUS:
        raise _fault(doc, "mcu", f"must be one of {', '.join(MCUS)}")
    model = table.get("sensor_model", "basic")
    if model not in SENSOR_MODELS:
        raise _fault(doc, "sensor_model", f"must be one of {', '.join(SENSOR_MODELS)}")
    pins = _pins(doc, table.get("pins", {}))
    if mcu == "esp32":
        for pin in _ESP32_PINS:
            if pin not in pins:
                raise _fault(doc, f"pins.{pin}", "required field missing")
    flash = _flash(doc, table["flash"]) if "flash" in table else None
    if mcu == "esp32" and flash is None:
        raise _fault(doc, "flash", "required table missing")
    return Board(path, name, mcu, model, str(table.get("description", "")), flash, pins, table)


def _fault(doc: Document, field_name: str, problem: str) -> BoardError:
    error = doc.fault(field_name, problem, BoardError)
    assert isinstance(error, BoardError)
    return error


def _text(doc: Document, key: str) -> str:
    value = doc.data.get(key)
    if not isinstance(value, str) or not value:
        raise _fault(doc, key, "must be a non-empty string")
    return value


def _pins(doc: Document, pins: Any) -> dict[str, int]:
    if not isinstance(pins, dict):
        raise _fault(doc, "pins", "must be a table")
    seen: dict[int, str] = {}
    for key, gpio in pins.items():
        if not isinstance(gpio, int) or isinstance(gpio, bool) or not 0 <= gpio <= 39:
            raise _fault(doc, f"pins.{key}", "must be a GPIO number 0..39")
        if gpio in seen:
            raise _fault(doc, f"pins.{key}", f"GPIO{gpio} is already pins.{seen[gpio]}")
        seen[gpio] = key
    return dict(pins)


def _flash(doc: Document, flash: Any) -> FlashSpec:
    if not isinstance(flash, dict):
        raise _fault(doc, "flash", "must be a table")
    try:
        return FlashSpec(str(flash["chip"]), int(flash["baud"]), int(flash["image_offset"]),
                         str(flash.get("image", "")))
    except KeyError as exc:
        raise _fault(doc, f"flash.{exc.args[0]}", "required field missing") from None
    except (TypeError, ValueError):
        raise _fault(doc, "flash", "chip, baud and image_offset must be text, numbers") from None
