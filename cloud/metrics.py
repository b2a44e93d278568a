"""Prometheus metrics of one app, in a registry of its own (so tests can build many apps).

Under gunicorn with several workers the values live in shared files
(cloud/serving/sharedmetrics.py) and `exposition` sums every worker's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import cast

from flask import Flask, current_app
from flask.sansio.app import App
from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess
from prometheus_client.registry import Collector

_EXTENSION = "tandem.metrics"


@dataclass(frozen=True)
class Metrics:
    """The counters and histograms the service updates."""

    registry: CollectorRegistry
    batches_accepted: Counter
    batches_rejected: Counter
    records_ingested: Counter
    ingest_seconds: Histogram
    slow_clients_closed: Counter
    refusals: Counter
    logins: Counter
    live_values: Counter
    access_refusals: Counter
    # Collectors that read shared state (the database) at scrape time: any worker answers
    # for all, so multiprocess mode shows them as they are (register with `scraped`).
    read_at_scrape: list[Collector] = field(default_factory=list)


def create_metrics() -> Metrics:
    """A fresh registry holding the service's metrics."""
    registry = CollectorRegistry()
    return Metrics(
        registry=registry,
        batches_accepted=Counter(
            "tandem_cloud_batches_accepted", "Uplink batches accepted, by outcome",
            ["outcome"], registry=registry),
        batches_rejected=Counter(
            "tandem_cloud_batches_rejected", "Uplink batches rejected, by reason",
            ["reason"], registry=registry),
        records_ingested=Counter(
            "tandem_cloud_records_ingested", "Records stored from uplink batches",
            registry=registry),
        ingest_seconds=Histogram(
            "tandem_cloud_ingest_seconds", "Time to handle one uplink batch request",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=registry),
        slow_clients_closed=Counter(
            "tandem_cloud_slow_clients_closed", "Connections closed for missing a deadline, "
            "by stage (handshake, header; body is a 400 answer)", ["stage"], registry=registry),
        refusals=Counter(
            "tandem_cloud_anonymous_refusals", "Refusals of unauthenticated requests (audited "
            "once per source and interval), by kind", ["kind"], registry=registry),
        logins=Counter(
            "tandem_cloud_logins", "Sign-in attempts, by outcome (ok, failed, throttled)",
            ["outcome"], registry=registry),
        live_values=Counter(
            "tandem_cloud_live_values", "Live values from gateways, by outcome (accepted; "
            "skipped: unwatched or over bounds; refused posts: invalid, foreign)", ["outcome"],
            registry=registry),
        access_refusals=Counter(
            "tandem_cloud_access_refusals", "Requests refused by the access check, by reason "
            "(unauthenticated, invalid_token, forbidden: a role without the permission, csrf: "
            "a form without a valid token, undeclared: a route without a permission)",
            ["reason"], registry=registry),
    )


def init_app(app: Flask) -> None:
    """Give app its metrics."""
    app.extensions[_EXTENSION] = create_metrics()


def metrics(app: App | None = None) -> Metrics:
    """The metrics of app (default: the current app)."""
    target = app if app is not None else current_app
    return cast(Metrics, target.extensions[_EXTENSION])


def scraped(app: Flask, collector: Collector) -> None:
    """Show collector on /metrics, in one process or summed across gunicorn workers alike."""
    found = metrics(app)
    found.registry.register(collector)
    found.read_at_scrape.append(collector)


def exposition(app: App | None = None) -> CollectorRegistry:
    """What /metrics shows: every worker's metrics summed in multiprocess mode, else app's."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return metrics(app).registry
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    for collector in metrics(app).read_at_scrape:
        registry.register(collector)
    return registry
