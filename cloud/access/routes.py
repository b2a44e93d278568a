"""Who am I (/api/v1/whoami) and the audit log (/api/v1/audit), as JSON."""

from __future__ import annotations

import json

from flask import Blueprint, Response, jsonify

from tandem.cloud.access.auth import current_principal, require
from tandem.cloud.access.permissions import Permission
from tandem.cloud.audit import chain as auditlog
from tandem.cloud.db import engine as database
from tandem.cloud.query.routes import QueryParams

bp = Blueprint("access", __name__)

MAX_AUDIT_LIMIT = 1000


@bp.get("/api/v1/whoami")
@require(Permission.ACCOUNT_SELF)
def whoami() -> Response:
    """The caller's name, role and permissions (to check a token)."""
    QueryParams(set())
    principal = current_principal()
    assert principal is not None  # require() let the request through
    return jsonify(name=principal.name, kind=principal.kind, role=principal.role,
                   via=principal.via, token=principal.token_name)


@bp.get("/api/v1/audit")
@require(Permission.AUDIT_READ)
def audit_entries() -> Response:
    """Audit rows after seq `after`, oldest first, at most `limit`."""
    q = QueryParams({"after", "limit"})
    after = q.integer("after") or 0
    limit = q.integer("limit", minimum=1, maximum=MAX_AUDIT_LIMIT) or 100
    with database.read_session() as session:
        rows = [{"seq": e.seq, "at": e.at_ms, "event": e.event, "actor": e.actor,
                 "detail": json.loads(e.detail), "hash": e.hash}
                for e in auditlog.entries(session, after, limit)]
    return jsonify(entries=rows)
