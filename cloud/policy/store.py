"""Signed policy releases per group (monotonic versions) and each gateway's acknowledgement."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Boolean,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    func,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from tandem.cloud.db.base import Base


class PolicyRow(Base):
    """One signed release: the envelope exactly as gateways receive it."""

    __tablename__ = "policy_releases"
    __table_args__ = (UniqueConstraint("group", "version", name="uq_policy_group_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    group: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(BigInteger)
    issued_ms: Mapped[int] = mapped_column(BigInteger)
    digest: Mapped[str] = mapped_column(String(64))
    envelope: Mapped[bytes] = mapped_column(LargeBinary)


class PolicyAck(Base):
    """The last word of a gateway about its policy: applied version, or a refusal."""

    __tablename__ = "policy_acks"

    gateway: Mapped[str] = mapped_column(String(64), primary_key=True)
    group: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(BigInteger)
    ok: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(String(400))
    acked_ms: Mapped[int] = mapped_column(BigInteger)


@dataclass(frozen=True, slots=True)
class GroupStatus:
    """A group's newest release."""

    group: str
    version: int
    issued_ms: int
    digest: str


def latest_version(session: Session, group: str) -> int:
    """The group's newest version (0 when it has none)."""
    found = session.scalar(select(func.max(PolicyRow.version)).where(PolicyRow.group == group))
    return int(found or 0)


def add_release(session: Session, group: str, version: int, issued_ms: int, digest: str,
                envelope: bytes) -> None:
    """Store a release (the unique (group, version) refuses a concurrent duplicate)."""
    session.add(PolicyRow(group=group, version=version, issued_ms=issued_ms, digest=digest,
                          envelope=envelope))
    session.flush()


def current(session: Session, group: str) -> PolicyRow | None:
    """The group's newest release."""
    return session.scalars(select(PolicyRow).where(PolicyRow.group == group)
                           .order_by(PolicyRow.version.desc()).limit(1)).first()


def groups(session: Session) -> Sequence[GroupStatus]:
    """The newest release of every group."""
    rows = session.scalars(select(PolicyRow).order_by(PolicyRow.group,
                                                      PolicyRow.version.desc())).all()
    newest: dict[str, GroupStatus] = {}
    for row in rows:
        newest.setdefault(row.group, GroupStatus(row.group, row.version, row.issued_ms,
                                                 row.digest))
    return list(newest.values())


def record_ack(session: Session, gateway: str, group: str, version: int, ok: bool,
               reason: str, now_ms: int) -> None:
    """Remember the gateway's latest acknowledgement or refusal."""
    row = session.get(PolicyAck, gateway)
    if row is None:
        session.add(PolicyAck(gateway=gateway, group=group, version=version, ok=ok,
                              reason=reason[:400], acked_ms=now_ms))
        return
    row.group, row.version, row.ok, row.reason, row.acked_ms = (group, version, ok,
                                                                reason[:400], now_ms)


def acks(session: Session) -> Sequence[PolicyAck]:
    """Every gateway's latest acknowledgement."""
    return session.scalars(select(PolicyAck).order_by(PolicyAck.gateway)).all()
