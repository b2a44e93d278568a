"""One table of sensor models (firmware/config_sensing.py MODELS): everything else follows it.

Adding a sensor model is one entry in that table plus its modules (docs/firmware.md);
these checks make the other places follow: the build, the ESP32 freezing manifest,
the board definitions and the docs.
"""

from __future__ import annotations

import ast
import re

from tandem.tools.boards import BOARDS_DIR, load_board, sensor_models
from tandem.tools.build import FIRMWARE, select_modules

DOCS = FIRMWARE.parent / "docs" / "firmware.md"


def _models() -> dict[str, str | None]:
    tree = ast.parse((FIRMWARE / "config_sensing.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "MODELS":
            table = ast.literal_eval(node.value)
            assert isinstance(table, dict)
            return table
    raise AssertionError("no MODELS table in config_sensing.py")


def _frozen() -> set[str]:
    return set(re.findall(r'"([a-z0-9_]+)"', (FIRMWARE / "manifest.py").read_text())) & {
        p.stem for p in FIRMWARE.glob("*.py")}


def test_each_model_module_exists_and_builds_a_sensor_set() -> None:
    for model, module in _models().items():
        if module is None:
            continue
        source = FIRMWARE / f"{module}.py"
        assert source.exists(), f"model {model}: no firmware/{module}.py"
        names = {n.targets[0].id for n in ast.parse(source.read_text()).body  # type: ignore[attr-defined]
                 if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name)}
        assert "Sensors" in names, f"firmware/{module}.py has no Sensors(board, cfg)"


def test_the_esp32_manifest_freezes_exactly_what_an_esp32_build_carries() -> None:
    board = load_board(BOARDS_DIR / "esp32-devkitc.toml")
    built = {p.stem for p in select_modules(board)} - {"main"}  # main.py stays a file
    assert _frozen() == built, (sorted(built - _frozen()), sorted(_frozen() - built))


def test_the_board_checker_reads_the_same_table() -> None:
    assert set(sensor_models()) == set(_models())
    for path in BOARDS_DIR.glob("*.toml"):
        assert load_board(path).sensor_model in _models()


def test_every_model_is_documented() -> None:
    text = DOCS.read_text()
    for model in _models():
        assert f'"{model}"' in text, f"docs/firmware.md does not describe model {model!r}"
