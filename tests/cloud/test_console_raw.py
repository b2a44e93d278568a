"""Asking for a raw snippet from the console: the same checks, gateway choice and audit event as
POST /api/v1/raw-requests; refusals said in words, nothing filed."""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime
from types import SimpleNamespace

from flask import Flask
from flask.testing import FlaskClient

from tandem.cloud.access import accounts
from tandem.cloud.audit import chain
from tandem.cloud.db import engine as database
from tandem.cloud.raw import store as raw_store

PASSWORD = "correct horse battery staple"
PAGE = "/admin/console_raw/"


def signed_in(app: Flask, kit: SimpleNamespace, role: str) -> FlaskClient:
    with database.sessions(app).begin() as session:
        accounts.add_user(session, f"{role}-1", role, PASSWORD, kit.now_ms())
    client = app.test_client()
    assert client.post("/login", data={"user": f"{role}-1", "password": PASSWORD,
                                       "csrf_token": csrf(client, "/login")}).status_code == 302
    return client


def csrf(client: FlaskClient, path: str = PAGE) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text)
    assert found
    return found.group(1)


def ask(client: FlaskClient, device: str, around: str = "") -> str:
    response = client.post(PAGE + "request", follow_redirects=True, data={
        "csrf_token": csrf(client), "device": device, "around": around})
    assert response.status_code == 200
    return html.unescape(response.text)


def test_an_operator_asks_for_a_snippet_from_the_gateway_that_reported_the_device(
        app, client, kit, pki):
    assert kit.post(client, kit.envelope(pki.gateway, 1, [kit.summary()])).status_code == 200
    operator = signed_in(app, kit, "operator")
    page = ask(operator, "dev-1", "2026-01-02T03:04:05")
    made = re.search(r"snippet of dev-1 requested from gw-01 \(request (\d+)\)", page)
    assert made is not None
    shown = client.get(f"/api/v1/raw-requests/{made.group(1)}").json
    around = int(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp() * 1000)
    assert (shown["device"], shown["gateway"], shown["t_ms"], shown["status"]) == (
        "dev-1", "gw-01", around, "pending")
    assert "<td>dev-1</td><td>gw-01</td>" in page
    with database.read_session(app) as session:
        audited = [(e.actor, json.loads(e.detail)) for e in chain.entries(session)
                   if e.event == "data.raw_request"]
    assert audited == [("user:operator-1", {"id": int(made.group(1)), "device": "dev-1",
                                            "gateway": "gw-01", "t": around})]
    before = kit.now_ms()
    assert "requested from gw-01" in ask(operator, "dev-1")  # empty time: now
    newest = client.get(f"/api/v1/raw-requests/{int(made.group(1)) + 1}").json
    assert before <= newest["t_ms"] <= kit.now_ms()


def test_refusals_are_said_in_words_and_file_nothing(app, client, kit, pki):
    assert kit.post(client, kit.envelope(pki.gateway, 1, [kit.summary()])).status_code == 200
    operator = signed_in(app, kit, "operator")
    assert "no snippet requested: no active gateway has reported 'pump-9'" in ask(
        operator, "pump-9")
    assert "no snippet requested: 'yesterday' is not a UTC date-time" in ask(
        operator, "dev-1", "yesterday")
    assert "no snippet requested: device must be 1..64 printable chars" in ask(operator, "")
    limit = app.config["TANDEM"].raw.max_open_per_device
    for _ in range(limit):
        assert "requested from gw-01" in ask(operator, "dev-1")
    assert f"dev-1 already has {limit} open requests" in ask(operator, "dev-1")
    with database.read_session(app) as session:
        assert raw_store.open_count(session, "dev-1") == limit


def test_viewers_cannot_ask(app, kit):
    viewer = signed_in(app, kit, "viewer")
    response = viewer.post(PAGE + "request", data={"csrf_token": csrf(viewer, "/admin/"),
                                                    "device": "dev-1"})
    assert response.status_code == 403
