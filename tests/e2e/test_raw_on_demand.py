"""Raw waveforms on demand, every hop real: an operator asks the cloud, the edge answers.

Cloud, gateway and a MicroPython vibration node (ADXL345 on the simulated bus)
run as their own processes. The operator names only the device; the cloud
finds the gateway that reported it, the gateway (which has no snippet cached)
asks the node through GET /c, the node uploads its next window block-wise to
POST /raw, and the snippet travels up as a BULK record in a signed batch. A
second request for the same moment is answered from the gateway's cache.
"""

from __future__ import annotations

import base64
import ssl
import struct
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tandem.tools.procs import Child
from tandem.tools.site import NodeSpec, Site, local_site
from tests.e2e.readings import events
from tests.waiting import eventually

pytestmark = pytest.mark.timeout(240)
SENSOR: dict[str, Any] = {"model": "accel", "rate_hz": 800, "samples": 128,
                          "scenario": "normal", "seed": 3}
NODE = NodeSpec("node-01", period_ms=250, heap="144K", extra=(
    ("sensor", SENSOR), ("commands", {"poll_ms": 250}),
    ("raw", {"enabled": True, "block_szx": 5}),
    ("coap", {"ack_timeout_ms": 500, "max_retransmit": 3})))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    running = local_site(tmp_path_factory.mktemp("site"), window_s=1.0)
    try:
        running.start_cloud()
        running.start_gateway(env={"TANDEM_GW_RAWCACHE_REQUEST_POLL_S": "0.3"})
        yield running
    finally:
        running.stop_all()


@pytest.fixture(scope="module")
def operator(site: Site) -> Iterator[httpx.Client]:
    """An HTTPS client holding an operator's API token (created with tandem-cloud)."""
    config = str(site.root / "cloud.toml")
    cloud_cli("user", "add", "olga", "--role", "operator", "--no-password", "--config", config)
    token = cloud_cli("token", "create", "--user", "olga", "--name", "e2e", "--config",
                      config).strip()
    trust = ssl.create_default_context(cafile=site.pki / "ca.pem")
    with httpx.Client(base_url=site.cloud_url, verify=trust, timeout=10,
                      headers={"Authorization": f"Bearer {token}"}) as client:
        yield client


@pytest.fixture(scope="module")
def node(site: Site) -> Iterator[Child]:
    child = site.start_node(NODE, site.issue_node(NODE))
    child.wait_for(r'"ev": ?"ack"', timeout=60)
    yield child
    child.stop(sig=2)  # SIGINT: the node logs its exit event


def test_an_operator_gets_a_snippet_without_naming_the_gateway(
        site: Site, operator: httpx.Client, node: Child) -> None:
    eventually(lambda: "node-01" in {d["device"] for d in
                                     operator.get("/api/v1/devices").json()["devices"]},
               "the cloud knows node-01", 90)
    asked = operator.post("/api/v1/raw-requests", json={"device": "node-01"})
    assert asked.status_code == 202, asked.text
    fresh = finished(operator, asked.headers["Location"])
    assert (fresh["status"], fresh["gateway"]) == ("done", site.gateway_id), fresh
    snippet = fresh["snippet"]
    assert (snippet["rate_hz"], snippet["axes"], snippet["frames"], snippet["g_per_lsb"]) == \
        (800, "xyz", 128, 1 / 256)
    frames = struct.unpack(f"<{3 * 128}h", _b64(snippet["samples"]))
    z = frames[2::3]
    assert 230 < sum(z) / len(z) < 280  # gravity on z: 1 g = 256 LSB
    assert events(node, "raw_sent"), "the node uploaded the window it was asked for"

    uploads = len(events(node, "raw_sent"))
    again = operator.post("/api/v1/raw-requests",
                          json={"device": "node-01", "t_ms": snippet["t_ms"] + 10})
    cached = finished(operator, again.headers["Location"])
    assert cached["status"] == "done" and cached["snippet"]["samples"] == snippet["samples"]
    assert len(events(node, "raw_sent")) == uploads, "answered from the gateway's cache"


def test_a_device_no_gateway_reported_is_refused_at_once(operator: httpx.Client) -> None:
    refused = operator.post("/api/v1/raw-requests", json={"device": "node-77"})
    assert (refused.status_code, refused.json()["error"]) == (404, "unknown_device")


def finished(client: httpx.Client, location: str) -> dict[str, Any]:
    """Poll a raw request until it is done or failed."""
    def state() -> dict[str, Any] | None:
        body: dict[str, Any] = client.get(location).json()
        return body if body["status"] in ("done", "failed") else None
    return eventually(state, f"{location} finished", 90)



def cloud_cli(*argv: str) -> str:
    """Run `tandem-cloud` (as python -m) and return its stdout."""
    done = subprocess.run([sys.executable, "-m", "tandem.cloud.cli.main", *argv],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _b64(text: str) -> bytes:
    return base64.b64decode(text)
