"""Raw-snippet requests and the snippets that answer them (tables in the registry database).

A request is `pending` until its gateway has fetched it (`sent`), then `done`
when the snippet arrives in a batch (in the ingest transaction), or `failed`
when the gateway says it cannot answer or `[raw] request_timeout_s` passes.
Snippets and finished requests are pruned after `[raw] retention_days`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import (
    BigInteger,
    Float,
    Integer,
    LargeBinary,
    String,
    Text,
    delete,
    func,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from tandem.cloud.db.base import Base
from tandem.cloud.fleet.registry import Device, Gateway
from tandem.wire.raw import RawSnippet

PENDING, SENT, DONE, FAILED = "pending", "sent", "done", "failed"
OPEN = (PENDING, SENT)


class RawRequest(Base):
    """An operator's request for one device's raw snippet around t_ms."""

    __tablename__ = "raw_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device: Mapped[str] = mapped_column(String(64), index=True)
    gateway: Mapped[str] = mapped_column(String(64), index=True)
    t_ms: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    detail: Mapped[str] = mapped_column(Text, default="")
    requested_by: Mapped[str] = mapped_column(String(128))
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)
    snippet_id: Mapped[int | None] = mapped_column(Integer, nullable=True)


class StoredSnippet(Base):
    """A raw snippet as a gateway uploaded it (int16 little-endian frames)."""

    __tablename__ = "raw_snippets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    gateway: Mapped[str] = mapped_column(String(64))
    device: Mapped[str] = mapped_column(String(64), index=True)
    t_ms: Mapped[int] = mapped_column(BigInteger)
    rate_hz: Mapped[int] = mapped_column(Integer)
    scale: Mapped[float] = mapped_column(Float)
    axes: Mapped[str] = mapped_column(String(3))
    samples: Mapped[bytes] = mapped_column(LargeBinary)
    request_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    received_ms: Mapped[int] = mapped_column(BigInteger)


def gateway_of(session: Session, device: str) -> str | None:
    """The active gateway that reported device most recently; None if none did."""
    query = (select(Device.gateway).join(Gateway, Gateway.name == Device.gateway)
             .where(Device.device == device, Gateway.status == "active")
             .order_by(Device.last_seen_ms.desc()).limit(1))
    return session.scalars(query).first()


def open_count(session: Session, device: str) -> int:
    """Requests for device not finished yet."""
    query = select(func.count()).select_from(RawRequest).where(
        RawRequest.device == device, RawRequest.status.in_(OPEN))
    return int(session.scalar(query) or 0)


def create(session: Session, device: str, gateway: str, t_ms: int, requested_by: str,
           now_ms: int) -> RawRequest:
    """A new pending request (its id is set on return)."""
    row = RawRequest(device=device, gateway=gateway, t_ms=t_ms, status=PENDING, detail="",
                     requested_by=requested_by, created_ms=now_ms, updated_ms=now_ms)
    session.add(row)
    session.flush()
    return row


def expire(session: Session, now_ms: int, timeout_ms: int) -> None:
    """Fail open requests older than timeout_ms."""
    for row in session.scalars(select(RawRequest).where(
            RawRequest.status.in_(OPEN), RawRequest.created_ms < now_ms - timeout_ms)):
        _finish(row, FAILED, f"not answered within {timeout_ms // 1000} s", now_ms)


def take_open(session: Session, gateway: str, now_ms: int) -> Sequence[RawRequest]:
    """The gateway's open requests, oldest first; the pending ones become sent."""
    rows = session.scalars(select(RawRequest).where(
        RawRequest.gateway == gateway, RawRequest.status.in_(OPEN))
        .order_by(RawRequest.id).limit(100)).all()
    for row in rows:
        if row.status == PENDING:
            row.status, row.updated_ms = SENT, now_ms
    return rows


def fail(session: Session, gateway: str, request_id: int, reason: str, now_ms: int) -> bool:
    """The gateway cannot answer request_id; False if it is not that gateway's open request."""
    row = session.get(RawRequest, request_id)
    if row is None or row.gateway != gateway or row.status not in OPEN:
        return False
    _finish(row, FAILED, reason, now_ms)
    return True


def write(session: Session, gateway: str, records: Iterable[object], received_ms: int) -> None:
    """Store the raw snippets among records and close the requests they answer (ingest tx)."""
    for record in records:
        if not isinstance(record, RawSnippet):
            continue
        request = session.get(RawRequest, record.request) if record.request else None
        if request is not None and (request.gateway != gateway or request.device != record.device
                                    or request.status == DONE):
            request = None  # not this gateway's to answer, or answered already
        if record.request and request is None:
            continue  # a repeated answer: keep the first
        row = StoredSnippet(gateway=gateway, device=record.device, t_ms=record.t_ms,
                            rate_hz=record.rate_hz, scale=record.scale, axes=record.axes,
                            samples=record.samples, request_id=record.request or None,
                            received_ms=received_ms)
        session.add(row)
        session.flush()
        if request is not None:
            request.snippet_id = row.id
            _finish(request, DONE, "", received_ms)


def get(session: Session, request_id: int) -> tuple[RawRequest, StoredSnippet | None] | None:
    """A request and, when done, its snippet."""
    row = session.get(RawRequest, request_id)
    if row is None:
        return None
    snippet = session.get(StoredSnippet, row.snippet_id) if row.snippet_id else None
    return row, snippet


def prune(session: Session, before_ms: int) -> dict[str, int]:
    """Delete snippets received and requests finished before before_ms; rows deleted."""
    snippets = session.execute(delete(StoredSnippet).where(
        StoredSnippet.received_ms < before_ms))
    requests = session.execute(delete(RawRequest).where(
        RawRequest.status.notin_(OPEN), RawRequest.updated_ms < before_ms))
    return {"raw_snippets": int(getattr(snippets, "rowcount", 0) or 0),
            "raw_requests": int(getattr(requests, "rowcount", 0) or 0)}


def _finish(row: RawRequest, status: str, detail: str, now_ms: int) -> None:
    row.status, row.detail, row.updated_ms = status, detail[:500], now_ms
