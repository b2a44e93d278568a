"""The shipped example configs (docs/examples, hw/registers) load, and one wrong field in
each is reported as `file:line: field` (node.json: file and field, from the firmware)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tandem.cloud.config import load_config as load_cloud
from tandem.gateway.config import load_config as load_gateway
from tandem.gateway.modbus.registers import load_register_map
from tandem.gateway.rules.loader import load_rules
from tandem.wire.tomlconfig import ConfigError

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "docs" / "examples"
REGISTERS = REPO / "hw" / "registers" / "sensor-node.toml"
MICROPYTHON = Path(sys.executable).parent / "micropython"

LOADERS: dict[str, tuple[Path, Callable[[Path], object]]] = {
    "gateway": (EXAMPLES / "gateway.toml", lambda p: load_gateway(p, environ={})),
    "cloud": (EXAMPLES / "cloud.toml", lambda p: load_cloud(p, env={})),
    "rules": (EXAMPLES / "rules.toml", load_rules),
    "registers": (REGISTERS, load_register_map),
}

# (example, text to replace, its replacement, expected "line: field")
WRONG = [
    ("gateway", "max_peers = 1024", "max_peers = 0", "coap.max_peers"),
    ("gateway", 'parity = "E"', 'parity = "Q"', "modbus.bus[0].parity"),
    ("cloud", "port = 8443", 'port = "8443"', "server.port"),
    ("cloud", "token_max_days = 365", "token_max_dayz = 365", "security.token_max_dayz"),
    ("rules", "window_n = 256", "window_n = 2", "features.window_n"),
    ("registers", 'table = "coil"', 'table = "coils"', "point[0] (stop).table"),
]


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_every_example_loads(name: str) -> None:
    path, load = LOADERS[name]
    assert load(path) is not None


@pytest.mark.parametrize(("name", "old", "new", "field"), WRONG)
def test_a_wrong_field_names_file_line_and_field(tmp_path: Path, name: str, old: str, new: str,
                                                 field: str) -> None:
    source, load = LOADERS[name]
    text = source.read_text()
    assert old in text
    line = text[:text.index(old)].count("\n") + 1
    broken = tmp_path / source.name
    broken.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError) as caught:
        load(broken)
    assert str(caught.value).startswith(f"{broken}:{line}: {field}: "), str(caught.value)


def _firmware_load(path: Path) -> str:
    script = (f"import sys\nsys.path.insert(0, {str(REPO / 'firmware')!r})\nimport config\n"
              f"try:\n    c = config.load({str(path)!r})\n    print('OK', c.device_id)\n"
              "except config.ConfigError as e:\n    print('ERR', e)\n")
    done = subprocess.run([str(MICROPYTHON), "-c", script], capture_output=True, text=True,
                          timeout=30, check=True)
    return done.stdout.strip()


@pytest.mark.skipif(shutil.which(str(MICROPYTHON)) is None, reason="no micropython")
def test_the_example_node_json_loads_in_the_firmware(tmp_path: Path) -> None:
    assert _firmware_load(EXAMPLES / "node.json") == "OK node-01"
    config = json.loads((EXAMPLES / "node.json").read_text())
    config["gateway"]["port"] = 70000
    broken = tmp_path / "node.json"
    broken.write_text(json.dumps(config))
    assert _firmware_load(broken).startswith(f"ERR {broken}: field gateway.port ")
