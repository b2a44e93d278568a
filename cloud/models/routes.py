"""Model versions for operators (/api/v1/models) and gateways (/models/v1).

    GET  /api/v1/models                       versions, oldest first          models:read
    GET  /api/v1/models/<version>             one version with its card       models:read
    POST /api/v1/models/<version>/promote     {"force": bool}                 models:manage
                                              (force needs models:force: admins)
    POST /api/v1/models/<version>/release     {"rollback": bool}: sign it     models:manage
    POST /api/v1/rollouts      {"group", "version", "canaries", "wave_size", "limits",
                               "previous"?}: start a staged rollout        models:manage
    GET  /api/v1/rollouts/<group>   the group's newest rollout and its log    models:read
    POST /api/v1/rollouts/<group>/<pause|resume|abort>                      models:manage
    GET  /models/v1/current    X-Tandem-Signed (op "model-get"): the manifest this gateway
                               should run (204: none), X-Model-Shadow: base64url of the one
                               to score beside it, if any
    GET  /api/v1/models/<version>/reports   gateways' figures and events   models:read
    POST /models/v1/report     COSE_Sign1 op "model-report", body {"reports", "events"}
    GET  /models/v1/artefact/<sha256>   X-Tandem-Signed (op "model-get"): the artefact,
                                        with HTTP Range (any server with Range works)

Every promotion and release is audited.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request, send_file
from sqlalchemy.orm import Session

from tandem.cloud.access.auth import current_principal, public, require
from tandem.cloud.access.permissions import Permission, granted
from tandem.cloud.audit import record as audit
from tandem.cloud.config import CloudConfig
from tandem.cloud.db import engine as database
from tandem.cloud.errors import Rejection
from tandem.cloud.fleet import tokens as enrol_store
from tandem.cloud.fleet.gateway_requests import signed_request
from tandem.cloud.metrics import scraped
from tandem.cloud.models import feedback, registry, rollout
from tandem.cloud.models.rolloutgauges import RolloutCollector
from tandem.cloud.timestamps import now_ms

bp = Blueprint("models", __name__)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _json_map() -> dict[str, Any]:
    """The request's JSON object ({} without a body); 422 for any other JSON."""
    body = request.get_json(silent=True)
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise Rejection(422, "invalid_body", "the body must be a JSON object")
    return body


def init_app(app: Flask) -> None:
    """Register the operator and gateway routes, and the rollouts' gauges on /metrics."""
    app.register_blueprint(bp)
    scraped(app, RolloutCollector(app))


@bp.get("/api/v1/models")
@require(Permission.MODELS_READ)
def list_versions() -> Response:
    """Every registered version."""
    with database.read_session() as session:
        return jsonify(models=[registry.summary(r) for r in registry.versions(session)])


@bp.get("/api/v1/models/<version>")
@require(Permission.MODELS_READ)
def show(version: str) -> Response:
    """One version."""
    with database.read_session() as session:
        row = registry.find(session, version)
        if row is None:
            raise Rejection(404, "not_found", f"no model version {version!r}")
        return jsonify(registry.summary(row))


@bp.get("/api/v1/models/<version>/reports")
@require(Permission.MODELS_READ)
def version_reports(version: str) -> Response:
    """What gateways reported about version."""
    with database.read_session() as session:
        return jsonify(reports=[feedback.to_plain(r) for r in feedback.reports(session, version)])


@bp.post("/models/v1/report")
@public("authenticated by a COSE signature of the gateway's registered key", csrf=False)
def report() -> tuple[Response, int]:
    """Store a gateway's per-version figures and local rollbacks."""
    signed = signed_request("model-report")
    with database.sessions().begin() as session:
        try:
            stored = feedback.record(session, signed.gateway, signed.body, now_ms())
        except feedback.ReportError as exc:
            raise Rejection(422, "invalid_report", str(exc)) from None
        for event in signed.body.get("events", []):
            audit.record(audit.MODEL_ROLLBACK, actor=f"gateway:{signed.gateway}",
                         session=session, detail=dict(event))
    return jsonify(status="recorded", rows=stored), 200


