"""The InfluxDB time-series store: summaries and events through the v1 HTTP API.

Selected by `[timeseries] backend = "influxdb"`. Measurements and their keys
are described in `cloud/timeseries/lineprotocol.py`; each measurement is written into a
retention policy of its own (`summaries`, `events`), created or altered at
start-up from `summary_retention_days` / `event_retention_days` (0 = INF), so
InfluxDB expires old points itself.

InfluxDB cannot join the registry's SQL transaction (`shares_transaction` is
False). Ingest therefore writes the points first, before it opens the ledger
transaction (so no SQL lock is held while InfluxDB is slow or retried), and
commits the ledger entry (gateway, seq) afterwards. A
crash or failure between the two leaves points without a ledger entry; the
gateway, having had no 200, resends the batch, and because a point's key is
its series plus timestamp, the second write overwrites the first with the
same values: no double counting. A rolled-back ledger transaction does not
remove points already written, which is why writes must be idempotent.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine

from tandem.cloud.config import CloudConfig, TimeSeriesConfig
from tandem.cloud.errors import RecordsRefused, StorageUnavailable
from tandem.cloud.timeseries.influxhttp import InfluxHTTP, Row
from tandem.cloud.timeseries.lineprotocol import (
    EVENT,
    MAX_TIME_MS,
    SUMMARY,
    event_line,
    identifier,
    string_literal,
    summary_line,
    tag_value,
    untag,
)
from tandem.cloud.timeseries.queries import EventQuery, SummaryQuery
from tandem.cloud.timeseries.rollup import StoredEvent, StoredSummary
from tandem.wire.batch import Event, Record, Summary

log = logging.getLogger(__name__)

RETENTION_POLICIES = {SUMMARY: "summaries", EVENT: "events"}
_SUMMARY_COLUMNS = ("gateway", "device", "channel", "t1", "n", "min", "max", "mean", "last")
_EVENT_COLUMNS = ("gateway", "device", "name", "severity", "values")
_T = TypeVar("_T")
_MEAN_SCALE = 4_294_967_296.0  # 2^32 > any n: exact scaling, see _rollup_select


class InfluxTimeSeries:
    """Summaries and events in an InfluxDB database, one retention policy per measurement."""

    shares_transaction = False

    def __init__(self, config: CloudConfig, engine: Engine | None = None,
                 http: InfluxHTTP | None = None) -> None:
        ts = config.timeseries
        self._config = ts
        self._http = http or InfluxHTTP(ts.url, ts.database, ts.username, ts.password,
                                        ts.timeout_s)
        self._db = identifier(ts.database)
        self._ready = False
        self._lock = threading.Lock()
        try:
            self._ensure_ready()
        except StorageUnavailable as exc:
            # Start anyway: the setup is retried before the first read or write.
            log.warning("InfluxDB not ready at start-up: %s", exc)

    def write(self, gateway: str, records: Sequence[Record], tx: Connection | None) -> None:
        """Write points now, before the caller's ledger transaction (tx is not used)."""
        _check_times(records)
        self._ensure_ready()
        summaries = [summary_line(gateway, r) for r in records if isinstance(r, Summary)]
        events = [event_line(gateway, r) for r in records if isinstance(r, Event)]
        if summaries:
            self._http.write(summaries, RETENTION_POLICIES[SUMMARY])
        if events:
            self._http.write(events, RETENTION_POLICIES[EVENT])

    def summaries(self, query: SummaryQuery) -> list[StoredSummary]:
        """Select in time order (ties as in SQL), merged per window_ms by InfluxDB if given."""
        if query.window_ms is not None:
            self._ensure_ready()
            found = self._http.query(_rollup_select(self._db, query, query.window_ms))
            merged = [m for series in found for m in _merged_summaries(series)]
            return sorted(merged, key=_summary_order)[:query.limit]
        rows = self._select_limited(lambda at: _summary_select(self._db, query, at), query.limit)
        return sorted((_stored_summary(r) for r in rows), key=_summary_order)[:query.limit]

    def events(self, query: EventQuery) -> list[StoredEvent]:
        """Select events in time order (ties by device, name)."""
        rows = self._select_limited(lambda at: _event_select(self._db, query, at), query.limit)
        return sorted((_stored_event(r) for r in rows), key=_event_order)[:query.limit]

    def iter_summaries(self, query: SummaryQuery) -> Iterator[StoredSummary]:
        """Every matching summary in time order, streamed (query.limit and window ignored)."""
        self._ensure_ready()
        rows = self._http.query_rows(_summary_select(self._db, query))
        yield from _sorted_ties((_stored_summary(r) for r in rows), _summary_order)

    def iter_events(self, query: EventQuery) -> Iterator[StoredEvent]:
        """Every matching event in time order, streamed (query.limit ignored)."""
        self._ensure_ready()
        rows = self._http.query_rows(_event_select(self._db, query))
        yield from _sorted_ties((_stored_event(r) for r in rows), _event_order)

    def prune(self, now_ms: int) -> dict[str, int]:
        """Nothing to do: the retention policies expire points (a shard group at a time)."""
        self._ensure_ready()
        return {}

    def check(self) -> None:
        """Ping the server."""
        self._http.ping()

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()

    def _select_limited(self, select: Callable[[int | None], str], limit: int) -> list[Row]:
        """Up to limit rows of select(None), plus every row tied with the last one's time.

        InfluxDB orders rows of equal time by series key, not by our key, so the
        rows at the cut are all fetched (select(t) selects time = t) and sorted later.
        """
        self._ensure_ready()
        rows = self._rows(f"{select(None)} LIMIT {limit}")
        if len(rows) < limit:
            return rows
        last = rows[-1][0]
        return [r for r in rows if r[0] != last] + self._rows(select(last))

    def _rows(self, statement: str) -> list[Row]:
        return [row for series in self._http.query(statement) for row in series["values"]]

    def _ensure_ready(self) -> None:
        """Create the database and retention policies once (retried until it succeeds)."""
        if self._ready:
            return
        with self._lock:
            if not self._ready:
                _create_schema(self._http, self._config)
                self._ready = True


