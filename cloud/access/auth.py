"""Authentication and authorisation of every request, declared per route and checked here.

Declaring (every view function must do one of these, or it is refused)::

    from cloud.auth import public, require
    from cloud.permissions import Permission

    @bp.get("/api/v1/things")
    @require(Permission.DATA_READ)          # or require("data:read")
    def things(): ...

    @bp.post("/ingest/v1/batches")
    @public("authenticated by its COSE signature", csrf=False)
    def post_batch(): ...

Checking happens once, in a `before_request` hook: it looks up the endpoint's
declared permission and denies by default: an undeclared route answers 403
(and tests/cloud/test_authz.py fails on it). Who is asking is, in this order:

1. `Authorization: Bearer <secret>`: a user's API token (`tdm_...`, cloud/
   accounts.py), or any other kind registered with `add_token_resolver`
   (installer tokens). A bad or expired token is 401 `invalid_token`.
2. the browser session set by /login (cloud/access/login.py), valid while
   it carries the user's current session generation (sign-out, password,
   role or activation changes move it on, ending every session). Unsafe methods
   (POST, PUT, PATCH, DELETE) must then carry the CSRF token (`csrf_token`
   form field or `X-CSRFToken` header; Flask-WTF), as must every form POST
   to a public route unless it declares `csrf=False`.

No principal: 401 `unauthenticated` (pages of the `login` blueprint, and
those listed in LOGIN_PAGES, redirect to /login instead); a principal whose
role lacks the permission (cloud/access/permissions.py): 403 `forbidden`.

In a view, `current_principal()` says who is asking (None on public routes
without credentials); `principal.label` is what the audit log records.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

from flask import Flask, Response, current_app, g, redirect, request, session
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError, CSRFProtect

from tandem.cloud.access import accounts
from tandem.cloud.access.permissions import Permission, granted
from tandem.cloud.config import CloudConfig
from tandem.cloud.db import engine as database
from tandem.cloud.errors import error_response
from tandem.cloud.metrics import metrics
from tandem.cloud.timestamps import now_ms

PUBLIC = "public"
SESSION_USER = "uid"
SESSION_GENERATION = "gen"  # the user's session_generation when the session began
LOGIN_PAGES = {"login"}  # blueprints whose pages redirect to /login instead of answering 401
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_EXTENSION = "tandem.auth"
_ATTRIBUTE = "tandem_permission"
_CSRF_ATTRIBUTE = "tandem_csrf"

View = TypeVar("View", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts for: a user (by session or API token) or an installer token."""

    kind: str  # "user" or a token kind such as "token" or "installer"
    name: str  # the user name, or the installer token's label
    role: str
    via: str  # "session" or "bearer"
    user_id: int | None = None
    token_name: str | None = None

    @property
    def label(self) -> str:
        """How the audit log names this principal: user:alice, token:alice/ci, installer:x."""
        if self.kind == "token":
            return f"token:{self.name}/{self.token_name}"
        return f"{self.kind}:{self.name}"

    def can(self, permission: str) -> bool:
        """True when this principal's role grants permission."""
        return granted(self.role, permission)


TokenResolver = Callable[[str], Principal | None]


@dataclass
class _State:
    csrf: CSRFProtect
    resolvers: dict[str, TokenResolver] = field(default_factory=dict)
    declared: dict[str, str] = field(default_factory=dict)


def require(permission: str) -> Callable[[View], View]:
    """Declare that a view needs permission (a cloud.permissions.Permission value)."""
    Permission(permission)  # a typo fails at import, not at request time

    def declare(view: View) -> View:
        setattr(view, _ATTRIBUTE, str(permission))
        return view

    return declare


def public(reason: str, csrf: bool = True) -> Callable[[View], View]:
    """Declare a view open to anyone, saying why; csrf=False for non-browser POSTs."""
    if not reason.strip():
        raise ValueError("a public route must say why it is public")

    def declare(view: View) -> View:
        setattr(view, _ATTRIBUTE, PUBLIC)
        setattr(view, _CSRF_ATTRIBUTE, csrf)
        return view

    return declare


def declare(app: Flask, endpoint: str, permission: str) -> None:
    """Declare the permission of an endpoint whose view is not ours (e.g. "static")."""
    if permission != PUBLIC:
        Permission(permission)
    _state(app).declared[endpoint] = permission


def declared_permission(app: Flask, endpoint: str) -> str | None:
    """The permission endpoint declares (PUBLIC for public ones), or None if undeclared."""
    if endpoint in _state(app).declared:
        return _state(app).declared[endpoint]
    view = app.view_functions.get(endpoint)
    found: str | None = getattr(view, _ATTRIBUTE, None)
    return found


def add_token_resolver(app: Flask, prefix: str, resolver: TokenResolver) -> None:
    """Authenticate bearer tokens starting with prefix by resolver (None = not valid)."""
    resolvers = _state(app).resolvers
    if prefix in resolvers:
        raise ValueError(f"bearer tokens {prefix!r}... already have a resolver")
    resolvers[prefix] = resolver


