"""Unix milliseconds: the one time unit of the wire format, the database and the API."""

from __future__ import annotations

import datetime as dt

from tandem.wire.clock import now_ms

__all__ = ["iso_utc", "now_ms"]


def iso_utc(ms: int) -> str:
    """Unix milliseconds as an ISO 8601 UTC time to the second, for people."""
    return dt.datetime.fromtimestamp(int(ms) / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
