"""Authorisation: every route declares a permission, and each role gets exactly what it grants.

The matrix enumerates `app.url_map`, so a route added without a declaration
fails here, and one added with a declaration is checked against the role
table (cloud/access/permissions.py) with no edit to this file.
"""

from __future__ import annotations

import pytest
from flask import Flask

from tandem.cloud.access import accounts, auth
from tandem.cloud.access.auth import PUBLIC, Principal, declared_permission
from tandem.cloud.access.permissions import ROLE_PERMISSIONS, USER_ROLES, Permission, Role, granted
from tandem.cloud.db import engine as database

ANONYMOUS = "anonymous"
DENIALS = {"unauthenticated", "forbidden"}  # the central check's refusals of valid tokens
INSTALLER_PREFIX = "tdx_"  # a stand-in installer-token kind, registered by the fixture below

# The routes this module knows: changing who may call them must be deliberate.
PINNED = {
    ("/ingest/v1/batches", "POST"): PUBLIC,
    ("/healthz", "GET"): PUBLIC,
    ("/login", "GET"): PUBLIC,
    ("/login", "POST"): PUBLIC,
    ("/logout", "POST"): Permission.ACCOUNT_SELF,
    ("/", "GET"): Permission.ACCOUNT_SELF,
    ("/api/v1/whoami", "GET"): Permission.ACCOUNT_SELF,
    ("/api/v1/summaries", "GET"): Permission.DATA_READ,
    ("/api/v1/events", "GET"): Permission.DATA_READ,
    ("/api/v1/devices", "GET"): Permission.DATA_READ,
    ("/api/v1/export", "GET"): Permission.DATA_EXPORT,
    ("/api/v1/gateways", "GET"): Permission.FLEET_READ,
    ("/api/v1/devices/<device>/owner", "PUT"): Permission.FLEET_MANAGE,
    ("/api/v1/gateways/<name>/readmit", "POST"): Permission.FLEET_READMIT,
    ("/api/v1/openapi.yaml", "GET"): Permission.API_DESCRIBE,
    ("/metrics", "GET"): Permission.METRICS_READ,
    ("/api/v1/audit", "GET"): Permission.AUDIT_READ,
    ("/api/v1/labels", "POST"): Permission.LABELS_WRITE,
    ("/api/v1/models/<version>/promote", "POST"): Permission.MODELS_MANAGE,
    ("/api/v1/models/<version>/release", "POST"): Permission.MODELS_MANAGE,
    ("/api/v1/rollouts", "POST"): Permission.MODELS_MANAGE,
    ("/api/v1/rollouts/<group>/<action>", "POST"): Permission.MODELS_MANAGE,
    ("/api/v1/sites/<site>/strategy", "PUT"): Permission.FLEET_MANAGE,
    ("/api/v1/tasks", "POST"): Permission.TASKS_RUN,
    ("/api/v1/tasks/<task_id>", "GET"): Permission.TASKS_RUN,
    ("/api/v1/devices/<path:device>/live", "PUT"): Permission.DATA_READ,  # bounded per gateway
    ("/api/v1/devices/<path:device>/live", "GET"): Permission.DATA_READ,
    # Gateways' signed requests: public to the session layer, each checked by its signature.
    ("/edge/v1/tasks/claim", "POST"): PUBLIC,
    ("/edge/v1/tasks/result", "POST"): PUBLIC,
    ("/edge/v1/live", "GET"): PUBLIC,
    ("/edge/v1/live", "POST"): PUBLIC,
}


def routes(app: Flask) -> list[tuple[str, str, str]]:
    """(rule, method, endpoint) of every route, without the automatic HEAD and OPTIONS."""
    return sorted((rule.rule, method, rule.endpoint) for rule in app.url_map.iter_rules()
                  for method in rule.methods or () if method not in {"HEAD", "OPTIONS"})


def url(rule: str) -> str:
    """A concrete path for rule (any <converter:argument> filled with a placeholder)."""
    parts = []
    for part in rule.split("/"):
        parts.append("x" if part.startswith("<") else part)
    return "/".join(parts)


@pytest.fixture
def tokens(app: Flask, kit) -> dict[str, str]:
    """A bearer token per role (installer through a stand-in resolver), none for anonymous."""
    def installer(secret: str) -> Principal | None:
        return Principal(kind="installer", name=secret, role=Role.INSTALLER, via="bearer")

    auth.add_token_resolver(app, INSTALLER_PREFIX, installer)
    found = {str(role): kit.token_for(app, role) for role in USER_ROLES}
    found[Role.INSTALLER] = INSTALLER_PREFIX + "site-7"
    return found


