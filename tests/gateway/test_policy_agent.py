"""The signed policy at the gateway: applied when genuine and newer, refused otherwise, kept."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask

from tandem.cloud import close_app
from tandem.cloud.db import engine as database
from tandem.cloud.policy import store as policy_store
from tandem.cloud.policy.release import push
from tandem.gateway.access.device_policy import DevicePolicy
from tandem.gateway.config import GatewayConfig
from tandem.gateway.identity import enrolment as enrol_client
from tandem.gateway.identity.kinds import open_keystore
from tandem.gateway.metrics import GatewayMetrics
from tandem.gateway.policy.service import SecurityService
from tandem.gateway.store.database import DATABASE_FILE, GatewayDatabase
from tandem.gateway.store.outbox import Outbox
from tandem.tools.pki import SiteCA
from tandem.wire.batch import Summary
from tandem.wire.cose import SoftwareSigner
from tandem.wire.policy import parse_policy
from tandem.wire.release import Release, sign_release
from tests.enrolkit import (
    PASSPHRASE,
    PASSPHRASE_ENV,
    gateway_config,
    make_app,
    new_token,
    policy_key,
    wsgi_client,
)

POLICY = {"version": 1,
          "privacy": {"device_ids": "pseudonymise", "rule": [{"field": "hum", "action": "drop"}]},
          "devices": {"revoked": ["node-66"], "resources": {"node-02": ["/x"]}},
          "limits": {"max_actions_per_minute": 2}}
SUMMARY = Summary("node-01", "temp", 1000, 2000, 1, 1.0, 1.0, 1.0, 1.0)


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    application = make_app(tmp_path, SiteCA.create(tmp_path / "pki", "site-a"))
    yield application
    close_app(application)


@pytest.fixture
def config(tmp_path: Path, app: Flask) -> GatewayConfig:
    ca = SiteCA.load(tmp_path / "pki")
    gw = gateway_config(tmp_path / "gw", ca, policy={"url": "http://cloud"})
    enrol_client.enrol(gw, "http://cloud", new_token(app, "gw-01", "plant-a"),
                       client=wsgi_client(app))
    return gw


def _bridge(app: Flask) -> httpx.AsyncClient:
    """An async client whose requests the Flask app answers in-process."""
    flask_client = app.test_client()

    def handle(request: httpx.Request) -> httpx.Response:
        answer = flask_client.open(request.url.raw_path.decode(), method=request.method,
                                   headers=dict(request.headers), data=request.content)
        return httpx.Response(answer.status_code, headers=dict(answer.headers),
                              content=answer.data)

    return httpx.AsyncClient(transport=httpx.MockTransport(handle), base_url="http://cloud")


class Running:
    """A gateway's security service on its own database, stopped by close()."""

    def __init__(self, config: GatewayConfig, app: Flask) -> None:
        self.database = GatewayDatabase(config.gateway.data_dir / DATABASE_FILE)
        self.outbox = Outbox(self.database)
        self.keystore = open_keystore(config.identity, config.gateway.data_dir)
        self.devices = DevicePolicy()
        self.service = SecurityService(config, self.database, self.outbox, self.keystore,
                                       GatewayMetrics(), self.devices, http=_bridge(app))
        assert self.service.agent is not None
        self.agent = self.service.agent

    def close(self) -> None:
        asyncio.run(self.service.close())
        self.database.close()


