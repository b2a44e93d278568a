"""Chaos: outages, crashes and cut links between nodes, gateway and cloud lose nothing.

While two MicroPython nodes stream, the cloud is down for a long stretch,
then reachable only through a link that is cut silently and then refuses
connections, and then the gateway is SIGKILLed at random moments at least 20
times while it drains its backlog. At the end the readings in the cloud are
exactly those the nodes saw acknowledged: none lost, none counted twice.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tandem.tools.procs import Child
from tandem.tools.site import NodeSpec, Site, local_site
from tests.e2e.readings import assert_exactly, events, wait_for_counts
from tests.netcut import CuttableLink

KILLS = 20
REPORTS = 300
PERIOD_MS = 200
# Nodes notice a dead gateway within ~1 s (short CoAP timeouts, then a new
# handshake) and buffer up to 64 reports (12.8 s) meanwhile.
NODE_TUNING = (("outbox", 64), ("link", {"backoff_max_ms": 1000}),
               ("coap", {"ack_timeout_ms": 300, "max_retransmit": 1}))


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    running = local_site(tmp_path / "site", window_s=1.0)
    try:
        yield running
    finally:
        running.stop_all()


@pytest.fixture
def link(site: Site) -> Iterator[CuttableLink]:
    proxy = CuttableLink(site.ports.cloud)
    yield proxy
    proxy.close()


def _gateway_env(link: CuttableLink) -> dict[str, str]:
    # Small batches keep the uplink busy for the whole kill phase; a short
    # timeout makes the silent cut visible quickly.
    return {"TANDEM_GW_UPLINK_URL": f"https://127.0.0.1:{link.port}",
            "TANDEM_GW_UPLINK_BATCH_MAX_RECORDS": "4", "TANDEM_GW_UPLINK_TIMEOUT_S": "1.5",
            "TANDEM_GW_UPLINK_INTERVAL_S": "0.2", "TANDEM_GW_UPLINK_BACKOFF_MAX_S": "1.0"}


def _acked(node: Child) -> int:
    return len(events(node, "ack"))


def _wait_acks(nodes: list[Child], at_least: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    for node in nodes:
        node.wait_for(r'"ev": ?"(ack|exit)"', timeout=timeout)
        while _acked(node) < at_least and node.proc.poll() is None:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{node.name}: {_acked(node)} acks, want {at_least}"
            node.wait_for(r'"ev": ?"ack"', timeout=remaining, since=node.mark())


def test_outage_cut_link_and_twenty_gateway_crashes_lose_and_repeat_nothing(
        site: Site, link: CuttableLink) -> None:
    rng = random.Random(20261127)
    cloud = site.start_cloud()
    gateway = site.start_gateway(_gateway_env(link))
    specs = [NodeSpec(f"node-{i}", scenario, seed=i, period_ms=PERIOD_MS, max_reports=REPORTS,
                      extra=NODE_TUNING)
             for i, scenario in ((1, "normal"), (2, "bearing_fault"))]
    nodes = [site.start_node(spec, site.issue_node(spec)) for spec in specs]

    # 1. A long cloud outage (compressed): the gateway keeps serving and storing.
    cloud.stop()
    site.forget(cloud)
    _wait_acks(nodes, 60)

    # 2. The cloud is back but the link is cut: silently first, then refusing.
    link.set_mode("blackhole")
    cloud = site.start_cloud()
    _wait_acks(nodes, 90)
    link.set_mode("refuse")
    _wait_acks(nodes, 110)
    link.set_mode("pass")

    # 3. The gateway dies by SIGKILL at random moments while it drains. Before
    # the next kill every running node has been served again, so each node's
    # outage is one restart long (its buffer holds 12.8 s).
    for _ in range(KILLS):
        gateway.wait_for(r"batch \d+ delivered", timeout=60)
        time.sleep(rng.uniform(0.05, 0.6))  # a random crash moment, not a wait for readiness
        gateway.kill()
        site.forget(gateway)
        marks = [node.mark() for node in nodes]
        gateway = site.start_gateway(_gateway_env(link))
        for node, mark in zip(nodes, marks, strict=True):
            if node.proc.poll() is None:  # a node that finished its reports has nothing to send
                node.wait_for(r'"ev": ?"(ack|exit)"', timeout=60, since=mark)

    for node in nodes:
        node.wait_for(r'"ev": ?"exit"', timeout=180)
        assert node.proc.wait(30) == 0, node.tail()

    with site.cloud_client() as client:
        for spec, node in zip(specs, nodes, strict=True):
            acks = events(node, "ack")
            assert len(acks) == REPORTS
            assert events(node, "dropped") == []
            points = wait_for_counts(client, spec.name, REPORTS, timeout=120)
            assert_exactly(points, acks)
