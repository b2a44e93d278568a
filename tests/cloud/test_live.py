"""Live values at the cloud: operators watch devices, only the owning gateway's signed posts land.

A watch is a change (audited) with a TTL; the gateway that owns the device is
told through its signed GET /edge/v1/live and every post's answer; the values
it posts are kept per channel (newest reading wins) while the device is
watched, in the database so every gunicorn worker serves the same view.
"""

from __future__ import annotations

import base64
from types import SimpleNamespace
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update
from werkzeug.test import TestResponse

from tandem.cloud.audit.chain import AuditEntry
from tandem.cloud.db import engine as database
from tandem.cloud.live import store
from tandem.tools.pki import Identity
from tandem.wire.gwrequest import MEDIA_TYPE, sign_request
from tandem.wire.live import LiveValue, update_to_plain

pytestmark = pytest.mark.storages("sqlite", "postgresql")


@pytest.fixture
def seen(app: Flask, pki: SimpleNamespace, kit: SimpleNamespace) -> Flask:
    """app where gw-01 owns dev-1 (it reported it first)."""
    assert kit.post(app.test_client(), kit.envelope(pki.gateway, 1)).status_code == 200
    return app


def watch(client: FlaskClient, device: str = "dev-1", **body: Any) -> TestResponse:
    return client.put(f"/api/v1/devices/{device}/live", json=body)


def ask(client: FlaskClient, identity: Identity, kit: SimpleNamespace) -> TestResponse:
    signed = sign_request("live-watch", identity.name, {}, kit.now_ms(), kit.signer_of(identity))
    return client.get("/edge/v1/live", headers={
        "X-Tandem-Signed": base64.urlsafe_b64encode(signed).decode().rstrip("=")})


def send(client: FlaskClient, identity: Identity, kit: SimpleNamespace,
         values: dict[str, dict[str, tuple[int, float]]], op: str = "live-values") -> TestResponse:
    update = {d: {c: LiveValue(v, t) for c, (t, v) in chans.items()} for d, chans in values.items()}
    signed = sign_request(op, identity.name, update_to_plain(update), kit.now_ms(),
                          kit.signer_of(identity))
    return client.post("/edge/v1/live", data=signed, headers={"Content-Type": MEDIA_TYPE})


def audit_events(app: Flask) -> list[str]:
    with database.sessions(app)() as session:
        return [e.event for e in session.scalars(select(AuditEntry).order_by(AuditEntry.seq))
                if e.event.startswith("data.live")]


def test_a_watched_device_is_told_to_its_gateway_and_its_values_are_served_with_their_age(
        seen: Flask, client: FlaskClient, anonymous: FlaskClient, pki: SimpleNamespace,
        kit: SimpleNamespace) -> None:
    assert ask(anonymous, pki.gateway, kit).json["watch"] == []
    watched = watch(client, ttl_s=60)
    assert watched.status_code == 200
    assert (watched.json["gateway"], watched.json["watched"]) == ("gw-01", True)
    told = ask(anonymous, pki.gateway, kit).json
    assert [w["device"] for w in told["watch"]] == ["dev-1"]
    assert told["watch"][0]["until"] == watched.json["until"] and told["interval_ms"] == 250
    assert ask(anonymous, pki.other_gateway, kit).json["watch"] == []  # not its device

    t = kit.now_ms() - 300
    posted = send(anonymous, pki.gateway, kit, {"dev-1": {"temp": (t, 21.5), "rpm": (t, 900)}})
    assert posted.status_code == 200
    assert (posted.json["accepted"], posted.json["skipped"]) == (2, 0)
    assert [w["device"] for w in posted.json["watch"]] == ["dev-1"]
    live = client.get("/api/v1/devices/dev-1/live").json
    assert live["watched"] is True and live["gateway"] == "gw-01"
    assert live["values"]["temp"]["value"] == 21.5 and live["values"]["temp"]["t"] == t
    assert live["values"]["temp"]["age_ms"] == live["now"] - t >= 300
    assert set(live["values"]) == {"rpm", "temp"}


def test_the_newest_reading_wins_and_a_late_older_one_changes_nothing(
        seen: Flask, client: FlaskClient, anonymous: FlaskClient, pki: SimpleNamespace,
        kit: SimpleNamespace) -> None:
    watch(client)
    t = kit.now_ms()
    assert send(anonymous, pki.gateway, kit, {"dev-1": {"temp": (t, 2.0)}}).status_code == 200
    assert send(anonymous, pki.gateway, kit, {"dev-1": {"temp": (t - 5, 1.0)}}).status_code == 200
    assert client.get("/api/v1/devices/dev-1/live").json["values"]["temp"]["value"] == 2.0
    assert send(anonymous, pki.gateway, kit, {"dev-1": {"temp": (t + 5, 3.0)}}).status_code == 200
    assert client.get("/api/v1/devices/dev-1/live").json["values"]["temp"]["value"] == 3.0


def test_unwatching_stops_the_gateway_and_forgets_the_values_and_both_are_audited(
        seen: Flask, client: FlaskClient, anonymous: FlaskClient, pki: SimpleNamespace,
        kit: SimpleNamespace) -> None:
    watch(client)
    watch(client, ttl_s=600)  # extending is not a new change
    send(anonymous, pki.gateway, kit, {"dev-1": {"temp": (kit.now_ms(), 1.0)}})
    assert client.delete("/api/v1/devices/dev-1/live").json == {"device": "dev-1",
                                                                "watched": False}
    assert ask(anonymous, pki.gateway, kit).json["watch"] == []
    live = client.get("/api/v1/devices/dev-1/live").json
    assert (live["watched"], live["values"]) == (False, {})
    late = send(anonymous, pki.gateway, kit, {"dev-1": {"temp": (kit.now_ms(), 5.0)}})
    assert (late.status_code, late.json["accepted"], late.json["skipped"]) == (200, 0, 1)
    assert client.get("/api/v1/devices/dev-1/live").json["values"] == {}
    assert audit_events(seen) == ["data.live_watch", "data.live_unwatch"]


