"""The installer's enrolment wizard: each step's outcome, and errors in an installer's words.

The wizard runs the gateway's real enrolment client and key store against
the real cloud app (in-process through httpx's WSGI transport) or against
real HTTPS servers on loopback that stand for a cloud that is unreachable,
untrusted, expired or on another clock. A failure before the last step
leaves the one-time token unused.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask

from tandem.gateway.config import GatewayConfig
from tandem.gateway.identity import enrolled
from tandem.gateway.identity.enrolment import open_or_create_keystore
from tandem.gateway.identity.keystore import GatewayKeyStore
from tandem.gateway.installer import enrolwizard
from tandem.gateway.installer.config import InstallerSection
from tandem.gateway.installer.pagecert import fingerprint, page_cert, upgrade
from tandem.gateway.installer.password import set_password
from tandem.gateway.installer.server import InstallerServer
from tandem.gateway.pipeline.livevalues import LiveValues
from tandem.gateway.runtime import with_enrolled_cloud
from tandem.tools.pki import Role, SiteCA
from tandem.wire.certprofile import CertRequest, Issuer, issue
from tests import enrolkit
from tests.enrolkit import (
    gateway_config,
    new_token,
    wsgi_client,
)
from tests.enrolkit import upload_summary as _upload
from tests.gateway.installerkit import PASSWORD, Browser
from tests.gateway.installerkit import csrf_token as _csrf
from tests.httpsserver import HttpsServer
from tests.ports import free_port
from tests.tpm import SoftwareTpm, needs_swtpm

pytestmark = pytest.mark.timeout(60)


ca = enrolkit.ca  # fixtures: the site CA and a cloud app on it
app = enrolkit.app


@pytest.fixture
def config(tmp_path: Path, ca: SiteCA, app: Flask) -> GatewayConfig:
    return gateway_config(tmp_path / "gw", ca)


@pytest.fixture
def store(config: GatewayConfig) -> Iterator[GatewayKeyStore]:
    """The daemon's key store: a passphrase-encrypted file key, made at first use."""
    opened = open_or_create_keystore(config)
    yield opened
    opened.close()


def _in_process(app: Flask) -> enrolwizard.ClientFactory:
    return lambda url: wsgi_client(app)


def _texts(outcome: enrolwizard.Outcome) -> list[tuple[str, bool]]:
    return [(s.name, s.ok) for s in outcome.steps]


def test_wrong_token_is_explained_then_the_right_one_enrols_and_uploads_verify(
        config: GatewayConfig, store: GatewayKeyStore, app: Flask) -> None:
    wrong = enrolwizard.run(config, "http://cloud", "tdi_not-a-token", store, _in_process(app))
    assert _texts(wrong) == [("address", True), ("cloud", True), ("key", True),
                             ("certificate", False)]
    assert wrong.steps[-1].text.startswith("Wrong or expired token")
    assert "encrypted file" in wrong.steps[2].text
    assert not wrong.ok and enrolled.load(config.gateway.data_dir) is None
    pasted = enrolwizard.run(config, "http://cloud", "hello", store, _in_process(app))
    assert pasted.steps[-1].text.startswith("Wrong or expired token")  # not even a tdi_ token
    token = new_token(app, "gw-01", "plant-a")
    right = enrolwizard.run(config, "http://cloud/", f"  {token}\n", store, _in_process(app))
    assert right.ok and all(s.ok for s in right.steps)
    assert right.steps[-1].text.startswith("Enrolled in group 'plant-a'")
    assert enrolled.load(config.gateway.data_dir) == right.enrolment
    assert _upload(app.test_client(), "gw-01", 1, store) == (200, "")
    again = enrolwizard.run(config, "http://cloud", token, store, _in_process(app))
    assert again.steps[-1].text.startswith("Wrong or expired token")  # it worked once


@needs_swtpm
def test_the_csr_is_made_in_the_tpm_when_the_key_lives_there(tmp_path: Path, ca: SiteCA,
                                                            app: Flask) -> None:
    with SoftwareTpm(tmp_path / "swtpm") as tpm:
        config = gateway_config(tmp_path / "gw-tpm", ca, keystore="tpm", tcti=tpm.tcti)
        with open_or_create_keystore(config) as store:
            outcome = enrolwizard.run(config, "http://cloud", new_token(app, "gw-01"), store,
                                      _in_process(app))
            assert outcome.ok
            assert outcome.steps[2].text.startswith("Signing request made with the key in "
                                                    "the TPM")
            assert _upload(app.test_client(), "gw-01", 1, store) == (200, "")


def test_a_restarted_gateway_without_uplink_url_uploads_where_it_enrolled(
        config: GatewayConfig, store: GatewayKeyStore, app: Flask) -> None:
    assert with_enrolled_cloud(config) is config  # not enrolled: nothing to upload to
    assert enrolwizard.run(config, "http://cloud", new_token(app, "gw-01"), store,
                           _in_process(app)).ok
    assert with_enrolled_cloud(config).uplink.url == "http://cloud"


