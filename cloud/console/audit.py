"""The audit log, read-only, newest first, with a "verify chain" action (cloud/audit/chain.py)."""

from __future__ import annotations

from flask import flash, redirect, url_for
from sqlalchemy import ColumnElement, func, select, true
from werkzeug.wrappers import Response

from tandem.cloud.access.permissions import Permission
from tandem.cloud.audit import chain
from tandem.cloud.console.view import PER_PAGE, ConsoleView, Page, expose, page_number, text_filter
from tandem.cloud.db import engine as database


class AuditView(ConsoleView):
    """Audit rows by page (filtered by event or actor); verifying recomputes every hash."""

    permission = Permission.AUDIT_READ

    @expose("/")
    def index(self) -> str:
        """One page of audit rows, newest first."""
        query = text_filter()
        number = page_number()
        entry = chain.AuditEntry
        where: ColumnElement[bool] = true()
        if query:
            where = entry.event.contains(query) | entry.actor.contains(query)
        with database.read_session() as session:
            total = session.scalar(select(func.count()).select_from(entry).where(where)) or 0
            pages = max(1, -(-total // PER_PAGE))
            number = min(number, pages)
            rows = session.scalars(select(entry).where(where).order_by(entry.seq.desc())
                                   .offset((number - 1) * PER_PAGE).limit(PER_PAGE)).all()
            shown = [(r.seq, r.at_ms, r.event, r.actor, r.detail) for r in rows]
        return self.page("console/audit.html", page=Page(shown, number, pages, total), q=query)

    @expose("/verify", ("POST",))
    def verify(self) -> Response:
        """Recompute the chain and say whether it holds, or the first bad row."""
        with database.read_session() as session:
            verdict = chain.verify(session)
        if verdict.ok:
            flash(f"audit chain verified: {verdict.rows} rows, head {verdict.head[:16]}…",
                  "success")
        else:
            flash(f"audit chain broken at row {verdict.bad_seq}: {verdict.problem}", "error")
        return redirect(url_for(".index"))
