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
        self.uplink_probes = Counter("tandem_gw_uplink_probes",
                                     "Reachability probes of an unreachable cloud, by result",
                                     ["result"], registry=r)
        self.uplink_records = Counter("tandem_gw_uplink_records",
                                      "Records confirmed by the cloud", registry=r)
        self.uplink_bytes = Counter("tandem_gw_uplink_bytes",
                                    "Bytes sent uplink (on the wire), by urgent/routine",
                                    ["kind"], registry=r)
        self.uplink_budget_exhausted = Gauge("tandem_gw_uplink_budget_exhausted",
                                             "1 while the daily routine budget is used up",
                                             registry=r)
        self.outbox_degraded = Gauge("tandem_gw_outbox_degraded",
                                     "1 while the outbox merges windows to stay in bounds",
                                     registry=r)
        self.uplink_latency = Histogram("tandem_gw_uplink_seconds",
                                        "Round trip of one batch upload", registry=r)
        self.device_last_seen = Gauge("tandem_gw_device_last_seen_seconds",
                                      "Unix time of a device's last report", ["device"],
                                      registry=r)
        self.quarantined = Counter("tandem_gw_quarantined_records",
                                   "Records kept aside because they could not be processed",
                                   ["reason"], registry=r)
        # Device ids in labels as the privacy policy shows them (pseudonyms when it says so).
        self.device_label: Callable[[str], str] = str
        self._reflex_metrics(r)

    # -- local reflex: features, rules, actions, inference ---------------------

    def _reflex_metrics(self, r: CollectorRegistry) -> None:
        fast = (2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 5e-2)
        self.rule_transitions = Counter("tandem_gw_rule_transitions",
                                        "Rules fired or cleared, by rule",
                                        ["rule", "transition"], registry=r)
        self.rule_eval_latency = Histogram("tandem_gw_rule_eval_seconds",
                                           "Features + inference + rule evaluation per report",
                                           buckets=fast, registry=r)
        self.action_latency = Histogram("tandem_gw_action_seconds",
                                        "Action run time (a stop: write + read-back)",
                                        ["action", "result"], buckets=fast, registry=r)
        self.rules_reloads = Counter("tandem_gw_rules_reloads", "Rules file reloads by result",
                                     ["result"], registry=r)
        self.rules_loaded = Gauge("tandem_gw_rules_loaded", "Rules in force", registry=r)
        self.events_unstored = Counter("tandem_gw_events_unstored",
                                       "Rule events the outbox refused", registry=r)
        self.inference_latency = Histogram("tandem_gw_inference_seconds",
                                           "One model invocation", buckets=fast, registry=r)
        self.model_info = Gauge("tandem_gw_model_info",
                                "1 for the model version loaded (sha-256 prefix)", ["version"],
                                registry=r)
        self.safety_reasserts = Counter("tandem_gw_safety_reasserts",
                                        "Safety actions tried again while their rule holds, "
                                        "by action and result", ["action", "result"],
                                        registry=r)
        self.reflex_faults = Counter("tandem_gw_reflex_faults",
                                     "Reports the reflex failed on (a bug; logged)", registry=r)
        self.feature_series = Gauge("tandem_gw_feature_series",
                                    "Feature windows held (device x channel)", registry=r)

    def set_device_label(self, label: Callable[[str], str]) -> None:
        """Label devices through label() from now on; series under the old labels go."""
        self.device_label = label
        self.device_last_seen.clear()

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
