"""The model lifecycle with every program its own process (issue #12).

One cloud and three enrolled gateways (gw-01, gw-02 in plant-a; gw-03 in
plant-b, whose model traffic crosses a link the test can cut), each fed by a
MicroPython node whose vibration band energies the model scores, and a report
generator filing a simulated fleet's window summaries. The loop runs through
the operator's own commands and API: labels -> dataset -> training -> register
-> promote -> release; then a staged rollout shadow -> canary -> rest with
each gate's figures in the rollout log, and a model that raises an alarm storm
stopped at the canary and rolled back before the rest ever run it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tandem.tools.modelloop import LoopError, ModelLoop, recent_fleet
from tandem.tools.simfleet import SimFleet
from tests.netcut import CuttableLink

GROUPS = {"gw-01": "plant-a", "gw-02": "plant-a", "gw-03": "plant-b"}
CHUNK = 256
WINDOWS = 60
EPOCHS = 5
LIMITS: dict[str, float] = {"soak_s": 2, "min_windows": 4, "max_alarm_rate": 0.2,
                            "max_p99_ms": 50, "max_errors": 0, "max_drift": 1000}
FIGURES = ("windows", "alarm_rate", "p99_ms", "errors", "drift")


@pytest.fixture(scope="module")
def link() -> Iterator[CuttableLink]:
    """gw-03's model traffic goes through this link (its target is set once the cloud runs)."""
    proxy = CuttableLink(0)
    yield proxy
    proxy.close()


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory, link: CuttableLink) -> Iterator[ModelLoop]:
    running = ModelLoop(tmp_path_factory.mktemp("models"), GROUPS, rate_bytes_s=4096)
    link.target = ("127.0.0.1", running.site.ports.cloud)
    running.gateways["gw-03"].env.update({
        "TANDEM_GW_POLICY_URL": f"https://127.0.0.1:{link.port}",
        "TANDEM_GW_MODELS_RATE_BYTES_S": "1024"})
    try:
        running.start()
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def fleet(loop: ModelLoop) -> SimFleet:
    sim = recent_fleet(6, WINDOWS)
    loop.file_fleet(sim)
    return sim


def test_labels_to_a_staged_rollout_and_a_bad_model_is_stopped_at_the_canary(
        loop: ModelLoop, fleet: SimFleet, tmp_path: Path) -> None:
    # Round 1: operators label the latest period only; the first version is trained on it.
    assert loop.label(fleet, WINDOWS * 8 // 10, WINDOWS) > 0
    first = loop.build_dataset(tmp_path / "d1.npz", fleet)
    assert first["splits"]["test"]["fault"] > 0
    card1 = loop.train(tmp_path / "d1.npz", tmp_path / "m1", "m-0001", epochs=EPOCHS)
    assert card1["metrics"]["f1"] >= 0  # computed on the held-out split (a figure, not a goal)
    assert "registered" in loop.register(tmp_path / "m1", CHUNK)
    assert loop.promote("m-0001") == "model m-0001 promoted"
    loop.release("m-0001")
    loop.wait_active(list(GROUPS), "m-0001", timeout=120)

    # Round 2: labels over the whole period; a head-only version on top of the first.
    assert loop.label(fleet, 0, WINDOWS * 8 // 10) > 0
    second = loop.build_dataset(tmp_path / "d2.npz", fleet)
    assert second["sha256"] != first["sha256"]
    card2 = loop.train(tmp_path / "d2.npz", tmp_path / "m2", "m-0002", tmp_path / "m1",
                       epochs=EPOCHS)
    assert card2["parent"] == "m-0001"
    loop.register(tmp_path / "m2", CHUNK)
    try:
        loop.promote("m-0002")
    except LoopError as exc:  # it must beat m-0001 on the held-out split, or an admin forces it
        assert "does not beat" in str(exc)
        loop.promote("m-0002", force=True)

    loop.roll_out("plant-a", "m-0002", ["gw-01"], 1, LIMITS)
    done = loop.settled("plant-a", timeout=180)
    assert done["state"] == "completed", done["log"]
    steps = [(s["step"], s.get("stage"), s.get("next")) for s in done["log"]]
    assert steps == [("started", "shadow", None), ("gate passed", "shadow", "canary"),
                     ("gate passed", "canary", "wave:1"), ("gate passed", "wave:1", "done")]
    _assert_gate_figures(done["log"][1:], loop, "m-0002")
    loop.wait_active(["gw-01", "gw-02"], "m-0002", timeout=60)
    assert loop.gateways["gw-03"].active() == "m-0001"  # plant-b is not in the rollout

    # A bad model: m-0002's weights with threshold 0, so every window raises an alarm.
    bad = _bad_copy(tmp_path / "m2", tmp_path / "m3", "m-0003")
    loop.register(bad, CHUNK)
    loop.promote("m-0003", force=True)
    loop.roll_out("plant-a", "m-0003", ["gw-01"], 1, LIMITS)
    failed = loop.settled("plant-a", timeout=180)
    assert failed["state"] == "failed", failed["log"]
    stopped = failed["log"][-1]
    assert stopped["stage"] == "canary" and stopped["gateways"] == ["gw-01"]
    assert any(b.startswith("alarm rate") for b in stopped["broken"])
    assert stopped["alarm_rate"] > LIMITS["max_alarm_rate"]
    _assert_gate_figures(failed["log"][1:], loop, "m-0003")
    loop.wait_active(["gw-01"], "m-0002", timeout=60)  # the signed rollback reached the canary
    assert "m-0003" in loop.gateways["gw-01"].activations()
    for other in ("gw-02", "gw-03"):
        assert "m-0003" not in loop.gateways[other].activations(), other
    roles = {(r["gateway"], r["role"]) for r in loop.reports("m-0003")}
    assert ("gw-01", "active") in roles and ("gw-02", "shadow") in roles
    assert ("gw-02", "active") not in roles and not any(g == "gw-03" for g, _ in roles)


def _assert_gate_figures(gates: list[dict[str, Any]], loop: ModelLoop, version: str) -> None:
    """Every gate logged its figures, and they agree with what the gateways reported."""
    reported = loop.reports(version)
    for gate in gates:
        assert all(name in gate for name in FIGURES), gate
        assert gate["windows"] >= LIMITS["min_windows"] * len(gate["gateways"])
        assert gate["windows"] <= sum(r["windows"] for r in reported
                                      if r["gateway"] in gate["gateways"])
        assert 0 <= gate["alarm_rate"] <= 1 and gate["p99_ms"] > 0


def _bad_copy(source: Path, out: Path, version: str) -> Path:
    """The trainer's output of source under a new version whose threshold is 0."""
    out.mkdir()
    (out / "model.tflite").write_bytes((source / "model.tflite").read_bytes())
    card = json.loads((source / "card.json").read_text())
    card.update(version=version, parent=card["version"], threshold=0.0)
    (out / "card.json").write_text(json.dumps(card))
    return out

