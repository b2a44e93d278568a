"""Builds the local control loop from the gateway config: reflex, rules reload, model watch.

The runtime needs three things from it: the `reflex` (its `take` observes the ingress),
the background tasks to start, and `close()` after the pipeline has drained.
Without `[rules] file` and `[inference] model` there is nothing to build.
"""

from __future__ import annotations

import asyncio

from tandem.gateway.config import GatewayConfig
from tandem.gateway.inference.model import ScoringModel
from tandem.gateway.inference.slot import ModelSlot
from tandem.gateway.metrics import GatewayMetrics
from tandem.gateway.pipeline.summarise import RecordStore
from tandem.gateway.rules.actions import ActuatorPorts, NodeCommander
from tandem.gateway.rules.definitions import RuleSet
from tandem.gateway.rules.loader import load_rules
from tandem.gateway.rules.reflex import Offload, Reflex, ScoreSource
from tandem.gateway.rules.reload import RulesReloader
from tandem.gateway.supervisor import TaskFactory


class LocalControl:
    """The reflex and the watchers that keep its rules and model current."""

    def __init__(self, config: GatewayConfig, store: RecordStore, metrics: GatewayMetrics, *,
                 ports: ActuatorPorts | None = None, offload: Offload | None = None,
                 commander: NodeCommander | None = None) -> None:
        self.config = config
        self.metrics = metrics
        rules_file = config.rules.file
        ruleset = load_rules(rules_file) if rules_file is not None else RuleSet()
        self.model = ModelSlot(on_change=self._model_changed)
        inference = config.inference
        self.reflex = Reflex(ruleset, store, metrics, model=self.model, ports=ports,
                             score_source=ScoreSource(inference.channel, inference.hop),
                             offload=offload, commander=commander)
        self._sync_model_size(ruleset)
        self.reloader = RulesReloader(rules_file, self._install, self._reload_result) \
            if rules_file is not None else None
        metrics.export_counts("tandem_gw_feature_windows",
                              "Feature windows evicted (LRU) and readings suppressed (dead-band)",
                              lambda: self.reflex.bank.snapshot())

    @classmethod
    def from_config(cls, config: GatewayConfig, store: RecordStore, metrics: GatewayMetrics, *,
                    ports: ActuatorPorts | None = None, offload: Offload | None = None,
                    commander: NodeCommander | None = None) -> LocalControl | None:
        """The local control loop, or None when neither rules nor a model are configured.

        `ports` makes the emergency stops' controller connections (a configured Modbus
        bus's coordinator for its own address); `offload` runs them on the field-bus thread.
        `commander` delivers node_alarm commands (gateway/nodes/commands.py, served at GET /c).
        """
        if config.rules.file is None and config.inference.model is None:
            return None
        return cls(config, store, metrics, ports=ports, offload=offload, commander=commander)

    def tasks(self, stop: asyncio.Event) -> list[tuple[str, TaskFactory]]:
        """(name, coroutine) of the watchers to run until `stop`."""
        found: list[tuple[str, TaskFactory]] = []
        reloader, model = self.reloader, self.config.inference.model
        if reloader is not None:
            found.append(("rules-reload", lambda: reloader.run(stop, self.config.rules.poll_s)))
        if model is not None:
            found.append(("model-watch", lambda: self.model.watch(model, stop,
                                                                  self.config.inference.poll_s)))
        return found

    async def close(self) -> None:
        """Finish in-flight actions and events (call before the outbox closes)."""
        await self.reflex.close()

    def _install(self, ruleset: RuleSet) -> None:
        self.reflex.install(ruleset)
        self._sync_model_size(ruleset)

    def _sync_model_size(self, ruleset: RuleSet) -> None:
        channel = self.config.inference.channel
        self.model.expected_size = ruleset.features.for_channel(channel).bands.size

    def _reload_result(self, result: str) -> None:
        self.metrics.rules_reloads.labels(result=result).inc()

    def _model_changed(self, model: ScoringModel | None) -> None:
        self.metrics.model_info.clear()
        if model is not None:
            self.metrics.model_info.labels(version=model.version).set(1)
