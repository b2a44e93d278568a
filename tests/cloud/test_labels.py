"""Operator labels: operators judge a device's span or alarm, viewers read, every label is audited.

Labels are the ground truth for training (cloud/training/dataset.py); the
newest label overlapping a window is the one that counts.
"""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tandem.cloud.access import accounts
from tandem.cloud.audit import chain as auditlog
from tandem.cloud.db import engine as database
from tandem.cloud.labels import store as label_store

RANGE = {"device": "pump-1", "label": "fault", "start_ms": 1_000, "end_ms": 61_000,
         "channel": "vib_rms", "note": "bearing noise confirmed on site"}


def as_role(app: Flask, kit: SimpleNamespace, role: str) -> FlaskClient:
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {kit.token_for(app, role)}"
    return client


def test_an_operator_labels_a_range_and_an_alarm_and_a_viewer_reads_them(
        app: Flask, kit: SimpleNamespace) -> None:
    operator, viewer = as_role(app, kit, "operator"), as_role(app, kit, "viewer")
    first = operator.post("/api/v1/labels", json=RANGE)
    assert first.status_code == 201
    alarm = {"device": "pump-2", "label": "false_alarm",
             "alarm": {"name": "overheat", "t_ms": 90_000}}
    assert operator.post("/api/v1/labels", json=alarm).status_code == 201
    listed = viewer.get("/api/v1/labels").get_json()["labels"]
    assert [(x["device"], x["label"], x["start_ms"], x["end_ms"]) for x in listed] == [
        ("pump-1", "fault", 1_000, 61_000), ("pump-2", "false_alarm", 90_000, 90_001)]
    assert listed[0]["created_by"] == "token:operator-user/t1" and listed[0]["channel"] == "vib_rms"
    assert listed[1]["alarm_name"] == "overheat" and listed[1]["alarm_t_ms"] == 90_000
    only = viewer.get("/api/v1/labels?device=pump-2&since=80000&until=100000").get_json()
    assert [x["device"] for x in only["labels"]] == ["pump-2"]
    assert viewer.get("/api/v1/labels?since=95000").get_json()["labels"] == []


def test_every_label_is_audited_with_who_and_what(app: Flask, kit: SimpleNamespace) -> None:
    created = as_role(app, kit, "operator").post("/api/v1/labels", json=RANGE).get_json()
    with database.sessions(app)() as session:
        rows = [(e.event, e.actor, e.detail) for e in auditlog.entries(session)
                if e.event == "label.add"]
    assert len(rows) == 1 and rows[0][1] == "token:operator-user/t1"
    assert f'"id":{created["id"]}' in rows[0][2].replace(" ", "")


@pytest.mark.parametrize(("change", "why"), [
    ({"label": "broken"}, "label must be one of"),
    ({"device": ""}, "device must be"),
    ({"end_ms": 1_000}, "end_ms must be after"),
    ({"start_ms": -5}, "start_ms must be a Unix time"),
    ({"alarm": {"name": "overheat", "t_ms": 5}}, "either start_ms and end_ms, or an alarm"),
    ({"colour": "red"}, "fields among"),
    ({"note": "x" * 2001}, "note must be"),
])
def test_bad_labels_are_refused_with_the_field_named_and_nothing_stored(
        app: Flask, client: FlaskClient, change: dict[str, Any], why: str) -> None:
    answer = client.post("/api/v1/labels", json=RANGE | change)
    assert answer.status_code == 400 and why in answer.get_json()["detail"]
    with database.sessions(app)() as session:
        assert label_store.every(session) == []


def test_viewers_cannot_write_and_strangers_cannot_read(app: Flask, anonymous: FlaskClient,
                                                      kit: SimpleNamespace) -> None:
    assert as_role(app, kit, "viewer").post("/api/v1/labels", json=RANGE).status_code == 403
    assert anonymous.get("/api/v1/labels").status_code == 401
    assert anonymous.post("/api/v1/labels", json=RANGE).status_code == 401


def test_a_browser_session_needs_the_csrf_token_to_label(app: Flask, anonymous: FlaskClient,
                                                        kit: SimpleNamespace) -> None:
    with database.sessions(app).begin() as session:
        accounts.add_user(session, "olga", "operator", "correct horse battery", kit.now_ms())
    page = anonymous.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token is not None
    anonymous.post("/login", data={"user": "olga", "password": "correct horse battery",
                                   "csrf_token": token.group(1)})
    assert anonymous.post("/api/v1/labels", json=RANGE).status_code in (400, 403)
    fresh = re.search(r'name="csrf_token" value="([^"]+)"', anonymous.get("/").text)
    assert fresh is not None
    answer = anonymous.post("/api/v1/labels", json=RANGE,
                            headers={"X-CSRFToken": fresh.group(1)})
    assert answer.status_code == 201 and answer.get_json()["created_by"] == "user:olga"


def test_the_newest_overlapping_label_is_the_one_a_window_gets() -> None:
    def made(i: int, start: int, end: int, kind: str, channel: str | None = None
             ) -> label_store.Label:
        return label_store.Label(i, "pump-1", channel, start, end, None, None, kind, "", "o", i)

    labels = [made(1, 0, 100, "fault"), made(2, 50, 60, "false_alarm"),
              made(3, 0, 100, "normal", channel="temp")]
    assert label_store.effective_for(labels, "pump-1", 10, 20) == "normal"
    assert label_store.effective_for(labels, "pump-1", 10, 20, channel="vib") == "fault"
    assert label_store.effective_for(labels, "pump-1", 55, 58, channel="vib") == "false_alarm"
    assert label_store.effective_for(labels, "pump-1", 100, 200) is None
    assert label_store.effective_for(labels, "pump-9", 10, 20) is None
