"""Gateway status at the cloud: signed reports kept as latest state and history, shown in the
API and on /metrics; a gateway that stops reporting becomes unreachable; strategies per site
come from the TOML and are switched at run time through the API, audited.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update
from werkzeug.test import TestResponse

from tandem.cloud import create_app
from tandem.cloud.config import StrategyName
from tandem.cloud.db import engine as database
from tandem.cloud.scheduling.status import STATUS_DEVICE, GatewayStatus
from tandem.cloud.timeseries import store as timeseries
from tandem.cloud.timeseries.queries import SummaryQuery
from tandem.tools.pki import Identity
from tandem.wire.gwrequest import MEDIA_TYPE, sign_request
from tandem.wire.resources import Resources, Status, resources_to_plain, status_to_plain
from tandem.wire.scheduling import Strategy

INTERVAL_MS = 5000


def body(name: str, t_ms: int, queue: int = 3, place: str | None = None) -> dict[str, object]:
    resources = Resources(name, "plant-a", 4, 1.2, 4 << 30, 10 << 30, (), 2.5e6, 0.04)
    status = Status(place or name, t_ms, 0.5, 1 << 30, queue, 12.0, 2, 7, 0.04, 2.4e6, True)
    return {"resources": resources_to_plain(resources), "status": status_to_plain(status),
            "interval_ms": INTERVAL_MS}


def report(client: FlaskClient, identity: Identity, kit: SimpleNamespace,
           payload: dict[str, object] | None = None, op: str = "gateway-status") -> TestResponse:
    t = kit.now_ms()
    signed = sign_request(op, identity.name, payload or body(identity.name, t), t,
                          kit.signer_of(identity))
    return client.post("/edge/v1/status", data=signed, headers={"Content-Type": MEDIA_TYPE})


def test_a_report_becomes_the_latest_state_and_a_point_of_history(
        app: Flask, client: FlaskClient, anonymous: FlaskClient, pki: SimpleNamespace,
        kit: SimpleNamespace) -> None:
    assert report(anonymous, pki.gateway, kit).status_code == 200
    later = kit.now_ms() + 1
    assert report(anonymous, pki.gateway, kit, body(pki.gateway.name, later, queue=9)).status_code \
        == 200
    got = client.get(f"/api/v1/gateways/{pki.gateway.name}/status")
    assert got.status_code == 200
    assert got.json["reachable"] is True
    assert got.json["status"]["queue_length"] == 9
    assert got.json["resources"]["cores"] == 4
    history = timeseries.store(app).summaries(
        SummaryQuery(device=STATUS_DEVICE, channel="queue_length", gateway=pki.gateway.name))
    assert sorted(s.summary.mean for s in history) == [3.0, 9.0]
    fleet = client.get("/api/v1/fleet/status").json["gateways"]
    assert [g["gateway"] for g in fleet] == [pki.gateway.name]


def test_a_gateway_that_stops_reporting_is_marked_unreachable(
        app: Flask, client: FlaskClient, anonymous: FlaskClient, pki: SimpleNamespace,
        kit: SimpleNamespace) -> None:
    assert report(anonymous, pki.gateway, kit).status_code == 200
    after = app.config["TANDEM"].scheduling.unreachable_after
    with database.sessions(app).begin() as session:  # as if its last report were that old
        session.execute(update(GatewayStatus).values(
            received_ms=kit.now_ms() - after * INTERVAL_MS - 1000))
    assert client.get(f"/api/v1/gateways/{pki.gateway.name}/status").json["reachable"] is False
    metrics = client.get("/metrics").text
    assert f'tandem_cloud_gateway_reachable{{gateway="{pki.gateway.name}"}} 0.0' in metrics
    assert f'tandem_cloud_gateway_outbox_depth{{gateway="{pki.gateway.name}"}} 7.0' in metrics


@pytest.mark.parametrize(("why", "payload_of", "op", "status"), [
    ("another gateway's status", lambda n, t: body(n, t, place="gw-02"), "gateway-status", 403),
    ("a malformed status", lambda n, t: {**body(n, t), "status": {"place": n}},
     "gateway-status", 422),
    ("an absurd interval", lambda n, t: {**body(n, t), "interval_ms": 1}, "gateway-status", 422),
    ("a replayed policy ack", lambda n, t: body(n, t), "policy-ack", 400),
])
def test_bad_reports_are_refused_and_change_nothing(
        client: FlaskClient, anonymous: FlaskClient, pki: SimpleNamespace, kit: SimpleNamespace,
        why: str, payload_of: Callable[[str, int], dict[str, object]], op: str,
        status: int) -> None:
    refused = report(anonymous, pki.gateway, kit, payload_of(pki.gateway.name, kit.now_ms()), op)
    assert refused.status_code == status, why
    assert client.get("/api/v1/fleet/status").json == {"gateways": []}


def test_a_revoked_gateway_cannot_report(anonymous: FlaskClient, pki: SimpleNamespace,
                                         kit: SimpleNamespace) -> None:
    assert report(anonymous, pki.revoked, kit).status_code == 403


def test_an_unknown_gateway_has_no_status(client: FlaskClient) -> None:
    assert client.get("/api/v1/gateways/nobody/status").status_code == 404


def test_the_strategy_comes_from_the_toml_and_switches_at_run_time_audited(
        tmp_path: object, pki: SimpleNamespace, kit: SimpleNamespace,
        storage_config: dict[str, object]) -> None:
    config = kit.app_config(tmp_path, pki) | storage_config | {
        "scheduling": {"strategy": "all-edge", "sites": {"plant-a": "least-loaded"}}}
    app = create_app(config)
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {kit.token_for(app, 'admin')}"
    viewer = app.test_client()
    viewer.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {kit.token_for(app, 'viewer')}"

    assert client.get("/api/v1/sites/plant-a/strategy").json == {
        "site": "plant-a", "strategy": "least-loaded", "source": "config"}
    assert client.get("/api/v1/sites/plant-b/strategy").json["source"] == "default"
    assert viewer.put("/api/v1/sites/plant-a/strategy",
                      json={"strategy": "all-cloud"}).status_code == 403
    assert client.put("/api/v1/sites/plant-a/strategy",
                      json={"strategy": "random"}).status_code == 400
    switched = client.put("/api/v1/sites/plant-a/strategy", json={"strategy": "all-cloud"})
    assert switched.status_code == 200
    assert viewer.get("/api/v1/sites/plant-a/strategy").json == {
        "site": "plant-a", "strategy": "all-cloud", "source": "api"}
    audit = client.get("/api/v1/audit").json
    assert any(e["event"] == "scheduling.strategy" and e["detail"]["strategy"] == "all-cloud"
               for e in audit["entries"])


def test_the_config_names_exactly_the_engines_strategies() -> None:
    assert set(StrategyName.__args__) == {s.value for s in Strategy}  # type: ignore[attr-defined]
