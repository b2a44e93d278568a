"""A cloud served on loopback behind a cuttable link, and model agents as gateways run them.

Shared by the model agent's tests and the staged-rollout tests; `app` and `link`
are fixtures (import them into a test module to use them).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask
from prometheus_client import CollectorRegistry
from werkzeug.serving import make_server

from tandem.cloud import close_app
from tandem.cloud.db import engine as database
from tandem.cloud.models import registry
from tandem.gateway.config import GatewayConfig
from tandem.gateway.identity.kinds import open_keystore
from tandem.gateway.inference.slot import ModelSlot
from tandem.gateway.models.agent import ModelAgent
from tandem.gateway.models.transfer import TransferMetrics
from tandem.tools.pki import SiteCA
from tests.enrolkit import (
    PASSPHRASE,
    PASSPHRASE_ENV,
    make_app,
    policy_key,
)
from tests.modelkit import write_version
from tests.netcut import CuttableLink

CHUNK = 256


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    application = make_app(tmp_path, SiteCA.create(tmp_path / "pki", "site-a"))
    yield application
    close_app(application)


@pytest.fixture
def link(app: Flask) -> Iterator[CuttableLink]:
    """The cloud served for real on loopback, behind a link the test can cut."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    proxy = CuttableLink(server.server_port)
    yield proxy
    proxy.close()
    server.shutdown()
    thread.join(5)


class Gateway:
    """A model agent as the gateway runs it, with its own slot, metrics and HTTP client."""

    def __init__(self, config: GatewayConfig, tmp_path: Path, link: CuttableLink,
                 on_response: Callable[[httpx.Response], None] | None = None,
                 name: str = "gw-01") -> None:
        async def hook(response: httpx.Response) -> None:
            if on_response is not None:
                on_response(response)

        async def offload(func: Callable[..., Any], *args: Any) -> Any:
            return await asyncio.to_thread(func, *args)

        self.slot = ModelSlot()
        self.metrics = TransferMetrics(CollectorRegistry())
        self.http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{link.port}", timeout=10,
                                      event_hooks={"response": [hook]})
        self.agent = ModelAgent(name, policy_key(tmp_path).public_key(),
                                config.gateway.data_dir / "models", self.slot,
                                open_keystore(config.identity, config.gateway.data_dir),
                                self.http, offload, self.metrics)

    def check(self) -> str:
        return asyncio.run(self._fresh(self.agent.check_once))

    def send(self) -> int:
        return asyncio.run(self._fresh(self.agent.send_reports))

    async def _fresh(self, call: Callable[[], Any]) -> Any:
        try:
            return await call()
        finally:
            await self.http.aclose()
            self.http = httpx.AsyncClient(base_url=str(self.http.base_url), timeout=10,
                                          event_hooks=self.http.event_hooks)
            self.agent._http = self.http  # a fresh client per event loop

    def refused(self, reason: str) -> float:
        return self.metrics.registry.get_sample_value("tandem_gw_model_refused_total",
                                                      {"reason": reason}) or 0.0


def register_version(app: Flask, tmp_path: Path, version: str, seed: int, **card: Any) -> None:
    """Register a fixture model version (tests/modelkit.py) in the cloud's registry."""
    directory = write_version(tmp_path / "train" / version, version, seed, **card)
    with database.sessions(app).begin() as session:
        registry.register(session, app.config["TANDEM"], directory, "trainer",
                          time.time_ns() // 10**6, chunk_bytes=CHUNK)
