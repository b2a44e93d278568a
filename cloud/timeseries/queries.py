"""What a reader asks a time-series store for: plain filters, no I/O."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SummaryQuery:
    """Which summaries to return; None means no filter. Times are ms, end exclusive."""

    device: str | None = None
    channel: str | None = None
    gateway: str | None = None
    start_ms: int | None = None
    end_ms: int | None = None
    limit: int = 1000
    window_ms: int | None = None


@dataclass(frozen=True, slots=True)
class EventQuery:
    """Which events to return; None means no filter. Times are ms, end exclusive."""

    device: str | None = None
    name: str | None = None
    gateway: str | None = None
    start_ms: int | None = None
    end_ms: int | None = None
    min_severity: int = 0
    limit: int = 1000