def test_a_token_for_another_gateway_says_so(config: GatewayConfig, store: GatewayKeyStore,
                                             app: Flask) -> None:
    outcome = enrolwizard.run(config, "http://cloud", new_token(app, "gw-02"), store,
                              _in_process(app))
    assert outcome.steps[-1].text.startswith("This token is for another gateway")


def test_a_malformed_address_or_missing_token_stops_at_the_first_step(
        config: GatewayConfig, store: GatewayKeyStore) -> None:
    for url, token, words in (("cloud.example.com", "tdi_x", "is not a web address"),
                              ("https://cloud.example.com", " ", "Enter the one-time")):
        outcome = enrolwizard.run(config, url, token, store)
        assert _texts(outcome) == [("address", False)]
        assert words in outcome.steps[0].text


def test_an_unreachable_cloud_leaves_the_token_unused(config: GatewayConfig,
                                                      store: GatewayKeyStore,
                                                      app: Flask) -> None:
    token = new_token(app, "gw-01")
    url = f"https://127.0.0.1:{free_port()}"
    outcome = enrolwizard.run(config, url, token, store)
    assert _texts(outcome) == [("address", True), ("cloud", False)]
    assert outcome.steps[-1].text.startswith(f"Cloud unreachable: could not connect to {url}")
    assert enrolwizard.run(config, "http://cloud", token, store, _in_process(app)).ok


class Healthy(BaseHTTPRequestHandler):
    """A cloud that only answers /healthz (with the Date header every HTTP server sends)."""

    def do_GET(self) -> None:
        body = b'{"status": "ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class NotTandem(Healthy):
    """Some other web server at the address: no /healthz."""

    def do_GET(self) -> None:
        self.send_error(404)


def _serve(cert: Path, key: Path,
           handler: type[BaseHTTPRequestHandler] = Healthy) -> Iterator[HttpsServer]:
    server = HttpsServer(handler, cert, key)
    try:
        yield server
    finally:
        server.close()


def test_a_cloud_certificate_from_another_ca_is_not_trusted(
        tmp_path: Path, config: GatewayConfig, store: GatewayKeyStore) -> None:
    outsider = SiteCA.create(tmp_path / "other-pki", "elsewhere")
    cloud = outsider.issue("cloud", Role.SERVER, ("127.0.0.1",))
    for server in _serve(cloud.cert_pem, cloud.key_pem):
        outcome = enrolwizard.run(config, server.url, "tdi_x", store)
        assert _texts(outcome)[-1] == ("cloud", False)
        assert outcome.steps[-1].text.startswith("Certificate not trusted: the cloud's "
                                                 "certificate is not signed by the site CA")


def test_another_web_server_at_the_address_is_not_taken_for_the_cloud(
        ca: SiteCA, config: GatewayConfig, store: GatewayKeyStore) -> None:
    other = ca.issue("cloud", Role.SERVER, ("127.0.0.1",))
    for server in _serve(other.cert_pem, other.key_pem, NotTandem):
        outcome = enrolwizard.run(config, server.url, "tdi_x", store)
        assert outcome.steps[-1] == enrolwizard.Step(
            "cloud", False, f"{server.url} answers, but not as a Tandem cloud (GET /healthz: "
                            "404). Check the address.")


