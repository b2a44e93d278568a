"""Labels through the API: operators judge spans and alarms, viewers read the judgements.

    POST /api/v1/labels   {"device", "label", "start_ms"+"end_ms" | "alarm": {"name", "t_ms"},
                           "channel"?, "note"?}                      -> 201 the label
    GET  /api/v1/labels?device=&since=&until=&limit=               -> {"labels": [...]}

Every label is audited in the same transaction that stores it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request

from tandem.cloud.access.auth import require
from tandem.cloud.access.permissions import Permission
from tandem.cloud.audit import record as audit
from tandem.cloud.db import engine as database
from tandem.cloud.errors import Rejection
from tandem.cloud.labels import store as label_store
from tandem.cloud.timestamps import now_ms

bp = Blueprint("labels", __name__)
LABEL_ADDED = "label.add"
_FIELDS = {"device", "channel", "start_ms", "end_ms", "alarm", "label", "note"}
_MAX_T_MS = (1 << 63) - 1
_MAX_NOTE = 2000


def init_app(app: Flask) -> None:
    """Register the label routes."""
    app.register_blueprint(bp)


@bp.post("/api/v1/labels")
@require(Permission.LABELS_WRITE)
def create() -> tuple[Response, int]:
    """Store one operator label and audit it."""
    new = parse(request.get_json(silent=True))
    with database.sessions().begin() as session:
        stored = label_store.add(session, new, audit.request_actor(), now_ms())
        audit.record(LABEL_ADDED, session=session,
                     detail={"id": stored.id, "device": stored.device, "label": stored.label,
                             "start": stored.start_ms, "end": stored.end_ms})
    response = jsonify(dataclasses.asdict(stored))
    response.headers["Location"] = f"/api/v1/labels?device={stored.device}"
    return response, 201


@bp.get("/api/v1/labels")
@require(Permission.DATA_READ)
def list_labels() -> Response:
    """Labels overlapping [since, until), optionally of one device, oldest first."""
    device = request.args.get("device")
    since, until = _int_arg("since"), _int_arg("until")
    limit = _int_arg("limit") or label_store.MAX_LISTED
    with database.sessions().begin() as session:
        found = label_store.listed(session, device, since, until, limit)
    return jsonify(labels=[dataclasses.asdict(label) for label in found])


def parse(body: object) -> label_store.NewLabel:
    """A submitted label checked field by field; Rejection(400) names what is wrong."""
    if not isinstance(body, dict) or set(body) - _FIELDS:
        raise Rejection(400, "bad_parameter",
                        f"send a JSON object with fields among {sorted(_FIELDS)}")
    device, channel = _name(body, "device"), _name(body, "channel", optional=True)
    kind = body.get("label")
    if kind not in label_store.KINDS:
        raise Rejection(400, "bad_parameter", f"label must be one of {list(label_store.KINDS)}")
    note = body.get("note", "")
    if not isinstance(note, str) or len(note) > _MAX_NOTE:
        raise Rejection(400, "bad_parameter", f"note must be text of at most {_MAX_NOTE} chars")
    alarm_name, alarm_t, start, end = _span(body)
    return label_store.NewLabel(device=device or "", channel=channel, start_ms=start,
                                end_ms=end, alarm_name=alarm_name, alarm_t_ms=alarm_t,
                                label=str(kind), note=note)


def _span(body: dict[str, Any]) -> tuple[str | None, int | None, int, int]:
    """(alarm name, alarm time, start, end) from either a range or an alarm, not both."""
    alarm = body.get("alarm")
    has_range = "start_ms" in body or "end_ms" in body
    if (alarm is None) == (not has_range):
        raise Rejection(400, "bad_parameter", "give either start_ms and end_ms, or an alarm")
    if alarm is not None:
        if not isinstance(alarm, dict) or set(alarm) != {"name", "t_ms"}:
            raise Rejection(400, "bad_parameter", 'alarm must be {"name": ..., "t_ms": ...}')
        name, t_ms = _name(alarm, "name"), _time(alarm, "t_ms")
        return name, t_ms, t_ms, t_ms + 1
    start, end = _time(body, "start_ms"), _time(body, "end_ms")
    if end <= start:
        raise Rejection(400, "bad_parameter", "end_ms must be after start_ms")
    return None, None, start, end


def _name(body: dict[str, Any], key: str, optional: bool = False) -> str | None:
    value = body.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= 64 or not value.isprintable():
        raise Rejection(400, "bad_parameter", f"{key} must be 1..64 printable chars")
    return value


def _time(body: dict[str, Any], key: str) -> int:
    value = body.get(key)
    if type(value) is not int or not 0 <= value < _MAX_T_MS:
        raise Rejection(400, "bad_parameter", f"{key} must be a Unix time in ms")
    return value


def _int_arg(key: str) -> int | None:
    text = request.args.get(key)
    if text is None:
        return None
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise Rejection(400, "bad_parameter", f"{key} must be a non-negative integer")
    return int(text)
