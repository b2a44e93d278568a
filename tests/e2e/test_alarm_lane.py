"""Alarms take the urgent lane: they reach the cloud at once, summaries keep their batching.

Real processes: the cloud, the gateway and a MicroPython node whose
temperature climbs past a rule's threshold. The gateway flushes summaries
only once an hour (uplink interval) and closes windows only every minute, so
anything the cloud holds within the test came through the urgent lane. The
alarm must be there, exactly once, while no summary is.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tandem.tools.site import NodeSpec, Site, local_site
from tests.e2e.readings import events, summaries

pytestmark = pytest.mark.timeout(180)

REPORTS = 40  # the over_temp node climbs 0.4 degC per report from ~22: past 25 early on
RULES = """\
version = 1

[action.siren]
kind = "local_alarm"

[[rule]]
name = "hot25"
severity = 3
when = { input = "temp", above = 25.0, clear_below = 24.0 }
actions = ["siren"]
"""


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    running = local_site(tmp_path / "site", window_s=60.0)
    try:
        yield running
    finally:
        running.stop_all()


def _alarms(client: httpx.Client, device: str) -> list[dict[str, Any]]:
    response = client.get("/api/v1/events", params={"device": device, "limit": 1000})
    response.raise_for_status()
    found: list[dict[str, Any]] = response.json()["events"]
    return [e for e in found if e["name"] == "hot25"]


def test_an_alarm_reaches_the_cloud_exactly_once_before_any_summary_flush(site: Site) -> None:
    site.start_cloud()
    rules = site.root / "rules.toml"
    rules.write_text(RULES)
    site.start_gateway({"TANDEM_GW_RULES_FILE": str(rules),
                        "TANDEM_GW_UPLINK_INTERVAL_S": "3600"})
    spec = NodeSpec("node-hot", "over_temp", seed=3, period_ms=100, max_reports=REPORTS)
    node = site.start_node(spec, site.issue_node(spec))

    with site.cloud_client() as client:
        deadline = time.monotonic() + 60
        while not _alarms(client, spec.name):
            assert time.monotonic() < deadline, "the alarm did not reach the cloud"
            time.sleep(0.05)  # polling the cloud's API for a condition
        assert summaries(client, spec.name) == [], "a summary came before its flush"
        node.wait_for(r'"ev": ?"exit"', timeout=120)
        assert node.proc.wait(30) == 0, node.tail()
        assert len(events(node, "ack")) == REPORTS
        alarms = _alarms(client, spec.name)
        assert len(alarms) == 1, alarms  # exactly once: the temperature never fell back
        assert alarms[0]["severity"] == 3 and alarms[0]["values"]["temp"] > 25.0
        assert summaries(client, spec.name) == []  # still batching: the flush is an hour away
