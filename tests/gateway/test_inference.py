"""Specification of the inference stage: the fixture model scores, swaps are atomic, and the
gateway runs without a model (or without a LiteRT runtime at all)."""

import asyncio
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from tandem.gateway.features.spectrum import Bands, band_energies
from tandem.gateway.inference.model import ModelError, ScoringModel, interpreter_class
from tandem.gateway.inference.slot import ModelSlot
from tandem.gateway.metrics import GatewayMetrics
from tandem.gateway.reports import DeviceReport
from tandem.gateway.rules.loader import parse_rules_text
from tandem.gateway.rules.reflex import Reflex, ScoreSource
from tandem.tools import make_model
from tandem.wire.batch import Record
from tandem.wire.report import Report

FIXTURE = Path(__file__).parent.parent / "fixtures" / "anomaly16.tflite"
needs_litert = pytest.mark.skipif(interpreter_class() is None,
                                  reason="no LiteRT runtime (pip install ai-edge-litert)")
RATE_HZ = 1000.0


def _healthy(seed: int = 0) -> np.ndarray:
    return make_model.healthy_windows(1, 16, 256, seed)[0]


def _tone_fault() -> np.ndarray:
    t = np.arange(256) / RATE_HZ
    signal = np.sin(2 * np.pi * 30 * t) + 0.8 * np.sin(2 * np.pi * 170 * t)
    return band_energies(signal, RATE_HZ, Bands(count=16))


@needs_litert
def test_the_fixture_model_loads_and_scores_faults_far_above_healthy_windows() -> None:
    model = ScoringModel.load(FIXTURE)
    assert model.size == 16 and len(model.version) == 12
    healthy = max(model.score(_healthy(seed)) for seed in range(20))
    assert healthy < 2.0
    assert model.score(_tone_fault()) > 5 * healthy


@needs_litert
def test_make_model_is_reproducible_and_matches_the_fixture(tmp_path: Path) -> None:
    out = tmp_path / "m.tflite"
    assert make_model.main(["--out", str(out)]) == 0
    assert out.read_bytes() == FIXTURE.read_bytes()
    assert len(out.read_bytes()) < 8192


@needs_litert
def test_a_swap_is_atomic_under_concurrent_scoring(tmp_path: Path) -> None:
    other = tmp_path / "other.tflite"
    make_model.main(["--out", str(other), "--seed", "8"])
    first, second = ScoringModel.load(FIXTURE), ScoringModel.load(other)
    window = _tone_fault()
    expected = {first.score(window), second.score(window)}
    assert len(expected) == 2                               # the two models are distinguishable
    slot = ModelSlot(expected_size=16)
    slot.install(first)
    seen: list[float | None] = []
    errors: list[BaseException] = []

    def score_many() -> None:
        try:
            for _ in range(2000):
                seen.append(slot.score(window))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=score_many) for _ in range(3)]
    for thread in threads:
        thread.start()
    swaps = 0
    while any(t.is_alive() for t in threads):                # swap all the while they score
        slot.install(second if swaps % 2 == 0 else first)
        swaps += 1
    for thread in threads:
        thread.join()
    assert not errors and len(seen) == 6000 and swaps > 0
    assert set(seen) <= expected                            # never a torn or missing score
    slot.install(second)
    assert slot.score(window) == second.score(window)


@needs_litert
def test_loading_a_new_file_switches_only_when_it_is_complete_and_fits(tmp_path: Path) -> None:
    async def scenario() -> None:
        slot = ModelSlot(expected_size=16)
        assert await slot.load(FIXTURE)
        version = slot.model.version if slot.model else ""
        broken = tmp_path / "broken.tflite"
        broken.write_bytes(FIXTURE.read_bytes()[:1000])     # a truncated copy
        assert not await slot.load(broken)
        assert slot.model is not None and slot.model.version == version
        wrong = tmp_path / "eight.tflite"
        make_model.main(["--out", str(wrong), "--bands", "8"])
        assert not await slot.load(wrong)
        assert "takes 8 features" in slot.last_error
        assert slot.model.version == version

    asyncio.run(scenario())


