"""A node with a missing or broken config or certificate stops cleanly: one fatal event, exit 2."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tandem.tools.pki import Identity
from tests.nodeproc import NodeProcess, write_node_config

pytestmark = pytest.mark.timeout(60)


def _fatal(config: Path) -> dict[str, object]:
    node = NodeProcess(config).start()
    try:
        assert node.wait_exit(20) == 2
        fatal = node.wait_for("fatal")
    finally:
        node.stop()
    assert "Traceback" not in node.output, node.output
    assert node.of("boot") == [] and node.other_lines == []
    return fatal


def _edit(path: Path, change: Callable[[dict[str, object]], None]) -> Path:
    config = json.loads(path.read_text())
    change(config)
    path.write_text(json.dumps(config))
    return path


def test_missing_config_file(tmp_path: Path) -> None:
    fatal = _fatal(tmp_path / "nope.json")
    assert fatal["error"] == "config" and "cannot read" in str(fatal["detail"])


def test_corrupt_json(tmp_path: Path) -> None:
    path = tmp_path / "node.json"
    path.write_text('{"version": 1, "device_id": ')
    assert "not valid JSON" in str(_fatal(path)["detail"])


@pytest.mark.parametrize(("change", "field"), [
    (lambda c: c.pop("device_id"), "device_id"),
    (lambda c: c.update(version=2), "version"),
    (lambda c: c.update(period_ms="fast"), "period_ms"),
    (lambda c: c.update(period_ms=True), "period_ms"),
    (lambda c: c["gateway"].update(port=70000), "gateway.port"),
    (lambda c: c.update(board="arduino"), "board"),
    (lambda c: c.update(sensor={"scenario": "meltdown"}), "sensor.scenario"),
    (lambda c: c.update(tls=[]), "tls"),
    (lambda c: c.update(log="loud"), "log"),
])
def test_invalid_field_is_named(tmp_path: Path, node_id: Identity,
                                change: Callable[[dict[str, object]], None], field: str) -> None:
    path = _edit(write_node_config(tmp_path, node_id, 5684), change)
    fatal = _fatal(path)
    assert (fatal["error"] == "config" and f"field {field}" in str(fatal["detail"])) \
        or (field == "tls" and "tls must be an object" in str(fatal["detail"]))


def test_missing_certificate_file(tmp_path: Path, node_id: Identity) -> None:
    path = write_node_config(tmp_path, node_id, 5684)
    (tmp_path / "key.der").unlink()
    fatal = _fatal(path)
    assert fatal["error"] == "certificate" and "key.der" in str(fatal["detail"])


@pytest.mark.parametrize("name", ["cert.der", "key.der", "ca.der"])
def test_corrupt_certificate_or_key(tmp_path: Path, node_id: Identity, name: str) -> None:
    path = write_node_config(tmp_path, node_id, 5684)
    (tmp_path / name).write_bytes(b"-----BEGIN CERTIFICATE-----\nnot der\n")
    assert _fatal(path)["error"] == "certificate"