@bp.post("/api/v1/models/<version>/promote")
@require(Permission.MODELS_MANAGE)
def promote(version: str) -> tuple[Response, int]:
    """Promote version (it must beat the promoted one unless an admin forces it)."""
    return jsonify(promote_version(version, bool(_json_map().get("force", False)))), 200


def promote_version(version: str, force: bool) -> dict[str, object]:
    """Promote version (force: admins only), audited; its summary after (the API and console)."""
    principal = current_principal()
    if force and (principal is None or not granted(principal.role, Permission.MODELS_FORCE)):
        raise Rejection(403, "forbidden", "only an admin may force a promotion")
    with database.sessions().begin() as session:
        try:
            row = registry.promote(session, version, force)
        except registry.ModelRegistryError as exc:
            raise Rejection(409, "not_promoted", str(exc)) from None
        audit.record(audit.MODEL_PROMOTE, session=session,
                     detail={"version": version, "force": force})
        return registry.summary(row)


@bp.post("/api/v1/models/<version>/release")
@require(Permission.MODELS_MANAGE)
def release(version: str) -> tuple[Response, int]:
    """Sign version's manifest; gateways fetch it next poll."""
    rollback = bool(_json_map().get("rollback", False))
    release_version(version, rollback)
    return jsonify(status="released", version=version, rollback=rollback), 200


def release_version(version: str, rollback: bool) -> None:
    """Sign version's manifest (rollback: a deliberate downgrade), audited; the API and console."""
    config: CloudConfig = current_app.config["TANDEM"]
    with database.sessions().begin() as session:
        try:
            registry.sign_release(session, config, version, now_ms(), rollback)
        except registry.ModelRegistryError as exc:
            raise Rejection(404, "not_found", str(exc)) from None
        audit.record(audit.MODEL_RELEASE, session=session,
                     detail={"version": version, "rollback": rollback})


@bp.get("/models/v1/current")
@public("authenticated by a COSE signature of the gateway's registered key", csrf=False)
def current() -> Response:
    """This gateway's assignment under its group's rollout, else the newest release."""
    signed = signed_request("model-get")
    with database.sessions().begin() as session:
        group = enrol_store.group_of(session, signed.gateway)
        row = rollout.latest(session, group)
        if row is not None:
            step = rollout.advance(session, row, now_ms())
            if step is not None:
                audit.record(audit.MODEL_ROLLOUT, actor="rollout", session=session,
                             detail={"group": group, "version": row.version, **row.log()[-1]})
        plan = rollout.assignment(row, signed.gateway, rollout.members(session, group))
        if plan is None:
            newest = registry.newest_release(session)
            plan = rollout.Assignment(newest.envelope if newest else None, None)
    headers = {} if plan.shadow is None else {
        "X-Model-Shadow": base64.urlsafe_b64encode(plan.shadow).decode().rstrip("=")}
    if plan.active is None:
        return Response(status=204, headers=headers)
    return Response(plan.active, status=200, mimetype="application/cose", headers=headers)


@bp.post("/api/v1/rollouts")
@require(Permission.MODELS_MANAGE)
def start_rollout() -> tuple[Response, int]:
    """Start a staged rollout of a version to a group (shadow first)."""
    body = _json_map()
    group, version = body.get("group"), body.get("version")
    canaries, wave = body.get("canaries", []), body.get("wave_size", 1)
    limits, previous = body.get("limits", {}), body.get("previous")
    if not isinstance(group, str) or not isinstance(version, str) \
            or not isinstance(canaries, list) or type(wave) is not int \
            or not isinstance(limits, dict):
        raise Rejection(422, "invalid_rollout", "needs group, version, canaries, wave_size")
    plan = RolloutPlan(group, version, [str(c) for c in canaries], wave,
                       {str(k): v for k, v in limits.items()},
                       str(previous) if previous else None)
    return jsonify(start_group_rollout(plan)), 200


@dataclass(frozen=True, slots=True)
class RolloutPlan:
    """What an operator asks for when starting a rollout (API body or console form)."""

    group: str
    version: str
    canaries: list[str]
    wave_size: int
    limits: dict[str, Any]
    previous: str | None = None


