"""GET /api/v1/export: summaries labelled with the events in their window, as JSONL or CSV."""

from __future__ import annotations

import csv
import io
import json

import pytest

from tandem.cloud.query.dataset import csv_lines, jsonl, label
from tandem.cloud.timeseries.rollup import StoredEvent, StoredSummary
from tandem.wire.batch import Event, Summary

MINUTE = 60_000


def point(t0: int, t1: int, device: str = "d") -> StoredSummary:
    return StoredSummary("gw", Summary(device, "c", t0, t1, 1, 0.0, 0.0, 0.0, 0.0))


def happened(t: int, name: str = "e", device: str = "d", severity: int = 1) -> StoredEvent:
    return StoredEvent("gw", Event(device, name, t, severity, {}))


def test_events_label_the_windows_of_their_device_that_contain_them():
    summaries = [point(0, 100), point(0, 100, device="x"), point(10, 20), point(100, 200),
                 point(300, 400)]
    events = [happened(5, "a"), happened(15, "b", severity=3), happened(15, "c", device="x"),
              happened(100, "d"), happened(250, "e")]
    rows = list(label(summaries, events))
    assert [[e.event.name for e in r.labels] for r in rows] == [
        ["a", "b"], ["c"], ["b"], ["d"], []]
    assert [r.record()["max_severity"] for r in rows] == [3, 1, 3, 1, None]


def test_label_holds_only_events_of_open_windows():
    summaries = (point(t, t + 10) for t in range(0, 10_000, 10))
    events = (happened(t) for t in range(5, 10_000, 10))
    assert all(len(r.labels) == 1 for r in label(summaries, events))


def test_formats():
    rows = list(label([point(0, 100)], [happened(1, "a"), happened(2, "b")]))
    assert json.loads("".join(jsonl(rows))) == {
        "gateway": "gw", "device": "d", "channel": "c", "t0": 0, "t1": 100, "n": 1,
        "min": 0.0, "max": 0.0, "mean": 0.0, "last": 0.0, "labels": ["a", "b"],
        "max_severity": 1}
    assert "".join(csv_lines(rows)).splitlines() == [
        "gateway,device,channel,t0,t1,n,min,max,mean,last,labels,max_severity",
        "gw,d,c,0,100,1,0.0,0.0,0.0,0.0,a;b,1"]


@pytest.fixture
def loaded(client, pki, kit):
    records = [kit.summary(device=d, t0_ms=t * MINUTE, mean=float(t))
               for d in ("dev-1", "dev-2") for t in range(10)]
    events = [kit.event(device="dev-1", name="overheat", t_ms=3 * MINUTE + 5, severity=3),
              kit.event(device="dev-2", name="door", t_ms=12 * MINUTE, severity=1)]
    assert kit.post(client, kit.envelope(pki.gateway, 1, records + events)).status_code == 200
    return client


@pytest.mark.storages("sqlite", "influxdb")
def test_export_jsonl_streams_labelled_summaries(loaded):
    response = loaded.get(f"/api/v1/export?start={2 * MINUTE}&end={5 * MINUTE}&device=dev-1")
    assert response.status_code == 200
    assert response.mimetype == "application/x-ndjson"
    assert response.is_streamed
    assert 'filename="tandem-dev-1-120000-300000.jsonl"' in response.headers[
        "Content-Disposition"]
    rows = [json.loads(line) for line in response.text.splitlines()]
    assert [(r["t0"], r["labels"], r["max_severity"]) for r in rows] == [
        (2 * MINUTE, [], None), (3 * MINUTE, ["overheat"], 3), (4 * MINUTE, [], None)]


@pytest.mark.storages("sqlite", "influxdb")
def test_export_csv_of_every_device(loaded):
    response = loaded.get(f"/api/v1/export?start=0&end={20 * MINUTE}&format=csv")
    assert response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 20
    assert [(r["device"], r["t0"]) for r in rows if r["labels"]] == [("dev-1", "180000")]


@pytest.mark.parametrize("query", ["", "start=0", "end=5", "start=0&end=5&format=xml",
                                   "start=0&end=5&channel=x", "start=5&end=5"])
def test_export_needs_a_range_and_a_known_format(client, query):
    response = client.get(f"/api/v1/export?{query}")
    assert (response.status_code, response.json["error"]) == (400, "bad_parameter")


def test_csv_cells_that_a_spreadsheet_would_run_are_made_inert():
    rows = list(label([StoredSummary("=gw", Summary("+d", "@c", 0, 100, 1, -1.0, 1.0, 0.0,
                                                    -0.5))],
                      [StoredEvent("=gw", Event("+d", "-e", 1, 1, {}))]))
    line = next(csv.DictReader(io.StringIO("".join(csv_lines(rows)))))
    assert (line["gateway"], line["device"], line["channel"], line["labels"]) == (
        "'=gw", "'+d", "'@c", "'-e")
    assert (line["min"], line["last"]) == ("-1.0", "-0.5")  # numbers stay numbers
