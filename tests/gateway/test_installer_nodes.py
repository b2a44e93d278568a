"""The installer's nodes screen: revoke and allow a node, and its provisioning bundle.

Revocation is checked on the real DTLS server with real handshakes: a node
revoked through the local revocation list has its open session closed and
its next handshake refused, at once; allowed again, it connects. The screen
runs in aiohttp's test server in front of a stand-in gateway holding the
real revocation list and device policy.
"""

from __future__ import annotations

import asyncio
import io
import json
import shlex
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiocoap import CHANGED
from aiohttp.test_utils import TestClient, TestServer
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL

from tandem.gateway.access.device_policy import DevicePolicy
from tandem.gateway.installer.config import InstallerSection
from tandem.gateway.installer.nodebundle import BundleRequest, make_bundle, provision_command
from tandem.gateway.installer.password import set_password
from tandem.gateway.installer.server import InstallerServer
from tandem.gateway.pipeline.livevalues import LiveValues
from tandem.gateway.policy.revocation import RevocationList
from tandem.tools import cli as tandem_cli
from tandem.wire.certprofile import ProfileError
from tests.gateway.access_peers import DtlsClient, ServerThread, Site, report_post, sample_report
from tests.gateway.installerkit import PASSWORD, Browser
from tests.gateway.installerkit import csrf_token as _csrf
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(60)


def test_the_list_file_is_edited_in_place_and_applied_without_a_poll(tmp_path: Path) -> None:
    path = tmp_path / "revoked.txt"
    path.write_text("# stolen on site B\nnode-03\n")
    policy = DevicePolicy()
    revocations = RevocationList(path, policy)
    assert revocations.revoke("node-07") and not revocations.revoke("node-07")
    assert not policy.permits("node-07") and not policy.permits("node-03")
    assert path.read_text() == "# stolen on site B\nnode-03\nnode-07\n"
    assert revocations.allow("node-03") and not revocations.allow("node-03")
    assert policy.permits("node-03") and not policy.permits("node-07")
    assert path.read_text() == "# stolen on site B\nnode-07\n"
    with pytest.raises(ProfileError):
        revocations.revoke("../etc/passwd")
    assert revocations.names() == frozenset({"node-07"})


def _sessions_of(server: ServerThread, device: str) -> int:
    return server.call(lambda: len([s for s in server.server.endpoint.sessions
                                    if s.device == device]))


def test_a_revoked_node_loses_its_session_and_its_next_handshake_is_refused(
        server: ServerThread, site: Site, tmp_path: Path) -> None:
    revocations = server.call(lambda: RevocationList(tmp_path / "revoked.txt",
                                                     server.server.policy))
    with DtlsClient(server.port, site.device, site.ca.cert_pem_path) as peer:
        peer.handshake()
        assert peer.request(report_post(sample_report(seq=1))).code == CHANGED
        assert _sessions_of(server, "node-01") == 1
        closed = server.call(lambda: revocations.revoke("node-01")
                             and server.server.drop_device("node-01"))
        assert closed == 1 and _sessions_of(server, "node-01") == 0
    with DtlsClient(server.port, site.device, site.ca.cert_pem_path) as again, \
            pytest.raises(SSL.Error):
        again.handshake()
    # the alert leaves before the server counts the refusal: wait for the count
    wait_until(lambda: server.server.stats["device_revoked"] == 1,
               f"device_revoked counted ({server.server.stats.snapshot()})")
    assert server.server.stats["revoked_session_closed"] == 1
    server.call(lambda: revocations.allow("node-01"))
    with DtlsClient(server.port, site.device, site.ca.cert_pem_path) as back:
        back.handshake()
        assert back.request(report_post(sample_report(seq=2))).code == CHANGED


