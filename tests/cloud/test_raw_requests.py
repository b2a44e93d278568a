"""Raw snippets on demand at the cloud: operators ask, the right gateway is told, the answer lands.

The request names a device only; the cloud picks the gateway that reported it.
Gateways fetch their open requests with a signed GET and answer with a raw
record in an ordinary signed batch (or say why they cannot).
"""

from __future__ import annotations

import base64
import struct
from types import SimpleNamespace
from typing import Any

import cbor2
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update
from werkzeug.test import TestResponse

from tandem.cloud.db import engine as database
from tandem.cloud.raw import store as raw_store
from tandem.cloud.timeseries import retention
from tandem.cloud.timeseries import store as timeseries
from tandem.tools.pki import Identity
from tandem.wire.batch import Batch, Summary, decode_batch, encode_batch
from tandem.wire.errors import WireError
from tandem.wire.gwrequest import MEDIA_TYPE, sign_request
from tandem.wire.raw import RawSnippet, decode_node_body

SAMPLES = struct.pack("<12h", *([1, -2, 256] * 4))


@pytest.fixture
def seen(app: Flask, pki: SimpleNamespace, kit: SimpleNamespace) -> Flask:
    """app where gw-01 has reported dev-1 (so requests for dev-1 go to gw-01)."""
    assert kit.post(app.test_client(), kit.envelope(pki.gateway, 1)).status_code == 200
    return app


def ask(client: FlaskClient, device: str = "dev-1", **extra: Any) -> TestResponse:
    return client.post("/api/v1/raw-requests", json={"device": device, **extra})


def edge_get(client: FlaskClient, identity: Identity, kit: SimpleNamespace) -> TestResponse:
    signed = sign_request("edge-requests", identity.name, {}, kit.now_ms(),
                          kit.signer_of(identity))
    return client.get("/edge/v1/requests", headers={
        "X-Tandem-Signed": base64.urlsafe_b64encode(signed).decode().rstrip("=")})


def edge_fail(client: FlaskClient, identity: Identity, kit: SimpleNamespace,
              request_id: int) -> TestResponse:
    body = sign_request("request-result", identity.name,
                        {"id": request_id, "ok": False, "reason": "node asleep"}, kit.now_ms(),
                        kit.signer_of(identity))
    return client.post("/edge/v1/requests/result", data=body,
                       headers={"Content-Type": MEDIA_TYPE})


def answer(identity: Identity, seq: int, kit: SimpleNamespace, request_id: int,
           device: str = "dev-1") -> bytes:
    snippet = RawSnippet(device, 1_000_000, 800, 1 / 256, "xyz", SAMPLES, request_id)
    envelope: bytes = kit.envelope(identity, seq, [snippet])
    return envelope


def test_an_operator_asks_by_device_and_gets_the_snippet_the_gateway_uploads(
        seen: Flask, client: FlaskClient, anonymous: FlaskClient, pki: SimpleNamespace,
        kit: SimpleNamespace) -> None:
    created = ask(client, t_ms=1_000_040)
    assert created.status_code == 202
    rid = created.get_json()["id"]
    assert created.headers["Location"] == f"/api/v1/raw-requests/{rid}"
    assert (created.get_json()["status"], created.get_json()["gateway"]) == ("pending", "gw-01")

    assert edge_get(anonymous, pki.other_gateway, kit).json == {"requests": []}
    listed = edge_get(anonymous, pki.gateway, kit)
    assert listed.json == {"requests": [{"id": rid, "kind": "raw", "device": "dev-1",
                                         "t": 1_000_040}]}
    assert client.get(f"/api/v1/raw-requests/{rid}").get_json()["status"] == "sent"

    assert kit.post(anonymous, answer(pki.gateway, 2, kit, rid)).status_code == 200
    done = client.get(f"/api/v1/raw-requests/{rid}").get_json()
    assert done["status"] == "done"
    snippet = done["snippet"]
    assert (snippet["t_ms"], snippet["rate_hz"], snippet["g_per_lsb"], snippet["axes"],
            snippet["frames"], snippet["encoding"]) == (1_000_000, 800, 1 / 256, "xyz", 4,
                                                        "int16le")
    assert base64.b64decode(snippet["samples"]) == SAMPLES
    assert edge_get(anonymous, pki.gateway, kit).json == {"requests": []}
    # A repeated answer (a retry after a gateway restart) changes nothing.
    assert kit.post(anonymous, answer(pki.gateway, 3, kit, rid)).status_code == 200
    with database.sessions(seen)() as session:
        assert len(session.query(raw_store.StoredSnippet).all()) == 1


def test_only_the_asked_gateway_can_answer_or_fail_a_request(
        seen: Flask, client: FlaskClient, anonymous: FlaskClient, pki: SimpleNamespace,
        kit: SimpleNamespace) -> None:
    rid = ask(client).get_json()["id"]
    impostor = kit.post(anonymous, answer(pki.other_gateway, 1, kit, rid))
    assert (impostor.status_code, impostor.json["error"]) == (422, "foreign_device")
    assert client.get(f"/api/v1/raw-requests/{rid}").get_json()["status"] == "pending"
    assert edge_fail(anonymous, pki.other_gateway, kit, rid).status_code == 404
    assert edge_fail(anonymous, pki.gateway, kit, rid).status_code == 200
    failed = client.get(f"/api/v1/raw-requests/{rid}").get_json()
    assert (failed["status"], failed["detail"]) == ("failed", "node asleep")
    assert edge_fail(anonymous, pki.gateway, kit, rid).status_code == 404  # not open any more


