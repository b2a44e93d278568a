"""Board definitions (hw/boards/*.toml): pins, buses, sensors, flashing, power.

One TOML file per board kind, loaded into a frozen dataclass and checked with
errors that name the file and the field. `runtime_json()` is what the
firmware reads as board.json; the [flash] table is for `tandem flash`.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BOARDS_DIR = REPO / "hw" / "boards"
MCUS = ("esp32", "host")
SENSOR_MODELS = ("accel", "basic")
# Keys copied into board.json for the firmware (firmware/config_sensing.py).
_RUNTIME_KEYS = ("name", "mcu", "sensor_model", "wdt_ms", "ntp", "pins", "i2c", "uart")
_ESP32_PINS = ("i2c_sda", "i2c_scl", "uart_tx", "uart_rx", "rs485_de", "led")


class BoardError(ValueError):
    """A board definition that cannot be used (names the file and the field)."""


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
    try:
        table = tomllib.loads(path.read_text())
    except OSError as exc:
        raise BoardError(f"{path}: cannot read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise BoardError(f"{path}: not valid TOML: {exc}") from None
    if table.get("version") != 1:
        raise BoardError(f"{path}: field version must be 1")
    name = _text(path, table, "name")
    mcu = _text(path, table, "mcu")
    if mcu not in MCUS:
        raise BoardError(f"{path}: field mcu must be one of {', '.join(MCUS)}")
    model = table.get("sensor_model", "basic")
    if model not in SENSOR_MODELS:
        raise BoardError(f"{path}: field sensor_model must be one of {', '.join(SENSOR_MODELS)}")
    pins = _pins(path, table.get("pins", {}))
    if mcu == "esp32":
        for pin in _ESP32_PINS:
            if pin not in pins:
                raise BoardError(f"{path}: missing field pins.{pin}")
    flash = _flash(path, table["flash"]) if "flash" in table else None
    if mcu == "esp32" and flash is None:
        raise BoardError(f"{path}: missing table [flash]")
    return Board(path, name, mcu, model, str(table.get("description", "")), flash, pins, table)


def _text(path: Path, table: dict[str, Any], key: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value:
        raise BoardError(f"{path}: field {key} must be a non-empty string")
    return value


def _pins(path: Path, pins: Any) -> dict[str, int]:
    if not isinstance(pins, dict):
        raise BoardError(f"{path}: [pins] must be a table")
    seen: dict[int, str] = {}
    for key, gpio in pins.items():
        if not isinstance(gpio, int) or isinstance(gpio, bool) or not 0 <= gpio <= 39:
            raise BoardError(f"{path}: field pins.{key} must be a GPIO number 0..39")
        if gpio in seen:
            raise BoardError(f"{path}: field pins.{key}: GPIO{gpio} is already pins.{seen[gpio]}")
        seen[gpio] = key
    return dict(pins)


def _flash(path: Path, flash: Any) -> FlashSpec:
    if not isinstance(flash, dict):
        raise BoardError(f"{path}: [flash] must be a table")
    try:
        return FlashSpec(str(flash["chip"]), int(flash["baud"]), int(flash["image_offset"]),
                         str(flash.get("image", "")))
    except KeyError as exc:
        raise BoardError(f"{path}: missing field flash.{exc.args[0]}") from None
