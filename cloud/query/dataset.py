"""Training datasets: summaries labelled with the events that fell in their window (no I/O).

A labelled row is one summary plus the events of the same device whose time
t lies in the summary's window [t0, t1): their names (in time order) and the
highest severity among them. Rows stream: summaries arrive in t0 order and
events in t order, and only the events still inside an open window are held.
"""

from __future__ import annotations

import csv
import io
import json
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from tandem.cloud.timeseries.rollup import StoredEvent, StoredSummary

CSV_COLUMNS = ("gateway", "device", "channel", "t0", "t1", "n", "min", "max", "mean", "last",
               "labels", "max_severity")
LABEL_SEPARATOR = ";"
# A spreadsheet runs a cell starting with one of these as a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True, slots=True)
class LabelledSummary:
    """A summary and the events inside its window."""

    point: StoredSummary
    labels: tuple[StoredEvent, ...]

    def record(self) -> dict[str, object]:
        """The row as a JSON-ready mapping; max_severity is None without labels."""
        s = self.point.summary
        return {"gateway": self.point.gateway, "device": s.device, "channel": s.channel,
                "t0": s.t0_ms, "t1": s.t1_ms, "n": s.count, "min": s.minimum,
                "max": s.maximum, "mean": s.mean, "last": s.last,
                "labels": [e.event.name for e in self.labels],
                "max_severity": max((e.event.severity for e in self.labels), default=None)}


def label(summaries: Iterable[StoredSummary],
          events: Iterable[StoredEvent]) -> Iterator[LabelledSummary]:
    """Attach to each summary the events of its device with t0 <= t < t1 (inputs time-ordered)."""
    upcoming = iter(events)
    pending: deque[StoredEvent] = deque()  # events not yet before every later window
    following: StoredEvent | None = next(upcoming, None)
    for point in summaries:
        s = point.summary
        while pending and pending[0].event.t_ms < s.t0_ms:
            pending.popleft()  # t0 only grows: no later summary can include it
        while following is not None and following.event.t_ms < s.t1_ms:
            if following.event.t_ms >= s.t0_ms:
                pending.append(following)
            following = next(upcoming, None)
        inside = tuple(e for e in pending
                       if e.event.device == s.device and e.event.t_ms < s.t1_ms)
        yield LabelledSummary(point, inside)


def jsonl(rows: Iterable[LabelledSummary]) -> Iterator[str]:
    """One JSON object per line."""
    for row in rows:
        yield json.dumps(row.record(), separators=(",", ":")) + "\n"


def csv_lines(rows: Iterable[LabelledSummary]) -> Iterator[str]:
    """A header line, then one CSV line per row; labels joined by ';'."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")

    def line(values: Iterable[object]) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(values)
        return buffer.getvalue()

    yield line(CSV_COLUMNS)
    for row in rows:
        record = row.record()
        record["labels"] = LABEL_SEPARATOR.join(e.event.name for e in row.labels)
        record["max_severity"] = "" if record["max_severity"] is None else record["max_severity"]
        yield line(inert(record[c]) for c in CSV_COLUMNS)


def inert(value: object) -> object:
    """value, with a text cell that a spreadsheet would run as a formula prefixed by '."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value
