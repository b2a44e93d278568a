"""Models and rollouts: versions with their card's figures, each group's rollout with its gates.

Promote, release, start a rollout, pause, resume, abort and roll back are
CSRF-protected forms (models:manage; forcing a promotion models:force) that call
the API's own functions (cloud/models/routes.py), so the console and the API
take the same steps, with the same checks and the same audit events.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from flask import flash, redirect, request, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session, defer
from werkzeug.wrappers import Response

from tandem.cloud.access.permissions import Permission
from tandem.cloud.console import rolloutform
from tandem.cloud.console.view import (
    ConsoleView,
    expose,
    matches,
    page_number,
    paginate,
    text_filter,
)
from tandem.cloud.db import engine as database
from tandem.cloud.errors import Rejection
from tandem.cloud.fleet import tokens as enrol_store
from tandem.cloud.models import registry, rollout
from tandem.cloud.models import routes as model_api

log = logging.getLogger(__name__)
ACTIONS = ("pause", "resume", "abort")
GATE_FIGURES = ("windows", "alarm_rate", "p99_ms", "errors", "drift")  # rollout.gate's keys
CARD_METRICS = ("f1", "precision", "recall", "roc_auc")


@dataclass(frozen=True, slots=True)
class VersionRow:
    """A model version as the console lists it: its card's figures and whether it is promoted."""

    version: str
    name: str
    parent: str | None
    metrics: dict[str, float | None]
    size: int
    threshold: float
    dataset_sha256: str
    promoted: bool
    created_ms: int
    incumbent: str | None = None  # the family's promoted version, when not this one
    incumbent_score: float | None = None  # its PROMOTION_METRIC, to compare before promoting

    @property
    def score(self) -> float | None:
        """This version's held-out figure that promotion compares."""
        return self.metrics.get(registry.PROMOTION_METRIC)


@dataclass(frozen=True, slots=True)
class RolloutRow:
    """A group's newest rollout: where it stands and its last gate's figures."""

    group: str
    version: str
    previous: str | None
    stage: str
    state: str
    stage_started_ms: int
    gate: dict[str, Any]
    log: list[dict[str, Any]]

    @property
    def in_progress(self) -> bool:
        """True while an operator can still pause, resume or abort it."""
        return self.state in (rollout.RUNNING, rollout.PAUSED)


