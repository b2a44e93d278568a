"""The latest status and resources each gateway reported (a table in the registry database).

One row per gateway, overwritten by every report (its history goes to the
time-series store as summaries of the pseudo-device STATUS_DEVICE, so the
ordinary summary queries chart it). A gateway is unreachable when its last
report is older than `unreachable_after` report intervals.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import BigInteger, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from tandem.cloud.db.base import Base
from tandem.wire.batch import Summary
from tandem.wire.resources import (
    Resources,
    Status,
    resources_from_plain,
    resources_to_plain,
    status_from_plain,
    status_to_plain,
)

STATUS_DEVICE = "_status"   # the pseudo-device a gateway's status history is filed under
CHARTED = ("load", "memory_used_bytes", "queue_length", "queued_compute", "running",
           "outbox_depth", "rtt_s", "bandwidth_bps")


class GatewayStatus(Base):
    """A gateway's last status report and the resources it described with it."""

    __tablename__ = "gateway_status"

    gateway: Mapped[str] = mapped_column(String(64), primary_key=True)
    resources_json: Mapped[str] = mapped_column(Text)
    status_json: Mapped[str] = mapped_column(Text)
    interval_ms: Mapped[int] = mapped_column(BigInteger)
    received_ms: Mapped[int] = mapped_column(BigInteger)


@dataclass(frozen=True, slots=True)
class Latest:
    """What the cloud knows of one gateway now."""

    gateway: str
    resources: Resources
    status: Status
    interval_ms: int
    received_ms: int

    def reachable(self, now_ms: int, unreachable_after: int) -> bool:
        """False once `unreachable_after` report intervals passed without a report."""
        return now_ms - self.received_ms <= unreachable_after * self.interval_ms


def record(session: Session, resources: Resources, status: Status, interval_ms: int,
           now_ms: int) -> None:
    """Keep this report as the gateway's latest (inside the caller's transaction)."""
    row = session.get(GatewayStatus, status.place)
    if row is None:
        row = GatewayStatus(gateway=status.place)
        session.add(row)
    row.resources_json = json.dumps(resources_to_plain(resources))
    row.status_json = json.dumps(status_to_plain(status))
    row.interval_ms, row.received_ms = interval_ms, now_ms


def latest(session: Session, gateway: str | None = None) -> list[Latest]:
    """The latest state of one gateway, or of every gateway that ever reported."""
    query = select(GatewayStatus).order_by(GatewayStatus.gateway)
    if gateway is not None:
        query = query.where(GatewayStatus.gateway == gateway)
    return [Latest(r.gateway, resources_from_plain(json.loads(r.resources_json)),
                   status_from_plain(json.loads(r.status_json)), r.interval_ms, r.received_ms)
            for r in session.scalars(query)]


def history_records(status: Status, interval_ms: int) -> list[Summary]:
    """The report as one-sample summaries, for the time-series store."""
    plain = status_to_plain(status)
    return [Summary(STATUS_DEVICE, name, status.t_ms, status.t_ms + interval_ms, 1,
                    float(plain[name]), float(plain[name]), float(plain[name]),
                    float(plain[name]))
            for name in CHARTED]