def test_the_bundle_holds_what_tandem_provision_writes_and_the_site_ca(
        site: Site, tmp_path: Path) -> None:
    wanted = BundleRequest("node-09", "192.0.2.10", 5684, "gw-01", period_ms=2000)
    archive = zipfile.ZipFile(io.BytesIO(make_bundle(wanted, site.ca.cert_pem_path)))
    assert sorted(archive.namelist()) == ["node-09/README.txt", "node-09/ca.der",
                                          "node-09/node.json"]
    ca = x509.load_der_x509_certificate(archive.read("node-09/ca.der"))
    assert ca.public_bytes(serialization.Encoding.PEM) == site.ca.cert_pem_path.read_bytes()
    command = provision_command(wanted)
    assert shlex.join(command) in archive.read("node-09/README.txt").decode()
    # run the README's command where the CA key is: it stages the same node.json and CA
    argv = [str(site.ca.directory) if a == "<site-pki>" else a for a in command[1:]]
    assert tandem_cli.main([*argv, "--staging", str(tmp_path / "staged")]) == 0
    staged = tmp_path / "staged" / "node-09"
    assert json.loads(archive.read("node-09/node.json")) == json.loads(
        (staged / "node.json").read_text())
    assert archive.read("node-09/ca.der") == (staged / "ca.der").read_bytes()
    with pytest.raises(ProfileError):
        make_bundle(BundleRequest("no/slash", "h", 1, "gw-01"), site.ca.cert_pem_path)


# -- the screen ---------------------------------------------------------------------


class StandIn:
    """A gateway with what the nodes screen reads: config, revocation list, device policy."""

    def __init__(self, root: Path, site: Site) -> None:
        self.policy = DevicePolicy()
        self.dropped: list[str] = []
        self.config = SimpleNamespace(
            gateway=SimpleNamespace(id="gw-01", data_dir=root),
            rules=SimpleNamespace(file=None), coap=SimpleNamespace(host="0.0.0.0"),
            identity=SimpleNamespace(ca=site.ca.cert_pem_path))
        self.security = SimpleNamespace(revocations=RevocationList(root / "revoked.txt",
                                                                   self.policy))
        self.access = SimpleNamespace(policy=self.policy, drop_device=self._drop)
        self.coap_port = 5684

    def _drop(self, device: str) -> int:
        self.dropped.append(device)
        return 1


async def _logged_in(gateway: Any, root: Path) -> tuple[Browser, InstallerServer]:
    set_password(root, PASSWORD)
    server = InstallerServer(InstallerSection(), gateway, LiveValues())
    client = Browser(TestClient(TestServer(server.app())))
    await client.client.start_server()
    csrf = await _csrf(client)
    await client.post("/login", data={"password": PASSWORD, "csrf": csrf}, allow_redirects=False)
    return client, server


def test_the_screen_revokes_allows_and_hands_out_a_bundle(tmp_path: Path, site: Site) -> None:
    gateway = StandIn(tmp_path, site)

    async def scenario() -> None:
        client, server = await _logged_in(gateway, tmp_path)
        try:
            csrf = await _csrf(client, "/nodes")
            forged = await client.post("/nodes/revoke", data={"device": "node-07"})
            assert forged.status == 403
            page = await client.post("/nodes/revoke", data={"device": "node-07", "csrf": csrf})
            text = await page.text()
            assert page.status == 200 and "node-07 revoked" in text
            assert 'id="allow-node-07"' in text and "revoked here" in text
            assert not gateway.policy.permits("node-07") and gateway.dropped == ["node-07"]
            bad = await client.post("/nodes/revoke", data={"device": "a b", "csrf": csrf})
            assert bad.status == 422
            allowed = await client.post("/nodes/allow", data={"device": "node-07", "csrf": csrf})
            assert "node-07 allowed" in await allowed.text()
            assert gateway.policy.permits("node-07")
            bundle = await client.get("/nodes/bundle", params={"name": "node-09"})
            assert bundle.content_type == "application/zip"
            archive = zipfile.ZipFile(io.BytesIO(await bundle.read()))
            node = json.loads(archive.read("node-09/node.json"))
            # the gateway listens on all interfaces: the node gets the address the page was at
            assert node["gateway"] == {"host": "127.0.0.1", "port": 5684, "name": "gw-01"}
            assert [e.event for e in server.audit.pending] == [
                "login", "node-revoked", "node-allowed", "node-bundle"]
        finally:
            await client.close()

    asyncio.run(scenario())
