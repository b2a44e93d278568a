"""Disk quota reached during a cloud outage: the gateway degrades, every alarm still arrives.

The outbox is capped at 100 waiting summaries and windows are short, so a
node reporting through a cloud outage fills it: the gateway merges old
windows into coarser ones (saying so in its log and metrics) instead of
dropping anything, and the alarms its rules raise meanwhile are never merged
or refused. When the cloud returns, it receives every alarm and every
acknowledged reading, the latter partly in coarser windows.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tandem.tools.site import NodeSpec, Site, local_site
from tests.e2e.readings import assert_exactly, events, wait_for_counts

THRESHOLDS = (25, 30, 35, 40)  # the over_temp node climbs 0.4 degC per report from ~22
REPORTS = 200

RULES = "version = 1\n\n[action.siren]\nkind = \"local_alarm\"\n" + "".join(
    f'\n[[rule]]\nname = "hot{t}"\nseverity = 3\n'
    f'when = {{ input = "temp", above = {t}.0, clear_below = {t - 1}.0 }}\n'
    'actions = ["siren"]\n' for t in THRESHOLDS)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    running = local_site(tmp_path / "site")
    try:
        yield running
    finally:
        running.stop_all()


def _metric(site: Site, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{site.ports.metrics}/metrics", timeout=10).text
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(match.group(1)) if match else float("nan")


def test_a_full_outbox_degrades_gracefully_and_delivers_every_alarm(site: Site) -> None:
    rules = site.root / "rules.toml"
    rules.write_text(RULES)
    gateway = site.start_gateway({"TANDEM_GW_RULES_FILE": str(rules),
                                  "TANDEM_GW_OUTBOX_MAX_RECORDS": "100",
                                  "TANDEM_GW_PIPELINE_WINDOW_S": "0.2"})
    spec = NodeSpec("node-hot", "over_temp", seed=3, period_ms=100, max_reports=REPORTS)
    node = site.start_node(spec, site.issue_node(spec))

    gateway.wait_for(r"outbox DEGRADED", timeout=120)
    deadline = time.monotonic() + 30
    while _metric(site, "tandem_gw_outbox_degraded") != 1.0:
        assert time.monotonic() < deadline, "degraded state not shown in metrics"
        time.sleep(0.2)  # polling the metrics endpoint for a condition
    node.wait_for(r'"ev": ?"exit"', timeout=120)
    assert node.proc.wait(30) == 0, node.tail()

    site.start_cloud()  # the outage ends
    acks = events(node, "ack")
    assert len(acks) == REPORTS
    with site.cloud_client() as client:
        points = wait_for_counts(client, spec.name, REPORTS, timeout=120)
        assert_exactly(points, acks)
        assert any(p["t1"] - p["t0"] > 200 for p in points), "no window was merged"
        deadline = time.monotonic() + 60
        while True:
            fired = {e["name"] for e in client.get(
                "/api/v1/events", params={"device": spec.name, "limit": 1000}).json()["events"]}
            if {f"hot{t}" for t in THRESHOLDS} <= fired:
                break
            assert time.monotonic() < deadline, f"alarms in the cloud: {sorted(fired)}"
            time.sleep(0.2)  # polling the cloud's API for a condition
