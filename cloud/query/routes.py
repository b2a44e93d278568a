"""Read API (/api/v1/...), health check and metrics, all answering JSON or text, never HTML.

Each route declares the permission it needs (cloud/access/auth.py, cloud/access/permissions.py).
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from importlib import resources
from typing import Any

from flask import Blueprint, Response, jsonify, request, stream_with_context
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from sqlalchemy.exc import SQLAlchemyError

from tandem.cloud.access.auth import public, require
from tandem.cloud.access.permissions import Permission
from tandem.cloud.audit import record as audit
from tandem.cloud.db import engine as database
from tandem.cloud.errors import Rejection, StorageUnavailable
from tandem.cloud.fleet import registry
from tandem.cloud.metrics import exposition
from tandem.cloud.query import dataset
from tandem.cloud.timeseries import store as timeseries
from tandem.cloud.timeseries.rollup import StoredEvent, StoredSummary
from tandem.cloud.timeseries.store import EventQuery, SummaryQuery

log = logging.getLogger(__name__)
bp = Blueprint("api", __name__)

MAX_LIMIT = 10_000
MAX_BUCKETS = 10_000  # windows per merged query
DEFAULT_LIMIT = 1000
MAX_NAME = 64
EXPORT_FORMATS: dict[str, tuple[Callable[[Iterable[dataset.LabelledSummary]], Iterator[str]],
                                str]] = {
    "jsonl": (dataset.jsonl, "application/x-ndjson"),
    "csv": (dataset.csv_lines, "text/csv"),
}


@bp.get("/api/v1/summaries")
@require(Permission.DATA_READ)
def summaries() -> Response:
    """Window summaries filtered by device, channel, gateway and [start, end), optionally merged."""
    q = QueryParams({"device", "channel", "gateway", "start", "end", "limit", "window"})
    start, end = q.time_range()
    window = q.integer("window", minimum=1)
    if window is not None:
        _check_buckets(start, end, window)
    query = SummaryQuery(device=q.name("device"), channel=q.name("channel"),
                         gateway=q.name("gateway"), start_ms=start, end_ms=end,
                         limit=q.limit(), window_ms=window)
    points = timeseries.store().summaries(query)
    return jsonify(points=[_summary_json(p) for p in points])


def _check_buckets(start: int | None, end: int | None, window: int) -> None:
    """A merged query needs a range of at most MAX_BUCKETS windows: it bounds the work."""
    if start is None or end is None:
        raise Rejection(400, "bad_parameter", "window needs start and end")
    if (end - start + window - 1) // window > MAX_BUCKETS:
        raise Rejection(400, "bad_parameter",
                        f"[start, end) spans more than {MAX_BUCKETS} windows; "
                        "narrow it or widen the window")


@bp.get("/api/v1/events")
@require(Permission.DATA_READ)
def events() -> Response:
    """Events filtered by device, name, gateway, [start, end) and minimum severity."""
    q = QueryParams({"device", "name", "gateway", "start", "end", "limit", "min_severity"})
    start, end = q.time_range()
    query = EventQuery(device=q.name("device"), name=q.name("name"), gateway=q.name("gateway"),
                       start_ms=start, end_ms=end, limit=q.limit(),
                       min_severity=q.integer("min_severity") or 0)
    found = timeseries.store().events(query)
    return jsonify(events=[_event_json(e) for e in found])


@bp.get("/api/v1/export")
@require(Permission.DATA_EXPORT)
def export() -> Response:
    """A training dataset: summaries of [start, end) labelled with their events, streamed."""
    q = QueryParams({"device", "start", "end", "format"})
    start, end = q.time_range()
    if start is None or end is None:
        raise Rejection(400, "bad_parameter", "start and end are required")
    kind = request.args.get("format", "jsonl")
    if kind not in EXPORT_FORMATS:
        raise Rejection(400, "bad_parameter",
                        f"format must be one of {', '.join(EXPORT_FORMATS)}, got {kind!r}")
    device = q.name("device")
    store = timeseries.store()
    summaries = store.iter_summaries(SummaryQuery(device=device, start_ms=start, end_ms=end))
    first = next(summaries, None)  # a storage failure still answers 503 before streaming
    events = store.iter_events(EventQuery(device=device, start_ms=start))
    audit.record(audit.EXPORT, detail={"device": device, "start": start, "end": end,
                                       "format": kind})
    formatter, mimetype = EXPORT_FORMATS[kind]
    rows = dataset.label(itertools.chain([] if first is None else [first], summaries), events)
    response = Response(stream_with_context(formatter(rows)), mimetype=mimetype)
    label = re.sub(r"[^A-Za-z0-9._-]", "_", device or "all")
    response.headers["Content-Disposition"] = (
        f'attachment; filename="tandem-{label}-{start}-{end}.{kind}"')
    return response


@bp.get("/api/v1/devices")
@require(Permission.DATA_READ)
def devices() -> Response:
    """Devices seen, with the gateway that reported them and when."""
    q = QueryParams({"gateway"})
    with database.read_session() as session:
        rows = registry.list_devices(session, q.name("gateway"))
        body = [{"device": d.device, "gateway": d.gateway, "first_seen": d.first_seen_ms,
                 "last_seen": d.last_seen_ms} for d in rows]
    return jsonify(devices=body)


@bp.get("/api/v1/gateways")
@require(Permission.FLEET_READ)
def gateways() -> Response:
    """Registered gateways and their status."""
    QueryParams(set())
    with database.read_session() as session:
        body = [{"name": g.name, "status": g.status, "created": g.created_ms,
                 "fingerprint": g.fingerprint} for g in registry.list_gateways(session)]
    return jsonify(gateways=body)


@bp.get("/api/v1/openapi.yaml")
@require(Permission.API_DESCRIBE)
def openapi() -> Response:
    """The OpenAPI 3 description of this service."""
    text = resources.files("cloud").joinpath("openapi.yaml").read_text(encoding="utf-8")
    return Response(text, mimetype="application/yaml")


@bp.get("/healthz")
@public("load balancers and orchestrators probe it; it reveals only up or down")
def healthz() -> tuple[Response, int]:
    """200 when the database and the time-series store answer, 503 otherwise."""
    checks: dict[str, Callable[[], None]] = {
        "database": database.check, "timeseries": timeseries.store().check}
    failed = []
    for name, check in checks.items():
        try:
            check()
        except (SQLAlchemyError, StorageUnavailable, OSError) as exc:
            log.error("health check %s failed: %s", name, exc)
            failed.append(name)
    if failed:
        return jsonify(status="unavailable", failed=failed), 503
    return jsonify(status="ok"), 200


@bp.get("/metrics")
@require(Permission.METRICS_READ)
def prometheus_metrics() -> Response:
    """Prometheus text exposition of the service's metrics."""
    # content_type, not mimetype: Flask would append a second charset, which Prometheus refuses
    return Response(generate_latest(exposition()), content_type=CONTENT_TYPE_PLAIN_0_0_4)


