"""The operator console: behind sign-in, each page for the roles its permission names, CSRF on
every form, and nothing fetched from another host (plant networks are offline)."""

from __future__ import annotations

import re

import pytest
from flask import Flask

from tandem.cloud.access import accounts
from tandem.cloud.access.auth import declared_permission
from tandem.cloud.access.permissions import Permission
from tandem.cloud.db import engine as database
from tandem.cloud.metrics import metrics

PASSWORD = "correct horse battery staple"

# Every console page and the permission it needs: a new view must be added here deliberately.
PAGES = {
    "/admin/": Permission.ACCOUNT_SELF,
    "/admin/console_gateways/": Permission.FLEET_READ,
    "/admin/console_nodes/": Permission.FLEET_READ,
    "/admin/console_enrol/": Permission.FLEET_ENROL,
    "/admin/console_alarms/": Permission.DATA_READ,
    "/admin/console_raw/": Permission.DATA_RAW,
    "/admin/console_policies/": Permission.POLICY_READ,
    "/admin/console_models/": Permission.MODELS_READ,
    "/admin/console_users/": Permission.USERS_MANAGE,
    "/admin/console_tokens/": Permission.USERS_MANAGE,
    "/admin/console_audit/": Permission.AUDIT_READ,
}
ACTIONS = {
    "/admin/console_alarms/label": Permission.LABELS_WRITE,
    "/admin/console_audit/verify": Permission.AUDIT_READ,
    "/admin/console_policies/push": Permission.POLICY_PUSH,
    "/admin/console_enrol/issue": Permission.FLEET_ENROL,
    "/admin/console_models/control": Permission.MODELS_MANAGE,
    "/admin/console_models/rollback": Permission.MODELS_MANAGE,
    "/admin/console_models/promote": Permission.MODELS_MANAGE,
    "/admin/console_models/release": Permission.MODELS_MANAGE,
    "/admin/console_models/start": Permission.MODELS_MANAGE,
    "/admin/console_raw/request": Permission.DATA_RAW,
}
EXPECTED = {  # role -> console pages it may open
    "viewer": {"/admin/", "/admin/console_gateways/", "/admin/console_nodes/",
               "/admin/console_alarms/", "/admin/console_policies/", "/admin/console_models/"},
    "operator": {"/admin/", "/admin/console_gateways/", "/admin/console_nodes/",
                 "/admin/console_enrol/", "/admin/console_alarms/", "/admin/console_raw/",
                 "/admin/console_policies/", "/admin/console_models/"},
    "admin": set(PAGES),
}


def signed_in(app: Flask, kit, role: str):
    """A test client with a browser session of a new user having role."""
    with database.sessions(app).begin() as session:
        accounts.add_user(session, f"{role}-1", role, PASSWORD, kit.now_ms())
    client = app.test_client()
    response = client.post("/login", data={"user": f"{role}-1", "password": PASSWORD,
                                           "csrf_token": csrf_token(client, "/login")})
    assert response.status_code == 302
    return client


def csrf_token(client, path: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text)
    assert match, f"{path} has no CSRF token"
    return match.group(1)


def endpoint_of(app: Flask, path: str, method: str = "GET") -> str:
    adapter = app.url_map.bind("localhost")
    return str(adapter.match(path, method=method)[0])


def test_every_console_route_is_pinned_to_its_permission(app):
    console = {r.rule for r in app.url_map.iter_rules()
               if r.rule.startswith("/admin") and r.endpoint.partition(".")[2] != "static"}
    assert console == set(PAGES) | set(ACTIONS)
    for path, permission in PAGES.items():
        assert declared_permission(app, endpoint_of(app, path)) == permission
    for path, permission in ACTIONS.items():
        assert declared_permission(app, endpoint_of(app, path, "POST")) == permission


def test_anonymous_visitors_are_sent_to_sign_in(anonymous):
    for path in PAGES:
        response = anonymous.get(path)
        assert response.status_code == 302, path
        assert response.location.startswith("/login?next=/admin"), path


@pytest.mark.parametrize("role", sorted(EXPECTED))
def test_each_role_opens_exactly_the_pages_its_permissions_allow(app, kit, role):
    client = signed_in(app, kit, role)
    opened = set()
    for path in PAGES:
        response = client.get(path)
        assert response.status_code in (200, 403), (path, response.status_code)
        if response.status_code == 200:
            opened.add(path)
    assert opened == EXPECTED[role]


def test_a_viewer_reaching_for_admin_pages_is_counted_and_logged(app, kit, caplog):
    client = signed_in(app, kit, "viewer")
    before = _refusals(app, "forbidden")
    for path in ("/admin/console_users/", "/admin/console_tokens/", "/admin/console_audit/"):
        assert client.get(path).status_code == 403
    assert _refusals(app, "forbidden") == before + 3
    assert "refused to viewer" in caplog.text and "lacks" in caplog.text
    assert f'tandem_cloud_access_refusals_total{{reason="forbidden"}} {before + 3}' in \
        client.get("/metrics").text


def _refusals(app, reason: str) -> float:
    return metrics(app).registry.get_sample_value(
        "tandem_cloud_access_refusals_total", {"reason": reason}) or 0.0


def test_a_viewer_sees_no_menu_entry_for_admin_pages(app, kit):
    home = signed_in(app, kit, "viewer").get("/admin/").text
    for path in ("/admin/console_users/", "/admin/console_tokens/", "/admin/console_audit/"):
        assert path not in home
    assert "/admin/console_alarms/" in home


def test_forms_without_a_valid_csrf_token_are_refused(app, kit):
    client = signed_in(app, kit, "admin")
    label = {"device": "dev-1", "name": "overheat", "t_ms": "1000", "label": "fault"}
    for path, form in (("/admin/console_alarms/label", label),
                       ("/admin/console_audit/verify", {}),
                       ("/admin/console_policies/push", {"group": "g", "policy": "version = 1"}),
                       ("/admin/console_enrol/issue", {"gateway": "gw-new"}),
                       ("/admin/console_models/control", {"group": "g", "action": "abort"}),
                       ("/admin/console_models/rollback", {"version": "m-0001"}),
                       ("/admin/console_models/promote", {"version": "m-0001", "force": "1"}),
                       ("/admin/console_models/release", {"version": "m-0001"}),
                       ("/admin/console_models/start", {"group": "g", "version": "m-0001",
                                                        "canaries": "gw-1"}),
                       ("/admin/console_raw/request", {"device": "dev-1"})):
        for forged in ({}, {"csrf_token": "forged"}):
            response = client.post(path, data=form | forged)
            assert response.status_code == 400, (path, forged)
    assert _refusals(app, "csrf") == 20  # each one counted, for an alert on forged forms
    with database.read_session(app) as session:
        from tandem.cloud.labels import store as label_store
        assert label_store.every(session) == []


def test_pages_reference_no_other_host(app, kit):
    client = signed_in(app, kit, "admin")
    for path in PAGES:
        html = client.get(path).text
        links = re.findall(r'(?:src|href|action)="([^"]+)"', html)
        assert links, path
        external = [u for u in links if re.match(r"^(https?:)?//", u)]
        assert external == [], (path, external)
        for asset in (u for u in links if u.startswith("/admin/static/")):
            assert client.get(asset).status_code == 200, asset  # vendored, served locally
