"""Specification of `tandem demo`: the whole system comes up, data and alarms reach the cloud,
and stopping it leaves nothing running."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from tandem.tools.procs import Child
from tests.ports import free_port, free_udp_port


@pytest.mark.timeout(240)
def test_the_demo_shows_data_and_alarms_and_stops_cleanly(tmp_path: Path) -> None:
    tandem = shutil.which("tandem", path=str(Path(sys.executable).parent))
    assert tandem
    demo = Child("demo", [tandem, "demo", "--workdir", str(tmp_path / "demo"),
                          "--cloud-port", str(free_port()), "--coap-port", str(free_udp_port()),
                          "--metrics-port", str(free_port()), "--window", "2"])
    try:
        demo.wait_for(r"Tandem demo is up after", timeout=90)
        demo.wait_for(r"first data in the cloud", timeout=90)
        demo.wait_for(r"cloud: \d+ summaries, \d+ alarms \(.*overheat@node-03", timeout=120)
    finally:
        code = demo.stop(timeout=60)  # SIGTERM, as Ctrl-C would
    assert code == 0, demo.tail()
    assert "demo stopped cleanly" in demo.lines
    for child_dir in ("nodes/node-01", "nodes/node-02", "nodes/node-03"):
        assert (tmp_path / "demo" / child_dir / "node.json").exists()
