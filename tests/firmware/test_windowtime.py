"""The node's own window timing in real MicroPython: its mean holds over months of windows
without its totals outgrowing an ESP32's small ints (a bigint would be allocated per window)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.nodeproc import run_snippet

pytestmark = pytest.mark.timeout(60)

# 3,000 windows of 0.4 s each: 1,200 s of charged time, past an ESP32's 2**30 small ints.
SCRIPT = """
import json, time
from windowtime import FEATURES, WindowTime
w = WindowTime()
for _ in range(3000):
    w.add(FEATURES, time.ticks_add(time.ticks_us(), -400000))
print(json.dumps({"summary": w.summary(), "total": w.total[FEATURES]}))
"""


def test_the_mean_holds_and_the_total_stays_a_small_int_on_an_esp32(tmp_path: Path) -> None:
    out = run_snippet(SCRIPT, tmp_path)
    features = out["summary"]["features"]
    assert features["n"] == 3000
    assert 396_000 <= features["mean_us"] <= 404_000  # 0.4 s charged each, within 1 %
    assert 400_000 <= features["max_us"] < 440_000
    assert out["total"] < 2**30  # an ESP32's small-int limit
