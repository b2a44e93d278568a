"""The operator console: Flask-Admin under /admin, behind the cloud's login, roles and CSRF.

Every view is a `ConsoleView` (cloud/console/view.py) declaring the permission
its pages need; `init_app` declares their endpoints in the central permission
table, so the route x role test (tests/cloud/test_authz.py) covers them.
Flask-Admin's Bootstrap 4 theme serves its vendored assets from /admin/static:
nothing is fetched from a CDN.

Extension point: a later capability (models, rollouts) adds its views by
passing them in `extra` (or appending to `VIEWS`) before `init_app` runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from flask import Flask
from flask_admin import Admin
from flask_admin.theme import Bootstrap4Theme

from tandem.cloud.access.auth import current_principal
from tandem.cloud.console.accounts import ApiTokensView, UsersView
from tandem.cloud.console.audit import AuditView
from tandem.cloud.console.data import AlarmsView
from tandem.cloud.console.fleet import EnrolTokensView, GatewaysView, NodesView
from tandem.cloud.console.home import HomeView
from tandem.cloud.console.models import ModelsView
from tandem.cloud.console.policies import PoliciesView
from tandem.cloud.console.raw import RawRequestsView
from tandem.cloud.console.view import ConsoleView, declare_views

URL = "/admin"
ViewFactory = Callable[[], ConsoleView]

# (factory, menu category); a factory because Flask-Admin views belong to one app each
VIEWS: list[tuple[ViewFactory, str]] = [
    (lambda: GatewaysView(name="Gateways", endpoint="console_gateways"), "Fleet"),
    (lambda: NodesView(name="Nodes", endpoint="console_nodes"), "Fleet"),
    (lambda: EnrolTokensView(name="Enrolment tokens", endpoint="console_enrol"), "Fleet"),
    (lambda: AlarmsView(name="Charts and alarms", endpoint="console_alarms"), "Data"),
    (lambda: RawRequestsView(name="Raw snippets", endpoint="console_raw"), "Data"),
    (lambda: PoliciesView(name="Policies", endpoint="console_policies"), "Policies"),
    (lambda: ModelsView(name="Versions and rollouts", endpoint="console_models"), "Models"),
    (lambda: UsersView(name="Users", endpoint="console_users"), "Access"),
    (lambda: ApiTokensView(name="API tokens", endpoint="console_tokens"), "Access"),
    (lambda: AuditView(name="Audit log", endpoint="console_audit"), "Access"),
]


def init_app(app: Flask, extra: Sequence[tuple[ViewFactory, str]] = ()) -> Admin:
    """Mount the console on app at /admin and declare every one of its endpoints."""
    home = HomeView(name="Overview", url=URL, endpoint="console")
    admin = Admin(app, name="Tandem console", url=URL, index_view=home,
                  theme=Bootstrap4Theme(base_template="console/master.html"))
    views: list[ConsoleView] = []
    for factory, category in [*VIEWS, *extra]:
        view = factory()
        view.category = category
        admin.add_view(view)
        views.append(view)
    declare_views(app, [home, *views])
    app.jinja_env.globals["current_principal"] = current_principal
    app.jinja_env.filters["console_time"] = utc_text
    return admin


def utc_text(ms: int) -> str:
    """A Unix time in ms as the console shows it: UTC to the second."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
