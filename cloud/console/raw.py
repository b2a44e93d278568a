"""Raw snippet requests: ask for a device's waveform from here, and see where each request stands.

Asking calls the API's own function (cloud/raw/routes.py `request_snippet`): the
same checks (known device, open-request limit), the same gateway choice, the
same audit event as POST /api/v1/raw-requests.
"""

from __future__ import annotations

from flask import flash, redirect, request, url_for
from sqlalchemy import select
from werkzeug.wrappers import Response

from tandem.cloud.access.permissions import Permission
from tandem.cloud.console.view import (
    ConsoleView,
    expose,
    matches,
    page_number,
    paginate,
    text_filter,
    utc_ms,
)
from tandem.cloud.db import engine as database
from tandem.cloud.errors import Rejection
from tandem.cloud.raw import routes as raw_api
from tandem.cloud.raw import store as raw_store
from tandem.cloud.timestamps import now_ms


class RawRequestsView(ConsoleView):
    """Raw snippet requests, newest first, and a form to make one."""

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
                         q=query, device=request.args.get("device", "")[:64])

    @expose("/request", ("POST",))
    def create(self) -> Response:
        """Ask the device's gateway for its snippet around the given time (UTC; empty: now)."""
        device = request.form.get("device", "").strip()
        around = request.form.get("around", "").strip()
        t_ms = utc_ms(around) if around else now_ms()
        try:
            if t_ms is None:
                raise Rejection(400, "bad_parameter", f"{around[:32]!r} is not a UTC date-time")
            made = raw_api.request_snippet(device, t_ms)
        except Rejection as refused:
            flash(f"no snippet requested: {refused.detail}", "error")
            return redirect(url_for(".index", device=device[:64]))
        flash(f"snippet of {device} requested from {made['gateway']} (request "
              f"{made['id']})", "success")
        return redirect(url_for(".index"))
