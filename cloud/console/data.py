"""Data pages: a device's channels charted over a chosen range with its alarms, labelled here.

An alarm is an event the edge sent (cloud/ingest -> the time-series store's
events). Labelling one (confirmed fault / false alarm / normal) is how an
operator acknowledges it; the label goes through the label store of
cloud/labels and is audited in the same transaction, as through the API.
"""

from __future__ import annotations

from collections import defaultdict
from urllib.parse import urlencode

from flask import flash, redirect, request, url_for
from markupsafe import Markup
from werkzeug.wrappers import Response

from tandem.cloud.access.permissions import Permission
from tandem.cloud.audit import record as audit
from tandem.cloud.console import chart
from tandem.cloud.console.view import (
    ConsoleView,
    expose,
    page_number,
    paginate,
    utc_input,
    utc_ms,
)
from tandem.cloud.db import engine as database
from tandem.cloud.errors import Rejection
from tandem.cloud.labels import routes as label_api
from tandem.cloud.labels import store as label_store
from tandem.cloud.timeseries import store as timeseries
from tandem.cloud.timeseries.queries import EventQuery, SummaryQuery
from tandem.cloud.timeseries.rollup import StoredEvent
from tandem.cloud.timestamps import now_ms

RANGES_H = (1, 6, 24, 168, 720)  # the ranges an operator picks from, in hours
MAX_RANGE_MS = 366 * 24 * 3600_000  # a from/to range longer than a year is refused
MAX_POINTS = 2000
LABEL_NAMES = {label_store.FAULT: "confirmed fault", label_store.FALSE_ALARM: "false alarm",
               label_store.NORMAL: "normal"}


class AlarmsView(ConsoleView):
    """A device's channels and alarms over a range; alarms labelled in place."""

    permission = Permission.DATA_READ
    actions = {"label": Permission.LABELS_WRITE}

    @expose("/")
    def index(self) -> str:
        """Charts per channel of the chosen device, and its alarms with their labels."""
        device = request.args.get("device", "")[:64].strip()
        hours = _hours()
        start_ms, end_ms = _range(hours)
        events = timeseries.store().events(EventQuery(
            device=device or None, start_ms=start_ms, end_ms=end_ms, limit=MAX_POINTS))
        events.sort(key=lambda e: e.event.t_ms, reverse=True)
        with database.read_session() as session:
            labels = label_store.listed(session, device or None, start_ms, end_ms)
        judged = {(lb.device, lb.alarm_name, lb.alarm_t_ms): lb for lb in labels}
        charts = _charts(device, start_ms, end_ms, events) if device else []
        return self.page("console/alarms.html", device=device, hours=hours, ranges=RANGES_H,
                         start=utc_input(start_ms), end=utc_input(end_ms),
                         custom="start" in request.args,
                           charts=charts, page=paginate(events, page_number()), judged=judged,
                           kinds=LABEL_NAMES)

    @expose("/label", ("POST",))
    def label(self) -> Response:
        """Store the operator's judgement of one alarm, audited; back to the same page."""
        form = request.form
        try:
            t_ms = int(form.get("t_ms", ""))
        except ValueError:
            t_ms = -1
        body = {"device": form.get("device", ""), "label": form.get("label", ""),
                "alarm": {"name": form.get("name", ""), "t_ms": t_ms},
                "note": form.get("note", "")}
        try:
            new = label_api.parse(body)
        except Rejection as refused:
            flash(f"label not saved: {refused.detail}", "error")
            return redirect(url_for(".index", device=body["device"]))
        with database.sessions().begin() as session:
            stored = label_store.add(session, new, audit.request_actor(), now_ms())
            audit.record(label_api.LABEL_ADDED, session=session,
                         detail={"id": stored.id, "device": stored.device,
                                 "label": stored.label, "start": stored.start_ms,
                                 "end": stored.end_ms})
        flash(f"{new.alarm_name} on {new.device} labelled {LABEL_NAMES[new.label]}", "success")
        back = {"device": new.device, "hours": form.get("hours", "24"),
                **{k: form[k] for k in ("start", "end") if form.get(k)}}
        return redirect(f"{url_for('.index')}?{urlencode(back)}")


def _hours() -> int:
    """The chosen range in hours (24 unless one of RANGES_H was asked for)."""
    text = request.args.get("hours", "24")
    return int(text) if text in {str(h) for h in RANGES_H} else 24


def _range(hours: int) -> tuple[int, int]:
    """The chosen [start, end) in ms: the from/to inputs (UTC) when valid, else the last hours."""
    args = request.args
    if "start" in args or "end" in args:
        start, end = utc_ms(args.get("start", "")), utc_ms(args.get("end", ""))
        if start is not None and end is not None and 0 <= start < end <= start + MAX_RANGE_MS:
            return start, end
        flash("give a range as from < to (UTC), at most a year long; showing the last "
              f"{hours} h", "error")
    end_ms = now_ms()
    return end_ms - hours * 3600_000, end_ms


def _charts(device: str, start_ms: int, end_ms: int,
            events: list[StoredEvent]) -> list[tuple[str, Markup]]:
    """(channel, SVG) for each channel of device in range, alarms marked on every chart."""
    found = timeseries.store().summaries(SummaryQuery(
        device=device, start_ms=start_ms, end_ms=end_ms, limit=MAX_POINTS))
    by_channel: dict[str, list[chart.Point]] = defaultdict(list)
    for stored in found:
        s = stored.summary
        by_channel[s.channel].append(chart.Point((s.t0_ms + s.t1_ms) // 2, s.minimum, s.mean,
                                                 s.maximum))
    markers = [chart.Marker(e.event.t_ms, e.event.name) for e in events
               if e.event.device == device]
    # the x axis starts where data does: a node that began 5 minutes ago fills the width
    first = min([p.t_ms for ps in by_channel.values() for p in ps]
                + [m.t_ms for m in markers], default=start_ms)
    shown_from = max(start_ms, first - (end_ms - first) // 20)
    return [(channel, Markup(chart.render(sorted(points, key=lambda p: p.t_ms), markers,
                                          shown_from, end_ms, f"{device} {channel}")))
            for channel, points in sorted(by_channel.items())]
