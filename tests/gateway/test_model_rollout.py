"""A staged rollout to a group of real gateway agents over a real socket: shadow, canary, waves,
gate figures in the log; a model with an alarm storm stopped at the canary and rolled back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from tandem.gateway.config import GatewayConfig
from tandem.gateway.identity import enrolment as enrol_client
from tandem.tools.pki import SiteCA
from tests.cloud.conftest import bearer, token_for
from tests.enrolkit import gateway_config, new_token, wsgi_client
from tests.gateway import modelagentkit
from tests.gateway.modelagentkit import Gateway
from tests.gateway.modelagentkit import register_version as _register
from tests.netcut import CuttableLink

app = modelagentkit.app  # fixtures: the cloud, and the cuttable link in front of it
link = modelagentkit.link

LIMITS = {"soak_s": 0, "min_windows": 3, "max_alarm_rate": 0.2, "max_p99_ms": 1000,
          "max_errors": 0, "max_drift": 10.0}
QUIET = [1.0] * 16


def _enrol(cloud: Flask, tmp_path: Path, name: str, group: str) -> GatewayConfig:
    config = gateway_config(tmp_path / name, SiteCA.load(tmp_path / "pki"), gateway=name)
    enrol_client.enrol(config, "http://cloud", new_token(cloud, name, group),
                       client=wsgi_client(cloud))
    return config


def _round(gateways: list[Gateway]) -> list[str]:
    """Each gateway asks for its assignment, scores a few windows and reports."""
    results = [gw.check() for gw in gateways]
    for gw in gateways:
        for _ in range(4):
            gw.slot.score(QUIET)
        gw.send()
    return results


def _metrics(client: FlaskClient, headers: dict[str, str]) -> dict[str, float]:
    text = client.get("/metrics", headers=headers).text
    return {name: float(value) for name, value in
            (line.rsplit(" ", 1) for line in text.splitlines()
             if line.startswith("tandem_cloud_rollout"))}


def _active(gw: Gateway) -> str | None:
    return gw.agent.active.version if gw.agent.active else None


def test_a_rollout_goes_shadow_canary_waves_and_a_bad_model_stops_at_the_canary(
        tmp_path: Path, app: Flask, link: CuttableLink) -> None:

    configs = {"gw-01": _enrol(app, tmp_path, "gw-01", "plant-a"),
               "gw-02": _enrol(app, tmp_path, "gw-02", "plant-a"),
               "gw-03": _enrol(app, tmp_path, "gw-03", "plant-b")}
    gws = {name: Gateway(config, tmp_path, link, name=name) for name, config in configs.items()}
    group_a = [gws["gw-01"], gws["gw-02"]]
    _register(app, tmp_path, "m-0001", seed=1)
    _register(app, tmp_path, "m-0002", seed=1, parent="m-0001", f1=0.9,
              threshold=0.0)  # same weights, threshold 0: every window is an alarm
    client = app.test_client()
    operator = bearer(token_for(app, "operator"))

    def start(version: str) -> Any:
        return client.post("/api/v1/rollouts", headers=operator, json={
            "group": "plant-a", "version": version, "canaries": ["gw-01"], "wave_size": 1,
            "limits": LIMITS})

    assert start("m-0001").status_code == 200
    _round(group_a)                                   # shadow: scored beside nothing
    assert [g.agent.shadow for g in group_a] == ["m-0001", "m-0001"]
    assert [_active(g) for g in group_a] == [None, None]
    _round(group_a)                                   # shadow gate passed -> canary
    assert [_active(g) for g in group_a] == ["m-0001", None]
    _round(group_a)                                   # canary gate passed -> wave 1
    _round(group_a)                                   # wave 1 (all) passed -> done
    assert [_active(g) for g in group_a] == ["m-0001", "m-0001"]
    state = client.get("/api/v1/rollouts/plant-a", headers=operator).json
    assert state["state"] == "completed"
    steps = [(s["step"], s.get("stage")) for s in state["log"]]
    assert steps == [("started", "shadow"), ("gate passed", "shadow"),
                     ("gate passed", "canary"), ("gate passed", "wave:1")]
    assert all("alarm_rate" in s and "p99_ms" in s for s in state["log"][1:])
    shown = _metrics(client, operator)
    assert shown['tandem_cloud_rollout_state{group="plant-a",stage="done",state="completed",'
                 'version="m-0001"}'] == 1.0
    assert shown['tandem_cloud_rollout_gates{group="plant-a",outcome="passed"}'] == 3.0
    assert shown['tandem_cloud_rollout_gate_windows{group="plant-a",stage="wave:1"}'] >= 3.0
    assert shown['tandem_cloud_rollout_gate_limit{group="plant-a",limit="max_alarm_rate"}'] == 0.2
    # plant-b has no rollout and nothing was released fleet-wide: plant-a's trial stays there.
    assert gws["gw-03"].check() == "none"

    assert start("m-0002").status_code == 200
    for _ in range(3):
        _round(group_a)
    state = client.get("/api/v1/rollouts/plant-a", headers=operator).json
    assert state["state"] == "failed", state["log"]
    failed = state["log"][-1]
    assert failed["stage"] == "canary" and "alarm rate" in failed["broken"][0]
    shown = _metrics(client, operator)  # an alert can fire on this, the figure beside its limit
    assert shown['tandem_cloud_rollout_state{group="plant-a",stage="canary",state="failed",'
                 'version="m-0002"}'] == 1.0
    assert shown['tandem_cloud_rollout_gates{group="plant-a",outcome="failed"}'] == 1.0
    assert shown['tandem_cloud_rollout_gate_alarm_rate{group="plant-a",stage="canary"}'] \
        == failed["alarm_rate"] > 0.2
    assert not any('version="m-0001"' in name for name in shown)  # only the latest rollout
    _round(group_a)                                   # the rollback reaches the canary
    assert [_active(g) for g in group_a] == ["m-0001", "m-0001"]
    assert gws["gw-01"].agent.active is not None
    assert gws["gw-01"].agent.active.last_good == "m-0002"  # the canary had activated it
    assert gws["gw-02"].agent.active is not None
    assert gws["gw-02"].agent.active.last_good is None      # the rest never did
    assert client.post("/api/v1/rollouts/plant-a/resume", headers=operator).status_code == 404
