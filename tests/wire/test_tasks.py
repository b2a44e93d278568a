"""The shared tasks: spec round trip, spectral and drift figures, and the map/reduce trend query."""

from __future__ import annotations

import random

import cbor2
import numpy as np
import pytest

from tandem.wire.errors import WireError
from tandem.wire.raw import RawSnippet, encode_raw_record
from tandem.wire.resources import Privacy, TaskSpec
from tandem.wire.tasks import registry, trend
from tandem.wire.tasks.job import Job, job_from_plain, job_to_plain

END_MS = 1_800_000_000_000


def fleet_windows(seed: int = 7) -> list[trend.Window]:
    """Thirty-five days of hourly windows from 12 devices, a third of them rising."""
    rng = random.Random(seed)
    windows = []
    for d in range(12):
        slope = 0.002 * (d % 3 == 0) - 0.001 * (d % 3 == 1)
        for hour in range(35 * 24):
            t = END_MS - 35 * trend.DAY_MS + hour * 3_600_000
            day = (t - END_MS) / trend.DAY_MS
            windows.append((f"dev{d:02d}", t, 0.3 + slope * day + rng.gauss(0, 0.01)))
    return windows


def test_the_trend_query_split_over_three_gateways_equals_the_central_one_exactly() -> None:
    windows = fleet_windows()
    query = trend.TrendQuery(end_ms=END_MS, min_slope_per_day=0.001)
    gateways: list[list[trend.Window]] = [[], [], []]
    for window in random.Random(1).sample(windows, len(windows)):
        gateways[random.Random(window[1]).randrange(3)].append(window)
    # each map result crosses the wire as CBOR, as it does from a gateway
    shipped = [cbor2.loads(cbor2.dumps(registry.run("trend_map", {
        "windows": g, "end_ms": END_MS, "min_slope": 0.001}))) for g in gateways]
    decomposed = registry.run("trend_reduce", {
        "partials": [s["partial"] for s in shipped], "end_ms": END_MS, "min_slope": 0.001})
    expected = trend.central(windows, query)
    assert decomposed["rising"] == expected
    assert sorted(row["device"] for row in expected) == ["dev00", "dev03", "dev06", "dev09"]


def test_the_fitted_slope_is_the_least_squares_slope_over_the_last_30_days() -> None:
    windows = fleet_windows()
    query = trend.TrendQuery(end_ms=END_MS, min_slope_per_day=-1.0)
    rows = {row["device"]: row for row in trend.central(windows, query)}
    inside = [(t, v) for d, t, v in windows if d == "dev00" and t >= END_MS - trend.PERIOD_MS]
    slope = np.polyfit([t / trend.DAY_MS for t, _ in inside], [v for _, v in inside], 1)[0]
    assert rows["dev00"]["windows"] == 30 * 24
    assert rows["dev00"]["slope_per_day"] == pytest.approx(slope, rel=1e-9)


def test_a_malformed_partial_is_refused_by_name() -> None:
    with pytest.raises(WireError, match="dev1"):
        trend.decode_partial({"dev1": [[1, 0]] * 5})


def sine_snippet(freq_hz: float, amplitude_g: float) -> RawSnippet:
    rate, n, scale = 1000, 1000, 1 / 4096
    t = np.arange(n) / rate
    x = np.round(amplitude_g * np.sin(2 * np.pi * freq_hz * t) / scale).astype("<i2")
    z = np.zeros(n, dtype="<i2")
    return RawSnippet("dev1", END_MS, rate, scale, "xz", np.column_stack([x, z]).tobytes())


def test_spectral_analysis_finds_each_snippets_peak_and_rms() -> None:
    snippets = [sine_snippet(50, 1.0), sine_snippet(120, 0.5)]
    result = registry.run("spectral", {"snippets": [encode_raw_record(s) for s in snippets]})
    x = result["summary"]["x"]
    assert (x["peak_min_hz"], x["peak_max_hz"]) == (50.0, 120.0)
    assert result["snippets"][0]["axes"]["x"]["rms"] == pytest.approx(1 / np.sqrt(2), rel=1e-3)
    assert result["summary"]["z"]["rms_mean"] == 0.0


def test_drift_statistics_see_a_shifted_score_distribution() -> None:
    rng = np.random.default_rng(3)
    history = [(t, float(rng.normal(0.1, 0.02))) for t in range(1000)]
    history += [(t, float(rng.normal(0.2, 0.02))) for t in range(1000, 1500)]
    result = registry.run("drift", {"history": history, "split_ms": 1000})
    assert result["reference"]["n"] == 1000 and result["recent"]["n"] == 500
    assert result["shift"] == pytest.approx(5.0, abs=0.5)
    assert result["psi"] > 0.2
    steady = registry.run("drift", {"history": history[:1000], "split_ms": 500})
    assert steady["psi"] < 0.1


def test_an_unknown_kind_or_bad_args_is_a_clear_error() -> None:
    with pytest.raises(WireError, match="unknown task kind"):
        registry.run("mine_bitcoin", {})
    with pytest.raises(WireError, match="bad drift task args"):
        registry.run("drift", {"history": []})


def test_a_job_survives_its_map_and_refuses_bad_fields() -> None:
    job = Job(TaskSpec("t1", "drift", END_MS, 2.5, "gw-1", "site-a", 4096, Privacy.SITE, False),
              {"split_ms": 1})
    assert job_from_plain(cbor2.loads(cbor2.dumps(job_to_plain(job)))) == job
    with pytest.raises(WireError, match="privacy"):
        job_from_plain({**job_to_plain(job), "task": {**job_to_plain(job)["task"],
                                                      "privacy": "public"}})
    with pytest.raises(WireError, match="args"):
        job_from_plain({**job_to_plain(job), "args": [1]})
