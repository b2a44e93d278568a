"""Specification: merged summaries are computed by the database, over a bounded range.

The issue: `?window=1&limit=1` over 400k summaries took 7.2 s and 390 MB,
because every row was fetched and merged in Python; and extreme values
merged into NaN, which is not JSON.
"""

from __future__ import annotations

import json
import random

import pytest

from tandem.cloud.timeseries import influx, sql
from tandem.cloud.timeseries.rollup import StoredSummary, rollup
from tandem.wire.batch import Summary

ALL = ("sqlite", "influxdb", "postgresql", "postgresql+influxdb")
MINUTE = 60_000


@pytest.mark.parametrize("query, problem", [
    ("window=1&limit=1", "window needs start and end"),
    ("window=1&start=0&end=400000", "more than 10000 windows"),
])
def test_a_merged_query_needs_a_bounded_range(client, query, problem):
    response = client.get(f"/api/v1/summaries?{query}")
    assert (response.status_code, response.json["error"]) == (400, "bad_parameter")
    assert problem in response.json["detail"]


@pytest.mark.storages(*ALL)
def test_the_database_merges_exactly_as_rollup_does(app, client, pki, kit, monkeypatch):
    rng = random.Random(7)
    records = []
    for device in ("dev-1", "dev-2"):
        for minute in range(0, 60, 3):
            mean = rng.uniform(-50, 50)
            records.append(Summary(device, "temp", minute * MINUTE, minute * MINUTE + MINUTE,
                                   rng.randint(1, 100), mean - 1, mean + 1, mean,
                                   rng.uniform(mean - 1, mean + 1)))
    assert kit.post(client, kit.envelope(pki.gateway, 1, records)).status_code == 200
    expected = rollup((StoredSummary("gw-01", r) for r in records), 15 * MINUTE)

    def no_python_merge(*_args: object) -> list[StoredSummary]:
        raise AssertionError("merging must happen in the database")

    for module in (sql, influx):  # where the stores once merged fetched rows
        monkeypatch.setattr(module, "rollup", no_python_merge, raising=False)
    body = client.get(f"/api/v1/summaries?window={15 * MINUTE}&start=0&end={60 * MINUTE}").json
    got = [(p["device"], p["t0"], p["t1"], p["n"], p["min"], p["max"], p["last"])
           for p in body["points"]]
    assert got == [(p.summary.device, p.summary.t0_ms, p.summary.t1_ms, p.summary.count,
                    p.summary.minimum, p.summary.maximum, p.summary.last) for p in expected]
    assert [p["mean"] for p in body["points"]] == pytest.approx(
        [p.summary.mean for p in expected], rel=1e-9)


@pytest.mark.storages(*ALL)
def test_merging_extreme_values_gives_valid_json(app, client, pki, kit):
    big = 1.7e308
    records = [Summary("dev-1", "temp", 0, MINUTE, 1000, -big, -big, -big, -big),
               Summary("dev-1", "temp", MINUTE, 2 * MINUTE, 1000, big, big, big, big)]
    assert kit.post(client, kit.envelope(pki.gateway, 1, records)).status_code == 200
    response = client.get(f"/api/v1/summaries?window={10 * MINUTE}&start=0&end={10 * MINUTE}")
    assert response.status_code == 200
    points = json.loads(response.text, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert [(p["n"], p["min"], p["max"], p["mean"]) for p in points["points"]] == [
        (2000, -big, big, 0.0)]
