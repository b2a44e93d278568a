"""Specification: every device belongs to one gateway; no other gateway can overwrite its data.

The issue: gw-02 filed the same device/name/time as gw-01 and erased its
severity-3 alarm, and an operator's raw request was then routed to gw-02.
"""

from __future__ import annotations

import pytest
from sqlalchemy import event

from tandem.cloud.audit import chain as auditlog
from tandem.cloud.db import engine as database
from tandem.cloud.fleet import registry

ALL = ("sqlite", "influxdb", "postgresql", "postgresql+influxdb")
T = 1_000_000


def events(client):
    body = client.get("/api/v1/events?device=dev-1").json["events"]
    return sorted((e["gateway"], e["name"], e["t"], e["severity"]) for e in body)


@pytest.mark.storages(*ALL)
def test_an_impostor_cannot_overwrite_another_gateways_alarm_or_attract_its_requests(
        app, client, pki, kit):
    alarm = kit.event(name="overheat", t_ms=T, severity=3)
    assert kit.post(client, kit.envelope(pki.gateway, 1, [alarm])).json["status"] == "stored"
    before = kit.snapshot(app)
    forged = kit.event(name="overheat", t_ms=T, severity=0)
    response = kit.post(client, kit.envelope(pki.other_gateway, 1, [forged, kit.summary()]))
    assert (response.status_code, response.json["error"]) == (422, "foreign_device")
    assert "dev-1" in response.json["detail"]
    assert kit.snapshot(app) == before
    assert events(client) == [("gw-01", "overheat", T, 3)]
    raw = client.post("/api/v1/raw-requests", json={"device": "dev-1", "t_ms": T})
    assert raw.json["gateway"] == "gw-01"
    metric = 'tandem_cloud_batches_rejected_total{reason="foreign_device"} 1.0'
    assert metric in client.get("/metrics").text


@pytest.mark.storages(*ALL)
def test_after_an_operator_moves_a_device_both_gateways_events_are_kept(app, client, pki, kit):
    kit.post(client, kit.envelope(pki.gateway, 1, [kit.event(t_ms=T, severity=3)]))
    operator = {"Authorization": f"Bearer {kit.token_for(app, 'operator')}"}
    moved = client.put("/api/v1/devices/dev-1/owner", json={"gateway": "gw-02"},
                       headers=operator)
    assert moved.json == {"device": "dev-1", "gateway": "gw-02", "previous": "gw-01"}
    assert kit.post(client, kit.envelope(pki.other_gateway, 1, [kit.event(t_ms=T, severity=1)])
                    ).json["status"] == "stored"
    # the same (device, name, t) from two gateways: two events, none overwritten
    assert events(client) == [("gw-01", "overheat", T, 3), ("gw-02", "overheat", T, 1)]
    refused = kit.post(client, kit.envelope(pki.gateway, 2, [kit.event(t_ms=T + 1)]))
    assert refused.json["error"] == "foreign_device"
    devices = client.get("/api/v1/devices").json["devices"]
    assert [(d["device"], d["gateway"]) for d in devices] == [("dev-1", "gw-02")]


def test_moving_a_device_is_an_audited_operator_decision(app, client, pki, kit):
    kit.post(client, kit.envelope(pki.gateway, 1))
    viewer = {"Authorization": f"Bearer {kit.token_for(app, 'viewer')}"}
    move = {"gateway": "gw-02"}
    assert client.put("/api/v1/devices/dev-1/owner", json=move,
                      headers=viewer).status_code == 403
    assert client.put("/api/v1/devices/nope/owner", json=move).status_code == 404
    assert client.put("/api/v1/devices/dev-1/owner",
                      json={"gateway": "gw-old"}).status_code == 404  # revoked
    assert client.put("/api/v1/devices/dev-1/owner", json={"to": "x"}).status_code == 400
    assert client.put("/api/v1/devices/dev-1/owner", json=move).status_code == 200
    with database.sessions(app)() as session:
        moves = [e for e in auditlog.entries(session) if e.event == "device.move"]
    assert len(moves) == 1 and moves[0].actor == "token:admin-user/t1"
    assert '"from":"gw-01"' in moves[0].detail and '"to":"gw-02"' in moves[0].detail


def test_one_batch_binds_its_new_devices_to_its_gateway(client, pki, kit):
    records = [kit.summary(device="a"), kit.summary(device="b")]
    assert kit.post(client, kit.envelope(pki.other_gateway, 1, records)).status_code == 200
    assert kit.post(client, kit.envelope(pki.gateway, 1, [kit.summary(device="b")])
                    ).json["error"] == "foreign_device"
    owners = {d["device"]: d["gateway"] for d in client.get("/api/v1/devices").json["devices"]}
    assert owners == {"a": "gw-02", "b": "gw-02"}


@pytest.mark.storages("influxdb", "postgresql+influxdb")
def test_a_batch_of_devices_its_gateway_owns_commits_once_beside_a_separate_store(
        app, client, pki, kit):
    """Ownership is claimed before an outside store's write; once owned, no claim commit."""
    assert kit.post(client, kit.envelope(pki.gateway, 1, [kit.summary(t0_ms=T)])
                    ).json["status"] == "stored"
    commits = []

    def count(connection):
        commits.append(connection)

    engine = database.engine(app)
    event.listen(engine, "commit", count)
    try:
        again = kit.post(client, kit.envelope(pki.gateway, 2, [kit.summary(t0_ms=T + 60_000)]))
    finally:
        event.remove(engine, "commit", count)
    assert again.json["status"] == "stored"
    assert len(commits) == 1  # the ledger's transaction alone
    with database.sessions(app)() as session:
        assert registry.owner_of(session, "dev-1") == "gw-01"
