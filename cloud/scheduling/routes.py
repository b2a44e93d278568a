"""Gateway status in and out, and each site's strategy.

    POST /edge/v1/status                 COSE_Sign1 op "gateway-status",
                                         body {"resources", "status", "interval_ms"}
    GET  /api/v1/gateways/<name>/status  latest status, resources, reachable     (fleet:read)
    GET  /api/v1/fleet/status            the same for every gateway that reported (fleet:read)
    GET  /api/v1/sites/<site>/strategy   the strategy the site runs, and why      (fleet:read)
    PUT  /api/v1/sites/<site>/strategy   {"strategy": name}, audited              (fleet:manage)

A report is kept as the gateway's latest (registry database) and its figures
appended to the time-series store under the pseudo-device "_status"; /metrics
shows every gateway's latest figures and whether it is reachable.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from tandem.cloud.access.auth import public, require
from tandem.cloud.access.permissions import Permission
from tandem.cloud.audit import record as audit
from tandem.cloud.config import CloudConfig
from tandem.cloud.db import engine as database
from tandem.cloud.errors import Rejection
from tandem.cloud.fleet.gateway_requests import signed_request
from tandem.cloud.metrics import scraped
from tandem.cloud.scheduling import status as status_store
from tandem.cloud.scheduling import strategy as strategies
from tandem.cloud.timeseries import store as timeseries
from tandem.wire.clock import now_ms
from tandem.wire.errors import WireError
from tandem.wire.resources import (
    resources_from_plain,
    resources_to_plain,
    status_from_plain,
    status_to_plain,
)
from tandem.wire.scheduling import Strategy

bp = Blueprint("scheduling", __name__)
STATUS_OP = "gateway-status"
STRATEGY_SET = "scheduling.strategy"
MIN_INTERVAL_MS, MAX_INTERVAL_MS = 500, 3_600_000


def init_app(app: Flask) -> None:
    """Register the routes and the /metrics collector of gateway status."""
    app.register_blueprint(bp)
    scraped(app, StatusCollector(app))


@bp.post("/edge/v1/status")
@public("authenticated by a COSE signature of the gateway's registered key", csrf=False)
def report() -> tuple[Response, int]:
    """Keep a gateway's status report: latest state, and history as time series."""
    signed = signed_request(STATUS_OP)
    body = signed.body
    try:
        resources = resources_from_plain(body.get("resources"))
        status = status_from_plain(body.get("status"))
    except WireError as exc:
        raise Rejection(422, "invalid_status", exc.detail) from None
    interval = body.get("interval_ms")
    if type(interval) is not int or not MIN_INTERVAL_MS <= interval <= MAX_INTERVAL_MS:
        raise Rejection(422, "invalid_status",
                        f"interval_ms must be an integer in {MIN_INTERVAL_MS}..{MAX_INTERVAL_MS}")
    if resources.place != signed.gateway or status.place != signed.gateway:
        raise Rejection(403, "wrong_gateway", "a gateway reports its own status only")
    with database.sessions().begin() as session:
        status_store.record(session, resources, status, interval, now_ms())
    timeseries.store().write(signed.gateway, status_store.history_records(status, interval), None)
    return jsonify(status="recorded"), 200


@bp.get("/api/v1/gateways/<name>/status")
@require(Permission.FLEET_READ)
def gateway_status(name: str) -> Response:
    """One gateway's latest report, and whether it still reports."""
    with database.read_session() as session:
        found = status_store.latest(session, name)
    if not found:
        raise Rejection(404, "not_found", f"gateway {name!r} has not reported its status")
    return jsonify(_view(found[0]))


@bp.get("/api/v1/fleet/status")
@require(Permission.FLEET_READ)
def fleet_status() -> Response:
    """Every reporting gateway's latest state."""
    with database.read_session() as session:
        found = status_store.latest(session)
    return jsonify(gateways=[_view(latest) for latest in found])


@bp.get("/api/v1/sites/<site>/strategy")
@require(Permission.FLEET_READ)
def site_strategy(site: str) -> Response:
    """The strategy site runs and where that comes from (api, config or default)."""
    with database.read_session() as session:
        chosen, source = strategies.effective(session, _config().scheduling, site)
    return jsonify(site=site, strategy=chosen.value, source=source)


@bp.put("/api/v1/sites/<site>/strategy")
@require(Permission.FLEET_MANAGE)
def set_site_strategy(site: str) -> Response:
    """Switch site's strategy at run time (audited in the same transaction)."""
    body = request.get_json(silent=True)
    names = [s.value for s in Strategy]
    if not isinstance(body, dict) or set(body) != {"strategy"} or body["strategy"] not in names:
        raise Rejection(400, "bad_parameter", f'send {{"strategy": one of {names}}}')
    if not 0 < len(site) <= 64:
        raise Rejection(400, "bad_parameter", "site names are 1..64 characters")
    chosen = Strategy(body["strategy"])
    with database.sessions().begin() as session:
        previous = strategies.override(session, site, chosen, audit.request_actor(), now_ms())
        audit.record(STRATEGY_SET, session=session,
                     detail={"site": site, "strategy": chosen.value, "previous": previous})
    return jsonify(site=site, strategy=chosen.value, source="api")


def _config() -> CloudConfig:
    config: CloudConfig = current_app.config["TANDEM"]
    return config


def _view(latest: status_store.Latest) -> dict[str, Any]:
    return {"gateway": latest.gateway, "received_ms": latest.received_ms,
            "interval_ms": latest.interval_ms,
            "reachable": latest.reachable(now_ms(), _config().scheduling.unreachable_after),
            "resources": resources_to_plain(latest.resources),
            "status": status_to_plain(latest.status)}


class StatusCollector(Collector):
    """Every gateway's latest figures, read from the database at scrape time (all workers agree)."""

    def __init__(self, app: Flask) -> None:
        self._app = app

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """One gauge family per figure, labelled by gateway."""
        with self._app.app_context():
            with database.read_session(self._app) as session:
                found = status_store.latest(session)
            after = self._app.config["TANDEM"].scheduling.unreachable_after
        now = now_ms()
        reachable = GaugeMetricFamily("tandem_cloud_gateway_reachable",
                                      "1 while a gateway reports its status", labels=["gateway"])
        figures = {name: GaugeMetricFamily(f"tandem_cloud_gateway_{name}",
                                           f"Last reported {name}", labels=["gateway"])
                   for name in status_store.CHARTED}
        for latest in found:
            reachable.add_metric([latest.gateway], float(latest.reachable(now, after)))
            plain = status_to_plain(latest.status)
            for name, family in figures.items():
                family.add_metric([latest.gateway], float(plain[name]))
        yield reachable
        yield from figures.values()
