"""Unix milliseconds: the one time unit of the wire format, the database and the API."""

from __future__ import annotations

import datetime as dt
import time


def now_ms() -> int:
    """The current Unix time in milliseconds."""
    return time.time_ns() // 1_000_000


def iso_utc(ms: int) -> str:
    """Unix milliseconds as an ISO 8601 UTC time to the second, for people."""
    return dt.datetime.fromtimestamp(int(ms) / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
