"""Changes installers made on a gateway's local page, appended to the cloud's audit chain.

    POST /fleet/v1/installer-audit   COSE_Sign1 op "installer-audit",
         body {"events": [{"event", "actor", "address", "at_ms", "detail"}, ...]}

Each event becomes one audit row `installer.<event>` by `gateway:<id>/<actor>`;
the gateway resends a batch until it gets the 200, so the page's changes are
in the chain even when the cloud was away while they were made.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from tandem.cloud.access.auth import public
from tandem.cloud.audit import record as audit
from tandem.cloud.db import engine as database
from tandem.cloud.errors import Rejection
from tandem.cloud.fleet.gateway_requests import signed_request

bp = Blueprint("installer_audit", __name__, url_prefix="/fleet/v1")
OP = "installer-audit"
MAX_EVENTS = 100


@bp.post("/installer-audit")
@public("authenticated by a COSE signature of the gateway's registered key", csrf=False)
def installer_audit() -> tuple[Response, int]:
    """Append a gateway's installer-page changes to the audit log."""
    signed = signed_request(OP)
    events = signed.body.get("events")
    if not isinstance(events, list) or not 0 < len(events) <= MAX_EVENTS \
            or not all(_valid(e) for e in events):
        raise Rejection(422, "invalid_events", f"body needs 1..{MAX_EVENTS} events with "
                        "event, actor, address, at_ms and a detail map")
    with database.sessions().begin() as session:
        for e in events:
            audit.record(f"installer.{e['event']}"[:64],
                         actor=f"gateway:{signed.gateway}/{e['actor']}", session=session,
                         detail={"address": e["address"], "at_ms": e["at_ms"], **e["detail"]})
    return jsonify(status="recorded", events=len(events)), 200


def _valid(event: Any) -> bool:
    return isinstance(event, dict) and all(isinstance(event.get(k), str) and len(event[k]) <= 64
                                           for k in ("event", "actor", "address")) \
        and type(event.get("at_ms")) is int and isinstance(event.get("detail"), dict)
