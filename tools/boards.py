"""Board definitions (hw/boards/*.toml): pins, buses, sensors, flashing, power.

One TOML file per board kind, declared below as pydantic dataclasses on the one
configuration layer (`tandem.wire.tomlconfig`: bounds next to the fields,
unknown keys refused, faults as `file:line: field: problem`). `runtime_json()`
is what the firmware reads as board.json; the [flash] table is for `tandem flash`.
"""

from __future__ import annotations

import ast
from dataclasses import asdict, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field
from pydantic.dataclasses import dataclass

from tandem.wire.tomlconfig import SECTION, ConfigError, FieldError, Int, convert, read_toml

REPO = Path(__file__).resolve().parent.parent
BOARDS_DIR = REPO / "hw" / "boards"


def sensor_models(firmware: Path = REPO / "firmware") -> tuple[str, ...]:
    """The model names of the firmware's sensor table (`MODELS = {...}` in config_sensing)."""
    tree = ast.parse((firmware / "config_sensing.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "MODELS" for t in node.targets):
            return tuple(ast.literal_eval(node.value))
    raise RuntimeError("firmware/config_sensing.py has no MODELS table")


# The firmware's one table of sensor models (firmware/config_sensing.py), read, not copied.
SENSOR_MODELS = sensor_models()
MCUS = ("esp32", "host")
# Keys copied into board.json for the firmware (firmware/config_sensing.py).
_RUNTIME_KEYS = ("name", "mcu", "sensor_model", "wdt_ms", "ntp", "pins", "i2c", "uart")
_ESP32_PINS = ("i2c_sda", "i2c_scl", "uart_tx", "uart_rx", "rs485_de", "led")
_I2C_BUS_KEYS = ("id", "freq")


class BoardError(ConfigError):
    """A board definition that cannot be used: `file:line: field: problem`."""


def _known_model(model: str) -> str:
    if model not in SENSOR_MODELS:
        raise ValueError(f"must be one of {', '.join(SENSOR_MODELS)}")
    return model


def _distinct_gpios(pins: dict[str, int]) -> dict[str, int]:
    seen: dict[int, str] = {}
    for name, gpio in pins.items():
        if gpio in seen:
            raise FieldError(name, f"GPIO{gpio} is already pins.{seen[gpio]}")
        seen[gpio] = name
    return pins


def _i2c_table(table: dict[str, int]) -> dict[str, int]:
    # [i2c] holds the bus (id, freq) and one 7-bit address per sensor part.
    if not 0 <= table.get("id", 0) <= 1:
        raise FieldError("id", "must be 0 or 1")
    if not 10_000 <= table.get("freq", 100_000) <= 1_000_000:
        raise FieldError("freq", "must be 10000..1000000 Hz")
    for part, address in table.items():
        if part not in _I2C_BUS_KEYS and not 0x08 <= address <= 0x77:
            raise FieldError(part, "must be a 7-bit I2C address 0x08..0x77")
    return table


Gpio = Annotated[Int, Field(ge=0, le=39)]


@dataclass(frozen=True, config=SECTION)
class FlashSpec:
    """How to flash a MicroPython image onto the board with esptool."""

    chip: Literal["esp32", "esp32s2", "esp32s3", "esp32c3", "esp32c6"]
    baud: Annotated[Int, Field(ge=9600, le=5_000_000)]
    image_offset: Annotated[Int, Field(ge=0, le=0x10000)]
    image: str = ""
    flash_size: str = ""


@dataclass(frozen=True, config=SECTION)
class UartSection:
    """The RS-485 UART: peripheral number and line speed."""

    id: Annotated[Int, Field(ge=0, le=2)] = 0
    baud: Annotated[Int, Field(ge=1200, le=1_000_000)] = 19200


@dataclass(frozen=True, config=SECTION)
class BoardFile:
    """The TOML file as declared: every key a board definition may have."""

    version: Literal[1]
    name: Annotated[str, Field(min_length=1, max_length=64)]
    mcu: Literal["esp32", "host"]
    description: str = ""
    sensor_model: Annotated[str, AfterValidator(_known_model)] = "basic"
    wdt_ms: Annotated[Int, Field(ge=0, le=600_000)] = 0
    ntp: str = ""
    flash: FlashSpec | None = None
    pins: Annotated[dict[str, Gpio], AfterValidator(_distinct_gpios)] = field(
        default_factory=dict)
    i2c: Annotated[dict[str, Int], AfterValidator(_i2c_table)] = field(default_factory=dict)
    uart: UartSection = field(default_factory=UartSection)
    # Documentation for whoever wires the board (supply, budgets); not read by the firmware.
    power: dict[str, str | int | float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mcu != "esp32":
            return
        for pin in _ESP32_PINS:
            if pin not in self.pins:
                raise FieldError(f"pins.{pin}", "required field missing")
        if self.flash is None:
            raise FieldError("flash", "required table missing")


@dataclass(frozen=True)
class Board:
    """One board definition, as the tools use it."""

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
    declared = convert(BoardFile, doc, BoardError)
    # The keys the file gave, validated (defaults are the firmware's to apply).
    table = {k: v for k, v in asdict(declared).items() if k in doc.data}
    return Board(path, declared.name, declared.mcu, declared.sensor_model,
                 declared.description, declared.flash, dict(declared.pins), table)
