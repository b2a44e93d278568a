"""`tandem hw export-registers`: ship hw/registers/*.toml to the firmware as JSON.

The TOML file is the one source of truth; the firmware has no TOML parser, so
firmware/registers.json is generated from it (and a test fails if the shipped
file ever drifts). `--check` only compares, for CI.

    python -m tools.hw_registers [--check] [MAP.toml [OUT.json]]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tandem.gateway.modbus.registers import RegisterMapError, firmware_json, load_register_map

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MAP = REPO / "hw" / "registers" / "sensor-node.toml"
DEFAULT_OUT = REPO / "firmware" / "registers.json"


def render(map_path: Path = DEFAULT_MAP) -> str:
    """The firmware JSON for a map file (origin named relative to the repository)."""
    regmap = load_register_map(map_path)
    try:
        origin = str(map_path.resolve().relative_to(REPO))
    except ValueError:
        origin = map_path.name
    return firmware_json(regmap, origin)


def export_registers(map_path: Path = DEFAULT_MAP, out: Path = DEFAULT_OUT,
                     check: bool = False) -> bool:
    """Write (or with check, compare) the firmware JSON; True when out is up to date."""
    text = render(map_path)
    current = out.read_text() if out.exists() else None
    if check or current == text:
        return current == text
    out.write_text(text)
    return True


def main(argv: list[str] | None = None) -> int:
    """Command-line entry (wired as `tandem hw export-registers`)."""
    parser = argparse.ArgumentParser(prog="tandem hw export-registers",
                                     description="TOML register map -> firmware JSON")
    parser.add_argument("map", nargs="?", type=Path, default=DEFAULT_MAP)
    parser.add_argument("out", nargs="?", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--check", action="store_true", help="compare only; 1 if out of date")
    args = parser.parse_args(argv)
    try:
        ok = export_registers(args.map, args.out, args.check)
    except RegisterMapError as exc:
        print(f"tandem: {exc}", file=sys.stderr)
        return 2
    if not ok:
        print(f"{args.out} is out of date with {args.map}: run tandem hw export-registers",
              file=sys.stderr)
        return 1
    if not args.check:
        print(f"{args.out} up to date with {args.map}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
