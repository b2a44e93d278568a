"""Raw snippet requests: who asked for which device's waveform, and where each request stands."""

from __future__ import annotations

from sqlalchemy import select

from tandem.cloud.access.permissions import Permission
from tandem.cloud.console.view import (
    ConsoleView,
    expose,
    matches,
    page_number,
    paginate,
    text_filter,
)
from tandem.cloud.db import engine as database
from tandem.cloud.raw import store as raw_store


class RawRequestsView(ConsoleView):
    """Raw snippet requests, newest first (made through POST /api/v1/raw-requests)."""

    permission = Permission.DATA_RAW

    @expose("/")
    def index(self) -> str:
        """The filtered, paginated request list."""
        query = text_filter()
        row = raw_store.RawRequest
        with database.read_session() as session:
            found = session.scalars(select(row).order_by(row.id.desc())).all()
            rows = [(r.id, r.device, r.gateway, r.t_ms, r.status, r.detail, r.requested_by)
                    for r in found if matches(query, r.device, r.gateway, r.status)]
        return self.page("console/raw_requests.html", page=paginate(rows, page_number()),
                           q=query)
