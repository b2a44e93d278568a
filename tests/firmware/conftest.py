"""Fixtures for firmware tests: a site PKI and the independent DTLS peer."""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tandem.tools.pki import Identity, Role, SiteCA
from tests.firmware.dtls_peer import DtlsCoapPeer, Handler, ack_changed
from tests.nodeproc import REPO, NodeProcess, micropython_binary


@pytest.fixture(scope="session", autouse=True)
def _micropython() -> str:
    try:
        return micropython_binary()
    except FileNotFoundError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SiteCA:
    return SiteCA.create(tmp_path_factory.mktemp("pki"), "acme")


@pytest.fixture(scope="module")
def gateway_id(pki: SiteCA) -> Identity:
    return pki.issue("gw-01", Role.GATEWAY, ("127.0.0.1",))


@pytest.fixture(scope="module")
def node_id(pki: SiteCA) -> Identity:
    return pki.issue("node-01", Role.DEVICE)


class PeerFactory:
    """Starts DtlsCoapPeer instances with the site's gateway identity; stops them all."""

    def __init__(self, pki: SiteCA, gateway: Identity) -> None:
        self.pki = pki
        self.gateway = gateway
        self.peers: list[DtlsCoapPeer] = []

    def __call__(self, handler: Handler = ack_changed, port: int = 0,
                 identity: Identity | None = None, ca_pem: Path | None = None) -> DtlsCoapPeer:
        ident = identity or self.gateway
        peer = DtlsCoapPeer(ident.cert_pem, ident.key_pem, ca_pem or self.pki.cert_pem_path,
                            handler, port)
        self.peers.append(peer)
        return peer.__enter__()

    def close(self) -> None:
        for peer in self.peers:
            peer.stop()


@pytest.fixture
def start_peer(pki: SiteCA, gateway_id: Identity) -> Iterator[PeerFactory]:
    factory = PeerFactory(pki, gateway_id)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope="session")
def sim() -> ModuleType:
    """firmware/sim.py imported into CPython, to predict the node's readings."""
    spec = importlib.util.spec_from_file_location("firmware_sim", REPO / "firmware" / "sim.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def simsignal(sim: ModuleType) -> ModuleType:
    """firmware/simsignal.py (the simulated sensors' registers) imported into CPython."""
    import sys

    spec = importlib.util.spec_from_file_location("simsignal",
                                                  REPO / "firmware" / "simsignal.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("sim", sim)  # its `from sim import ...`
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def coap_server_binary() -> str:
    found = shutil.which("coap-server-openssl")
    if not found:
        pytest.skip("coap-server-openssl (Debian libcoap3-bin) not installed")
    return found


@pytest.fixture
def nodes() -> Iterator[list[NodeProcess]]:
    """Node processes a test starts (append them); all stopped afterwards, also on failure."""
    started: list[NodeProcess] = []
    try:
        yield started
    finally:
        for node in started:
            node.stop()
