"""Policies: each group's newest signed release and which version every gateway applied.

Releases are signed with the policy key offline (`tandem-cloud policy push`);
the console shows their state rather than holding that key.
"""

from __future__ import annotations

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
from tandem.cloud.policy import store as policy_store


class PoliciesView(ConsoleView):
    """Groups with their newest release; gateways with the version they applied or refused."""

    permission = Permission.POLICY_READ

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