@needs_litert
def test_the_file_watcher_picks_up_a_replaced_model(tmp_path: Path) -> None:
    async def scenario() -> None:
        live = tmp_path / "model.tflite"
        shutil.copy(FIXTURE, live)
        versions: list[str] = []
        loaded = asyncio.Event()

        def changed(model: ScoringModel | None) -> None:
            versions.append(model.version if model else "")
            loaded.set()

        slot = ModelSlot(expected_size=16, on_change=changed)
        stop = asyncio.Event()
        task = asyncio.create_task(slot.watch(live, stop, poll_s=0.05))
        await asyncio.wait_for(loaded.wait(), 10)
        loaded.clear()
        staging = tmp_path / "staging.tflite"
        make_model.main(["--out", str(staging), "--seed", "9"])
        staging.replace(live)                               # atomic replace, as deployed
        await asyncio.wait_for(loaded.wait(), 10)
        stop.set()
        await task
        assert len(versions) == 2 and versions[0] != versions[1]

    asyncio.run(scenario())


class _Store:
    def __init__(self) -> None:
        self.records: list[Record] = []

    async def put(self, records: list[Record], priority: object) -> None:
        self.records.extend(records)


def _vibration_reports(signal: np.ndarray, t0_ms: int = 0) -> list[DeviceReport]:
    return [DeviceReport("fan-01", Report(i + 1, 1, t0_ms + i, {"vib": float(v)}), t0_ms + i)
            for i, v in enumerate(signal)]


RULES = """\
version = 1
[features]
window_n = 256
bands = 16
[[rule]]
name = "anomaly"
when = { input = "score", above = 5.0, clear_below = 2.0 }
"""


@needs_litert
def test_the_score_feeds_the_rules_as_channel_score() -> None:
    async def scenario() -> None:
        slot = ModelSlot(expected_size=16)
        assert await slot.load(FIXTURE)
        store = _Store()
        metrics = GatewayMetrics()
        reflex = Reflex(parse_rules_text(RULES), store, metrics, model=slot,
                        score_source=ScoreSource("vib", hop=32))
        t = np.arange(2048) / RATE_HZ
        healthy = np.sin(2 * np.pi * 30 * t) + 0.2 * np.sin(2 * np.pi * 60 * t)
        for report in _vibration_reports(healthy[:1024]):
            reflex.take(report)
        assert not reflex.engine.active("anomaly", "fan-01")
        faulty = healthy[1024:] + 0.8 * np.sin(2 * np.pi * 170 * t[1024:])
        for report in _vibration_reports(faulty, t0_ms=1024):
            reflex.take(report)
        await reflex.close()
        assert reflex.engine.active("anomaly", "fan-01")
        assert [e.name for e in store.records] == ["anomaly"]
        assert reflex.bank.feature("fan-01", "score", "max") is not None
        scored = metrics.registry.get_sample_value("tandem_gw_inference_seconds_count")
        assert scored == 2048 // 32                          # every hop of 32 samples

    asyncio.run(scenario())


def test_without_a_model_the_reflex_runs_and_score_rules_stay_quiet() -> None:
    async def scenario() -> None:
        store = _Store()
        reflex = Reflex(parse_rules_text(RULES), store, GatewayMetrics(), model=ModelSlot())
        for report in _vibration_reports(np.random.default_rng(0).normal(0, 1, 512)):
            reflex.take(report)
        await reflex.close()
        assert store.records == []

    asyncio.run(scenario())


def test_without_a_runtime_inference_is_off_with_a_clear_message(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr("tandem.gateway.inference.model._INTERPRETER_MODULES",
                        ("tandem_no_such_runtime.interpreter",))
    assert interpreter_class() is None
    with pytest.raises(ModelError, match="no LiteRT runtime"):
        ScoringModel.load(FIXTURE)
    slot = ModelSlot()
    asyncio.run(slot.watch(FIXTURE, asyncio.Event()))      # returns at once, logs why
    assert slot.model is None
    assert "inference disabled: no LiteRT runtime" in caplog.text
