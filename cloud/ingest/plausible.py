"""Bounds a batch's records must keep before anything is stored (no I/O).

The wire format accepts any unsigned integer; the cloud refuses what no real
gateway sends and what its stores would mangle or fail on: a record stamped
after the batch was sent (t0 = 2^63, year 9999), a severity beyond one byte,
a count beyond a 32-bit column.
"""

from __future__ import annotations

from collections.abc import Sequence

from tandem.wire.batch import Event, Record, Sealed, Summary
from tandem.wire.raw import RawSnippet

MAX_SEVERITY = 255  # the gateway's rules use 0..3; one byte leaves room
MAX_COUNT = (1 << 31) - 1  # the SQL column is a 32-bit integer
DAY_MS = 86_400_000  # a summary's window may end a while after it was filed


class Implausible(ValueError):
    """A record outside the bounds; the message names the record and the field."""


def check_records(records: Sequence[Record], sent_ms: int, skew_ms: int) -> None:
    """Raise Implausible for the first record that breaks a bound."""
    latest = sent_ms + skew_ms
    for index, record in enumerate(records):
        problem = _problem(record, latest)
        if problem:
            raise Implausible(f"record {index}: {problem}")


def _problem(record: Record, latest: int) -> str:
    if isinstance(record, Summary):
        if record.count > MAX_COUNT:
            return f"n {record.count} > {MAX_COUNT}"
        if record.t1_ms > latest + DAY_MS:
            return f"t1 {record.t1_ms} ms is far after the batch was sent"
        return _time_problem("t0", record.t0_ms, latest)
    if isinstance(record, Event):
        if record.severity > MAX_SEVERITY:
            return f"sev {record.severity} > {MAX_SEVERITY}"
        return _time_problem("t", record.t_ms, latest)
    if isinstance(record, Sealed | RawSnippet):
        return _time_problem("t", record.t_ms, latest)
    return ""


def _time_problem(field: str, t_ms: int, latest: int) -> str:
    if t_ms > latest:
        return f"{field} {t_ms} ms is after the batch was sent ({latest} ms with skew)"
    return ""
