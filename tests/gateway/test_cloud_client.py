"""Specification of the gateway's one way to call the cloud (gateway/cloudlink/client.py).

Every client to the cloud (uplink, raw requests, policy agent, enrolment)
trusts the pinned site CA, or the CA `uplink.ca` names, and nothing else: not
a certificate from a CA in the system's store, not one from a foreign site.
Each is checked against a real HTTPS server.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tandem.gateway.cloudlink.client import CloudEndpoint
from tandem.gateway.cloudlink.uplink import Outcome, Uplink
from tandem.gateway.config import GatewayConfig, parse_config
from tandem.gateway.identity.enrolment import _client as enrolment_client
from tandem.gateway.metrics import GatewayMetrics
from tandem.gateway.nodes.services import NodeServices
from tandem.gateway.store.database import GatewayDatabase
from tandem.gateway.store.outbox import Outbox, Priority
from tandem.tools.pki import Role, SiteCA
from tandem.wire.batch import Summary
from tandem.wire.cose import SoftwareSigner
from tests.httpsserver import HttpsServer
from tests.ports import free_port


class HttpsCloud:
    """An HTTPS server with a certificate of the given CA; answers every request 200 {}."""

    def __init__(self, ca: SiteCA) -> None:
        server = ca.issue("cloud", Role.SERVER, ("127.0.0.1",), overwrite=True)
        self.requests = 0
        cloud = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                cloud.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            do_GET = do_POST = _answer

            def log_message(self, *args: object) -> None:
                pass

        self._server = HttpsServer(Handler, server.cert_pem, server.key_pem)
        self.httpd = self._server.httpd

    @property
    def url(self) -> str:
        return self._server.url

    def close(self) -> None:
        self._server.close()


@pytest.fixture(scope="module")
def cas(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SiteCA]:
    root = tmp_path_factory.mktemp("cas")
    return {name: SiteCA.create(root / name, name) for name in ("site", "other", "public")}


@pytest.fixture
def system_store(cas: dict[str, SiteCA], monkeypatch: pytest.MonkeyPatch) -> None:
    """The 'public' CA stands in for one in the system's store (OpenSSL reads SSL_CERT_FILE)."""
    monkeypatch.setenv("SSL_CERT_FILE", str(cas["public"].cert_pem_path))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)


def _config(tmp: Path, cas: dict[str, SiteCA], url: str, uplink_ca: str = "") -> GatewayConfig:
    identity = cas["site"].issue("gw-01", Role.GATEWAY, overwrite=True)
    uplink: dict[str, Any] = {"url": url, "timeout_s": 5.0}
    if uplink_ca:
        uplink["ca"] = str(cas[uplink_ca].cert_pem_path)
    return parse_config({
        "version": 1, "gateway": {"id": "gw-01", "data_dir": str(tmp / "data")},
        "identity": {"cert": str(identity.cert_pem), "key": str(identity.key_pem),
                     "ca": str(cas["site"].cert_pem_path)},
        "uplink": uplink})


def _via_endpoint(config: GatewayConfig, tmp: Path) -> int:
    async def call() -> int:
        async with CloudEndpoint.of(config).async_client() as http:
            return (await http.get("/")).status_code
    return asyncio.run(call())


def _via_enrolment(config: GatewayConfig, tmp: Path) -> int:
    with enrolment_client(config, config.uplink.url, None) as http:
        return http.get("/").status_code


def _via_raw_requests(config: GatewayConfig, tmp: Path) -> int:
    database = GatewayDatabase(tmp / "nodes.sqlite3")
    services = NodeServices(config, database, Outbox(database), None,  # type: ignore[arg-type]
                            GatewayMetrics())
    access = SimpleNamespace(resources={}, policy=None, stats=None)
    services.attach(access, lambda: None)  # type: ignore[arg-type]
    assert services.requests is not None

    async def call() -> int:
        try:
            return (await services.requests._http.get("/")).status_code  # type: ignore[union-attr]
        finally:
            await services.close()
    try:
        return asyncio.run(call())
    finally:
        database.close()


def _via_uplink(config: GatewayConfig, tmp: Path) -> int:
    database = GatewayDatabase(tmp / "uplink.sqlite3")
    outbox = Outbox(database)
    signer = SoftwareSigner(ec.generate_private_key(ec.SECP256R1()))

    async def call() -> int:
        uplink = Uplink(config.uplink, CloudEndpoint.of(config), "gw-01", outbox, signer,
                        GatewayMetrics())
        await outbox.put([Summary("n1", "t", 0, 1000, 1, 1.0, 1.0, 1.0, 1.0)], Priority.SUMMARY)
        try:
            return 200 if await uplink.deliver_one() is Outcome.DELIVERED else 0
        finally:
            await uplink.close()
    try:
        return asyncio.run(call())
    finally:
        database.close()


CALLERS: dict[str, Callable[[GatewayConfig, Path], int]] = {
    "endpoint": _via_endpoint, "enrolment": _via_enrolment, "raw-requests": _via_raw_requests,
    "uplink": _via_uplink}


@pytest.mark.parametrize("caller", sorted(CALLERS))
def test_every_client_trusts_the_site_ca(caller: str, cas: dict[str, SiteCA],
                                         tmp_path: Path, system_store: None) -> None:
    cloud = HttpsCloud(cas["site"])
    try:
        assert CALLERS[caller](_config(tmp_path, cas, cloud.url), tmp_path) == 200
    finally:
        cloud.close()
    assert cloud.requests == 1


@pytest.mark.parametrize("caller", sorted(CALLERS))
def test_no_client_trusts_a_ca_of_the_system_store(caller: str, cas: dict[str, SiteCA],
                                                   tmp_path: Path, system_store: None) -> None:
    cloud = HttpsCloud(cas["public"])
    try:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED") \
                if caller != "uplink" else contextlib.nullcontext():
            assert CALLERS[caller](_config(tmp_path, cas, cloud.url), tmp_path) != 200
    finally:
        cloud.close()
    assert cloud.requests == 0


@pytest.mark.parametrize("caller", sorted(CALLERS))
def test_a_configured_uplink_ca_replaces_the_site_ca_for_every_client(
        caller: str, cas: dict[str, SiteCA], tmp_path: Path, system_store: None) -> None:
    other, site = HttpsCloud(cas["other"]), HttpsCloud(cas["site"])
    try:
        assert CALLERS[caller](_config(tmp_path, cas, other.url, "other"), tmp_path) == 200
        with pytest.raises(httpx.ConnectError) if caller != "uplink" else contextlib.nullcontext():
            assert CALLERS[caller](_config(tmp_path, cas, site.url, "other"), tmp_path) != 200
    finally:
        other.close()
        site.close()
    assert (other.requests, site.requests) == (1, 0)


def test_one_timeout_setting_bounds_every_call(cas: dict[str, SiteCA], tmp_path: Path) -> None:
    config = _config(tmp_path, cas, f"https://127.0.0.1:{free_port()}")
    endpoint = CloudEndpoint.of(config)
    assert endpoint.timeout_s == config.uplink.timeout_s == 5.0
    with endpoint.client() as http:
        assert http.timeout == httpx.Timeout(5.0)
    assert asyncio.run(endpoint.reachable()) is False  # nothing listens there
