"""Rollouts on /metrics: each group's latest rollout, its stage, and its last gate's figures.

Read from the database at scrape time, so every gunicorn worker shows the same
(a gate is judged in whichever worker a gateway happens to ask). An alerting
rule can page on `tandem_cloud_rollout_state{state="failed"} == 1`, or on a
gate figure closing in on its limit, both shown side by side.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flask import Flask
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from tandem.cloud.db import engine as database
from tandem.cloud.models import rollout
from tandem.cloud.timestamps import now_ms

# Gate figure -> (help, the limit it is judged against).
FIGURES = {"windows": ("Windows the stage's gateways scored with the new version", None),
           "alarm_rate": ("Alarms per window scored", "max_alarm_rate"),
           "p99_ms": ("Worst inference p99 of the stage's gateways, ms", "max_p99_ms"),
           "errors": ("Inference errors", "max_errors"),
           "drift": ("Score drift against the previous version", "max_drift")}
_GATE_STEPS = {"gate passed": "passed", "gate failed: rolled back": "failed"}


class RolloutCollector(Collector):
    """Each group's latest rollout, from the database at scrape time."""

    def __init__(self, app: Flask) -> None:
        self._app = app

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """State, stage age, gates judged, and the last gate's figures beside their limits."""
        with self._app.app_context(), database.read_session(self._app) as session:
            rows = rollout.latest_per_group(session)
        now = now_ms()
        state = GaugeMetricFamily(
            "tandem_cloud_rollout_state", "1 for each group's latest rollout, in its state "
            "(running, paused, completed, failed, aborted) and stage",
            labels=["group", "version", "stage", "state"])
        age = GaugeMetricFamily("tandem_cloud_rollout_stage_seconds",
                                "Seconds since the rollout's current stage began", labels=["group"])
        gates = GaugeMetricFamily("tandem_cloud_rollout_gates", "Gates judged in the group's "
                                  "latest rollout, by outcome", labels=["group", "outcome"])
        figures = {name: GaugeMetricFamily(f"tandem_cloud_rollout_gate_{name}",
                                           f"Last gate: {text}", labels=["group", "stage"])
                   for name, (text, _) in FIGURES.items()}
        limits = GaugeMetricFamily("tandem_cloud_rollout_gate_limit", "The rollout's gate "
                                   "limits", labels=["group", "limit"])
        for row in rows:
            state.add_metric([row.group, row.version, row.stage, row.state], 1.0)
            age.add_metric([row.group], max(0.0, (now - row.stage_started_ms) / 1000))
            log = row.log()
            for outcome in _GATE_STEPS.values():
                gates.add_metric([row.group, outcome], float(sum(
                    1 for step in log if _GATE_STEPS.get(step["step"]) == outcome)))
            _add_figures(figures, row.group, _last_gate(log))
            for name, value in _limits(row):
                limits.add_metric([row.group, name], value)
        yield state
        yield age
        yield gates
        yield from figures.values()
        yield limits


def _last_gate(log: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((step for step in reversed(log) if step["step"] in _GATE_STEPS), None)


def _add_figures(families: dict[str, GaugeMetricFamily], group: str,
                 gate: dict[str, Any] | None) -> None:
    if gate is None:
        return
    for name, family in families.items():
        value = gate.get(name)
        if value is not None:  # drift is None while the group ran no previous version
            family.add_metric([group, str(gate["stage"])], float(value))


def _limits(row: rollout.Rollout) -> list[tuple[str, float]]:
    limits = row.limits()
    return [(name, float(getattr(limits, name))) for name in limits.__dataclass_fields__]
