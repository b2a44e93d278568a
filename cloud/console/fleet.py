"""Fleet pages: gateways with their group, last batch and health, nodes, enrolment tokens.

A gateway's health comes from its latest status report (cloud/scheduling/status.py):
`unreachable` once `[scheduling] unreachable_after` report intervals pass without
one, `degraded` while its link is down or its outbox holds DEGRADED_BACKLOG sealed
batches or more (data is late); `no report` if it never sent one. Load is shown but
does not degrade: a busy gateway that still delivers is doing its job.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app, flash, redirect, request, url_for
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from tandem.cloud.access.permissions import Permission
from tandem.cloud.audit import record as audit
from tandem.cloud.console.view import (
    ConsoleView,
    expose,
    matches,
    page_number,
    paginate,
    text_filter,
)
from tandem.cloud.db import engine as database
from tandem.cloud.fleet import registry, tokens
from tandem.cloud.scheduling import status as gateway_status
from tandem.cloud.timestamps import now_ms

ENROL_TOKEN = "enrol.token"  # the audit event `tandem-cloud enrol token` records
OK, DEGRADED, UNREACHABLE, NO_REPORT = "ok", "degraded", "unreachable", "no report"
DEGRADED_BACKLOG = 10   # sealed batches waiting in the outbox: the uplink is not keeping up


@dataclass(frozen=True, slots=True)
class Health:
    """A gateway's latest status report as the fleet list shows it, and what is wrong."""

    state: str
    reasons: tuple[str, ...]
    reported_ms: int | None = None
    outbox_depth: int | None = None
    load: float | None = None
    rtt_s: float | None = None
    bandwidth_bps: float | None = None
    link_up: bool | None = None


@dataclass(frozen=True, slots=True)
class GatewayRow:
    """A gateway as the fleet list shows it."""

    name: str
    status: str
    group: str
    devices: int
    last_batch_ms: int | None
    batches: int
    health: Health


class GatewaysView(ConsoleView):
    """Gateways: group, status, nodes, last batch, and backlog, load, link and health reported."""

    permission = Permission.FLEET_READ

    @expose("/")
    def index(self) -> str:
        """The filtered, paginated gateway list."""
        query = text_filter()
        with database.read_session() as session:
            rows = [r for r in _gateway_rows(session) if matches(
                query, r.name, r.group, r.status, r.health.state)]
        return self.page("console/gateways.html", page=paginate(rows, page_number()), q=query)


class NodesView(ConsoleView):
    """Nodes (devices) with their gateway and when the cloud first and last heard of them."""

    permission = Permission.FLEET_READ

    @expose("/")
    def index(self) -> str:
        """The filtered, paginated node list."""
        query = text_filter()
        with database.read_session() as session:
            rows = [(d.device, d.gateway, d.first_seen_ms, d.last_seen_ms)
                    for d in registry.list_devices(session) if matches(query, d.device, d.gateway)]
        return self.page("console/nodes.html", page=paginate(rows, page_number()), q=query)


class EnrolTokensView(ConsoleView):
    """Installer tokens: issue one (its secret shown once), and those issued, used or not."""

    permission = Permission.FLEET_ENROL

    @expose("/issue", ("POST",))
    def issue(self) -> Response:
        """A one-time installer token for a gateway and group, audited as the CLI does."""
        gateway, group = request.form.get("gateway", ""), request.form.get("group", "")
        hours = request.form.get("hours", "24")
        ttl_s = int(hours) * 3600 if hours.isascii() and hours.isdigit() and len(hours) < 5 else 0
        try:
            with database.sessions().begin() as session:
                secret = tokens.create_token(session, gateway, group or tokens.DEFAULT_GROUP,
                                             ttl_s, now_ms())
                audit.record(ENROL_TOKEN, session=session, detail={
                    "gateway": gateway, "group": group or tokens.DEFAULT_GROUP, "ttl_s": ttl_s})
        except tokens.EnrolTokenError as refused:
            flash(f"no token issued: {refused}", "error")
            return redirect(url_for(".index"))
        flash(f"installer token for {gateway} (shown once): {secret}", "success")
        return redirect(url_for(".index"))

    @expose("/")
    def index(self) -> str:
        """The paginated token list (hashes only: secrets are shown once, when issued)."""
        query = text_filter()
        with database.read_session() as session:
            found = session.scalars(select(tokens.InstallerToken)
                                    .order_by(tokens.InstallerToken.created_ms.desc())).all()
            rows = [(t.gateway, t.group, t.created_ms, t.expires_ms, t.used_ms)
                    for t in found if matches(query, t.gateway, t.group)]
        return self.page("console/enrol_tokens.html", page=paginate(rows, page_number()),
                           q=query)


def _gateway_rows(session: Session) -> list[GatewayRow]:
    """Every gateway with its group, nodes, batch ledger totals and health (four queries)."""
    groups = {g: group for g, group in session.execute(
        select(tokens.GatewayGroup.gateway, tokens.GatewayGroup.group))}
    devices = {g: n for g, n in session.execute(
        select(registry.Device.gateway, func.count()).group_by(registry.Device.gateway))}
    batches = {g: (last, n) for g, last, n in session.execute(
        select(registry.IngestedBatch.gateway, func.max(registry.IngestedBatch.received_ms),
               func.count()).group_by(registry.IngestedBatch.gateway))}
    reports = {r.gateway: r for r in gateway_status.latest(session)}
    after, now = current_app.config["TANDEM"].scheduling.unreachable_after, now_ms()
    rows = []
    for g in registry.list_gateways(session):
        last, count = batches.get(g.name, (None, 0))
        rows.append(GatewayRow(g.name, g.status, groups.get(g.name, tokens.DEFAULT_GROUP),
                               devices.get(g.name, 0), last, count,
                               health(reports.get(g.name), now, after)))
    return rows


def health(report: gateway_status.Latest | None, now: int, unreachable_after: int) -> Health:
    """Judge a gateway's latest status report (None: it never sent one)."""
    if report is None:
        return Health(NO_REPORT, ())
    s = report.status
    reasons = []
    if not report.reachable(now, unreachable_after):
        reasons.append(f"no report for {(now - report.received_ms) // 1000} s")
    if not s.link_up:
        reasons.append("link down")
    if s.outbox_depth >= DEGRADED_BACKLOG:
        reasons.append(f"outbox backlog {s.outbox_depth} batches")
    state = UNREACHABLE if not report.reachable(now, unreachable_after) else \
        DEGRADED if reasons else OK
    return Health(state, tuple(reasons), report.received_ms, s.outbox_depth, s.load, s.rtt_s,
                  s.bandwidth_bps, s.link_up)
