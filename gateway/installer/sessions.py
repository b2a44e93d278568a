"""Sessions of the installer page: a random id in the cookie, a CSRF token bound to the session.

Every visitor gets a session (anonymous until login); login replaces it with
a fresh id (no fixation). The table is bounded: the least recently used
session goes first.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

COOKIE = "tandem_installer"
MAX_SESSIONS = 1024


@dataclass(slots=True)
class Session:
    """One browser's session."""

    id: str
    csrf: str
    expires: float
    user: str = ""  # "" until logged in
    created: float = field(default=0.0)

    @property
    def logged_in(self) -> bool:
        """True after a successful login."""
        return bool(self.user)

    def csrf_ok(self, token: str | None) -> bool:
        """Constant-time check of a submitted CSRF token."""
        return token is not None and hmac.compare_digest(token.encode(), self.csrf.encode())


class SessionTable:
    """Sessions by id, bounded, expiring `ttl_s` after creation."""

    def __init__(self, ttl_s: float, max_sessions: int = MAX_SESSIONS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.max_sessions = max_sessions
        self._clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, session_id: str | None) -> Session | None:
        """The live session with this id, else None."""
        session = self._sessions.get(session_id or "")
        if session is None:
            return None
        if session.expires <= self._clock():
            del self._sessions[session.id]
            return None
        self._sessions.move_to_end(session.id)
        return session

    def new(self, user: str = "") -> Session:
        """A fresh session (anonymous, or logged in as `user`)."""
        now = self._clock()
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32),
                          now + self.ttl_s, user, now)
        self._sessions[session.id] = session
        while len(self._sessions) > self.max_sessions:
            self._sessions.popitem(last=False)
        return session

    def drop(self, session_id: str) -> None:
        """End a session (logout, or replaced at login)."""
        self._sessions.pop(session_id, None)