class QueryParams:
    """Query-string parameters of the current request, validated on access."""

    def __init__(self, allowed: set[str]) -> None:
        self._args = request.args
        unknown = sorted(set(self._args) - allowed)
        if unknown:
            # a misspelt filter would otherwise silently return everything
            raise Rejection(400, "bad_parameter", f"unknown parameter {unknown[0]!r}")
        repeated = [k for k in self._args if len(self._args.getlist(k)) > 1]
        if repeated:
            raise Rejection(400, "bad_parameter", f"parameter {repeated[0]!r} given twice")

    def name(self, key: str) -> str | None:
        """A printable name of 1..64 characters, or None if absent."""
        value = self._args.get(key)
        if value is None:
            return None
        if not 0 < len(value) <= MAX_NAME or not value.isprintable():
            raise Rejection(400, "bad_parameter", f"{key} must be 1..{MAX_NAME} printable chars")
        return value

    def integer(self, key: str, minimum: int = 0, maximum: int = (1 << 63) - 1) -> int | None:
        """A decimal integer in [minimum, maximum], or None if absent."""
        value = self._args.get(key)
        if value is None:
            return None
        if not value.isascii() or not value.isdigit() or not minimum <= int(value) <= maximum:
            raise Rejection(400, "bad_parameter",
                            f"{key} must be an integer in {minimum}..{maximum}, got {value!r}")
        return int(value)

    def time_range(self) -> tuple[int | None, int | None]:
        """start and end in Unix ms; end must come after start."""
        start, end = self.integer("start"), self.integer("end")
        if start is not None and end is not None and end <= start:
            raise Rejection(400, "bad_parameter", "end must be greater than start")
        return start, end

    def limit(self) -> int:
        """How many items to return at most."""
        value = self.integer("limit", minimum=1, maximum=MAX_LIMIT)
        return DEFAULT_LIMIT if value is None else value


def _summary_json(p: StoredSummary) -> dict[str, Any]:
    s = p.summary
    return {"gateway": p.gateway, "device": s.device, "channel": s.channel, "t0": s.t0_ms,
            "t1": s.t1_ms, "n": s.count, "min": s.minimum, "max": s.maximum, "mean": s.mean,
            "last": s.last}


def _event_json(p: StoredEvent) -> dict[str, Any]:
    e = p.event
    return {"gateway": p.gateway, "device": e.device, "name": e.name, "t": e.t_ms,
            "severity": e.severity, "values": e.values}
