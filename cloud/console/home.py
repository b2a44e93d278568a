"""The console's first page: the fleet in numbers and the alarms of the last day."""

from __future__ import annotations

from flask_admin import AdminIndexView
from sqlalchemy import func, select

from tandem.cloud.access import auth
from tandem.cloud.access.permissions import Permission
from tandem.cloud.console.view import ConsoleView, expose
from tandem.cloud.db import engine as database
from tandem.cloud.fleet import registry
from tandem.cloud.timeseries import store as timeseries
from tandem.cloud.timeseries.queries import EventQuery
from tandem.cloud.timestamps import now_ms

DAY_MS = 86400_000


class HomeView(ConsoleView, AdminIndexView):  # type: ignore[misc]  # untyped base
    """Counts of gateways, nodes and the last day's alarms, each linking to its list."""

    permission = Permission.ACCOUNT_SELF

    @expose("/")
    def index(self) -> str:
        """The overview (what a principal may not read shows as a dash)."""
        principal = auth.current_principal()
        counts: dict[str, int | None] = {"gateways": None, "nodes": None, "alarms": None}
        if principal is not None and principal.can(Permission.FLEET_READ):
            with database.read_session() as session:
                counts["gateways"] = session.scalar(
                    select(func.count()).select_from(registry.Gateway))
                counts["nodes"] = session.scalar(
                    select(func.count()).select_from(registry.Device))
        if principal is not None and principal.can(Permission.DATA_READ):
            end = now_ms()
            counts["alarms"] = len(timeseries.store().events(
                EventQuery(start_ms=end - DAY_MS, end_ms=end)))
        return self.page("console/home.html", counts=counts, principal=principal)