def test_an_expired_watch_ends_by_itself(seen: Flask, client: FlaskClient,
                                         anonymous: FlaskClient, pki: SimpleNamespace,
                                         kit: SimpleNamespace) -> None:
    watch(client, ttl_s=5)
    with database.sessions(seen).begin() as session:  # as if the TTL had passed
        session.execute(update(store.LiveWatch).values(until_ms=kit.now_ms() - 1))
    assert ask(anonymous, pki.gateway, kit).json["watch"] == []
    assert client.get("/api/v1/devices/dev-1/live").json["watched"] is False
    assert watch(client).status_code == 200  # a new watch after expiry is audited again
    assert audit_events(seen) == ["data.live_watch", "data.live_watch"]


def test_a_gateway_cannot_post_values_of_a_device_it_does_not_own(
        seen: Flask, client: FlaskClient, anonymous: FlaskClient, pki: SimpleNamespace,
        kit: SimpleNamespace) -> None:
    watch(client)
    foreign = send(anonymous, pki.other_gateway, kit, {"dev-1": {"temp": (kit.now_ms(), 99.0)}})
    assert (foreign.status_code, foreign.json["error"]) == (403, "foreign_device")
    assert client.get("/api/v1/devices/dev-1/live").json["values"] == {}
    assert 'tandem_cloud_live_values_total{outcome="foreign"} 1.0' in client.get("/metrics").text


@pytest.mark.parametrize(("why", "post", "status", "error"), [
    ("unsigned", lambda a, p, k: a.post("/edge/v1/live", data=b"\xa0",
                                        headers={"Content-Type": MEDIA_TYPE}), 400, "malformed"),
    ("unregistered gateway", lambda a, p, k: send(a, p.unregistered, k, {"dev-1": {"t": (1, 1)}}),
     403, "unknown_gateway"),
    ("revoked gateway", lambda a, p, k: send(a, p.revoked, k, {"dev-1": {"t": (1, 1)}}),
     403, "revoked_gateway"),
    ("a signed watch request replayed as values",
     lambda a, p, k: send(a, p.gateway, k, {"dev-1": {"t": (1, 1)}}, op="live-watch"),
     400, "malformed"),
])
def test_forged_and_unsigned_posts_are_refused(
        seen: Flask, client: FlaskClient, anonymous: FlaskClient, pki: SimpleNamespace,
        kit: SimpleNamespace, why: str, post: Any, status: int, error: str) -> None:
    watch(client)
    refused = post(anonymous, pki, kit)
    assert (refused.status_code, refused.json["error"]) == (status, error), why
    assert client.get("/api/v1/devices/dev-1/live").json["values"] == {}


def test_a_post_with_a_bad_body_is_refused_whole(
        seen: Flask, client: FlaskClient, anonymous: FlaskClient, pki: SimpleNamespace,
        kit: SimpleNamespace) -> None:
    watch(client)
    signed = sign_request("live-values", pki.gateway.name,
                          {"values": {"dev-1": {"temp": [kit.now_ms(), "hot"]}}}, kit.now_ms(),
                          kit.signer_of(pki.gateway))
    bad = anonymous.post("/edge/v1/live", data=signed, headers={"Content-Type": MEDIA_TYPE})
    assert (bad.status_code, bad.json["error"]) == (422, "invalid_live_values")
    assert "dev-1/temp" in bad.json["detail"]


def test_watches_and_channels_are_bounded(
        seen: Flask, client: FlaskClient, anonymous: FlaskClient, pki: SimpleNamespace,
        kit: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    watch(client)
    t = kit.now_ms()
    first = {f"c{i:03}": (t, float(i)) for i in range(store.MAX_CHANNELS)}
    assert send(anonymous, pki.gateway, kit, {"dev-1": first}).json["accepted"] \
        == store.MAX_CHANNELS
    more = send(anonymous, pki.gateway, kit, {"dev-1": {"new": (t, 1.0), "c000": (t + 1, 7.0)}})
    assert (more.json["accepted"], more.json["skipped"]) == (1, 1)  # known channel still moves
    assert len(client.get("/api/v1/devices/dev-1/live").json["values"]) == store.MAX_CHANNELS
    monkeypatch.setattr(store, "MAX_WATCHED", 1)
    assert kit.post(anonymous, kit.envelope(pki.gateway, 2, [kit.summary("dev-2")])) \
        .status_code == 200
    full = watch(client, "dev-2")
    assert (full.status_code, full.json["error"]) == (429, "too_many_watched")


def test_operator_input_is_checked(seen: Flask, client: FlaskClient, kit: SimpleNamespace,
                                   anonymous: FlaskClient) -> None:
    assert watch(client, "dev-9").json["error"] == "unknown_device"
    assert client.get("/api/v1/devices/dev-9/live").status_code == 404
    for body in ({"ttl_s": 0}, {"ttl_s": 3601}, {"ttl_s": "1"}, {"other": 1}):
        assert watch(client, **body).status_code == 400, body
    assert client.put("/api/v1/devices/dev-1/live").status_code == 200  # default TTL
    assert anonymous.put("/api/v1/devices/dev-1/live").status_code == 401
    viewer = seen.test_client()
    viewer.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {kit.token_for(seen, 'viewer')}"
    assert viewer.get("/api/v1/devices/dev-1/live").status_code == 200
