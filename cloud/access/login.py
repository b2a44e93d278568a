"""Browser sign-in: /login, /logout and a minimal home page (where the admin UI will hang).

Sessions are Flask's signed cookies (HttpOnly, SameSite=Lax, Secure in
production), valid for [security] session_lifetime_s and only while they
carry the user's session generation: signing out ends them server-side.
Every form POST carries a CSRF token (checked centrally by cloud/access/auth.py).
A failed attempt answers the same whether or not the user exists; failures
are throttled per source and per account (cloud/access/throttle.py) and
audited aggregated per source (cloud/audit/refusals.py). The password is
checked outside any transaction, so sign-ins never hold the write lock.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    current_app,
    redirect,
    render_template,
    request,
    session,
)
from flask.typing import ResponseReturnValue

from tandem.cloud.access import accounts, throttle
from tandem.cloud.access.auth import (
    SESSION_GENERATION,
    SESSION_USER,
    current_principal,
    public,
    require,
)
from tandem.cloud.access.permissions import Permission
from tandem.cloud.audit import record as audit
from tandem.cloud.config import CloudConfig
from tandem.cloud.db import engine as database
from tandem.cloud.errors import error_response
from tandem.cloud.metrics import metrics
from tandem.cloud.timestamps import now_ms

log = logging.getLogger(__name__)
bp = Blueprint("login", __name__)


@bp.get("/login")
@public("the sign-in page")
def login_form() -> str:
    """The sign-in form."""
    return render_template("login.html", failed=False, user="", next_page=_next_page())


@bp.post("/login")
@public("signing in is how one gets credentials")
def login() -> ResponseReturnValue:
    """Check user and password; start a session, or show the form again with 401 (429)."""
    name = request.form.get("user", "")[:64]
    password = request.form.get("password", "")
    config: CloudConfig = current_app.config["TANDEM"]
    window_ms = config.security.login_window_s * 1000
    held_to = throttle.limits(request.remote_addr or "?", name,
                              config.security.login_failures_per_source,
                              config.security.login_failures_per_account)
    with database.read_session() as db:
        used_up = throttle.exhausted(db, held_to, now_ms(), window_ms)
        found = None if used_up is not None else accounts.credentials(db, name)
    if used_up is not None:
        return _throttled(name, used_up, config.security.login_window_s)
    # argon2 is slow on purpose: it runs outside any transaction, holding no lock
    if not accounts.password_matches(found, password) or found is None:
        return _failed(name, held_to, window_ms)
    with database.sessions().begin() as db:
        accounts.rehash_if_weak(db, found, password)
        audit.record(audit.LOGIN_OK, f"user:{found.name}", {"remote": request.remote_addr},
                     session=db)
    metrics().logins.labels("ok").inc()
    session.clear()  # nothing from before the sign-in survives it
    session[SESSION_USER] = found.user_id
    session[SESSION_GENERATION] = found.session_generation
    session.permanent = True
    return redirect(_next_page())


def _failed(name: str, held_to: list[throttle.Limit], window_ms: int) -> ResponseReturnValue:
    """Count the failure against source and account, audit it (aggregated), show the form."""
    with database.sessions().begin() as db:
        throttle.record_failure(db, held_to, now_ms(), window_ms)
        used_up = throttle.exhausted(db, held_to, now_ms(), window_ms)
    metrics().logins.labels("failed").inc()
    audit.refused(audit.LOGIN_FAILED, {"user": name})
    if used_up is not None:
        # warned and audited once, when the limit is reached: throttled attempts then
        # only count in the metric (a log line each would be a flood of its own)
        log.warning("sign-in throttled for %s (%s) from now on", used_up.key, name)
        audit.refused(audit.LOGIN_THROTTLED, {"user": name, "limit": used_up.key.split(":")[0]})
    page = render_template("login.html", failed=True, user=name, next_page=_next_page())
    return page, 401


def _throttled(name: str, used_up: throttle.Limit, retry_s: int) -> ResponseReturnValue:
    """Refuse without checking the password or writing: too many failures here or for name."""
    log.debug("sign-in throttled for %s (%s)", used_up.key, name)
    metrics().logins.labels("throttled").inc()
    response, _ = error_response(429, "too_many_attempts",
                                 "too many failed sign-ins; try again later")
    response.status_code = 429
    response.headers["Retry-After"] = str(retry_s)
    return response


@bp.post("/logout")
@require(Permission.ACCOUNT_SELF)
def logout() -> Response:
    """End the session, and every other browser session of this user (server-side)."""
    principal = current_principal()
    with database.sessions().begin() as db:
        if principal is not None and principal.via == "session" and principal.user_id:
            user = db.get(accounts.User, principal.user_id)
            if user is not None:
                accounts.end_sessions(user)  # a copied cookie is worthless from now on
        audit.record(audit.LOGOUT, session=db)
    session.clear()
    return redirect("/login")  # type: ignore[return-value]


@bp.get("/")
@require(Permission.ACCOUNT_SELF)
def home() -> str:
    """Who is signed in, and a way out."""
    return render_template("home.html", principal=current_principal())


def _next_page() -> str:
    """Where to go after signing in: a path on this site only (never another host)."""
    wanted = request.values.get("next", "/")
    parts = urlsplit(wanted)
    if parts.scheme or parts.netloc or not wanted.startswith("/") or wanted.startswith("//") \
            or "\\" in wanted:
        return "/"
    return wanted
