"""The live lane, every hop real: an operator watches a node, its newest values reach the API.

Cloud, gateway and a MicroPython node run as their own processes. Watching
the node makes its gateway post the node's changed values (signed, coalesced);
unwatching stops the posts; an unsigned or forged post, or one from a
gateway that does not own the node, changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client.parser import text_string_to_metric_families

from tandem.tools.procs import Child
from tandem.tools.site import NodeSpec, Site, local_site
from tandem.wire.clock import now_ms
from tandem.wire.cose import SoftwareSigner
from tandem.wire.gwrequest import MEDIA_TYPE, sign_request
from tests.waiting import eventually, wait_until

pytestmark = pytest.mark.timeout(240)
NODE = NodeSpec("node-01", period_ms=250)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    running = local_site(tmp_path_factory.mktemp("site"), window_s=1.0)
    try:
        running.start_cloud()
        running.start_gateway(env={"TANDEM_GW_LIVE_WATCH_POLL_S": "0.3"})
        yield running
    finally:
        running.stop_all()


@pytest.fixture(scope="module")
def node(site: Site) -> Iterator[Child]:
    child = site.start_node(NODE, site.issue_node(NODE))
    child.wait_for(r'"ev": ?"ack"', timeout=60)
    yield child
    child.stop(sig=2)


@pytest.fixture(scope="module")
def operator(site: Site, node: Child) -> Iterator[httpx.Client]:
    with site.cloud_client() as client:
        eventually(lambda: "node-01" in {d["device"] for d in
                                         client.get("/api/v1/devices").json()["devices"]},
                   "the cloud knows node-01", 90)
        yield client


def gateway_metric(site: Site, name: str, **labels: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{site.ports.metrics}/metrics", timeout=10).text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def live_post(site: Site, gateway: str, key: ec.EllipticCurvePrivateKey) -> httpx.Response:
    body = {"values": {"node-01": {"forged": [now_ms(), 666.0]}}}
    signed = sign_request("live-values", gateway, body, now_ms(), SoftwareSigner(key))
    with site.cloud_client() as client:
        return client.post("/edge/v1/live", content=signed, headers={"Content-Type": MEDIA_TYPE})


def test_a_watched_node_shows_its_new_readings_and_unwatching_stops_the_posts(
        site: Site, operator: httpx.Client) -> None:
    assert operator.get("/api/v1/devices/node-01/live").json()["values"] == {}
    watched_at = now_ms()
    assert operator.put("/api/v1/devices/node-01/live", json={"ttl_s": 120}).status_code == 200

    def fresh() -> dict[str, dict[str, float]] | None:
        values: dict[str, dict[str, float]] = \
            operator.get("/api/v1/devices/node-01/live").json()["values"]
        return values if values and all(v["t"] > watched_at for v in values.values()) else None

    values = eventually(fresh, "readings newer than the watch in the API", 30)
    assert all(v["age_ms"] >= 0 and v["received"] >= v["t"] - 60_000 for v in values.values())
    first = max(v["t"] for v in values.values())
    eventually(lambda: fresh() and max(v["t"] for v in fresh().values()) > first,  # type: ignore[union-attr]
               "a later reading replaces it", 30)

    assert operator.delete("/api/v1/devices/node-01/live").json()["watched"] is False
    wait_until(lambda: gateway_metric(site, "tandem_gw_live_watched") == 0,
               "the gateway learns of the unwatch", 30)
    sent = gateway_metric(site, "tandem_gw_live_posts_total", kind="values")
    asked = gateway_metric(site, "tandem_gw_live_posts_total", kind="watch")
    wait_until(lambda: gateway_metric(site, "tandem_gw_live_posts_total", kind="watch")
               >= asked + 3, "three more looks at the watched set", 30)
    assert gateway_metric(site, "tandem_gw_live_posts_total", kind="values") == sent
    assert operator.get("/api/v1/devices/node-01/live").json()["values"] == {}


def test_unsigned_forged_and_foreign_posts_are_refused(site: Site, operator: httpx.Client) -> None:
    assert operator.put("/api/v1/devices/node-01/live", json={"ttl_s": 60}).status_code == 200
    with site.cloud_client() as client:
        unsigned = client.post("/edge/v1/live", content=b'{"values": {}}',
                               headers={"Content-Type": MEDIA_TYPE})
    assert unsigned.status_code in (400, 401)
    forged = live_post(site, site.gateway_id, ec.generate_private_key(ec.SECP256R1()))
    assert (forged.status_code, forged.json()["error"]) == (401, "bad_signature")

    other = site.add_gateway("gw-02")
    other.register_gateway()
    key = serialization.load_pem_private_key(
        (site.pki / "gateway" / "gw-02" / "key.pem").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    foreign = live_post(site, "gw-02", key)
    assert (foreign.status_code, foreign.json()["error"]) == (403, "foreign_device")
    values = operator.get("/api/v1/devices/node-01/live").json()["values"]
    assert "forged" not in values

