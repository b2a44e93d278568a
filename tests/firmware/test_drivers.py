"""The sensor drivers in real MicroPython against the simulated I2C devices (firmware/simbus.py).

The register models (simsignal.py) are driven by sim.py's scenarios, so CPython predicts
what the driver must read: samples to within the sensor noise (+-2 LSB), the
window features exactly from those samples, temperatures to 0.01 degC.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.nodeproc import run_script

pytestmark = pytest.mark.timeout(60)
SCRIPT = Path(__file__).with_name("mp_drivers.py")


def _run(lines: list[str]) -> list[Any]:
    result = run_script(SCRIPT, "\n".join(lines) + "\n")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(out) == len(lines), result.stdout
    return out


def _features(samples: list[int]) -> tuple[float, float]:
    mean = sum(samples) / len(samples)
    rms = math.sqrt(sum((s - mean) ** 2 for s in samples) / len(samples)) / 256
    return rms, max(abs(s - mean) for s in samples) / 256


def test_accelerometer_reads_the_scenario_through_its_registers(simsignal: ModuleType) -> None:
    cases = [("normal", 5), ("bearing_fault", 120), ("over_temp", 120)]
    out = _run([f"A 7 {scenario} {window} 200" for scenario, window in cases])
    for (scenario, window), got in zip(cases, out, strict=True):
        amp, imp = simsignal.vib_shape(7, scenario, window)
        for k in range(200):
            want = simsignal.vib_lsb(amp, imp, k)
            assert all(abs(got[a][k] - w) <= 2 for a, w in zip("xyz", want, strict=True)), k
        for axis, (rms, peak) in zip("xyz", got["f"], strict=True):
            assert (rms, peak) == pytest.approx(_features(got[axis]), rel=1e-9, abs=1e-12)


def test_bearing_fault_raises_rms_and_crest_factor() -> None:
    normal, fault = _run(["A 1 normal 150 256", "A 1 bearing_fault 150 256"])
    (n_rms, n_peak), (f_rms, f_peak) = normal["f"][0], fault["f"][0]
    assert 0.02 < n_rms < 0.06 and n_peak / n_rms < 2.2  # a clean sine: crest ~1.4
    assert f_rms > 10 * n_rms and f_peak / f_rms > 2.8  # impacts: crest > 2.8


def test_sht3x_temperature_humidity_and_crc(sim: ModuleType) -> None:
    out = _run(["T 3 normal 1 0 1", "T 3 over_temp 200 0 1", "T 3 normal 1 2 4"])
    for got, (scenario, window) in zip(out[:2], [("normal", 1), ("over_temp", 200)],
                                       strict=True):
        t, rh = got[0]
        assert abs(t - sim.temp_centi(3, scenario, window)) <= 1
        assert 0 < rh < 10000
    assert out[1][0][0] > 7000  # over-temperature: above 70 degC
    # Every second result has a corrupted CRC: the driver refuses those.
    assert [r if isinstance(r, str) else "ok" for r in out[2]] == ["ok", "crc", "ok", "crc"]


def test_missing_device_and_unknown_rate() -> None:
    errno, rate_400, rate_3200, bad = _run(["E", "R 400", "R 3200", "R 333"])
    assert errno == 19  # ENODEV: the address was not acknowledged
    assert (rate_400, rate_3200, bad) == (0x0C, 0x0F, "ValueError")