def _push(app: Flask, tmp_path: Path, doc: dict[str, Any], group: str = "plant-a") -> int:
    with database.sessions(app).begin() as session:
        return push(session, app.config["TANDEM"], group, parse_policy(doc),
                    time.time_ns() // 1_000_000).version


def _acks(app: Flask) -> list[tuple[str, int, bool, str]]:
    with database.sessions(app)() as session:
        return [(a.gateway, a.version, a.ok, a.reason) for a in policy_store.acks(session)]


def test_a_pushed_policy_is_enforced_acknowledged_and_survives_a_restart(
        tmp_path: Path, app: Flask, config: GatewayConfig) -> None:
    gw = Running(config, app)
    try:
        assert asyncio.run(gw.agent.check_once()) == "none"
        assert _push(app, tmp_path, POLICY) == 1
        assert asyncio.run(gw.agent.check_once()) == "applied"
        assert asyncio.run(gw.agent.check_once()) == "unchanged"
        assert _acks(app) == [("gw-01", 1, True, "applied")]
        assert not gw.devices.permits("node-66")
        assert not gw.devices.permits("node-02", "/r") and gw.devices.permits("node-02", "/x")
        assert gw.service.limiter.per_minute == 2
        stage = gw.service.gate.stage
        assert stage.apply([SUMMARY])[0][0].device.startswith("p-")
    finally:
        gw.close()
    again = Running(config, app)  # restart: the saved release is in force before any filing
    try:
        assert again.agent.current is not None and again.agent.current.version == 1
        assert again.service.gate.stage.apply([SUMMARY])[0][0].device.startswith("p-")
        assert not again.devices.permits("node-66")
    finally:
        again.close()


def test_forged_older_foreign_and_unsigned_releases_are_refused_and_the_policy_stays(
        tmp_path: Path, app: Flask, config: GatewayConfig) -> None:
    gw = Running(config, app)
    try:
        _push(app, tmp_path, POLICY)
        assert asyncio.run(gw.agent.check_once()) == "applied"
        in_force = gw.service.gate.stage
        forger = ec.generate_private_key(ec.SECP256R1())
        doc = parse_policy({"version": 1})
        forged = sign_release(Release("plant-a", 2, 0, doc), SoftwareSigner(forger),
                              forger.public_key())
        with database.sessions(app).begin() as session:  # as if the cloud database were altered
            policy_store.add_release(session, "plant-a", 2, 0, "x", forged)
        assert asyncio.run(gw.agent.check_once()) == "refused"
        gateway, _version, ok, reason = _acks(app)[0]
        assert (gateway, ok) == ("gw-01", False) and "not signed by the trusted" in reason
        real = policy_key(tmp_path)
        old = sign_release(Release("plant-a", 1, 0, doc), SoftwareSigner(real), real.public_key())
        foreign = sign_release(Release("plant-b", 7, 0, doc), SoftwareSigner(real),
                               real.public_key())
        assert asyncio.run(gw.agent.consider(old)) == "refused"
        assert asyncio.run(gw.agent.consider(foreign)) == "refused"
        assert asyncio.run(gw.agent.consider(b"\xa1\x01\x02")) == "refused"
        assert gw.agent.refusals == 4
        assert gw.service.gate.stage is in_force and gw.agent.current is not None
        assert gw.agent.current.version == 1 and not gw.devices.permits("node-66")
    finally:
        gw.close()


def test_a_policy_the_gateway_cannot_carry_out_is_refused(
        tmp_path: Path, app: Flask, config: GatewayConfig) -> None:
    (config.gateway.data_dir / "enrolment" / "data-key.pem").unlink()
    gw = Running(config, app)
    try:
        _push(app, tmp_path, {"version": 1, "privacy": {"rule": [
            {"field": "temp", "action": "encrypt"}]}})
        assert asyncio.run(gw.agent.check_once()) == "refused"
        assert "data key" in _acks(app)[0][3]
    finally:
        gw.close()


def test_the_revocation_list_file_is_reloaded_when_it_changes(tmp_path: Path) -> None:
    from tandem.gateway.policy.revocation import RevocationList

    devices = DevicePolicy()
    path = tmp_path / "revoked.txt"
    path.write_text("node-07  # stolen\n\n")
    revocations = RevocationList(path, devices)
    assert not devices.permits("node-07") and devices.permits("node-08")
    replacement = tmp_path / "revoked.new"
    replacement.write_text("node-08\n")
    replacement.replace(path)
    assert revocations.reload()
    assert devices.permits("node-07") and not devices.permits("node-08")
    assert not revocations.reload()


def test_the_action_limiter_allows_n_per_minute() -> None:
    from tandem.gateway.policy.limits import ActionLimiter

    now = [0.0]
    limiter = ActionLimiter(2, clock=lambda: now[0])
    assert [limiter.allow() for _ in range(3)] == [True, True, False]
    now[0] = 60.0
    assert limiter.allow() and limiter.refused == 1
