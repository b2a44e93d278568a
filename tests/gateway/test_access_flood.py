"""A flood of half-open DTLS handshakes must not lock real nodes out (docs/security-policy.md).

The attacker passes the cookie check from many loopback source addresses
(it can receive at each of them) and then never finishes a handshake. Real
MicroPython nodes keep reporting, a node rebooting during the flood
reconnects, and every reading a node saw acknowledged reached the gateway.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.access_peers import RecordingSink, ServerThread, Site
from tests.gateway.dtls_flood import FloodThread
from tests.nodeproc import NodeProcess, write_node_config
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def gateway(site: Site, sink: RecordingSink) -> Iterator[ServerThread]:
    """A DTLS server whose peer table a flood of 1,000 could fill many times over."""
    with ServerThread(site.config(max_peers=128), sink) as running:
        yield running


def test_half_open_flood_does_not_lock_out_nodes(tmp_path: Path, site: Site,
                                                 sink: RecordingSink,
                                                 gateway: ServerThread) -> None:
    stats = gateway.server.stats
    extra = site.ca.issue("node-02", site.device.role)
    first = write_node_config(tmp_path / "n1", site.device, gateway.port, period_ms=200)
    second = write_node_config(tmp_path / "n2", extra, gateway.port, period_ms=200)
    flood = FloodThread(gateway.port, waves=5, per_wave=200)
    with NodeProcess(first) as node:
        node.wait_for("ack", seq=2, timeout=30)
        flood.start()
        try:
            wait_until(lambda: flood.waves_done >= 1 or flood.error is not None, "the first wave",
                       timeout=60)
            with NodeProcess(second) as newcomer:  # a node that boots while the flood runs
                newcomer.wait_for("ack", seq=3, timeout=60)
                node.stop()
                with NodeProcess(first) as rebooted:  # the same node rebooting mid-flood
                    rebooted.wait_for("ack", seq=3, timeout=60)
                    wait_until(lambda: flood.waves_done >= 3, "more waves", timeout=90)
                    rebooted.wait_for("ack", where=lambda e: e["seq"] >= 6, timeout=60)
                    acked = {("node-01", e["boot"], e["seq"]) for e in
                             node.of("ack") + rebooted.of("ack")}
                acked |= {("node-02", e["boot"], e["seq"]) for e in newcomer.of("ack")}
        finally:
            flood.stop()
    assert flood.error is None, flood.error
    assert flood.flood.sent >= 600, "the flood did not run"
    received = {(i.device, i.report.boot, i.report.seq) for i in sink.items}
    assert acked <= received, f"acknowledged but lost: {sorted(acked - received)[:5]}"
    refused = sum(stats[c] for c in ("handshake_budget_full", "handshake_source_limit",
                                     "handshake_rate_limited", "handshake_evicted"))
    assert refused > 0, "the flood was never held back"
    assert stats["peer_table_full"] == 0
