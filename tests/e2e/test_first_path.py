"""The first real path, every hop real and every program its own OS process.

Nodes are the firmware in real MicroPython (64 KB heap) speaking CoAP over
DTLS with X.509 to the gateway, which files signed batches over HTTPS to the
cloud. The readings each node saw acknowledged must turn up, summarised, at
the cloud's query endpoint under that node's identity.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tandem.tools.pki import SiteCA
from tandem.tools.site import NodeSpec, Site, local_site
from tandem.wire.batch import Batch, Summary, encode_batch
from tandem.wire.cose import SoftwareSigner, sign1
from tests.e2e.readings import assert_exactly, events, summaries, wait_for_counts

REPORTS = 12


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    running = local_site(tmp_path_factory.mktemp("site"), window_s=1.0)
    try:
        running.start_cloud()
        running.start_gateway()
        yield running
    finally:
        running.stop_all()


@pytest.fixture(scope="module")
def client(site: Site) -> Iterator[httpx.Client]:
    with site.cloud_client() as c:
        yield c


def test_readings_of_two_nodes_arrive_at_the_cloud_under_their_identity(
        site: Site, client: httpx.Client) -> None:
    specs = [NodeSpec("node-01", "normal", seed=1, period_ms=200, max_reports=REPORTS),
             NodeSpec("node-02", "over_temp", seed=2, period_ms=200, max_reports=REPORTS)]
    nodes = [site.start_node(spec, site.issue_node(spec)) for spec in specs]
    for node in nodes:
        node.wait_for(r'"ev": ?"exit"', timeout=90)
        assert node.proc.wait(30) == 0, node.tail()

    for spec, node in zip(specs, nodes, strict=True):
        acks = events(node, "ack")
        assert len(acks) == REPORTS
        points = wait_for_counts(client, spec.name, REPORTS)
        assert {p["device"] for p in points} == {spec.name}
        assert {p["gateway"] for p in points} == {site.gateway_id}
        assert_exactly(points, acks)


def test_a_node_with_a_certificate_from_another_ca_is_refused(site: Site, client: httpx.Client,
                                                              tmp_path: Path) -> None:
    foreign = tmp_path / "foreign-pki"
    SiteCA.create(foreign, "intruder")
    spec = NodeSpec("node-66", "normal", period_ms=200, max_reports=3)
    node = site.start_node(spec, site.issue_node(spec, ca_dir=foreign))
    node.wait_for(r'"ev": ?"error"', timeout=60)
    node.stop()
    assert events(node, "ack") == []
    metrics = httpx.get(f"http://127.0.0.1:{site.ports.metrics}/metrics").text
    assert "node-66" not in metrics
    assert summaries(client, "node-66") == []


def test_a_tampered_or_forged_batch_is_rejected_and_nothing_is_stored(
        site: Site, client: httpx.Client) -> None:
    gateway_key = _gateway_key(site)
    forged = Summary("node-99", "temp", 1000, 2000, 1, 1.0, 1.0, 1.0, 1.0)
    payload = encode_batch(Batch(site.gateway_id, 10**9, 0, (forged,)))
    headers = {"Content-Type": 'application/cose; cose-type="cose-sign1"'}

    good = sign1(payload, site.gateway_id, SoftwareSigner(gateway_key))
    tampered = good.replace(b"node-99", b"node-98")
    response = client.post("/ingest/v1/batches", content=tampered, headers=headers)
    assert (response.status_code, response.json()["error"]) == (401, "bad_signature")

    other_key = SoftwareSigner(ec.generate_private_key(ec.SECP256R1()))
    response = client.post("/ingest/v1/batches", headers=headers,
                           content=sign1(payload, site.gateway_id, other_key))
    assert (response.status_code, response.json()["error"]) == (401, "bad_signature")

    response = client.post("/ingest/v1/batches", headers=headers,
                           content=sign1(payload, "gw-unknown", other_key))
    assert (response.status_code, response.json()["error"]) == (403, "unknown_gateway")

    response = client.post("/ingest/v1/batches", content=b"\xa1garbage", headers=headers)
    assert (response.status_code, response.json()["error"]) == (400, "malformed")

    assert summaries(client, "node-99") == []
    assert summaries(client, "node-98") == []


def _gateway_key(site: Site) -> ec.EllipticCurvePrivateKey:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(
        (site.pki / "gateway" / site.gateway_id / "key.pem").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key
