"""Policy distribution to gateways: fetch the group's current signed release, acknowledge it.

    GET  /policy/v1/current   X-Tandem-Signed: base64url(COSE_Sign1 op "policy-get", body {})
         200 application/cose  the release envelope (X-Policy-Version: n); 204 when none
    POST /policy/v1/ack       COSE_Sign1 op "policy-ack", body {"group", "ver", "ok", "reason"}

A gateway that refuses a release (bad signature, old version, cannot carry it
out) says so in its ack; the refusal is audited and shown by
`tandem-cloud policy status`.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from tandem.cloud.access.auth import public
from tandem.cloud.audit import record as audit
from tandem.cloud.db import engine as database
from tandem.cloud.errors import Rejection
from tandem.cloud.fleet import tokens as enrol_store
from tandem.cloud.fleet.gateway_requests import signed_request
from tandem.cloud.policy import store as policy_store
from tandem.wire.clock import now_ms

bp = Blueprint("policy", __name__, url_prefix="/policy/v1")
POLICY_APPLIED = "policy.applied"
POLICY_REFUSED = "policy.refused"


@bp.get("/current")
@public("authenticated by a COSE signature of the gateway's registered key", csrf=False)
def current() -> Response:
    """The newest release of the asking gateway's group."""
    signed = signed_request("policy-get")
    with database.read_session() as session:
        group = enrol_store.group_of(session, signed.gateway)
        row = policy_store.current(session, group)
    if row is None:
        return Response(status=204, headers={"X-Policy-Group": group})
    return Response(row.envelope, status=200, mimetype="application/cose",
                    headers={"X-Policy-Version": str(row.version), "X-Policy-Group": group})


@bp.post("/ack")
@public("authenticated by a COSE signature of the gateway's registered key", csrf=False)
def ack() -> tuple[Response, int]:
    """Record what the gateway did with a release."""
    signed = signed_request("policy-ack")
    body = signed.body
    group, version, ok, reason = (body.get(k) for k in ("group", "ver", "ok", "reason"))
    if not isinstance(group, str) or type(version) is not int or not isinstance(ok, bool) \
            or not isinstance(reason, str):
        raise Rejection(422, "invalid_ack", "body needs group, ver, ok and reason")
    now = now_ms()
    with database.sessions().begin() as session:
        policy_store.record_ack(session, signed.gateway, group, version, ok, reason, now)
        audit.record(POLICY_APPLIED if ok else POLICY_REFUSED,
                     actor=f"gateway:{signed.gateway}", session=session,
                     detail={"gateway": signed.gateway, "group": group, "version": version,
                             "reason": reason[:200]})
    return jsonify(status="recorded"), 200
