"""Browser sign-in: /login, /logout and a minimal home page (where the admin UI will hang).

Sessions are Flask's signed cookies (HttpOnly, SameSite=Lax, Secure in
production), valid for [security] session_lifetime_s; every form POST
carries a CSRF token (checked centrally by cloud/access/auth.py). Each attempt is
audited; a failed one answers the same whether or not the user exists.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, Response, redirect, render_template, request, session
from flask.typing import ResponseReturnValue

from tandem.cloud.access import accounts
from tandem.cloud.access.auth import SESSION_USER, current_principal, public, require
from tandem.cloud.access.permissions import Permission
from tandem.cloud.audit import record as audit
from tandem.cloud.db import engine as database

bp = Blueprint("login", __name__)


@bp.get("/login")
@public("the sign-in page")
def login_form() -> str:
    """The sign-in form."""
    return render_template("login.html", failed=False, user="", next_page=_next_page())


@bp.post("/login")
@public("signing in is how one gets credentials")
def login() -> ResponseReturnValue:
    """Check user and password; start a session, or show the form again with 401."""
    name = request.form.get("user", "")[:64]
    password = request.form.get("password", "")
    with database.sessions().begin() as db:
        user = accounts.check_password(db, name, password)
        if user is not None:
            audit.record(audit.LOGIN_OK, f"user:{user.name}", {"remote": request.remote_addr},
                         session=db)
            user_id = user.id
    if user is None:
        audit.record(audit.LOGIN_FAILED, f"anonymous@{request.remote_addr or '?'}",
                     {"user": name})
        page = render_template("login.html", failed=True, user=name, next_page=_next_page())
        return page, 401
    session.clear()  # nothing from before the sign-in survives it
    session[SESSION_USER] = user_id
    session.permanent = True
    return redirect(_next_page())


@bp.post("/logout")
@require(Permission.ACCOUNT_SELF)
def logout() -> Response:
    """End the session."""
    audit.record(audit.LOGOUT)
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
