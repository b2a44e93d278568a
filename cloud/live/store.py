"""Watched devices and their newest values per channel (two small tables in the registry database).

Kept in the database, not in a worker's memory, so that with several gunicorn
workers the post a gateway makes to one worker is what the operator's GET at
another returns. Both tables stay small: at most `MAX_WATCHED` watches, and
values only for watched devices (at most `MAX_CHANNELS` each), one row per
channel overwritten in place (an upsert that never goes back in time);
`prune` drops expired watches with their values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Float, String, delete, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from tandem.cloud.db.base import Base
from tandem.cloud.db.upsert import dialect_insert
from tandem.cloud.fleet.registry import Device
from tandem.wire.live import LiveUpdate, Watch

MAX_WATCHED = 1000
MAX_CHANNELS = 64


class LiveWatch(Base):
    """An operator watches device live until until_ms."""

    __tablename__ = "live_watches"

    device: Mapped[str] = mapped_column(String(64), primary_key=True)
    until_ms: Mapped[int] = mapped_column(BigInteger)
    watched_by: Mapped[str] = mapped_column(String(128))
    since_ms: Mapped[int] = mapped_column(BigInteger)


class LiveChannel(Base):
    """The newest value of one channel of a watched device, as its gateway sent it."""

    __tablename__ = "live_values"

    device: Mapped[str] = mapped_column(String(64), primary_key=True)
    channel: Mapped[str] = mapped_column(String(64), primary_key=True)
    gateway: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float)
    t_ms: Mapped[int] = mapped_column(BigInteger)
    received_ms: Mapped[int] = mapped_column(BigInteger)


@dataclass(frozen=True, slots=True)
class Stored:
    """What one live post did: values kept, and values left out (unwatched or over bounds)."""

    accepted: int
    skipped: int


class WatchLimit(Exception):
    """MAX_WATCHED devices are watched already."""


def watch(session: Session, device: str, until_ms: int, actor: str, now_ms: int) -> bool:
    """Watch device until until_ms; True when it was not watched before (an audited change)."""
    row = session.get(LiveWatch, device)
    if row is not None and row.until_ms > now_ms:
        row.until_ms = until_ms
        return False
    if row is None:
        if watched_count(session, now_ms) >= MAX_WATCHED:
            raise WatchLimit(f"{MAX_WATCHED} devices are watched already")
        session.add(LiveWatch(device=device, until_ms=until_ms, watched_by=actor,
                              since_ms=now_ms))
    else:
        row.until_ms, row.watched_by, row.since_ms = until_ms, actor, now_ms
    return True


def unwatch(session: Session, device: str, now_ms: int) -> bool:
    """Stop watching device and forget its values; True when it was watched."""
    row = session.get(LiveWatch, device)
    session.execute(delete(LiveChannel).where(LiveChannel.device == device))
    if row is None:
        return False
    session.delete(row)
    return row.until_ms > now_ms


def until(session: Session, device: str, now_ms: int) -> int | None:
    """When device's watch ends; None when it is not watched."""
    row = session.get(LiveWatch, device)
    return row.until_ms if row is not None and row.until_ms > now_ms else None


def watched_count(session: Session, now_ms: int) -> int:
    """Devices watched now."""
    query = select(func.count()).select_from(LiveWatch).where(LiveWatch.until_ms > now_ms)
    return int(session.scalar(query) or 0)


def prune(session: Session, now_ms: int) -> None:
    """Drop expired watches and the values of devices no longer watched."""
    session.execute(delete(LiveWatch).where(LiveWatch.until_ms <= now_ms))
    session.execute(delete(LiveChannel).where(
        LiveChannel.device.not_in(select(LiveWatch.device))))


def watched_of(session: Session, gateway: str, now_ms: int) -> list[Watch]:
    """The watched devices that gateway owns (what it should send)."""
    query = (select(LiveWatch.device, LiveWatch.until_ms)
             .join(Device, Device.device == LiveWatch.device)
             .where(Device.gateway == gateway, LiveWatch.until_ms > now_ms)
             .order_by(LiveWatch.device))
    return [Watch(device, until_ms) for device, until_ms in session.execute(query)]


def foreign(session: Session, gateway: str, devices: Sequence[str]) -> list[str]:
    """Those of devices that gateway does not own (unknown ones included)."""
    owned = set(session.scalars(select(Device.device).where(
        Device.device.in_(list(devices)), Device.gateway == gateway)))
    return sorted(set(devices) - owned)


def put(session: Session, gateway: str, update: LiveUpdate, now_ms: int) -> Stored:
    """Keep the newest value per channel of the watched devices in update (caller checked owner)."""
    watched = set(session.scalars(select(LiveWatch.device).where(
        LiveWatch.device.in_(list(update)), LiveWatch.until_ms > now_ms)))
    rows, skipped = [], 0
    for device, channels in update.items():
        if device not in watched:
            skipped += len(channels)
            continue
        known = set(session.scalars(select(LiveChannel.channel).where(
            LiveChannel.device == device)))
        room = MAX_CHANNELS - len(known)
        for name, value in channels.items():
            if name not in known:
                if room <= 0:
                    skipped += 1
                    continue
                room -= 1
            rows.append({"device": device, "channel": name, "gateway": gateway,
                         "value": value.value, "t_ms": value.t_ms, "received_ms": now_ms})
    if rows:
        session.execute(_newer_wins(session), rows)
    return Stored(len(rows), skipped)


def _newer_wins(session: Session) -> Any:
    """Upsert one channel's value unless the stored one is of a later reading."""
    table = LiveChannel.__table__
    stmt = dialect_insert(session.connection(), table)  # type: ignore[arg-type]
    return stmt.on_conflict_do_update(
        index_elements=["device", "channel"],
        set_={name: stmt.excluded[name] for name in ("gateway", "value", "t_ms", "received_ms")},
        where=table.c.t_ms <= stmt.excluded.t_ms)


def latest(session: Session, device: str) -> Sequence[LiveChannel]:
    """Device's newest value per channel, by channel name."""
    return session.scalars(select(LiveChannel).where(LiveChannel.device == device)
                           .order_by(LiveChannel.channel)).all()
