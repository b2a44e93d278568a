"""Operator labels: a device's span (or one of its alarms) judged fault, false alarm or normal.

Labels are the ground truth training joins with window features
(cloud/training/dataset.py). A label names either a range [start_ms, end_ms)
or an alarm (the event `alarm_name` at `alarm_t_ms`); an alarm label covers
the alarm's instant [alarm_t_ms, alarm_t_ms + 1). Labels are only added,
never edited: the newest label overlapping a window wins (`effective_for`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import BigInteger, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from tandem.cloud.db.base import Base

FAULT, FALSE_ALARM, NORMAL = "fault", "false_alarm", "normal"
KINDS = (FAULT, FALSE_ALARM, NORMAL)
MAX_LISTED = 1000


class LabelRow(Base):
    """One operator's judgement of a device's span or alarm."""

    __tablename__ = "labels"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device: Mapped[str] = mapped_column(String(64), index=True)
    channel: Mapped[str | None] = mapped_column(String(64), nullable=True)
    start_ms: Mapped[int] = mapped_column(BigInteger)
    end_ms: Mapped[int] = mapped_column(BigInteger)
    alarm_name: Mapped[str | None] = mapped_column(String(64), nullable=True)
    alarm_t_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    label: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(128))
    created_ms: Mapped[int] = mapped_column(BigInteger, index=True)


@dataclass(frozen=True, slots=True)
class Label:
    """A label as plain data (what the API returns and datasets join with)."""

    id: int
    device: str
    channel: str | None
    start_ms: int
    end_ms: int
    alarm_name: str | None
    alarm_t_ms: int | None
    label: str
    note: str
    created_by: str
    created_ms: int

    def overlaps(self, device: str, t0_ms: int, t1_ms: int, channel: str | None = None) -> bool:
        """True when this label speaks about device (and channel) within [t0_ms, t1_ms)."""
        if device != self.device or (self.channel is not None and channel is not None
                                     and channel != self.channel):
            return False
        return self.start_ms < t1_ms and t0_ms < self.end_ms


@dataclass(frozen=True, slots=True)
class NewLabel:
    """What an operator submits; `start_ms`/`end_ms` already derived from an alarm if needed."""

    device: str
    channel: str | None
    start_ms: int
    end_ms: int
    alarm_name: str | None
    alarm_t_ms: int | None
    label: str
    note: str


def add(session: Session, new: NewLabel, created_by: str, now_ms: int) -> Label:
    """Store one label; its id is set on return."""
    row = LabelRow(device=new.device, channel=new.channel, start_ms=new.start_ms,
                   end_ms=new.end_ms, alarm_name=new.alarm_name, alarm_t_ms=new.alarm_t_ms,
                   label=new.label, note=new.note, created_by=created_by, created_ms=now_ms)
    session.add(row)
    session.flush()
    return _plain(row)


def listed(session: Session, device: str | None = None, since_ms: int | None = None,
           until_ms: int | None = None, limit: int = MAX_LISTED) -> list[Label]:
    """Labels whose span overlaps [since_ms, until_ms), oldest first, at most limit."""
    query = select(LabelRow).order_by(LabelRow.id).limit(min(limit, MAX_LISTED))
    if device is not None:
        query = query.where(LabelRow.device == device)
    if since_ms is not None:
        query = query.where(LabelRow.end_ms > since_ms)
    if until_ms is not None:
        query = query.where(LabelRow.start_ms < until_ms)
    return [_plain(row) for row in session.scalars(query)]


def every(session: Session) -> list[Label]:
    """All labels, oldest first (dataset builds read them all)."""
    return [_plain(row) for row in session.scalars(select(LabelRow).order_by(LabelRow.id))]


def effective_for(labels: Sequence[Label], device: str, t0_ms: int, t1_ms: int,
                  channel: str | None = None) -> str | None:
    """The newest label overlapping device's window [t0_ms, t1_ms), or None if nobody judged it."""
    found = None
    for label in labels:
        if label.overlaps(device, t0_ms, t1_ms, channel):
            found = label.label  # ordered by id: a later judgement overrides
    return found


def _plain(row: LabelRow) -> Label:
    return Label(id=row.id, device=row.device, channel=row.channel, start_ms=row.start_ms,
                 end_ms=row.end_ms, alarm_name=row.alarm_name, alarm_t_ms=row.alarm_t_ms,
                 label=row.label, note=row.note, created_by=row.created_by,
                 created_ms=row.created_ms)
