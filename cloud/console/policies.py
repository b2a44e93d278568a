"""Policies: push a new signed release to a group; each group's newest release and which
version every gateway applied (or refused, with its reason).

Pushing signs with the cloud's [policy] signing_key, as `tandem-cloud policy push`
does, and is audited in the same transaction.
"""

from __future__ import annotations

from pathlib import Path

from flask import current_app, flash, redirect, request, url_for
from werkzeug.wrappers import Response

from tandem.cloud.access.permissions import Permission
from tandem.cloud.audit import record as audit
from tandem.cloud.console.view import (
    ConsoleView,
    expose,
    matches,
    page_number,
    paginate,
    text_filter,
)
from tandem.cloud.db import engine as database
from tandem.cloud.keys.keyfiles import KeyFileError
from tandem.cloud.policy import store as policy_store
from tandem.cloud.policy.release import PolicyFileError, parse_policy_text, push
from tandem.cloud.timestamps import now_ms

MAX_POLICY_CHARS = 64_000
FORM_NAME = Path("policy.toml")  # how errors name the submitted text: policy.toml:LINE


class PoliciesView(ConsoleView):
    """Groups with their newest release; gateways with the version they applied or refused."""

    permission = Permission.POLICY_READ
    actions = {"push": Permission.POLICY_PUSH}

    @expose("/")
    def index(self) -> str:
        """Releases per group, and acknowledgements (filtered, paginated)."""
        query = text_filter()
        with database.read_session() as session:
            groups = list(policy_store.groups(session))
            acks = [(a.gateway, a.group, a.version, a.ok, a.reason, a.acked_ms)
                    for a in policy_store.acks(session) if matches(query, a.gateway, a.group)]
        return self.page("console/policies.html", groups=groups,
                         page=paginate(acks, page_number()), q=query)

    @expose("/push", ("POST",))
    def push(self) -> Response:
        """Validate the submitted policy, sign it as the group's next version, audit it."""
        group = request.form.get("group", "").strip()[:64]
        text = request.form.get("policy", "")
        try:
            if not group or len(text) > MAX_POLICY_CHARS:
                raise PolicyFileError(f"give a group and at most {MAX_POLICY_CHARS} chars")
            doc = parse_policy_text(FORM_NAME, text)
            with database.sessions().begin() as session:
                release = push(session, current_app.config["TANDEM"], group, doc, now_ms())
                audit.record(audit.POLICY_PUSH, session=session, detail={
                    "group": group, "version": release.version, "file": "console"})
        except (PolicyFileError, KeyFileError) as refused:
            current_app.logger.warning("policy push to %s refused: %s", group, refused)
            flash(f"policy not pushed: {refused}", "error")
            return redirect(url_for(".index"))
        flash(f"policy {group} v{release.version} published", "success")
        return redirect(url_for(".index"))
