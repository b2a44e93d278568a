"""Admin-only pages: users and their API tokens (read here; changed with `tandem-cloud user`)."""

from __future__ import annotations

from tandem.cloud.access import accounts
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


class UsersView(ConsoleView):
    """Users with their role and whether they may sign in."""

    permission = Permission.USERS_MANAGE

    @expose("/")
    def index(self) -> str:
        """The filtered, paginated user list."""
        query = text_filter()
        with database.read_session() as session:
            rows = [(u.name, u.role, u.active) for u in accounts.list_users(session)
                    if matches(query, u.name, u.role)]
        return self.page("console/users.html", page=paginate(rows, page_number()), q=query)


class ApiTokensView(ConsoleView):
    """API tokens by owner: name, created, expiry, revoked (never the secret)."""

    permission = Permission.USERS_MANAGE

    @expose("/")
    def index(self) -> str:
        """The filtered, paginated token list."""
        query = text_filter()
        with database.read_session() as session:
            rows = [(owner, t.name, t.created_ms, t.expires_ms, t.revoked_ms)
                    for owner, t in accounts.list_tokens(session)
                    if matches(query, owner, t.name)]
        return self.page("console/api_tokens.html", page=paginate(rows, page_number()),
                           q=query)