class ModelsView(ConsoleView):
    """Versions (filtered, paginated) and every group's newest rollout, with their actions."""

    permission = Permission.MODELS_READ
    actions = {"control": Permission.MODELS_MANAGE, "rollback": Permission.MODELS_MANAGE,
               "promote": Permission.MODELS_MANAGE, "release": Permission.MODELS_MANAGE,
               "start": Permission.MODELS_MANAGE}

    @expose("/")
    def index(self) -> str:
        """Versions newest first, and the rollouts."""
        query = text_filter()
        with database.read_session() as session:
            every = registry.versions(session)
            promoted = {v.name: v for v in every if v.promoted}
            versions = [_version_row(v, promoted.get(v.name)) for v in reversed(every)
                        if matches(query, v.version, v.name)]
            rollouts = _rollout_rows(session)
        return self.page("console/models.html", page=paginate(versions, page_number()),
                         rollouts=rollouts, actions=ACTIONS, figures=GATE_FIGURES,
                         metrics=CARD_METRICS, q=query, metric=registry.PROMOTION_METRIC)

    @expose("/promote", ("POST",))
    def promote(self) -> Response:
        """Promote a version as POST /api/v1/models/<version>/promote (force: admins only)."""
        version, force = request.form.get("version", "")[:64], "force" in request.form
        try:
            model_api.promote_version(version, force)
        except Rejection as refused:
            _refused(f"{version} not promoted: {refused.detail}")
            return redirect(url_for(".index"))
        flash(f"{version} promoted{' (forced)' if force else ''}", "success")
        return redirect(url_for(".index"))

    @expose("/release", ("POST",))
    def release(self) -> Response:
        """Release a version fleet-wide as POST /api/v1/models/<version>/release."""
        version = request.form.get("version", "")[:64]
        try:
            model_api.release_version(version, rollback=False)
        except Rejection as refused:
            _refused(f"{version} not released: {refused.detail}")
            return redirect(url_for(".index"))
        flash(f"{version} released fleet-wide: gateways fetch it at their next poll", "success")
        return redirect(url_for(".index"))

    @expose("/start", ("GET", "POST"))
    def start(self) -> str | Response:
        """The start-a-rollout form; POST starts it as POST /api/v1/rollouts."""
        if request.method == "GET":
            form = rolloutform.blank(request.args.get("group", "")[:64],
                                     request.args.get("version", "")[:64])
            return self._start_page(form)
        form, plan = rolloutform.read(request.form)
        if plan is None:
            return self._start_page(form)
        try:
            started = model_api.start_group_rollout(plan)
        except model_api.RolloutRefused as refused:
            form.errors[refused.field or "form"] = refused.detail
            log.warning("console: rollout of %s to %s not started: %s", plan.version,
                        plan.group, refused.detail)
            return self._start_page(form)
        flash(f"rollout of {plan.version} to {plan.group} started in {started['stage']}",
              "success")
        return redirect(url_for(".index"))

    def _start_page(self, form: rolloutform.RolloutForm) -> str:
        """The form with its values and errors, and the versions and groups to pick from."""
        with database.read_session() as session:
            versions = [v.version for v in reversed(registry.versions(session))]
            groups = enrol_store.groups(session)
            fleet = registry.newest_release(session)
            group = form.values["group"]
            current = (rollout.completed_version(session, group) if group else None) \
                or (fleet.version if fleet is not None else None)
        return self.page("console/rollout_start.html", form=form, versions=versions,
                         groups=groups, limits=rolloutform.LIMIT_NAMES, current=current)

    @expose("/control", ("POST",))
    def control(self) -> Response:
        """Pause, resume or abort a group's rollout, as POST /api/v1/rollouts/<group>/<action>."""
        group, action = request.form.get("group", "")[:64], request.form.get("action", "")
        try:
            if action not in ACTIONS:
                raise Rejection(400, "bad_parameter", f"no rollout action {action[:16]!r}")
            state = model_api.control_group(group, action)["state"]
        except Rejection as refused:
            _refused(f"rollout of {group} not changed: {refused.detail}")
            return redirect(url_for(".index"))
        flash(f"rollout of {group}: {action} done, now {state}", "success")
        return redirect(url_for(".index"))

    @expose("/rollback", ("POST",))
    def rollback(self) -> Response:
        """Release an earlier version with the rollback flag (a deliberate downgrade), audited."""
        version = request.form.get("version", "")[:64]
        try:
            model_api.release_version(version, rollback=True)
        except Rejection as refused:
            _refused(f"no rollback released: {refused.detail}")
            return redirect(url_for(".index"))
        flash(f"rollback to {version} released: gateways fetch it at their next poll", "success")
        return redirect(url_for(".index"))


def _refused(message: str) -> None:
    """Tell the operator why nothing was done, and log it (a refusal is never silent)."""
    log.warning("console: %s", message)
    flash(message, "error")


def _version_row(row: registry.ModelVersion, incumbent: registry.ModelVersion | None
                 ) -> VersionRow:
    """The card's figures of one version (a metric the trainer did not give is None), and
    those of its family's promoted version when that is another."""
    card = json.loads(row.card_json)
    metrics = card.get("metrics", {})
    other = incumbent if incumbent is not None and incumbent.seq != row.seq else None
    return VersionRow(row.version, row.name, row.parent,
                      {name: metrics.get(name) for name in CARD_METRICS}, row.size,
                      float(card.get("threshold", 0.0)), str(card.get("dataset_sha256", "")),
                      row.promoted, row.created_ms, other.version if other else None,
                      other.card().metrics.get(registry.PROMOTION_METRIC) if other else None)


def _rollout_rows(session: Session) -> list[RolloutRow]:
    """Each group's newest rollout (as rollout.latest picks it), by group name; one query."""
    newest: dict[str, rollout.Rollout] = {}
    query = select(rollout.Rollout).order_by(rollout.Rollout.id.desc()).options(
        defer(rollout.Rollout.release), defer(rollout.Rollout.back))  # signed blobs: not shown
    for row in session.scalars(query):
        newest.setdefault(row.group, row)
    rows = []
    for group, row in sorted(newest.items()):
        log = row.log()
        gates = [step for step in log if "windows" in step]  # the steps rollout.gate judged
        rows.append(RolloutRow(group, row.version, row.previous, row.stage, row.state,
                               row.stage_started_ms, gates[-1] if gates else {}, log))
    return rows
