"""Live values: operators watch devices, their gateways send the newest values within a second.

    PUT    /api/v1/devices/<device>/live   {"ttl_s": 1..3600 (default 300)}  watch (audited)
    DELETE /api/v1/devices/<device>/live   stop watching (audited)
    GET    /api/v1/devices/<device>/live   newest value per channel with its time and age

Gateways learn which of their devices are watched and send their values as
signed requests (wire/live.py, gateway/cloudlink/livelane.py):

    GET  /edge/v1/live   X-Tandem-Signed (op "live-watch")
    POST /edge/v1/live   COSE_Sign1 op "live-values" {"values": {device: {channel: [t, v]}}}

A gateway may send only devices it owns (403 otherwise). Live values are not
the record (summaries are): they live in a small table only while watched.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request
from sqlalchemy.orm import Session

from tandem.cloud.access.auth import public, require
from tandem.cloud.access.permissions import Permission
from tandem.cloud.audit import record as audit
from tandem.cloud.db import engine as database
from tandem.cloud.errors import Rejection
from tandem.cloud.fleet import registry
from tandem.cloud.fleet.gateway_requests import signed_request
from tandem.cloud.live import store
from tandem.cloud.metrics import metrics
from tandem.cloud.timestamps import now_ms
from tandem.wire.errors import WireError
from tandem.wire.live import (
    VALUES_OP,
    WATCH_OP,
    update_from_plain,
    watches_to_plain,
)

log = logging.getLogger(__name__)
bp = Blueprint("live", __name__)
WATCHED, UNWATCHED = "data.live_watch", "data.live_unwatch"
SIGNED_BY_GATEWAY = "authenticated by a COSE signature of the gateway's registered key"
DEVICE_PATH = "/api/v1/devices/<path:device>/live"
DEFAULT_TTL_S, MAX_TTL_S = 300, 3600
INTERVAL_MS = 250  # how often a gateway may post (it is told; its [live] interval_s rules)
MAX_POST_DEVICES = 1000


def init_app(app: Flask) -> None:
    """Register the operator and edge routes."""
    app.register_blueprint(bp)


@bp.put(DEVICE_PATH)
@require(Permission.DATA_READ)
def watch(device: str) -> Response:
    """Watch device for ttl_s seconds (again: extend); its gateway starts sending at once."""
    body = request.get_json(silent=True) if request.content_length else {}
    if not isinstance(body, dict) or set(body) - {"ttl_s"}:
        raise Rejection(400, "bad_parameter", 'send {"ttl_s": seconds} or nothing')
    ttl = body.get("ttl_s", DEFAULT_TTL_S)
    if type(ttl) is not int or not 1 <= ttl <= MAX_TTL_S:
        raise Rejection(400, "bad_parameter", f"ttl_s must be an integer 1..{MAX_TTL_S}")
    now = now_ms()
    with database.sessions().begin() as session:
        owner = _owner(session, device)
        store.prune(session, now)
        try:
            fresh = store.watch(session, device, now + ttl * 1000, audit.request_actor(), now)
        except store.WatchLimit as exc:
            raise Rejection(429, "too_many_watched", str(exc)) from None
        if fresh:  # extending a watch is not a change worth an audit entry
            audit.record(WATCHED, session=session, detail={"device": device, "ttl_s": ttl})
    return jsonify(device=device, gateway=owner, watched=True, until=now + ttl * 1000)


@bp.delete(DEVICE_PATH)
@require(Permission.DATA_READ)
def unwatch(device: str) -> Response:
    """Stop watching device; its gateway stops sending at its next look."""
    now = now_ms()
    with database.sessions().begin() as session:
        _owner(session, device)
        if store.unwatch(session, device, now):
            audit.record(UNWATCHED, session=session, detail={"device": device})
    return jsonify(device=device, watched=False)


@bp.get(DEVICE_PATH)
@require(Permission.DATA_READ)
def live(device: str) -> Response:
    """Device's newest value per channel: value, reading time t, age_ms, received."""
    now = now_ms()
    with database.read_session() as session:
        owner = _owner(session, device)
        until = store.until(session, device, now)
        rows = store.latest(session, device) if until is not None else []
        values = {r.channel: {"value": r.value, "t": r.t_ms, "age_ms": now - r.t_ms,
                              "received": r.received_ms} for r in rows}
    return jsonify(device=device, gateway=owner, watched=until is not None, until=until,
                   now=now, values=values)


@bp.get("/edge/v1/live")
@public(SIGNED_BY_GATEWAY, csrf=False)
def edge_watch() -> Response:
    """Which devices of the asking gateway are watched."""
    signed = signed_request(WATCH_OP)
    return jsonify(_watch_answer(signed.gateway))


@bp.post("/edge/v1/live")
@public(SIGNED_BY_GATEWAY, csrf=False)
def edge_values() -> Response:
    """A gateway's newest values of watched devices it owns; answered with the watched set."""
    signed = signed_request(VALUES_OP)
    try:
        update = update_from_plain(signed.body, MAX_POST_DEVICES, store.MAX_CHANNELS)
    except WireError as exc:
        _refused("invalid", signed.gateway, exc.detail)
        raise Rejection(422, "invalid_live_values", exc.detail) from None
    now = now_ms()
    with database.sessions().begin() as session:
        foreign = store.foreign(session, signed.gateway, list(update))
        if foreign:
            _refused("foreign", signed.gateway, f"devices it does not own: {foreign[:5]}")
            raise Rejection(403, "foreign_device",
                            f"{signed.gateway} does not own {', '.join(foreign[:5])}")
        stored = store.put(session, signed.gateway, update, now)
    values = metrics().live_values
    values.labels("accepted").inc(stored.accepted)
    values.labels("skipped").inc(stored.skipped)
    return jsonify(accepted=stored.accepted, skipped=stored.skipped,
                   **_watch_answer(signed.gateway))


def _watch_answer(gateway: str) -> dict[str, Any]:
    with database.read_session() as session:
        return watches_to_plain(store.watched_of(session, gateway, now_ms()), INTERVAL_MS)


def _owner(session: Session, device: str) -> str:
    found = session.get(registry.Device, device[:65])
    if found is None:
        raise Rejection(404, "unknown_device", f"no gateway has reported {device!r}")
    return found.gateway


def _refused(reason: str, gateway: str, detail: str) -> None:
    metrics().live_values.labels(reason).inc()
    log.warning("live values of %s refused (%s): %s", gateway, reason, detail)