class RolloutRefused(Rejection):
    """A rollout not started; `field` names the plan's field at fault (None: no single one)."""

    def __init__(self, detail: str, field: str | None) -> None:
        super().__init__(409, "not_started", detail)
        self.field = field


def start_group_rollout(plan: RolloutPlan) -> dict[str, Any]:
    """Start plan's rollout (shadow first), audited; the rollout (the API and console)."""
    config: CloudConfig = current_app.config["TANDEM"]
    now = now_ms()
    with database.sessions().begin() as session:
        # What the group runs now: its last rollout's version, else the fleet-wide release.
        fleet = registry.newest_release(session)
        previous = plan.previous or rollout.completed_version(session, plan.group) \
            or (fleet.version if fleet is not None else None)
        try:
            gates = rollout.Limits(**plan.limits)
            release = registry.sign_release(session, config, plan.version, now, fleet_wide=False)
            back = _fallback_release(session, config, plan, previous, now)
            row = rollout.start(session, plan.group, plan.version, previous, release, back,
                                plan.canaries, plan.wave_size, gates, now)
        except TypeError as exc:
            raise RolloutRefused(str(exc), "limits") from None
        except registry.ModelRegistryError as exc:
            raise RolloutRefused(str(exc), "version") from None
        except rollout.RolloutError as exc:
            raise RolloutRefused(str(exc), exc.field) from None
        audit.record(audit.MODEL_ROLLOUT, session=session,
                     detail={"group": plan.group, "version": plan.version, "step": "started"})
        return rollout.to_plain(row)


def _fallback_release(session: Session, config: CloudConfig, plan: RolloutPlan,
                      previous: str | None, now: int) -> bytes | None:
    """The signed rollback release of what the group falls back to (None: nothing to)."""
    if previous is None:
        return None
    if plan.previous is not None and plan.previous == plan.version:
        raise RolloutRefused(f"{plan.version} cannot be its own fall-back version", "previous")
    try:
        return registry.sign_release(session, config, previous, now, rollback=True,
                                     fleet_wide=False)
    except registry.ModelRegistryError as exc:
        raise RolloutRefused(str(exc), "previous" if plan.previous else "version") from None


@bp.get("/api/v1/rollouts/<group>")
@require(Permission.MODELS_READ)
def show_rollout(group: str) -> Response:
    """The group's newest rollout with every step and its gate figures."""
    with database.read_session() as session:
        row = rollout.latest(session, group)
        if row is None:
            raise Rejection(404, "not_found", f"no rollout for group {group!r}")
        return jsonify(rollout.to_plain(row))


@bp.post("/api/v1/rollouts/<group>/<action>")
@require(Permission.MODELS_MANAGE)
def control_rollout(group: str, action: str) -> tuple[Response, int]:
    """Pause, resume or abort the group's rollout."""
    return jsonify(control_group(group, action)), 200


def control_group(group: str, action: str) -> dict[str, Any]:
    """Pause, resume or abort group's rollout, audited; the rollout after (the API and console)."""
    with database.sessions().begin() as session:
        row = rollout.current(session, group)
        if row is None:
            raise Rejection(404, "not_found", f"no rollout in progress for group {group!r}")
        try:
            rollout.control(row, action, now_ms())
        except rollout.RolloutError as exc:
            raise Rejection(409, "not_allowed", str(exc)) from None
        audit.record(audit.MODEL_ROLLOUT, session=session,
                     detail={"group": group, "version": row.version, "step": action})
        return rollout.to_plain(row)


@bp.get("/models/v1/artefact/<digest>")
@public("authenticated by a COSE signature of the gateway's registered key", csrf=False)
def artefact(digest: str) -> Response:
    """An artefact's bytes; Range requests get 206 and the slice asked for."""
    signed_request("model-get")
    path = registry.artefact_dir(current_app.config["TANDEM"]) / digest
    if not _SHA256.match(digest) or not path.is_file():
        raise Rejection(404, "not_found", "no such artefact")
    return send_file(path, mimetype="application/octet-stream", conditional=True,
                     etag=digest, max_age=0)
