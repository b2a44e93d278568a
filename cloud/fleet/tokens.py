"""Installer tokens and gateway groups: who may enrol which gateway, and where it belongs.

An installer token is printed once (`tdi_` + 43 url-safe characters) and
stored only as its SHA-256. It names the gateway it may enrol and the group
that gateway joins; it works once, before it expires. It authenticates as a
bearer token (cloud/access/auth.py, role "installer", permission gateway:enrol);
`consume` marks it used inside the enrolment's own transaction, so two
concurrent uses cannot both succeed.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import BigInteger, String, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from tandem.cloud.db.base import Base

TOKEN_PREFIX = "tdi_"
DEFAULT_GROUP = "default"
MAX_TTL_S = 30 * 24 * 3600


class EnrolTokenError(ValueError):
    """A token request that cannot be granted (bad name, ttl out of range)."""


class InstallerToken(Base):
    """One installer token, by hash."""

    __tablename__ = "installer_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    gateway: Mapped[str] = mapped_column(String(64))
    group: Mapped[str] = mapped_column(String(64))
    created_ms: Mapped[int] = mapped_column(BigInteger)
    expires_ms: Mapped[int] = mapped_column(BigInteger)
    used_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class GatewayGroup(Base):
    """The policy group a gateway belongs to (set at enrolment)."""

    __tablename__ = "gateway_groups"

    gateway: Mapped[str] = mapped_column(String(64), primary_key=True)
    group: Mapped[str] = mapped_column(String(64))


@dataclass(frozen=True, slots=True)
class Grant:
    """What a valid installer token allows."""

    token_hash: str
    gateway: str
    group: str


def create_token(session: Session, gateway: str, group: str, ttl_s: int,
                 now_ms: int) -> str:
    """A new token for gateway (joining group), valid ttl_s; the secret is returned only here."""
    for what, name in (("gateway", gateway), ("group", group)):
        if not name or len(name) > 64 or not all(c.isalnum() or c in "-_." for c in name):
            raise EnrolTokenError(f"{what} name {name!r}: use 1..64 letters, digits, '-_.'")
    if not 60 <= ttl_s <= MAX_TTL_S:
        raise EnrolTokenError(f"ttl must be 60 s..{MAX_TTL_S // 86400} days, got {ttl_s} s")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(InstallerToken(token_hash=token_hash(secret), gateway=gateway, group=group,
                               created_ms=now_ms, expires_ms=now_ms + ttl_s * 1000))
    return secret


def find_grant(session: Session, secret: str, now_ms: int) -> Grant | None:
    """The grant of an unused, unexpired token; None otherwise."""
    token = session.get(InstallerToken, token_hash(secret))
    if token is None or token.used_ms is not None or token.expires_ms <= now_ms:
        return None
    return Grant(token.token_hash, token.gateway, token.group)


def consume(session: Session, grant: Grant, now_ms: int) -> bool:
    """Mark the token used; False if another request used it first (or it expired)."""
    result = session.execute(update(InstallerToken).where(
        InstallerToken.token_hash == grant.token_hash, InstallerToken.used_ms.is_(None),
        InstallerToken.expires_ms > now_ms).values(used_ms=now_ms))
    return bool(getattr(result, "rowcount", 0))


def set_group(session: Session, gateway: str, group: str) -> None:
    """Put gateway in group."""
    row = session.get(GatewayGroup, gateway)
    if row is None:
        session.add(GatewayGroup(gateway=gateway, group=group))
    else:
        row.group = group


def group_of(session: Session, gateway: str) -> str:
    """The gateway's group (DEFAULT_GROUP if it was registered without enrolment)."""
    found = session.scalar(select(GatewayGroup.group).where(GatewayGroup.gateway == gateway))
    return found or DEFAULT_GROUP


def token_hash(secret: str) -> str:
    """What is stored of a token: its SHA-256, hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


def groups(session: Session) -> dict[str, list[str]]:
    """Every group that has gateways, with them (both sorted): what a form offers to pick."""
    found: dict[str, list[str]] = {}
    query = select(GatewayGroup.group, GatewayGroup.gateway).order_by(GatewayGroup.group,
                                                                      GatewayGroup.gateway)
    for group, gateway in session.execute(query):
        found.setdefault(group, []).append(gateway)
    return found
