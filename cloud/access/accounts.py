"""Users and API tokens: who can sign in to the cloud, with which role.

Passwords are stored as argon2id hashes (cloud/access/passwords.py); a user without
one (automation) can only use API tokens. API tokens are 256 random bits,
shown once and stored as their SHA-256 (a fast hash is enough for a random
secret of that size); each may expire and can be revoked. A user's email and
a token's note are encrypted at rest (cloud/keys/encrypted.py). All times are
Unix milliseconds.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from tandem.cloud.access import passwords
from tandem.cloud.access.permissions import USER_ROLES
from tandem.cloud.db.base import Base
from tandem.cloud.keys.encrypted import EncryptedText

TOKEN_PREFIX = "tdm_"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


class AccountError(ValueError):
    """A user or token change that is refused (unknown name, duplicate, bad role)."""


class User(Base):
    """Someone (or some automation) that signs in; `role` is one of permissions.USER_ROLES."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str | None] = mapped_column(String(256), nullable=True)
    email: Mapped[str | None] = mapped_column(EncryptedText("users.email"), nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    # A browser session is valid only while it carries the current generation: bumping
    # it (sign-out, password, role or activation change) ends every session at once.
    session_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class ApiToken(Base):
    """A bearer token of a user, stored as the SHA-256 of the secret."""

    __tablename__ = "api_tokens"
    __table_args__ = (UniqueConstraint("user_id", "name", name="uq_token_user_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    note: Mapped[str | None] = mapped_column(EncryptedText("api_tokens.note"), nullable=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    expires_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    revoked_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

    def usable(self, now_ms: int) -> bool:
        """True unless revoked or expired."""
        return self.revoked_ms is None and (self.expires_ms is None or now_ms < self.expires_ms)


@dataclass(frozen=True, slots=True)
class TokenOwner:
    """Whom a presented token authenticates."""

    user: User
    token: ApiToken


def add_user(session: Session, name: str, role: str, password: str | None, now_ms: int,
             email: str | None = None) -> User:
    """Create an active user; password None makes a token-only (automation) user."""
    _check_name(name, "user")
    if role not in USER_ROLES:
        raise AccountError(f"role must be one of {', '.join(USER_ROLES)}, got {role!r}")
    if find_user(session, name) is not None:
        raise AccountError(f"user {name!r} exists")
    try:
        hashed = None if password is None else passwords.hash_password(password)
    except passwords.WeakPassword as exc:
        raise AccountError(str(exc)) from None
    user = User(name=name, role=role, password_hash=hashed, email=email, active=True,
                created_ms=now_ms)
    session.add(user)
    session.flush()
    return user


def find_user(session: Session, name: str) -> User | None:
    """The user called name, if any."""
    return session.scalar(select(User).where(User.name == name))


def list_users(session: Session) -> Sequence[User]:
    """All users by name."""
    return session.scalars(select(User).order_by(User.name)).all()


def set_active(session: Session, name: str, active: bool) -> bool:
    """Enable or disable a user (a disabled one's sessions and tokens stop working)."""
    user = _existing(session, name)
    changed = user.active != active
    user.active = active
    if changed:
        end_sessions(user)  # re-enabling must not revive a cookie from before
    return changed


def set_password(session: Session, name: str, password: str) -> None:
    """Give name a new password; their browser sessions end."""
    user = _existing(session, name)
    try:
        user.password_hash = passwords.hash_password(password)
    except passwords.WeakPassword as exc:
        raise AccountError(str(exc)) from None
    end_sessions(user)


def set_role(session: Session, name: str, role: str) -> bool:
    """Change name's role; their browser sessions end. False if it was already role."""
    if role not in USER_ROLES:
        raise AccountError(f"role must be one of {', '.join(USER_ROLES)}, got {role!r}")
    user = _existing(session, name)
    if user.role == role:
        return False
    user.role = role
    end_sessions(user)
    return True


def end_sessions(user: User) -> None:
    """Invalidate every browser session of user (the session generation moves on)."""
    user.session_generation = (user.session_generation or 0) + 1


@dataclass(frozen=True, slots=True)
class Credentials:
    """What checking a sign-in needs, read without holding any lock."""

    user_id: int
    name: str
    active: bool
    password_hash: str | None
    session_generation: int


def credentials(session: Session, name: str) -> Credentials | None:
    """name's credentials, if the user exists."""
    user = find_user(session, name)
    if user is None:
        return None
    return Credentials(user.id, user.name, user.active, user.password_hash,
                       user.session_generation or 0)


def password_matches(found: Credentials | None, password: str) -> bool:
    """True if found is an active user and password is theirs; as slow when found is None.

    Deliberately slow (argon2id): call it outside any database transaction.
    """
    stored = found.password_hash if found is not None else None
    return passwords.verify_password(stored, password) and found is not None and found.active


def rehash_if_weak(session: Session, found: Credentials, password: str) -> None:
    """Store a stronger hash of a verified password if its hash uses old parameters."""
    if found.password_hash is not None and passwords.needs_rehash(found.password_hash):
        user = session.get(User, found.user_id)
        if user is not None and user.password_hash == found.password_hash:
            user.password_hash = passwords.hash_password(password)


def create_token(session: Session, user_name: str, token_name: str, now_ms: int,
                 expires_ms: int | None = None, note: str | None = None) -> str:
    """Issue a token for user_name and return the secret (it is not stored; show it once)."""
    _check_name(token_name, "token")
    user = _existing(session, user_name)
    taken = session.scalar(select(ApiToken.id).where(ApiToken.user_id == user.id,
                                                     ApiToken.name == token_name))
    if taken is not None:
        raise AccountError(f"user {user_name!r} already has a token called {token_name!r}")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(user_id=user.id, name=token_name, token_hash=token_hash(secret),
                         note=note, created_ms=now_ms, expires_ms=expires_ms))
    session.flush()
    return secret


def revoke_token(session: Session, user_name: str, token_name: str, now_ms: int) -> bool:
    """Revoke a token; False if it already was."""
    user = _existing(session, user_name)
    token = session.scalar(select(ApiToken).where(ApiToken.user_id == user.id,
                                                  ApiToken.name == token_name))
    if token is None:
        raise AccountError(f"user {user_name!r} has no token called {token_name!r}")
    if token.revoked_ms is not None:
        return False
    token.revoked_ms = now_ms
    return True


def list_tokens(session: Session, user_name: str | None = None) -> Sequence[tuple[str, ApiToken]]:
    """(user name, token) pairs, optionally of one user."""
    query = select(User.name, ApiToken).join(User, ApiToken.user_id == User.id)
    if user_name is not None:
        query = query.where(User.name == user_name)
    rows = session.execute(query.order_by(User.name, ApiToken.name)).all()
    return [(name, token) for name, token in rows]


def resolve_token(session: Session, secret: str, now_ms: int) -> TokenOwner | None:
    """The active user and usable token that secret is, or None."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 128:
        return None
    digest = token_hash(secret)
    row = session.execute(select(User, ApiToken).join(User, ApiToken.user_id == User.id)
                          .where(ApiToken.token_hash == digest)).first()
    if row is None:
        return None
    user, token = row
    # the lookup was by hash already; compare again in constant time for good measure
    if not hmac.compare_digest(token.token_hash, digest):
        return None
    if not user.active or not token.usable(now_ms):
        return None
    return TokenOwner(user, token)


def token_hash(secret: str) -> str:
    """What is stored for a token secret."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _existing(session: Session, name: str) -> User:
    user = find_user(session, name)
    if user is None:
        raise AccountError(f"no user called {name!r}")
    return user


def _check_name(name: str, what: str) -> None:
    if not NAME.match(name):
        raise AccountError(f"{what} name must be 1..64 of A-Z a-z 0-9 . _ @ - "
                           f"(starting with a letter or digit), got {name!r}")
