"""Raw snippets on demand: an operator asks for a device's waveform, whichever gateway holds it.

    POST /api/v1/raw-requests        {"device": text, "t_ms": unix ms (default now)} -> 202 {id}
    GET  /api/v1/raw-requests/<id>   status; when done, the snippet (samples base64)

The cloud picks the gateway that reported the device last. Gateways learn of
their requests by polling (signed by their registered key, wire/gwrequest.py):

    GET  /edge/v1/requests          X-Tandem-Signed (op "edge-requests")  -> {"requests": [...]}
    POST /edge/v1/requests/result   COSE_Sign1 op "request-result" {"id", "ok": false, "reason"}

The snippet itself arrives as a raw record in an ordinary signed batch
(cloud/ingest/routes.py, wire/raw.py), which closes the request.
"""

from __future__ import annotations

import base64
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request

from tandem.cloud.access.auth import public, require
from tandem.cloud.access.permissions import Permission
from tandem.cloud.audit import record as audit
from tandem.cloud.config import CloudConfig
from tandem.cloud.db import engine as database
from tandem.cloud.errors import Rejection
from tandem.cloud.fleet.gateway_requests import signed_request
from tandem.cloud.raw import store as raw_store
from tandem.cloud.timestamps import now_ms

bp = Blueprint("raw", __name__)
RAW_REQUESTED = "data.raw_request"
SIGNED_BY_GATEWAY = "authenticated by a COSE signature of the gateway's registered key"
_MAX_T_MS = (1 << 63) - 1


def init_app(app: Flask) -> None:
    """Register the operator and edge routes."""
    app.register_blueprint(bp)


@bp.post("/api/v1/raw-requests")
@require(Permission.DATA_RAW)
def create() -> tuple[Response, int]:
    """Ask the edge for a device's raw snippet around t_ms (default: now)."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or set(body) - {"device", "t_ms"}:
        raise Rejection(400, "bad_parameter", 'send a JSON object {"device": ..., "t_ms": ...}')
    answer = request_snippet(body.get("device"), body.get("t_ms", now_ms()))
    response = jsonify(answer)
    response.headers["Location"] = f"/api/v1/raw-requests/{answer['id']}"
    return response, 202


def request_snippet(device: object, t_ms: object) -> dict[str, Any]:
    """Validate, file and audit a request for device's snippet around t_ms (the API and console)."""
    if not isinstance(device, str) or not 0 < len(device) <= 64 or not device.isprintable():
        raise Rejection(400, "bad_parameter", "device must be 1..64 printable chars")
    if type(t_ms) is not int or not 0 <= t_ms <= _MAX_T_MS:
        raise Rejection(400, "bad_parameter", "t_ms must be a Unix time in ms")
    now = now_ms()
    with database.sessions().begin() as session:
        gateway = raw_store.gateway_of(session, device)
        if gateway is None:
            raise Rejection(404, "unknown_device", f"no active gateway has reported {device!r}")
        raw_store.expire(session, now, _config().raw.request_timeout_s * 1000)
        if raw_store.open_count(session, device) >= _config().raw.max_open_per_device:
            raise Rejection(429, "too_many_requests",
                            f"{device} already has {_config().raw.max_open_per_device} open "
                            "requests")
        row = raw_store.create(session, device, gateway, t_ms, audit.request_actor(), now)
        audit.record(RAW_REQUESTED, session=session,
                     detail={"id": row.id, "device": device, "gateway": gateway, "t": t_ms})
        return _request_json(row, None)


@bp.get("/api/v1/raw-requests/<request_id>")
@require(Permission.DATA_RAW)
def status(request_id: str) -> Response:
    """A request's status and, once done, its snippet."""
    if not request_id.isascii() or not request_id.isdigit() or len(request_id) > 18:
        raise Rejection(404, "not_found", "raw request ids are decimal integers")
    with database.sessions().begin() as session:
        raw_store.expire(session, now_ms(), _config().raw.request_timeout_s * 1000)
        found = raw_store.get(session, int(request_id))
        if found is None:
            raise Rejection(404, "not_found", f"no raw request {request_id}")
        return jsonify(_request_json(*found))


@bp.get("/edge/v1/requests")
@public(SIGNED_BY_GATEWAY, csrf=False)
def edge_requests() -> Response:
    """The asking gateway's open requests (pending ones are marked sent)."""
    signed = signed_request("edge-requests")
    now = now_ms()
    with database.sessions().begin() as session:
        raw_store.expire(session, now, _config().raw.request_timeout_s * 1000)
        rows = raw_store.take_open(session, signed.gateway, now)
        listed = [{"id": r.id, "kind": "raw", "device": r.device, "t": r.t_ms} for r in rows]
    return jsonify(requests=listed)


@bp.post("/edge/v1/requests/result")
@public(SIGNED_BY_GATEWAY, csrf=False)
def edge_result() -> tuple[Response, int]:
    """A gateway cannot answer a request: fail it with the gateway's reason."""
    signed = signed_request("request-result")
    rid, ok, reason = (signed.body.get(k) for k in ("id", "ok", "reason"))
    if type(rid) is not int or ok is not False or not isinstance(reason, str):
        raise Rejection(422, "invalid_result", 'body needs id, "ok": false and a reason')
    with database.sessions().begin() as session:
        if not raw_store.fail(session, signed.gateway, rid, reason, now_ms()):
            raise Rejection(404, "not_found", f"no open request {rid} of {signed.gateway}")
    return jsonify(status="recorded"), 200


def _request_json(row: raw_store.RawRequest,
                  snippet: raw_store.StoredSnippet | None) -> dict[str, Any]:
    body: dict[str, Any] = {"id": row.id, "device": row.device, "gateway": row.gateway,
                            "t_ms": row.t_ms, "status": row.status, "detail": row.detail,
                            "created": row.created_ms, "updated": row.updated_ms}
    if snippet is not None:
        frames = len(snippet.samples) // (2 * len(snippet.axes))
        body["snippet"] = {
            "t_ms": snippet.t_ms, "rate_hz": snippet.rate_hz, "g_per_lsb": snippet.scale,
            "axes": snippet.axes, "frames": frames, "encoding": "int16le",
            "samples": base64.b64encode(snippet.samples).decode("ascii"),
            "received": snippet.received_ms}
    return body


def _config() -> CloudConfig:
    config: CloudConfig = current_app.config["TANDEM"]
    return config
