"""Tasks in and results out: operators submit, the scheduler places, gateways claim and answer.

    POST /api/v1/tasks              {"task": TaskSpec, "args": map} -> 202 the task (200: known id);
                                    audited (task.submit) when new
    GET  /api/v1/tasks/<task_id>    state, place, attempts, moves; the result once done
    POST /edge/v1/tasks/claim       COSE_Sign1 op "task-claim" {"free": n, "running": [ids]}
                                    -> {"tasks": [job, ...], "lease_ms": unix ms}
    POST /edge/v1/tasks/result      COSE_Sign1 op "task-result" {"id", "ok": true, "result": map}
                                    or {"id", "ok": false, "reason": text}

A submitted task is placed by its site's strategy (cloud/scheduling/placement.py):
at the cloud it goes on the huey queue, at a gateway it waits in the ledger until
that gateway claims it, so the scheduler can still move it. A claim renews the
leases of the tasks the gateway says it runs; a result is stored only for a task
the gateway holds, once (cloud/tasks/ledger.py).

Bytes that cross the link for tasks are counted, not declared: every request and
response body of these routes, by route and direction, in `tandem_cloud_task_bytes`
(the gateway's agent counts the same bodies on its side).
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from prometheus_client import Counter

from tandem.cloud.access.auth import public, require
from tandem.cloud.access.permissions import Permission
from tandem.cloud.audit import record as audit
from tandem.cloud.config import CloudConfig
from tandem.cloud.db import engine as database
from tandem.cloud.errors import Rejection
from tandem.cloud.fleet.gateway_requests import signed_request
from tandem.cloud.metrics import metrics
from tandem.cloud.scheduling.placement import BadInput, Scheduler
from tandem.cloud.tasks import ledger
from tandem.cloud.tasks.queue import TaskQueue
from tandem.cloud.timestamps import now_ms
from tandem.wire.errors import WireError
from tandem.wire.resources import CLOUD
from tandem.wire.scheduling import NoPlace
from tandem.wire.tasks.job import job_from_plain, job_to_plain

bp = Blueprint("tasks", __name__)
CLAIM_OP, RESULT_OP = "task-claim", "task-result"
SIGNED_BY_GATEWAY = "authenticated by a COSE signature of the gateway's registered key"
_EXTENSION = "tandem.tasks"
MAX_RUNNING_IDS = 1024
TASK_SUBMIT = "task.submit"


def init_app(app: Flask) -> None:
    """Register the routes; the app keeps one scheduler and one handle on the task queue."""
    config: CloudConfig = app.config["TANDEM"]
    events = Counter("tandem_cloud_tasks", "Tasks submitted, refused (no place may run them), "
                     "claimed by gateways, answered by gateways, late answers refused",
                     ["event"], registry=metrics(app).registry)
    for event in ("submitted", "refused", "claimed", "answered", "late"):
        events.labels(event)
    moved = Counter("tandem_cloud_task_bytes", "Body bytes of task requests received and "
                    "responses sent, by route (submit, view, claim, result)",
                    ["route", "direction"], registry=metrics(app).registry)
    for route in _ROUTES.values():
        for direction in ("received", "sent"):
            moved.labels(route, direction)
    app.extensions[_EXTENSION] = (Scheduler(config), TaskQueue(config, database.engine(app)),
                                  events)
    app.extensions[_BYTES] = moved
    app.register_blueprint(bp)


_BYTES = "tandem.tasks.bytes"
_ROUTES = {"tasks.submit": "submit", "tasks.task": "view", "tasks.claim": "claim",
           "tasks.result": "result"}


@bp.after_request
def count_bytes(response: Response) -> Response:
    """Count the body bytes this task request brought in and its answer takes out."""
    route = _ROUTES.get(request.endpoint or "")
    if route is not None and not response.is_streamed:
        moved: Counter = current_app.extensions[_BYTES]
        # The signed routes read the body uncached; werkzeug reads exactly Content-Length.
        received = request.content_length
        moved.labels(route, "received").inc(
            received if received is not None else len(request.get_data(cache=True)))
        moved.labels(route, "sent").inc(len(response.get_data()))
    return response


@bp.post("/api/v1/tasks")
@require(Permission.TASKS_RUN)
def submit() -> tuple[Response, int]:
    """Place a task by its site's strategy; 202 with where it went (200 if the id is known)."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or set(body) - {"task", "args"}:
        raise Rejection(400, "bad_parameter", 'send a JSON object {"task": ..., "args": {...}}')
    try:
        job = job_from_plain(body)
    except WireError as exc:
        raise Rejection(422, "invalid_task", exc.detail) from None
    if "/" in job.task_id or not job.task_id.isprintable():
        raise Rejection(422, "invalid_task", "a task id is printable text without '/'")
    scheduler, queue, events = _parts()
    try:
        with database.sessions().begin() as session:
            placed = scheduler.place(session, job, now_ms())
            if placed.new:  # who asked for what, and where it went: in the same transaction
                audit.record(TASK_SUBMIT, session=session, detail={
                    "task": job.task_id, "kind": job.kind, "place": placed.place,
                    "reason": placed.reason})
    except (NoPlace, BadInput) as why:
        events.labels("refused").inc()
        current_app.logger.warning("task %s refused: %s", job.task_id, why)
        raise Rejection(409, "no_place", str(why)) from None
    if placed.new:
        events.labels("submitted").inc()
        if placed.place == CLOUD:
            queue.enqueue(job.task_id)
    with database.read_session() as session:
        row = ledger.task(session, job.task_id)
        assert row is not None
        view = _view(row)
    view["reason"] = placed.reason
    response = jsonify(view)
    response.headers["Location"] = f"/api/v1/tasks/{job.task_id}"
    return response, 202 if placed.new else 200


