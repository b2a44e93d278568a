"""The console's view base: each view declares its permission, checked by cloud/access/auth.py.

Flask-Admin's own `is_accessible` is not used: the central before_request
hook denies by default, so a view's endpoints are declared in the permission
table like any other route (`declare_views`), and the route x role test covers them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from flask import Flask, request
from flask_admin import BaseView
from flask_admin import expose as admin_expose

from tandem.cloud.access import auth
from tandem.cloud.access.permissions import Permission

PER_PAGE = 50
T = TypeVar("T")
ViewFunction = TypeVar("ViewFunction", bound=Callable[..., Any])


def expose(url: str = "/", methods: tuple[str, ...] = ("GET",)
           ) -> Callable[[ViewFunction], ViewFunction]:
    """Flask-Admin's `expose`, typed (the library's decorator is not)."""
    decorate: Callable[[ViewFunction], ViewFunction] = admin_expose(url, methods)
    return decorate


class ConsoleView(BaseView):  # type: ignore[misc]  # flask_admin ships no types
    """A console view: `permission` covers its pages, `actions` names stricter endpoints."""

    permission: Permission = Permission.ACCOUNT_SELF
    actions: dict[str, Permission] = {}

    def page(self, template: str, **context: Any) -> str:
        """Render template in the console's layout (Flask-Admin's `render`, typed)."""
        return str(self.render(template, **context))

    def is_visible(self) -> bool:
        """Show the menu entry only to those who may open it."""
        principal = auth.current_principal()
        return principal is not None and principal.can(self.permission)


def declare_views(app: Flask, views: Sequence[ConsoleView]) -> None:
    """Declare every endpoint of views in the permission table; their pages redirect to /login."""
    by_blueprint = {view.endpoint: view for view in views}
    for rule in app.url_map.iter_rules():
        blueprint, _, function = rule.endpoint.partition(".")
        view = by_blueprint.get(blueprint)
        if view is None:
            continue
        if function == "static":
            auth.declare(app, rule.endpoint, auth.PUBLIC)  # Flask-Admin's vendored assets
        else:
            auth.declare(app, rule.endpoint, view.actions.get(function, view.permission))
    auth.LOGIN_PAGES.update(by_blueprint)


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a filtered list, and where it stands among the others."""

    items: Sequence[T]
    number: int
    pages: int
    total: int


def page_number() -> int:
    """The requested page (1 when absent or not a number)."""
    text = request.args.get("page", "1")
    return max(1, int(text)) if text.isascii() and text.isdigit() and len(text) < 7 else 1


def paginate(items: Sequence[T], number: int, per_page: int = PER_PAGE) -> Page[T]:
    """The number-th page (1-based, clamped) of items."""
    pages = max(1, -(-len(items) // per_page))
    number = min(number, pages)
    start = (number - 1) * per_page
    return Page(items[start:start + per_page], number, pages, len(items))


def text_filter() -> str:
    """The list filter typed by the operator (matched as a substring)."""
    return request.args.get("q", "")[:64].strip()


def matches(query: str, *fields: Any) -> bool:
    """True when query is empty or a substring of any field (case-insensitive)."""
    needle = query.lower()
    return not needle or any(needle in str(f).lower() for f in fields)


def utc_ms(text: str) -> int | None:
    """A datetime-local input's value ("YYYY-MM-DDTHH:MM[:SS]", read as UTC) in Unix ms."""
    try:
        moment = datetime.fromisoformat(text.strip()[:19])
    except ValueError:
        return None
    return int(moment.replace(tzinfo=UTC).timestamp() * 1000) if moment.tzinfo is None else None


def utc_input(ms: int) -> str:
    """Unix ms as a datetime-local input's value in UTC (the inverse of `utc_ms`)."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
