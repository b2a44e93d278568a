"""What gateways report per model version: windows, scores, alarms, latency, errors, rollbacks."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import BigInteger, Float, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from tandem.cloud.db.base import Base

MAX_REPORTS = 16
MAX_EVENTS = 16


class ReportError(ValueError):
    """A report body that does not have the expected shape."""


class ModelReport(Base):
    """One gateway's figures for one model version over one report period (or an event)."""

    __tablename__ = "model_reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    gateway: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[str] = mapped_column(String(64), index=True)
    role: Mapped[str] = mapped_column(String(16))  # active | shadow | previous | event
    received_ms: Mapped[int] = mapped_column(BigInteger)
    windows: Mapped[int] = mapped_column(Integer)
    score_mean: Mapped[float] = mapped_column(Float)
    score_max: Mapped[float] = mapped_column(Float)
    alarms: Mapped[int] = mapped_column(Integer)
    errors: Mapped[int] = mapped_column(Integer)
    latency_p99_ms: Mapped[float] = mapped_column(Float)
    detail_json: Mapped[str] = mapped_column(Text)  # latency histogram, or the event


def record(session: Session, gateway: str, body: dict[str, Any], now_ms: int) -> int:
    """Store a gateway's report body; ReportError when it is malformed. Rows stored."""
    reports, events = body.get("reports"), body.get("events", [])
    if not isinstance(reports, list) or not isinstance(events, list) \
            or len(reports) > MAX_REPORTS or len(events) > MAX_EVENTS:
        raise ReportError(f"body needs reports (<= {MAX_REPORTS}) and events lists")
    rows = [_report_row(gateway, r, now_ms) for r in reports]
    rows += [_event_row(gateway, e, now_ms) for e in events]
    session.add_all(rows)
    return len(rows)


def _report_row(gateway: str, r: object, now_ms: int) -> ModelReport:
    try:
        assert isinstance(r, dict)
        return ModelReport(
            gateway=gateway, version=str(r["version"])[:64], role=str(r["role"])[:16],
            received_ms=now_ms, windows=int(r["windows"]), score_mean=float(r["score_mean"]),
            score_max=float(r["score_max"]), alarms=int(r["alarms"]), errors=int(r["errors"]),
            latency_p99_ms=float(r["latency_p99_ms"]),
            detail_json=json.dumps({"bounds_ms": [float(b) for b in r["latency_bounds_ms"]],
                                    "counts": [int(c) for c in r["latency"]]}))
    except (AssertionError, KeyError, TypeError, ValueError) as exc:
        raise ReportError(f"malformed report: {exc!r}") from None


def _event_row(gateway: str, e: object, now_ms: int) -> ModelReport:
    if not isinstance(e, dict) or not isinstance(e.get("version"), str):
        raise ReportError("an event needs a version")
    detail = {k: str(v)[:200] for k, v in e.items()}
    return ModelReport(gateway=gateway, version=e["version"][:64], role="event",
                       received_ms=now_ms, windows=0, score_mean=0.0, score_max=0.0, alarms=0,
                       errors=0, latency_p99_ms=0.0, detail_json=json.dumps(detail))


def reports(session: Session, version: str) -> Sequence[ModelReport]:
    """Every report and event about version, oldest first."""
    return session.scalars(select(ModelReport).where(ModelReport.version == version)
                           .order_by(ModelReport.id)).all()


def to_plain(row: ModelReport) -> dict[str, Any]:
    """A report as the API shows it."""
    return {"gateway": row.gateway, "version": row.version, "role": row.role,
            "received_ms": row.received_ms, "windows": row.windows,
            "score_mean": row.score_mean, "score_max": row.score_max, "alarms": row.alarms,
            "errors": row.errors, "latency_p99_ms": row.latency_p99_ms,
            "detail": json.loads(row.detail_json)}
