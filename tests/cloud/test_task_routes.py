"""Tasks through the API: an operator submits, the scheduler places (cloud tasks onto the huey
queue, gateway tasks wait for that gateway's signed claim), the gateway renews its lease with
every claim and answers once; answers from a gateway that does not hold the task are refused.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tandem.cloud.db import engine as database
from tandem.cloud.scheduling import status as status_store
from tandem.cloud.tasks import ledger
from tandem.tools.pki import Identity
from tandem.wire.clock import now_ms
from tandem.wire.gwrequest import MEDIA_TYPE, sign_request
from tandem.wire.resources import Privacy, Resources, Status, TaskSpec, task_to_plain

HOUR = 3_600_000


def reporting(app: Flask, *identities: Identity) -> None:
    """Each gateway has reported: site plant-a, one worker, idle."""
    now = now_ms()
    with database.sessions(app).begin() as session:
        for identity in identities:
            status_store.record(
                session, Resources(identity.name, "plant-a", 1, 1.0, 1 << 30, 1 << 30, (), 1e6,
                                   0.01),
                Status(identity.name, now, 0.1, 1 << 20, 0, 0.0, 0, 0, 0.01, 1e6, True),
                60_000, now)


def task(task_id: str, at: str, kit: SimpleNamespace, privacy: str = "site") -> dict[str, Any]:
    spec = TaskSpec(task_id, "burn", kit.now_ms() + HOUR, 1.0, at,
                    "" if at == "cloud" else "plant-a", 100, Privacy(privacy), True)
    return {"task": task_to_plain(spec), "args": {"iterations": 1000}}


def signed(client: FlaskClient, path: str, identity: Identity, op: str, body: dict[str, Any],
           kit: SimpleNamespace) -> TestResponse:
    envelope = sign_request(op, identity.name, body, kit.now_ms(), kit.signer_of(identity))
    return client.post(path, data=envelope, headers={"Content-Type": MEDIA_TYPE})


def claim(client: FlaskClient, identity: Identity, kit: SimpleNamespace, free: int = 1,
          running: tuple[str, ...] = ()) -> TestResponse:
    return signed(client, "/edge/v1/tasks/claim", identity, "task-claim",
                  {"free": free, "running": list(running)}, kit)


def answer(client: FlaskClient, identity: Identity, kit: SimpleNamespace, task_id: str,
           result: dict[str, Any]) -> TestResponse:
    return signed(client, "/edge/v1/tasks/result", identity, "task-result",
                  {"id": task_id, "ok": True, "result": result}, kit)


def test_a_cloud_task_goes_on_the_queue_and_a_known_id_changes_nothing(
        app: Flask, client: FlaskClient, kit: SimpleNamespace) -> None:
    submitted = client.post("/api/v1/tasks", json=task("c1", "cloud", kit, "any"))
    assert submitted.status_code == 202
    assert submitted.headers["Location"] == "/api/v1/tasks/c1"
    assert submitted.json["placed"] == "cloud" and submitted.json["state"] == "queued"
    _, queue, _ = app.extensions["tandem.tasks"]
    assert queue.huey.pending_count() == 1
    again = client.post("/api/v1/tasks", json=task("c1", "cloud", kit, "any"))
    assert again.status_code == 200 and queue.huey.pending_count() == 1
    assert client.get("/api/v1/tasks/c1").json["result"] is None
    submits = [e for e in client.get("/api/v1/audit").json["entries"]
               if e["event"] == "task.submit"]
    assert len(submits) == 1  # who submitted what, and where it went; a repeat adds nothing
    assert submits[0]["detail"] == {"task": "c1", "kind": "burn", "place": "cloud",
                                    "reason": submitted.json["reason"]}


def test_a_gateway_claims_its_task_renews_the_lease_and_its_answer_is_stored_once(
        app: Flask, client: FlaskClient, anonymous: FlaskClient, pki: SimpleNamespace,
        kit: SimpleNamespace) -> None:
    reporting(app, pki.gateway, pki.other_gateway)
    placed = client.post("/api/v1/tasks", json=task("g1", pki.gateway.name, kit))
    assert placed.status_code == 202 and placed.json["placed"] == pki.gateway.name
    assert claim(anonymous, pki.other_gateway, kit).json["tasks"] == []  # not placed there
    assert claim(anonymous, pki.gateway, kit, free=0).json["tasks"] == []  # no free worker
    claimed = claim(anonymous, pki.gateway, kit).json
    assert [t["task"]["id"] for t in claimed["tasks"]] == ["g1"]
    assert claimed["tasks"][0]["args"] == {"iterations": 1000}
    assert client.get("/api/v1/tasks/g1").json["state"] == "running"
    first_lease = claimed["lease_ms"]
    renewed = claim(anonymous, pki.gateway, kit, running=("g1",)).json
    assert renewed["tasks"] == [] and renewed["lease_ms"] >= first_lease
    with database.read_session(app) as session:
        assert ledger.task(session, "g1").lease_ms == renewed["lease_ms"]  # type: ignore[union-attr]

    assert answer(anonymous, pki.other_gateway, kit, "g1", {"checksum": 0}).status_code == 409
    assert answer(anonymous, pki.gateway, kit, "g1", {"checksum": 7}).status_code == 200
    assert answer(anonymous, pki.gateway, kit, "g1", {"checksum": 8}).status_code == 409
    done = client.get("/api/v1/tasks/g1").json
    assert (done["state"], done["result"], done["attempts"]) == ("done", {"checksum": 7}, 1)
    assert 'tandem_cloud_tasks_total{event="late"} 2.0' in client.get("/metrics").text


def test_bad_submissions_and_claims_are_refused_with_a_reason(
        app: Flask, client: FlaskClient, anonymous: FlaskClient, pki: SimpleNamespace,
        kit: SimpleNamespace) -> None:
    viewer = app.test_client()
    viewer.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {kit.token_for(app, 'viewer')}"
    assert viewer.post("/api/v1/tasks", json=task("v", "cloud", kit, "any")).status_code == 403
    assert client.post("/api/v1/tasks", json={"task": {"id": "x"}}).status_code == 422
    assert client.post("/api/v1/tasks", json=[]).status_code == 400
    slash = task("a/b", "cloud", kit, "any")
    assert client.post("/api/v1/tasks", json=slash).status_code == 422
    unknown = client.post("/api/v1/tasks", json=task("u", "gw-nobody", kit))
    assert unknown.status_code == 409 and unknown.json["error"] == "no_place"
    assert client.get("/api/v1/tasks/u").status_code == 404
    assert claim(anonymous, pki.revoked, kit).status_code == 403
    assert signed(anonymous, "/edge/v1/tasks/claim", pki.gateway, "task-claim", {"free": -1},
                  kit).status_code == 422
    assert signed(anonymous, "/edge/v1/tasks/result", pki.gateway, "task-claim",
                  {"id": "u", "ok": True, "result": {}}, kit).status_code == 400
