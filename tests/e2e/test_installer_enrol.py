"""The installer page enrols a fresh gateway and revokes a node, in a real browser.

Every program is its own process: the cloud (which has never heard of the
gateway), the gateway daemon with no cloud configured, a MicroPython node.
Debian's Chromium logs in, types a wrong token (and is told so in words),
then the token the cloud's CLI made: the gateway is enrolled and starts its
cloud link in-process, and the cloud accepts its signed uploads. On the
nodes screen the installer revokes the node; its next DTLS handshake is
refused. Screenshots go to docs/screenshots.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from OpenSSL import SSL

from tandem.tools.pki import Identity, Role
from tandem.tools.site import NodeSpec, Site, local_site
from tests import browser as harness
from tests.browser import needs_chromium, screenshot
from tests.e2e.readings import summaries
from tests.gateway.access_peers import DtlsClient
from tests.waiting import eventually

pytestmark = [pytest.mark.timeout(240), needs_chromium]

browser = harness.browser
browser_page = harness.browser_page

PASSWORD = "installer-secret-42"
NODE = NodeSpec("node-07", period_ms=500)


def _cli(name: str, *args: str) -> str:
    done = subprocess.run([str(Path(sys.executable).with_name(name)), *args],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    """A cloud that can enrol (the site CA signs CSRs), signs policies, has never seen gw-01."""
    running = local_site(tmp_path / "site", window_s=1.0)
    keys = running.root / "cloud-keys"
    for name in ("policy.pem", "data.pem"):
        _cli("tandem-cloud", "policy", "keygen", "--out", str(keys / name))
    with running.cloud_config.open("a") as f:
        f.write(f'\n[enrol]\nca_cert = "{running.pki / "ca.pem"}"\n'
                f'ca_key = "{running.pki / "ca.key.pem"}"\n'
                f'\n[policy]\nsigning_key = "{keys / "policy.pem"}"\n'
                f'data_key = "{keys / "data.pem"}"\n')
    try:
        running.start_cloud(register=False)
        yield running
    finally:
        running.stop_all()


def _set_password(site: Site) -> None:
    done = subprocess.run([str(Path(sys.executable).with_name("tandem-gateway")),
                           "installer-password", "--config", str(site.root / "gateway.toml")],
                          input=PASSWORD + "\n", capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def _log_in(page: Any, url: str) -> None:
    page.goto(url + "login")
    page.fill("#password", PASSWORD)
    page.click("#login")
    page.wait_for_url(url)


def test_an_installer_enrols_a_fresh_gateway_then_revokes_a_node(
        browser_page: Any, site: Site) -> None:
    _set_password(site)
    gateway = site.start_gateway(env={"TANDEM_GW_UPLINK_URL": ""})
    gateway.wait_for(r"no uplink.url configured", timeout=10)
    url = site.installer_url(gateway)
    site.issue_node(NODE)
    site.start_node(NODE)
    page = browser_page
    _log_in(page, url)
    page.click("#nav-enrol")
    page.wait_for_url(url + "enrol")
    assert page.locator("#enrol-state").inner_text() == "Not enrolled."
    page.fill("#cloud-url", site.cloud_url)
    page.fill("#token", "tdi_this-is-not-the-token")
    page.click("#enrol")
    page.locator("#enrol-result", has_text="Not enrolled").wait_for()
    failed = page.locator('#enrol-steps li[data-ok="false"]')
    assert failed.get_attribute("data-step") == "certificate"
    assert failed.inner_text().startswith("certificate: Wrong or expired token")
    assert page.locator('#enrol-steps li[data-step="cloud"]').get_attribute("data-ok") == "true"
    screenshot(page, "installer-enrol-wrong-token")

    token = _cli("tandem-cloud", "enrol", "token", "--gateway", site.gateway_id, "--group",
                 "plant-a", "--ttl", "10m", "--config", str(site.cloud_config)).strip()
    page.fill("#token", token)
    page.click("#enrol")
    page.locator("#enrol-result", has_text="Enrolled.").wait_for(timeout=30_000)
    assert "in group plant-a" in page.locator("#enrol-state").inner_text()
    assert "Cloud link started in the running gateway: uplink, status-report, policy-agent" \
        in page.locator('#enrol-steps li[data-step="link"]').inner_text()
    screenshot(page, "installer-enrol")
    # the same process now uploads, signed with its key store's key, and the cloud accepts it
    with site.cloud_client() as cloud:
        eventually(lambda: summaries(cloud, NODE.name) or None,
                   "node-07's summaries in the cloud from the enrolled gateway", timeout=60)

    page.click("#nav-nodes")
    page.wait_for_url(url + "nodes")
    page.locator("#nodes-table tr[data-device='node-07']").wait_for()
    page.click("#revoke-node-07")
    page.locator("#nodes-result", has_text="node-07 revoked").wait_for()
    assert "revoked here" in page.locator("#nodes-table tr[data-device='node-07']").inner_text()
    screenshot(page, "installer-nodes")
    bundle = page.request.get(url + "nodes/bundle?name=node-09")
    assert bundle.ok and bundle.headers["content-type"] == "application/zip"
    node = Identity(NODE.name, Role.DEVICE, site.pki / "device" / NODE.name)
    with DtlsClient(site.ports.coap, node, site.pki / "ca.pem") as peer, \
            pytest.raises(SSL.Error):
        peer.handshake()
    gateway.wait_for(r"device_revoked", timeout=30)