def _create_schema(http: InfluxHTTP, ts: TimeSeriesConfig) -> None:
    db = identifier(ts.database)
    http.query(f"CREATE DATABASE {db}", modify=True)
    existing = {row[0]: row[1] for series in http.query(f"SHOW RETENTION POLICIES ON {db}")
                for row in series.get("values", [])}
    days = {SUMMARY: ts.summary_retention_days, EVENT: ts.event_retention_days}
    for measurement, policy in RETENTION_POLICIES.items():
        duration = f"{days[measurement]}d" if days[measurement] else "INF"
        verb = "ALTER" if policy in existing else "CREATE"
        replication = "" if verb == "ALTER" else " REPLICATION 1"
        http.query(f"{verb} RETENTION POLICY {identifier(policy)} ON {db} "
                   f"DURATION {duration}{replication}", modify=True)


def _check_times(records: Sequence[Record]) -> None:
    for r in records:
        t = r.t0_ms if isinstance(r, Summary) else r.t_ms
        if t > MAX_TIME_MS:
            raise RecordsRefused(f"time {t} ms is beyond what InfluxDB can store "
                                 f"(latest {MAX_TIME_MS} ms)")


def _source(db: str, measurement: str) -> str:
    return f"{db}.{identifier(RETENTION_POLICIES[measurement])}.{identifier(measurement)}"


def _summary_select(db: str, q: SummaryQuery, at_ms: int | None = None) -> str:
    where = _where([("device", q.device, True), ("channel", q.channel, True),
                    ("gateway", q.gateway, True)], q.start_ms, q.end_ms, at_ms)
    columns = ", ".join(identifier(c) for c in _SUMMARY_COLUMNS)
    return f"SELECT {columns} FROM {_source(db, SUMMARY)}{where}"


