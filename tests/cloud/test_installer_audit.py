"""A gateway's installer-page changes join the cloud's audit chain, signed by that gateway."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tandem.tools.pki import Identity
from tandem.wire.gwrequest import MEDIA_TYPE, sign_request

LOGIN = {"event": "login", "actor": "installer", "address": "10.0.0.9", "at_ms": 1_700_000_000_000,
         "detail": {}}
APPLIED = {**LOGIN, "event": "rules-applied", "detail": {"file": "/etc/rules.toml", "rules": 2}}


def send(client: FlaskClient, identity: Identity, kit: SimpleNamespace, body: dict[str, Any],
         op: str = "installer-audit") -> TestResponse:
    signed = sign_request(op, identity.name, body, kit.now_ms(), kit.signer_of(identity))
    return client.post("/fleet/v1/installer-audit", data=signed,
                       headers={"Content-Type": MEDIA_TYPE})


def test_events_become_audit_rows_by_the_gateway(client: FlaskClient, anonymous: FlaskClient,
                                                 pki: SimpleNamespace,
                                                 kit: SimpleNamespace) -> None:
    answer = send(anonymous, pki.gateway, kit, {"events": [LOGIN, APPLIED]})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    rows = [r for r in client.get("/api/v1/audit").get_json()["entries"]
            if r["event"].startswith("installer.")]
    assert [(r["event"], r["actor"]) for r in rows] == [
        ("installer.login", "gateway:gw-01/installer"),
        ("installer.rules-applied", "gateway:gw-01/installer")]
    assert rows[1]["detail"] == {"address": "10.0.0.9", "at_ms": 1_700_000_000_000,
                                 "file": "/etc/rules.toml", "rules": 2}


def test_refused_unless_signed_by_an_active_gateway_for_this_op(
        client: FlaskClient, anonymous: FlaskClient, pki: SimpleNamespace,
        kit: SimpleNamespace) -> None:
    body = {"events": [LOGIN]}
    assert send(anonymous, pki.unregistered, kit, body).status_code == 403
    assert send(anonymous, pki.revoked, kit, body).status_code == 403
    assert send(anonymous, pki.gateway, kit, body, op="policy-ack").status_code == 400
    for bad in ({"events": []}, {"events": [{**LOGIN, "at_ms": "now"}]},
                {"events": [LOGIN] * 101}, {}):
        assert send(anonymous, pki.gateway, kit, bad).status_code == 422, bad
    rows = client.get("/api/v1/audit").get_json()["entries"]
    assert not [r for r in rows if r["event"].startswith("installer.")]
