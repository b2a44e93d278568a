"""The gateway's Prometheus metrics, on a registry of its own (one per gateway instance)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector


def _registry() -> CollectorRegistry:
    return CollectorRegistry(auto_describe=True)


@dataclass
class GatewayMetrics:
    """Every metric the gateway exports; layers receive this object, not globals."""

    registry: CollectorRegistry = field(default_factory=_registry)

    def __post_init__(self) -> None:
        r = self.registry
        self.reports = Counter("tandem_gw_reports", "Reading reports accepted from nodes",
                               registry=r)
        self.readings = Counter("tandem_gw_readings", "Channel readings taken in", registry=r)
        self.summaries = Counter("tandem_gw_summaries", "Window summaries filed", registry=r)
        self.summaries_dropped = Counter("tandem_gw_summaries_dropped",
                                         "Summaries lost because the outbox stayed full",
                                         registry=r)
        self.outbox_records = Gauge("tandem_gw_outbox_records", "Records waiting in the outbox",
                                    registry=r)
        self.outbox_batches = Gauge("tandem_gw_outbox_batches",
                                    "Sealed batches awaiting cloud confirmation", registry=r)
        self.uplink_batches = Counter("tandem_gw_uplink_batches", "Uplink attempts by result",
                                      ["result"], registry=r)
        self.uplink_records = Counter("tandem_gw_uplink_records",
                                      "Records confirmed by the cloud", registry=r)
        self.uplink_bytes = Counter("tandem_gw_uplink_bytes", "Envelope bytes sent uplink",
                                    registry=r)
        self.uplink_latency = Histogram("tandem_gw_uplink_seconds",
                                        "Round trip of one batch upload", registry=r)
        self.device_last_seen = Gauge("tandem_gw_device_last_seen_seconds",
                                      "Unix time of a device's last report", ["device"],
                                      registry=r)

    def export_counts(self, name: str, documentation: str,
                      snapshot: Callable[[], Mapping[str, int]]) -> None:
        """Export a layer's own counters (cause -> count), read at scrape time."""
        self.registry.register(_CauseCounters(name, documentation, snapshot))


class _CauseCounters(Collector):
    """A counter family labelled by cause, read from a snapshot function on each scrape."""

    def __init__(self, name: str, documentation: str,
                 snapshot: Callable[[], Mapping[str, int]]) -> None:
        self._name = name
        self._documentation = documentation
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self._name, self._documentation, labels=["cause"])
        for cause, count in sorted(self._snapshot().items()):
            family.add_metric([cause], count)
        yield family
