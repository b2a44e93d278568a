"""Recording security-relevant events in the audit log (the chained table: cloud/audit/chain.py).

    from cloud import audit
    audit.record(audit.POLICY_PUSH, detail={"gateway": "gw-01", "policy": digest})

`actor` defaults to the current request's principal (`auth.current_principal`)
or "anonymous@<address>". Pass `session=` to append inside a transaction of
your own, so the change and its audit row commit (or roll back) together;
without one the row commits on its own. Never put secrets in `detail`.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping
from typing import Any

from flask import current_app, has_request_context, request
from sqlalchemy.orm import Session

from tandem.cloud.access.auth import current_principal
from tandem.cloud.audit import chain as auditlog
from tandem.cloud.audit import refusals
from tandem.cloud.config import CloudConfig
from tandem.cloud.db import engine as database
from tandem.cloud.metrics import metrics
from tandem.cloud.timestamps import now_ms

# Event names; other modules may add their own "<area>.<what>" names.
LOGIN_OK = "login.ok"
LOGIN_FAILED = "login.failed"
LOGIN_THROTTLED = "login.throttled"
LOGOUT = "logout"
USER_ADD = "user.add"
USER_DISABLE = "user.disable"
USER_ENABLE = "user.enable"
TOKEN_CREATE = "token.create"
TOKEN_REVOKE = "token.revoke"
GATEWAY_ADD = "gateway.add"
GATEWAY_REVOKE = "gateway.revoke"
GATEWAY_ENROL = "gateway.enrol"
POLICY_PUSH = "policy.push"
MODEL_REGISTER = "model.register"
MODEL_PROMOTE = "model.promote"
MODEL_RELEASE = "model.release"
MODEL_ROLLBACK = "model.rollback"
MODEL_ROLLOUT = "model.rollout"
EXPORT = "data.export"
INGEST_REFUSED = "ingest.refused"
KEY_ROTATE = "key.rotate"


def record(event: str, actor: str | None = None, detail: Mapping[str, Any] | None = None,
           session: Session | None = None) -> None:
    """Append one event to the audit log of the current app."""
    who = actor if actor is not None else request_actor()
    if session is not None:
        auditlog.append(session, event, who, detail or {}, now_ms())
        return
    with database.sessions().begin() as own:
        auditlog.append(own, event, who, detail or {}, now_ms())


def refused(event: str, detail: Mapping[str, Any], kind: str | None = None) -> bool:
    """Record an anonymous refusal, aggregated per source and interval (audit/refusals.py).

    kind tells refusals of one event apart (e.g. the reason of a refused batch);
    returns True when this one got an audit row, False when it was only counted.
    """
    config: CloudConfig = current_app.config["TANDEM"]
    metrics().refusals.labels(kind or event).inc()
    with database.sessions().begin() as own:
        return refusals.note(own, event, request_actor(), detail, now_ms(),
                             config.security.refusal_interval_s * 1000, kind)


def request_actor() -> str:
    """The current request's principal label, or anonymous@<remote address>."""
    principal = current_principal() if has_request_context() else None
    if principal is not None:
        return principal.label
    if has_request_context():
        return f"anonymous@{request.remote_addr or '?'}"
    return cli_actor()


def cli_actor() -> str:
    """Who runs a `tandem-cloud` command: cli:<login name>."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"cli:uid{os.getuid()}"
