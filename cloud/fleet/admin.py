"""Operator and admin decisions about the fleet: moving a device, re-admitting a gateway.

    PUT  /api/v1/devices/<device>/owner   {"gateway": name}  (fleet:manage)
    POST /api/v1/gateways/<name>/readmit                      (fleet:readmit, admins)

Both are deliberate acts that ingest and enrolment never take on their own
(cloud/fleet/registry.py); each is audited in the transaction that makes it.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from tandem.cloud.access.auth import require
from tandem.cloud.access.permissions import Permission
from tandem.cloud.audit import record as audit
from tandem.cloud.db import engine as database
from tandem.cloud.errors import Rejection
from tandem.cloud.fleet import registry

bp = Blueprint("fleet_admin", __name__, url_prefix="/api/v1")
DEVICE_MOVE = "device.move"
GATEWAY_READMIT = "gateway.readmit"


@bp.put("/devices/<device>/owner")
@require(Permission.FLEET_MANAGE)
def move_device(device: str) -> Response:
    """Give device to another gateway: from now on only that gateway's records are taken."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or set(body) != {"gateway"} \
            or not isinstance(body["gateway"], str):
        raise Rejection(400, "bad_parameter", 'send a JSON object {"gateway": name}')
    with database.sessions().begin() as session:
        try:
            previous = registry.move_device(session, device, body["gateway"])
        except registry.RegistryError as exc:
            raise Rejection(404, "not_found", str(exc)) from None
        audit.record(DEVICE_MOVE, session=session, detail={
            "device": device, "from": previous, "to": body["gateway"]})
    return jsonify(device=device, gateway=body["gateway"], previous=previous)


@bp.post("/gateways/<name>/readmit")
@require(Permission.FLEET_READMIT)
def readmit_gateway(name: str) -> Response:
    """Let a revoked gateway enrol again (with a new key and an installer token)."""
    with database.sessions().begin() as session:
        try:
            changed = registry.readmit_gateway(session, name)
        except registry.RegistryError as exc:
            raise Rejection(404, "not_found", str(exc)) from None
        if not changed:
            raise Rejection(409, "not_revoked", f"gateway {name!r} is not revoked")
        audit.record(GATEWAY_READMIT, session=session, detail={"gateway": name})
    return jsonify(gateway=name, status=registry.GatewayStatus.READMITTED.value)