@bp.get("/api/v1/tasks/<task_id>")
@require(Permission.TASKS_RUN)
def task(task_id: str) -> Response:
    """A task's state, place, attempts and moves; its result once done."""
    with database.read_session() as session:
        row = ledger.task(session, task_id)
        if row is None:
            raise Rejection(404, "not_found", f"no task {task_id!r}")
        return jsonify(_view(row))


@bp.post("/edge/v1/tasks/claim")
@public(SIGNED_BY_GATEWAY, csrf=False)
def claim() -> Response:
    """Renew the leases of the tasks the gateway runs; hand it up to `free` queued for it."""
    signed = signed_request(CLAIM_OP)
    free, running = signed.body.get("free"), signed.body.get("running", [])
    if type(free) is not int or free < 0 or not isinstance(running, list) \
            or len(running) > MAX_RUNNING_IDS or not all(isinstance(i, str) for i in running):
        raise Rejection(422, "invalid_claim", 'body needs "free": n >= 0 and "running": [ids]')
    config = _config().scheduling
    now = now_ms()
    lease = now + int(config.edge_lease_s * 1000)
    with database.sessions().begin() as session:
        ledger.renew(session, signed.gateway, running, lease)
        jobs = ledger.claim_queued(session, signed.gateway, min(free, config.max_claim), now,
                                   lease)
    _parts()[2].labels("claimed").inc(len(jobs))
    return jsonify(tasks=[job_to_plain(job) for job in jobs], lease_ms=lease)


@bp.post("/edge/v1/tasks/result")
@public(SIGNED_BY_GATEWAY, csrf=False)
def result() -> tuple[Response, int]:
    """Store a gateway's answer for a task it holds; 409 when it no longer holds it."""
    signed = signed_request(RESULT_OP)
    task_id, ok = signed.body.get("id"), signed.body.get("ok")
    answer, reason = signed.body.get("result"), signed.body.get("reason")
    if not isinstance(task_id, str) or not isinstance(ok, bool) \
            or (ok and not isinstance(answer, dict)) or (not ok and not isinstance(reason, str)):
        raise Rejection(422, "invalid_result",
                        'body needs id and "ok": true with a result map, or false with a reason')
    _json_safe(answer)
    events = _parts()[2]
    with database.sessions().begin() as session:
        stored = ledger.finish_at(session, task_id, signed.gateway, dict(answer or {}),
                                  now_ms()) if ok \
            else ledger.fail_at(session, task_id, signed.gateway, str(reason), now_ms())
    if not stored:
        events.labels("late").inc()
        current_app.logger.warning("task %s: answer of %s refused (it does not hold the task)",
                                   task_id, signed.gateway)
        raise Rejection(409, "not_held", f"{signed.gateway} does not hold task {task_id!r}")
    events.labels("answered").inc()
    return jsonify(status="recorded"), 200


def _json_safe(answer: Any) -> None:
    """A result must survive the ledger's JSON (CBOR may carry byte strings, tags)."""
    try:
        json.dumps(answer)
    except (TypeError, ValueError) as exc:
        raise Rejection(422, "invalid_result", f"result is not JSON-representable: {exc}") \
            from None


def _view(row: ledger.CloudTask) -> dict[str, Any]:
    return {"id": row.task_id, "kind": row.kind, "state": row.state, "placed": row.placed,
            "attempts": row.attempts, "moves": row.moves, "created_ms": row.created_ms,
            "finished_ms": row.finished_ms, "detail": row.detail,
            "result": None if row.result_json is None else json.loads(row.result_json)}


def _parts() -> tuple[Scheduler, TaskQueue, Counter]:
    parts: tuple[Scheduler, TaskQueue, Counter] = current_app.extensions[_EXTENSION]
    return parts


def _config() -> CloudConfig:
    config: CloudConfig = current_app.config["TANDEM"]
    return config