def test_clock_skew_is_named_from_the_date_header_and_from_an_expired_certificate(
        tmp_path: Path, ca: SiteCA, config: GatewayConfig, store: GatewayKeyStore) -> None:
    cloud = ca.issue("cloud", Role.SERVER, ("127.0.0.1",))
    for server in _serve(cloud.cert_pem, cloud.key_pem):
        fine = enrolwizard.run(config, server.url, "tdi_x", store, clock=time.time)
        assert fine.steps[1] == enrolwizard.Step(
            "cloud", True, "The cloud answered over a trusted connection; the clocks agree.")
        ahead = enrolwizard.run(config, server.url, "tdi_x", store,
                                clock=lambda: time.time() + 2 * 3600)
        assert _texts(ahead)[-1] == ("cloud", False)
        assert re.match(r"Clock skew: this gateway's clock is 2\.0 h ahead of the cloud's",
                        ahead.steps[-1].text)
    # a certificate that expired before the gateway's "now" (or a gateway clock far ahead)
    key = ec.generate_private_key(ec.SECP256R1())
    site_key = serialization.load_pem_private_key(
        (ca.directory / "ca.key.pem").read_bytes(), None)
    assert isinstance(site_key, ec.EllipticCurvePrivateKey)
    old = issue(Issuer(ca.cert, site_key), CertRequest("cloud", key.public_key()), Role.SERVER,
                ("127.0.0.1",), valid_days=1, now=dt.datetime.now(dt.UTC) - dt.timedelta(days=9))
    cert, key_pem = tmp_path / "old-cert.pem", tmp_path / "old-key.pem"
    cert.write_bytes(old.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    for server in _serve(cert, key_pem):
        expired = enrolwizard.run(config, server.url, "tdi_x", store)
        assert expired.steps[-1].text.startswith("Clock skew or an expired certificate: the "
                                                 "cloud's certificate is expired")


def test_the_page_bootstrap_certificate_is_made_once_and_shown_by_fingerprint(
        tmp_path: Path, ca: SiteCA, config: GatewayConfig,
        caplog: pytest.LogCaptureFixture) -> None:
    # the file key is passphrase-encrypted and there is no gateway certificate yet
    open_or_create_keystore(config).close()
    with caplog.at_level(logging.WARNING):
        first = page_cert(config.identity, config.gateway.data_dir, "gw-01")
    assert first.bootstrap and first.fingerprint in caplog.text
    assert page_cert(config.identity, config.gateway.data_dir, "gw-01").fingerprint == \
        first.fingerprint  # kept: the installer checks the same fingerprint every visit
    assert upgrade(first, config.identity, config.gateway.data_dir) is first  # not enrolled
    issued = ca.issue("gw-01", Role.GATEWAY, ("127.0.0.1",))
    own = SimpleNamespace(cert=issued.cert_pem, key=issued.key_pem, passphrase_env="",
                          passphrase_file=None)
    mine = page_cert(own, config.gateway.data_dir, "gw-01")  # type: ignore[arg-type]
    assert not mine.bootstrap and mine.fingerprint != first.fingerprint


def test_after_enrolment_the_page_switches_to_the_enrolled_certificate(
        config: GatewayConfig, store: GatewayKeyStore, app: Flask) -> None:
    bootstrap = page_cert(config.identity, config.gateway.data_dir, "gw-01")
    assert bootstrap.bootstrap
    outcome = enrolwizard.run(config, "http://cloud", new_token(app, "gw-01"), store,
                              _in_process(app))
    assert outcome.enrolment is not None
    enrolled_cert = upgrade(bootstrap, config.identity, config.gateway.data_dir)
    assert not enrolled_cert.bootstrap and enrolled_cert.tls is bootstrap.tls
    assert enrolled_cert.fingerprint == fingerprint(outcome.enrolment.cert_pem.encode())


# -- the screen ---------------------------------------------------------------------


class StandIn:
    """A gateway with what the enrolment screen uses: config, key store, connect_cloud."""

    def __init__(self, config: GatewayConfig, store: GatewayKeyStore) -> None:
        self.config = config
        self.keystore = store
        self.connected: list[str] = []
        self.database = SimpleNamespace(call_sync=self._on_database_thread)
        self.key_calls: list[tuple[str, str]] = []  # (call, thread it ran on)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="database")

    def _on_database_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        def run() -> Any:
            self.key_calls.append((fn.__name__, threading.current_thread().name))
            return fn(*args)
        return self._thread.submit(run).result()

    def close(self) -> None:
        self._thread.shutdown()

    async def connect_cloud(self, url: str) -> list[str]:
        self.connected.append(url)
        return ["uplink", "status-report"]


def test_the_screen_shows_each_step_and_starts_the_cloud_link(
        config: GatewayConfig, store: GatewayKeyStore, app: Flask) -> None:
    gateway = StandIn(config, store)

    async def scenario() -> None:
        set_password(config.gateway.data_dir, PASSWORD)
        server = InstallerServer(InstallerSection(), gateway, LiveValues())  # type: ignore[arg-type]
        server.enrol_page.clients = _in_process(app)
        client = Browser(TestClient(TestServer(server.app())))
        await client.client.start_server()
        try:
            await client.post("/login", data={"password": PASSWORD,
                                              "csrf": await _csrf(client)},
                              allow_redirects=False)
            page = await client.get("/enrol")
            assert 'id="enrol-state" class="bad">Not enrolled.' in await page.text()
            csrf = await _csrf(client, "/enrol")
            form = {"cloud_url": "http://cloud", "csrf": csrf}
            wrong = await client.post("/enrol", data={**form, "token": "tdi_wrong"})
            text = await wrong.text()
            assert wrong.status == 422 and "Wrong or expired token" in text
            assert 'data-step="certificate" data-ok="false"' in text
            assert gateway.connected == []
            right = await client.post("/enrol", data={**form, "token": new_token(app, "gw-01")})
            text = await right.text()
            assert right.status == 200 and 'id="enrol-result">Enrolled.' in text
            assert "Cloud link started in the running gateway: uplink, status-report" in text
            assert "Enrolled with http://cloud in group default" in text
            assert gateway.connected == ["http://cloud"]
            # the key store was used only on the daemon's database thread, as the uplink does
            assert {"public_key", "sign_der"} <= {name for name, _ in gateway.key_calls}
            assert all(t.startswith("database") for _, t in gateway.key_calls)
            assert [(e.event, e.detail.get("ok")) for e in server.audit.pending] == [
                ("login", None), ("enrol", False), ("enrol", True)]
        finally:
            await client.close()
            gateway.close()

    asyncio.run(scenario())