def test_requests_are_refused_precisely(seen: Flask, client: FlaskClient,
                                        anonymous: FlaskClient, pki: SimpleNamespace,
                                        kit: SimpleNamespace) -> None:
    assert ask(client, "dev-9").get_json()["error"] == "unknown_device"
    assert ask(client, t_ms=-1).status_code == 400
    assert client.post("/api/v1/raw-requests", json={"device": "dev-1", "x": 1}).status_code \
        == 400
    assert ask(anonymous).status_code == 401
    viewer = seen.test_client()
    viewer.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {kit.token_for(seen, 'viewer')}"
    assert ask(viewer).status_code == 403
    assert viewer.get("/api/v1/raw-requests/1").status_code == 403
    assert client.get("/api/v1/raw-requests/999").status_code == 404
    assert client.get("/api/v1/raw-requests/abc").status_code == 404
    assert anonymous.get("/edge/v1/requests").status_code == 400  # unsigned
    assert edge_get(anonymous, pki.unregistered, kit).status_code == 403
    assert edge_get(anonymous, pki.revoked, kit).status_code == 403
    for _ in range(seen.config["TANDEM"].raw.max_open_per_device):
        assert ask(client).status_code == 202
    assert ask(client).get_json()["error"] == "too_many_requests"


def test_unanswered_requests_fail_after_the_timeout_and_old_snippets_are_pruned(
        seen: Flask, client: FlaskClient, anonymous: FlaskClient, pki: SimpleNamespace,
        kit: SimpleNamespace) -> None:
    rid = ask(client).get_json()["id"]
    old = kit.now_ms() - seen.config["TANDEM"].raw.request_timeout_s * 1000 - 1
    with database.sessions(seen).begin() as session:
        session.execute(update(raw_store.RawRequest).values(created_ms=old))
    expired = client.get(f"/api/v1/raw-requests/{rid}").get_json()
    assert expired["status"] == "failed" and "not answered" in expired["detail"]
    answered = ask(client).get_json()["id"]
    assert kit.post(anonymous, answer(pki.gateway, 2, kit, answered)).status_code == 200
    later = kit.now_ms() + (seen.config["TANDEM"].raw.retention_days + 1) * 86_400_000
    deleted = retention.prune(seen.config["TANDEM"], timeseries.store(seen),
                              database.sessions(seen), later)
    assert (deleted["raw_snippets"], deleted["raw_requests"]) == (1, 2)
    assert client.get(f"/api/v1/raw-requests/{answered}").status_code == 404


def test_raw_records_travel_in_version_3_batches_only() -> None:
    snippet = RawSnippet("dev-1", 5, 800, 1 / 256, "xyz", SAMPLES, 7)
    plain = Summary("dev-1", "temp", 0, 10, 1, 1.0, 1.0, 1.0, 1.0)
    data = encode_batch(Batch("gw-01", 1, 0, (plain, snippet)))
    decoded = decode_batch(data)
    assert decoded.records == (plain, snippet)
    assert data.startswith(bytes.fromhex("a5 61 76 03".replace(" ", "")))  # {"v": 3, ...
    downgraded = data.replace(bytes.fromhex("617603"), bytes.fromhex("617601"), 1)
    with pytest.raises(WireError, match="version 3"):
        decode_batch(downgraded)


@pytest.mark.parametrize(("body", "fault"), [
    ({1: 1, 2: 2, 3: 0, 4: 0, 5: 0.5, 6: "xyz", 7: SAMPLES}, "rate"),
    ({1: 1, 2: 2, 3: 0, 4: 800, 5: 2.0, 6: "xyz", 7: SAMPLES}, "g per LSB"),
    ({1: 1, 2: 2, 3: 0, 4: 800, 5: 0.5, 6: "xxz", 7: SAMPLES}, "axes"),
    ({1: 1, 2: 2, 3: 0, 4: 800, 5: 0.5, 6: "xyz", 7: SAMPLES[:-1]}, "whole frames"),
    ({1: 1, 2: 2, 3: 0, 4: 800, 5: 0.5, 6: "xyz", 7: bytes(60_002)}, "samples"),
    ({"seq": 1}, "integer keys"),
])
def test_node_bodies_are_checked(body: dict[Any, Any], fault: str) -> None:
    with pytest.raises(WireError, match=fault):
        decode_node_body(cbor2.dumps(body), "dev-1", 123)


def test_a_node_without_a_clock_gets_the_arrival_time() -> None:
    body = cbor2.dumps({1: 1, 2: 2, 3: 0, 4: 800, 5: 1 / 256, 6: "xyz", 7: SAMPLES})
    assert decode_node_body(body, "dev-1", 123).t_ms == 123
