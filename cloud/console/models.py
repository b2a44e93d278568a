"""Models and rollouts: versions with their card's figures, each group's rollout with its gates.

Pause, resume, abort and roll back are CSRF-protected forms (models:manage)
that call the API's own functions (cloud/models/routes.py), so the console and
the API take the same steps, with the same checks and the same audit events.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from flask import flash, redirect, request, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session, defer
from werkzeug.wrappers import Response

from tandem.cloud.access.permissions import Permission
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
from tandem.cloud.models import registry, rollout
from tandem.cloud.models import routes as model_api

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
    actions = {"control": Permission.MODELS_MANAGE, "rollback": Permission.MODELS_MANAGE}

    @expose("/")
    def index(self) -> str:
        """Versions newest first, and the rollouts."""
        query = text_filter()
        with database.read_session() as session:
            versions = [_version_row(v) for v in reversed(registry.versions(session))
                        if matches(query, v.version, v.name)]
            rollouts = _rollout_rows(session)
        return self.page("console/models.html", page=paginate(versions, page_number()),
                         rollouts=rollouts, actions=ACTIONS, figures=GATE_FIGURES,
                         metrics=CARD_METRICS, q=query)

    @expose("/control", ("POST",))
    def control(self) -> Response:
        """Pause, resume or abort a group's rollout, as POST /api/v1/rollouts/<group>/<action>."""
        group, action = request.form.get("group", "")[:64], request.form.get("action", "")
        try:
            if action not in ACTIONS:
                raise Rejection(400, "bad_parameter", f"no rollout action {action[:16]!r}")
            state = model_api.control_group(group, action)["state"]
        except Rejection as refused:
            flash(f"rollout of {group} not changed: {refused.detail}", "error")
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
            flash(f"no rollback released: {refused.detail}", "error")
            return redirect(url_for(".index"))
        flash(f"rollback to {version} released: gateways fetch it at their next poll", "success")
        return redirect(url_for(".index"))


def _version_row(row: registry.ModelVersion) -> VersionRow:
    """The card's figures of one version (a metric the trainer did not give is None)."""
    card = json.loads(row.card_json)
    metrics = card.get("metrics", {})
    return VersionRow(row.version, row.name, row.parent,
                      {name: metrics.get(name) for name in CARD_METRICS}, row.size,
                      float(card.get("threshold", 0.0)), str(card.get("dataset_sha256", "")),
                      row.promoted, row.created_ms)


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
