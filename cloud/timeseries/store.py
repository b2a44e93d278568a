"""Where measurements live: the TimeSeriesStore interface and the backends that implement it.

A store is chosen by `[timeseries] backend` from BACKENDS: "sqlite" keeps
two tables in the registry's own SQL database (`cloud/timeseries/sql.py`; on
PostgreSQL too, despite the name), "influxdb" talks to InfluxDB over the v1
HTTP API (`cloud/timeseries/influx.py`). Another backend is one new module with a class
taking (config, engine) and one new entry in that dict.

Writes are idempotent: a summary is keyed by (gateway, device, channel, t0_ms)
and an event by (gateway, device, name, t_ms), and a second write of the same key
overwrites the first. So a replayed batch changes nothing, even where the
store cannot share the ledger's transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol, cast

from flask import Flask, current_app
from sqlalchemy import Connection, Engine

from tandem.cloud.config import CloudConfig
from tandem.cloud.timeseries.influx import InfluxTimeSeries
from tandem.cloud.timeseries.queries import EventQuery, SummaryQuery
from tandem.cloud.timeseries.rollup import StoredEvent, StoredSummary
from tandem.cloud.timeseries.sql import SQLiteTimeSeries
from tandem.wire.batch import Record

__all__ = ["BACKENDS", "EventQuery", "SummaryQuery", "TimeSeriesStore", "init_app", "open_store",
           "store"]

_EXTENSION = "tandem.timeseries"


class TimeSeriesStore(Protocol):
    """Writes and reads measurements (window summaries and events)."""

    # True: write() joins the registry's SQL transaction (tx), so points and ledger
    # commit together. False: a remote store; ingest writes its points before it opens
    # the ledger transaction (tx is None), so no SQL lock is held during remote I/O.
    shares_transaction: bool

    def write(self, gateway: str, records: Sequence[Record], tx: Connection | None) -> None:
        """Upsert records from gateway (through tx when the store shares the transaction)."""
        ...

    def summaries(self, query: SummaryQuery) -> list[StoredSummary]:
        """Summaries matching query in time order, merged per window_ms if given."""
        ...

    def events(self, query: EventQuery) -> list[StoredEvent]:
        """Events matching query in time order."""
        ...

    def iter_summaries(self, query: SummaryQuery) -> Iterator[StoredSummary]:
        """Every summary matching query in time order, streamed (limit and window ignored)."""
        ...

    def iter_events(self, query: EventQuery) -> Iterator[StoredEvent]:
        """Every event matching query in time order, streamed (limit ignored)."""
        ...

    def prune(self, now_ms: int) -> dict[str, int]:
        """Delete what is older than the configured retention; rows deleted per measurement."""
        ...

    def check(self) -> None:
        """Raise (StorageUnavailable, SQLAlchemyError or OSError) if the store does not answer."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


BACKENDS: dict[str, Callable[[CloudConfig, Engine], TimeSeriesStore]] = {
    "sqlite": SQLiteTimeSeries,
    "influxdb": InfluxTimeSeries,
}


def open_store(config: CloudConfig, engine: Engine) -> TimeSeriesStore:
    """The configured backend's store; ConfigError naming the field for an unknown backend."""
    try:
        backend = BACKENDS[config.timeseries.backend]
    except KeyError:
        raise config.error("timeseries.backend", f"unknown backend "
                           f"{config.timeseries.backend!r}; choose from "
                           f"{', '.join(sorted(BACKENDS))}") from None
    return backend(config, engine)


def init_app(app: Flask, config: CloudConfig, engine: Engine) -> None:
    """Open the configured time-series backend for app."""
    app.extensions[_EXTENSION] = open_store(config, engine)


def store(app: Flask | None = None) -> TimeSeriesStore:
    """The time-series store of app (default: the current app)."""
    target = app if app is not None else current_app
    return cast(TimeSeriesStore, target.extensions[_EXTENSION])