def current_principal() -> Principal | None:
    """Who the current request acts for (None: nobody, on a public route)."""
    principal: Principal | None = g.get("tandem_principal")
    return principal


def init_app(app: Flask, config: CloudConfig) -> None:
    """Check every request of app; configure its session cookie and CSRF protection."""
    app.config.update(
        WTF_CSRF_CHECK_DEFAULT=False,  # checked in _authorise, only where cookies authenticate
        WTF_CSRF_TIME_LIMIT=config.security.session_lifetime_s,
        SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=config.production, SESSION_COOKIE_NAME="tandem_session",
        PERMANENT_SESSION_LIFETIME=config.security.session_lifetime_s)
    app.extensions[_EXTENSION] = _State(csrf=CSRFProtect(app))
    add_token_resolver(app, accounts.TOKEN_PREFIX, _api_token_principal)
    declare(app, "static", PUBLIC)  # assets of the sign-in page
    app.before_request(_authorise)
    app.after_request(_security_headers)


def _authorise() -> ResponseReturnValue | None:
    """The central check: deny unless the endpoint's declared permission is held."""
    if request.endpoint is None:
        return None  # routing failed: 404 / 405 follow
    permission = declared_permission(current_app, request.endpoint)
    if permission is None:
        current_app.logger.error("route %s declares no permission; refused", request.endpoint)
        return _deny(403, "forbidden", f"route {request.endpoint} declares no permission",
                     reason="undeclared")
    bearer = _bearer()
    principal = _from_bearer(bearer) if bearer is not None else _from_session()
    if bearer is not None and principal is None:
        return _deny(401, "invalid_token", "the bearer token is unknown, expired or revoked")
    g.tandem_principal = principal
    if permission != PUBLIC:
        if principal is None:
            if request.blueprint in LOGIN_PAGES:
                return redirect(f"/login?next={quote(request.full_path.rstrip('?'))}")
            return _deny(401, "unauthenticated", "sign in or send Authorization: Bearer <token>")
        if not principal.can(permission):
            # Someone signed in reaching past their role: worth a line, unlike a stray 401.
            current_app.logger.warning("%s %s refused to %s (role %s lacks %s)", request.method,
                                       request.path, principal.name, principal.role, permission)
            return _deny(403, "forbidden", f"role {principal.role} lacks {permission}")
    if bearer is None and request.method in UNSAFE_METHODS and _csrf_applies(permission):
        try:
            _state(current_app).csrf.protect()  # cookies authenticate: the form proves origin
        except CSRFError:
            metrics().access_refusals.labels("csrf").inc()
            current_app.logger.warning("%s %s refused: %s", request.method, request.path,
                                       "no valid CSRF token")
            raise
    return None


def _csrf_applies(permission: str) -> bool:
    if permission != PUBLIC:
        return True
    view = current_app.view_functions.get(request.endpoint or "")
    return bool(getattr(view, _CSRF_ATTRIBUTE, True))


def _bearer() -> str | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, secret = header.partition(" ")
    return secret.strip() if scheme.lower() == "bearer" else ""


def _from_bearer(secret: str) -> Principal | None:
    for prefix, resolver in _state(current_app).resolvers.items():
        if secret.startswith(prefix):
            return resolver(secret)
    return None


def _api_token_principal(secret: str) -> Principal | None:
    with database.read_session() as db:
        owner = accounts.resolve_token(db, secret, now_ms())
        if owner is None:
            return None
        return Principal(kind="token", name=owner.user.name, role=owner.user.role,
                         via="bearer", user_id=owner.user.id, token_name=owner.token.name)


def _from_session() -> Principal | None:
    user_id = session.get(SESSION_USER)
    if not isinstance(user_id, int):
        return None
    with database.read_session() as db:
        user = db.get(accounts.User, user_id)
        if user is None or not user.active \
                or session.get(SESSION_GENERATION) != (user.session_generation or 0):
            session.clear()  # signed out, password or role changed, or disabled since
            return None
        return Principal(kind="user", name=user.name, role=user.role, via="session",
                         user_id=user.id)


def _deny(status: int, code: str, detail: str, reason: str | None = None) -> Response:
    metrics().access_refusals.labels(reason or code).inc()
    response, _ = error_response(status, code, detail)
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="tandem"'
    return response


def _security_headers(response: Response) -> Response:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if current_principal() is not None:
        response.headers.setdefault("Cache-Control", "no-store")
    config: CloudConfig = current_app.config["TANDEM"]
    if config.production:
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    return response


def _state(app: Flask) -> _State:
    state: _State = app.extensions[_EXTENSION]
    return state



__all__ = ["PUBLIC", "Principal", "TokenResolver", "add_token_resolver",
           "current_principal", "declare", "declared_permission", "init_app", "public",
           "require"]