def test_every_route_declares_a_permission(app):
    undeclared = [(rule, method) for rule, method, endpoint in routes(app)
                  if declared_permission(app, endpoint) is None]
    assert undeclared == [], "declare these with cloud.auth.require(...) or public(...)"


def test_declared_permissions_exist_and_pinned_routes_keep_theirs(app):
    declared = {(rule, method): declared_permission(app, endpoint)
                for rule, method, endpoint in routes(app)}
    assert {k: declared[k] for k in PINNED} == PINNED
    assert {p for p in declared.values() if p != PUBLIC} <= set(Permission)


def test_every_permission_is_granted_to_admin_except_enrolling_a_gateway():
    assert set(Permission) - ROLE_PERMISSIONS[Role.ADMIN] == {Permission.GATEWAY_ENROL}
    assert ROLE_PERMISSIONS[Role.VIEWER] < ROLE_PERMISSIONS[Role.OPERATOR] \
        < ROLE_PERMISSIONS[Role.ADMIN]


@pytest.mark.parametrize("role", [*(str(r) for r in Role), ANONYMOUS])
def test_route_role_matrix(app, tokens, role):
    client = app.test_client()
    headers = {} if role == ANONYMOUS else {"Authorization": f"Bearer {tokens[role]}"}
    wrong = []
    for rule, method, endpoint in routes(app):
        if endpoint == "static":
            continue
        permission = declared_permission(app, endpoint)
        response = client.open(url(rule), method=method, headers=headers)
        denied = (response.is_json and (response.json or {}).get("error") in DENIALS) or (
            response.status_code == 302 and response.location.startswith("/login?"))
        allowed = permission == PUBLIC or (role != ANONYMOUS and granted(role, str(permission)))
        if denied == allowed or response.status_code >= 500:
            wrong.append((method, rule, permission, response.status_code))
    assert wrong == []


def test_an_undeclared_route_is_refused_even_to_an_admin(app, kit):
    app.add_url_rule("/api/v1/forgotten", "forgotten", lambda: "secret")
    response = app.test_client().get("/api/v1/forgotten",
                                     headers=kit.bearer(kit.token_for(app, "admin")))
    assert (response.status_code, response.json["error"]) == (403, "forbidden")
    assert "declares no permission" in response.json["detail"]


def test_require_refuses_an_unknown_permission_at_import_time():
    with pytest.raises(ValueError):
        auth.require("data:raed")
    with pytest.raises(ValueError):
        auth.public("  ")


def test_missing_and_bad_credentials_are_401_with_a_challenge(anonymous):
    response = anonymous.get("/api/v1/summaries")
    assert (response.status_code, response.json["error"]) == (401, "unauthenticated")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    for header in ("Bearer tdm_nonsense", "Bearer ", "Basic YWRtaW46YWRtaW4=", "Bearer x" * 50):
        response = anonymous.get("/api/v1/summaries", headers={"Authorization": header})
        assert (response.status_code, response.json["error"]) == (401, "invalid_token")


def test_expired_revoked_and_disabled_users_tokens_stop_working(app, anonymous, kit):
    token = kit.token_for(app, "viewer")
    assert anonymous.get("/api/v1/whoami", headers=kit.bearer(token)).json == {
        "name": "viewer-user", "kind": "token", "role": "viewer", "via": "bearer",
        "token": "t1"}
    now = kit.now_ms()
    with database.sessions(app).begin() as session:
        soon = accounts.create_token(session, "viewer-user", "soon", now, expires_ms=now - 1)
    assert anonymous.get("/api/v1/whoami", headers=kit.bearer(soon)).status_code == 401
    with database.sessions(app).begin() as session:
        assert accounts.revoke_token(session, "viewer-user", "t1", now)
    assert anonymous.get("/api/v1/whoami", headers=kit.bearer(token)).status_code == 401
    other = kit.token_for(app, "viewer")
    assert anonymous.get("/api/v1/whoami", headers=kit.bearer(other)).status_code == 200
    with database.sessions(app).begin() as session:
        accounts.set_active(session, "viewer-user", False)
    assert anonymous.get("/api/v1/whoami", headers=kit.bearer(other)).status_code == 401


def test_responses_carry_security_headers(client):
    response = client.get("/api/v1/whoami")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"