def _rollup_select(db: str, q: SummaryQuery, window_ms: int) -> str:
    """Summaries merged per window by InfluxDB (GROUP BY time), as rollup() merges them.

    The inner query weighs each mean by n / 2^32 (no overflow, as in SQL); InfluxDB's
    windows start at multiples of window_ms, like t0 - t0 % window_ms.
    """
    where = _where([("device", q.device, True), ("channel", q.channel, True),
                    ("gateway", q.gateway, True)], q.start_ms, q.end_ms, None)
    tags = '"gateway", "device", "channel"'
    inner = (f'SELECT "mean" * ("n" / {_MEAN_SCALE}) AS "w", "n", "min", "max", "t1", "last" '
             f"FROM {_source(db, SUMMARY)}{where} GROUP BY {tags}")
    return (f'SELECT sum("w") AS "w", sum("n") AS "n", min("min") AS "low", '
            f'max("max") AS "high", max("t1") AS "t1", last("last") AS "last" '
            f"FROM ({inner}){where} GROUP BY time({window_ms}ms), {tags} fill(none)")


def _merged_summaries(series: dict[str, Any]) -> Iterator[StoredSummary]:
    tags = series.get("tags", {})
    for t0, weighted, n, low, high, t1, last in series.get("values", []):
        mean = weighted / (n / _MEAN_SCALE)
        yield StoredSummary(untag(tags["gateway"]), Summary(
            device=untag(tags["device"]), channel=untag(tags["channel"]), t0_ms=t0,
            t1_ms=int(t1), count=int(n), minimum=float(low), maximum=float(high),
            mean=min(max(mean, low), high), last=float(last)))


def _event_select(db: str, q: EventQuery, at_ms: int | None = None) -> str:
    where = _where([("device", q.device, True), ("name", q.name, True),
                    ("gateway", q.gateway, True)], q.start_ms, q.end_ms, at_ms,
                   f'"severity" >= {q.min_severity}' if q.min_severity else None)
    columns = ", ".join(identifier(c) for c in _EVENT_COLUMNS)
    return f"SELECT {columns} FROM {_source(db, EVENT)}{where}"


def _where(matches: list[tuple[str, str | None, bool]], start: int | None, end: int | None,
           at: int | None, extra: str | None = None) -> str:
    """WHERE clause: equality on tags (encoded) or fields, the time range [start, end) or at."""
    terms = [f"{identifier(key)} = {string_literal(tag_value(v) if is_tag else v)}"
             for key, v, is_tag in matches if v is not None]
    if at is not None:
        terms.append(f"time = {at}ms")
    if start is not None:
        terms.append(f"time >= {start}ms")
    if end is not None:
        terms.append(f"time < {min(end, MAX_TIME_MS + 1)}ms")
    if extra:
        terms.append(extra)
    return " WHERE " + " AND ".join(terms) if terms else ""


def _stored_summary(row: Row) -> StoredSummary:
    t0, gateway, device, channel, t1, n, low, high, mean, last = row
    return StoredSummary(untag(gateway), Summary(
        device=untag(device), channel=untag(channel), t0_ms=t0, t1_ms=t1, count=n,
        minimum=float(low), maximum=float(high), mean=float(mean), last=float(last)))


def _stored_event(row: Row) -> StoredEvent:
    t, gateway, device, name, severity, values = row
    decoded = {k: float(v) for k, v in json.loads(values).items()}
    return StoredEvent(untag(gateway), Event(device=untag(device), name=untag(name), t_ms=t,
                                      severity=severity, values=decoded))


def _summary_order(p: StoredSummary) -> tuple[int, str, str, str, int]:
    return (p.summary.t0_ms, p.summary.device, p.summary.channel, p.gateway, p.summary.t1_ms)


def _event_order(p: StoredEvent) -> tuple[int, str, str, str]:
    return (p.event.t_ms, p.event.device, p.event.name, p.gateway)


def _sorted_ties(items: Iterator[_T], order: Callable[[_T], tuple[Any, ...]]) -> Iterator[_T]:
    """Re-sort runs of equal time (InfluxDB orders ties by series key, SQL by our key)."""
    run: list[_T] = []
    for item in items:
        if run and order(item)[0] != order(run[0])[0]:
            yield from sorted(run, key=order)
            run = []
        run.append(item)
    yield from sorted(run, key=order)
