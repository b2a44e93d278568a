"""The host board's simulated sensors: deterministic, and each scenario shows its fault."""

from __future__ import annotations

from types import ModuleType


def _series(sim: ModuleType, scenario: str, n: int = 120, seed: int = 1) -> list[list[float]]:
    out = []
    for i in range(1, n + 1):
        values = [0.0, 0.0]
        sim.sample(seed, scenario, i, values)
        out.append(values)
    return out


def test_same_seed_same_values_other_seed_other_values(sim: ModuleType) -> None:
    assert _series(sim, "normal") == _series(sim, "normal")
    assert _series(sim, "normal") != _series(sim, "normal", seed=2)


def test_normal_stays_in_band(sim: ModuleType) -> None:
    for temp, vib in _series(sim, "normal", 600):
        assert 21.5 <= temp <= 25.5 and 0.03 <= vib <= 0.07


def test_bearing_fault_raises_vibration(sim: ModuleType) -> None:
    series = _series(sim, "bearing_fault")
    assert max(v for _, v in series[:10]) < 0.1 and min(v for _, v in series[-10:]) > 1.5


def test_over_temp_raises_temperature(sim: ModuleType) -> None:
    series = _series(sim, "over_temp")
    assert series[-1][0] > 60 and max(v for _, v in series) < 0.1
