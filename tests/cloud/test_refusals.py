"""Specification: anonymous refusals cannot flood the audit log.

The issue: 174 audit rows/s from one client posting batches with an unknown
key id; failed sign-ins likewise. Now the first refusal per source, kind and
interval is audited, the others are counted, and a finished interval's
counts become one summary row.
"""

from __future__ import annotations

import json
import re

import pytest

from tandem.cloud.audit import chain as auditlog
from tandem.cloud.db import engine as database

FLOOD = 60


@pytest.fixture(autouse=True)
def frozen_interval(monkeypatch, kit) -> int:
    """The audit clock held inside one interval, so no test straddles two by chance."""
    now = kit.now_ms()
    monkeypatch.setattr("tandem.cloud.audit.record.now_ms", lambda: now)
    return now


def audit_rows(app) -> list[tuple[str, str, dict]]:
    with database.sessions(app)() as session:
        return [(e.event, e.actor, json.loads(e.detail)) for e in auditlog.entries(session)]


def test_a_flood_of_batches_with_an_unknown_key_costs_one_audit_row(app, anonymous, pki, kit):
    for seq in range(FLOOD):
        response = kit.post(anonymous, kit.envelope(pki.unregistered, seq))
        assert (response.status_code, response.json["error"]) == (403, "unknown_gateway")
    refused = [r for r in audit_rows(app) if r[0] == "ingest.refused"]
    assert len(refused) == 1
    assert refused[0][1] == "anonymous@127.0.0.1"
    assert refused[0][2]["reason"] == "unknown_gateway" and refused[0][2]["aggregated"]
    text = anonymous.get("/metrics", headers=kit.bearer(kit.token_for(app, "admin"))).text
    assert ('tandem_cloud_anonymous_refusals_total{kind="ingest.refused/unknown_gateway"} '
            f'{FLOOD}.0') in text


def test_each_source_and_reason_is_audited_once_per_interval(app, anonymous, pki, kit):
    other = app.test_client()
    other.environ_base["REMOTE_ADDR"] = "192.0.2.7"
    for seq in range(3):
        kit.post(anonymous, kit.envelope(pki.unregistered, seq))
        kit.post(other, kit.envelope(pki.unregistered, seq))
        kit.post(anonymous, kit.envelope(pki.other_gateway, seq, gateway="gw-01", kid="gw-01"))
    refused = sorted((actor, detail["reason"]) for event, actor, detail in audit_rows(app)
                     if event == "ingest.refused")
    assert refused == [("anonymous@127.0.0.1", "bad_signature"),
                       ("anonymous@127.0.0.1", "unknown_gateway"),
                       ("anonymous@192.0.2.7", "unknown_gateway")]


def test_a_finished_interval_is_summarised_in_one_row(app, anonymous, pki, kit, monkeypatch,
                                                      frozen_interval):
    for seq in range(5):
        kit.post(anonymous, kit.envelope(pki.unregistered, seq))
    interval_ms = app.config["TANDEM"].security.refusal_interval_s * 1000
    later = frozen_interval + interval_ms
    monkeypatch.setattr("tandem.cloud.audit.record.now_ms", lambda: later)
    kit.post(anonymous, kit.envelope(pki.unregistered, 99))
    rows = [r for r in audit_rows(app) if r[0] in ("ingest.refused", "refusals.summary")]
    assert [r[0] for r in rows] == ["ingest.refused", "refusals.summary", "ingest.refused"]
    assert rows[1][2]["events"] == {"ingest.refused/unknown_gateway": {"refusals": 5,
                                                                       "sources": 1}}
    with database.sessions(app)() as session:
        assert auditlog.verify(session).ok


def test_failed_sign_ins_are_aggregated_too(app, anonymous, kit):
    for n in range(8):
        page = anonymous.get("/login").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token
        response = anonymous.post("/login", data={"user": f"user{n}", "password": "guess",
                                                  "csrf_token": token.group(1)})
        assert response.status_code == 401
    failed = [r for r in audit_rows(app) if r[0] == "login.failed"]
    assert len(failed) == 1
