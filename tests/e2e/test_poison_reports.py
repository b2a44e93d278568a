"""One node's poison never stops the others: refused at the door, or quarantined on replay.

A real MicroPython node reports while a DTLS client posts reports no chain
can store (t = 2^63, t = 2^64-1, seq = 2^40, NaN, 1e308): those get 4.00 and
every good reading reaches the cloud. A poisoned row left in the journal by
an older release is quarantined when the gateway restarts (counted, logged,
listed by the CLI) instead of crashing every replay.
"""

from __future__ import annotations

import math
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cbor2
import httpx
import pytest
from aiocoap.numbers.codes import Code

from tandem.tools.pki import Role, SiteCA
from tandem.tools.site import NodeSpec, Site, local_site
from tests.e2e.readings import assert_exactly, events, wait_for_counts
from tests.gateway.access_peers import DtlsClient, report_post

pytestmark = pytest.mark.timeout(300)
REPORTS = 20


def _poison(**fields: object) -> bytes:
    report: dict[int, object] = {1: 1, 2: 0xBAD, 3: time.time_ns() // 1_000_000,
                                 4: {"temp": 1.0}}
    report.update({{"seq": 1, "t": 3, "values": 4}[k]: v for k, v in fields.items()})
    return cbor2.dumps(report)


POISON = [_poison(t=2**63), _poison(t=2**64 - 1), _poison(t=2**63 - 1), _poison(seq=2**40),
          _poison(values={"temp": math.nan}), _poison(values={"temp": 1e308})]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    running = local_site(tmp_path / "site", window_s=0.5)
    try:
        yield running
    finally:
        running.stop_all()


def _post_poison_until(site: Site, done: threading.Event, codes: list[Code]) -> None:
    identity = SiteCA.load(site.pki).issue("node-poison", Role.DEVICE, overwrite=True)
    with DtlsClient(site.ports.coap, identity, site.pki / "ca.pem") as client:
        client.handshake()
        while not done.is_set() or not codes:
            codes.extend(client.request(report_post(p)).code for p in POISON)


def test_poison_reports_get_4_00_while_every_good_report_reaches_the_cloud(site: Site) -> None:
    site.start_cloud()
    site.start_gateway()
    spec = NodeSpec("node-good", "normal", seed=4, period_ms=50, max_reports=REPORTS)
    done, codes = threading.Event(), []
    poisoner = threading.Thread(target=_post_poison_until, args=(site, done, codes))
    poisoner.start()
    try:
        node = site.start_node(spec, site.issue_node(spec))
        node.wait_for(r'"ev": ?"exit"', timeout=120)
    finally:
        done.set()
        poisoner.join(60)
    assert node.proc.wait(30) == 0, node.tail()
    assert codes and set(codes) == {Code.BAD_REQUEST}
    acks = events(node, "ack")
    assert len(acks) == REPORTS
    with site.cloud_client() as client:
        assert_exactly(wait_for_counts(client, spec.name, REPORTS), acks)


def test_a_poisoned_journal_row_is_quarantined_at_restart_and_the_gateway_keeps_flowing(
        site: Site) -> None:
    site.start_cloud()
    gateway = site.start_gateway()
    assert gateway.stop() == 0
    site.forget(gateway)
    with sqlite3.connect(site.root / "gateway-data" / "gateway.sqlite3") as db:
        db.execute("INSERT INTO journal (device, boot, seq, t_ms, received_ms, vals) "
                   "VALUES ('node-old', 1, 1, ?, ?, ?)",
                   (2**63 - 1, time.time_ns() // 1_000_000, cbor2.dumps({"temp": 1.0})))

    gateway = site.start_gateway()
    gateway.wait_for(r"WARNING .*quarantined a report of device node-old .*range_time",
                     timeout=30)
    spec = NodeSpec("node-after", "normal", seed=5, period_ms=50, max_reports=REPORTS)
    node = site.start_node(spec, site.issue_node(spec))
    node.wait_for(r'"ev": ?"exit"', timeout=120)
    with site.cloud_client() as client:
        assert_exactly(wait_for_counts(client, spec.name, REPORTS), events(node, "ack"))
    metrics = httpx.get(f"http://127.0.0.1:{site.ports.metrics}/metrics").text
    assert re.search(r'^tandem_gw_quarantined_records_total\{reason="range_time"\} 1\.0$',
                     metrics, re.M)
    assert gateway.stop() == 0
    listed = subprocess.run([str(Path(sys.executable).with_name("tandem-gateway")), "quarantine",
                             "list", "--config", str(site.root / "gateway.toml")],
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and "node-old range_time" in listed.stdout, listed
