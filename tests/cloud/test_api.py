"""Read API: filters, windows, validation, health, metrics and the OpenAPI description."""

from __future__ import annotations

import re
from importlib import resources

import pytest

pytestmark = pytest.mark.storages("sqlite", "influxdb", "postgresql")

MINUTE = 60_000
T0 = 1_700_000_000_000 - 1_700_000_000_000 % 3_600_000  # on an hour boundary


@pytest.fixture
def loaded(client, pki, kit):
    """Two devices, two channels, an hour of minutes from gw-01, one point from gw-02, events."""
    records = [kit.summary(device=d, channel=c, t0_ms=T0 + i * MINUTE, mean=float(i))
               for d in ("dev-1", "dev-2") for c in ("temp", "hum") for i in range(60)]
    events = [kit.event(device="dev-1", name="overheat", t_ms=T0 + 5 * MINUTE, severity=3),
              kit.event(device="dev-2", name="door", t_ms=T0 + 7 * MINUTE, severity=1)]
    assert kit.post(client, kit.envelope(pki.gateway, 1, records + events)).status_code == 200
    other = [kit.summary(device="dev-3", t0_ms=T0)]
    assert kit.post(client, kit.envelope(pki.other_gateway, 1, other)).status_code == 200
    return client


def test_summaries_filter_by_device_channel_and_range(loaded):
    body = loaded.get(f"/api/v1/summaries?device=dev-1&channel=temp"
                      f"&start={T0 + 10 * MINUTE}&end={T0 + 20 * MINUTE}").json
    points = body["points"]
    assert [p["t0"] for p in points] == [T0 + i * MINUTE for i in range(10, 20)]
    assert {(p["gateway"], p["device"], p["channel"]) for p in points} == {
        ("gw-01", "dev-1", "temp")}
    assert points[0] == {"gateway": "gw-01", "device": "dev-1", "channel": "temp",
                         "t0": T0 + 10 * MINUTE, "t1": T0 + 11 * MINUTE, "n": 10,
                         "min": 9.0, "max": 11.0, "mean": 10.0, "last": 10.5}


def test_summaries_filter_by_gateway(loaded):
    points = loaded.get("/api/v1/summaries?gateway=gw-02").json["points"]
    assert [(p["gateway"], p["device"]) for p in points] == [("gw-02", "dev-3")]


def test_summaries_limit_keeps_the_earliest(loaded):
    points = loaded.get("/api/v1/summaries?device=dev-1&channel=hum&limit=3").json["points"]
    assert [p["t0"] for p in points] == [T0, T0 + MINUTE, T0 + 2 * MINUTE]


def test_window_merges_minutes_into_quarter_hours(loaded):
    points = loaded.get(f"/api/v1/summaries?device=dev-1&channel=temp&window={15 * MINUTE}"
                        f"&start={T0}&end={T0 + 60 * MINUTE}").json["points"]
    assert [p["t0"] for p in points] == [T0 + q * 15 * MINUTE for q in range(4)]
    first = points[0]
    assert first["n"] == 150
    assert first["mean"] == pytest.approx(7.0)
    assert (first["min"], first["max"], first["last"]) == (-1.0, 15.0, 14.5)
    assert first["t1"] == T0 + 15 * MINUTE


def test_events_filter_by_device_name_and_severity(loaded):
    assert [e["name"] for e in loaded.get("/api/v1/events").json["events"]] == [
        "overheat", "door"]
    assert [e["name"] for e in loaded.get("/api/v1/events?device=dev-2").json["events"]] == [
        "door"]
    assert [e["name"] for e in loaded.get("/api/v1/events?min_severity=2").json["events"]] == [
        "overheat"]
    only = loaded.get("/api/v1/events?name=overheat").json["events"]
    assert only == [{"gateway": "gw-01", "device": "dev-1", "name": "overheat",
                     "t": T0 + 5 * MINUTE, "severity": 3, "values": {"temp": 81.5}}]
    assert loaded.get(f"/api/v1/events?start={T0 + 6 * MINUTE}").json["events"][0]["name"] \
        == "door"


def test_devices_and_gateways_are_listed(loaded):
    devices = loaded.get("/api/v1/devices").json["devices"]
    assert [(d["device"], d["gateway"]) for d in devices] == [
        ("dev-1", "gw-01"), ("dev-2", "gw-01"), ("dev-3", "gw-02")]
    assert all(d["first_seen"] <= d["last_seen"] for d in devices)
    assert [d["device"] for d in loaded.get("/api/v1/devices?gateway=gw-02").json["devices"]] \
        == ["dev-3"]
    gateways = loaded.get("/api/v1/gateways").json["gateways"]
    assert [(g["name"], g["status"]) for g in gateways] == [
        ("gw-01", "active"), ("gw-02", "active"), ("gw-old", "revoked")]
    assert all(g["fingerprint"].startswith("sha256:") for g in gateways)


@pytest.mark.parametrize("query", [
    "start=abc", "start=-1", "end=1.5", "start=10&end=10", "start=20&end=10", "limit=0",
    "limit=10001", "window=0", "device=", "device=" + "x" * 65, "chanel=temp",
    "device=a&device=b", "start=99999999999999999999999",
])
def test_bad_summary_parameters_are_400(client, query):
    response = client.get(f"/api/v1/summaries?{query}")
    assert (response.status_code, response.json["error"]) == (400, "bad_parameter")
    assert response.json["detail"]


@pytest.mark.parametrize("path", ["/api/v1/events?min_severity=x", "/api/v1/events?limit=-3",
                                  "/api/v1/devices?gateway=", "/api/v1/gateways?x=1"])
def test_bad_parameters_on_other_routes_are_400(client, path):
    assert client.get(path).status_code == 400


def test_unknown_route_and_wrong_method_answer_json(client):
    missing = client.get("/api/v1/nothing")
    assert (missing.status_code, missing.json["error"]) == (404, "not_found")
    wrong = client.post("/api/v1/summaries")
    assert (wrong.status_code, wrong.json["error"]) == (405, "method_not_allowed")
    assert "GET" in wrong.headers["Allow"]


def test_healthz_reports_ok(client):
    response = client.get("/healthz")
    assert (response.status_code, response.json) == (200, {"status": "ok"})


def test_healthz_reports_a_failing_store(app, client, monkeypatch):
    from sqlalchemy.exc import OperationalError

    from tandem.cloud.timeseries import store as timeseries

    def down():
        raise OperationalError("SELECT 1", {}, Exception("gone"))

    monkeypatch.setattr(timeseries.store(app), "check", down)
    response = client.get("/healthz")
    assert (response.status_code, response.json) == (
        503, {"status": "unavailable", "failed": ["timeseries"]})


def test_metrics_count_batches_records_and_latency(loaded):
    text = loaded.get("/metrics").text
    assert 'tandem_cloud_batches_accepted_total{outcome="stored"} 2.0' in text
    assert "tandem_cloud_records_ingested_total 243.0" in text
    assert "tandem_cloud_ingest_seconds_count 2.0" in text


def test_openapi_is_served_and_describes_every_route(app, client):
    response = client.get("/api/v1/openapi.yaml")
    assert response.status_code == 200
    assert response.mimetype == "application/yaml"
    assert response.text == resources.files("cloud").joinpath("openapi.yaml").read_text()
    documented = set(re.findall(r"^  (/\S*):$", response.text, re.MULTILINE))
    routed = {re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", r.rule)  # <name> is OpenAPI's {name}
              for r in app.url_map.iter_rules() if r.endpoint != "static"}
    assert documented == routed
