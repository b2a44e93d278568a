"""The InfluxDB backend: line protocol and quoting, the HTTP client's retries, a real influxd."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tandem.cloud.config import from_mapping
from tandem.cloud.errors import StorageUnavailable
from tandem.cloud.timeseries.influx import InfluxTimeSeries
from tandem.cloud.timeseries.influxhttp import InfluxHTTP
from tandem.cloud.timeseries.lineprotocol import (
    event_line,
    field_string,
    string_literal,
    summary_line,
    tag,
    tag_value,
    untag,
)
from tandem.cloud.timeseries.store import EventQuery, SummaryQuery
from tandem.wire.batch import Event, Summary
from tests.services import influx_database

names = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp", "Cf", "Co", "Cn")),
                min_size=1, max_size=64).filter(str.isprintable)


def test_summary_line_has_key_tags_and_typed_fields():
    s = Summary("dev 1", "t,emp", 1000, 2000, 10, -1.5, 2.0, 0.25, 1e21)
    assert summary_line("gw=1", s) == (
        r"summary,channel=t\,emp,device=dev\ 1,gateway=gw\=1,span=1000 "
        "n=10i,min=-1.5,max=2.0,mean=0.25,last=1e+21,t1=2000i 1000")


def test_event_line_tags_the_gateway_and_keeps_values_as_a_string_field():
    e = Event("dev-1", "over heat", 5, 2, {"te\"mp": 81.5})
    assert event_line('gw"\\', e) == (
        r'event,device=dev-1,gateway=gw"%5C,name=over\ heat severity=2i,'
        r'values="{\"te\\\"mp\": 81.5}" 5')


@given(names)
def test_tag_values_survive_encoding(name):
    assert untag(tag_value(name)) == name
    assert "\\" not in tag_value(name)
    assert untag(name.replace("%", "%25").replace("\\", "%5C")) == name


def test_backslashes_and_percents_are_encoded_before_escaping():
    assert tag("a\\,b%= c") == r"a%5C\,b%25\=\ c"
    assert tag_value("a\\,b%") == "a%5C,b%25"
    assert field_string('say "hi" \\o/') == r'"say \"hi\" \\o/"'
    assert string_literal("it's a \\ path") == r"'it\'s a \\ path'"


def transport(*statuses: int) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """A transport answering the given statuses in turn (then 204), recording requests."""
    seen: list[httpx.Request] = []
    answers = list(statuses)

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status = answers.pop(0) if answers else 204
        if status == 0:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(status, json={"error": f"status {status}"})

    return httpx.MockTransport(handle), seen


def client(mock: httpx.MockTransport, sleeps: list[float], **kwargs: int) -> InfluxHTTP:
    return InfluxHTTP("http://influx.invalid", "db", "user", "pw", transport=mock,
                      sleep=sleeps.append, **kwargs)


def test_writes_are_chunked_with_ms_precision_and_basic_auth():
    mock, seen = transport()
    client(mock, [], batch_points=2).write(["a", "b", "c"], retention_policy="summaries")
    assert [r.content for r in seen] == [b"a\nb", b"c"]
    assert dict(seen[0].url.params) == {"db": "db", "precision": "ms", "rp": "summaries"}
    assert seen[0].headers["Authorization"].startswith("Basic ")


def test_5xx_and_network_errors_are_retried_with_growing_backoff():
    mock, seen = transport(503, 0, 500)
    sleeps: list[float] = []
    client(mock, sleeps).write(["a"])
    assert len(seen) == 4
    assert sleeps == [0.05, 0.1, 0.2]


def test_persistent_5xx_becomes_storage_unavailable():
    mock, seen = transport(503, 503, 503, 503, 503)
    with pytest.raises(StorageUnavailable, match="503"):
        client(mock, []).write(["a"])
    assert len(seen) == 4


@pytest.mark.parametrize("status", [400, 401, 404])
def test_4xx_is_not_retried_and_is_unavailable(status):
    mock, seen = transport(status)
    with pytest.raises(StorageUnavailable, match=str(status)):
        client(mock, []).write(["a"])
    assert len(seen) == 1


def test_points_beyond_retention_are_dropped_without_failing():
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={
            "error": "partial write: points beyond retention policy dropped=3"})

    client(httpx.MockTransport(handle), []).write(["a"])


# --- against a real influxd -------------------------------------------------------------

@pytest.fixture
def influx_store(influx_server, tmp_path):
    def make(**timeseries):
        config = from_mapping({"mode": "development", "data_dir": str(tmp_path),
                               "timeseries": {"backend": "influxdb", "url": influx_server.url,
                                              "database": database, **timeseries}})
        store = InfluxTimeSeries(config)
        opened.append(store)
        return store

    opened: list[InfluxTimeSeries] = []
    with influx_database(influx_server) as database:
        yield make
        for store in opened:
            store.close()


ROUND_TRIP = settings(max_examples=40, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])
finite = st.floats(allow_nan=False, allow_infinity=False)


@ROUND_TRIP
@given(gateway=names, device=names, channel=names, value=finite)
def test_any_printable_names_and_any_float_round_trip(influx_store, gateway, device, channel,
                                                      value):
    store = influx_store()
    t0 = 1_700_000_000_000
    summary = Summary(device, channel, t0, t0 + 1, 1, value, value, value, value)
    event = Event(device, channel, t0, 1, {channel: value})
    store.write(gateway, [summary, event], tx=None)
    found = store.summaries(SummaryQuery(device=device, channel=channel, gateway=gateway,
                                         start_ms=t0, end_ms=t0 + 1))
    assert [(p.gateway, p.summary) for p in found] == [(gateway, summary)]
    events = store.events(EventQuery(device=device, name=channel, gateway=gateway))
    assert [(e.gateway, e.event) for e in events] == [(gateway, event)]


def retention_policies(store: InfluxTimeSeries) -> dict[str, str]:
    series = store._http.query(f'SHOW RETENTION POLICIES ON "{store._http.database}"')
    return {row[0]: row[1] for s in series for row in s["values"]}


def test_retention_policies_follow_the_config_per_measurement(influx_store):
    first = influx_store(summary_retention_days=30)
    assert {k: v for k, v in retention_policies(first).items() if k != "autogen"} == {
        "summaries": "720h0m0s", "events": "0s"}
    second = influx_store(summary_retention_days=7, event_retention_days=365)
    assert {k: v for k, v in retention_policies(second).items() if k != "autogen"} == {
        "summaries": "168h0m0s", "events": "8760h0m0s"}
    assert second.prune(0) == {}


def test_points_older_than_retention_are_not_kept(influx_store):
    import time

    store = influx_store(summary_retention_days=1)
    now = time.time_ns() // 1_000_000
    old, new = (Summary("d", "c", t, t + 1, 1, 0.0, 0.0, 0.0, 0.0)
                for t in (now - 3 * 86_400_000, now - 60_000))
    store.write("gw", [old, new], tx=None)
    assert [p.summary for p in store.summaries(SummaryQuery())] == [new]


def test_store_starts_while_influxd_is_down_and_sets_up_later(influx_server, tmp_path):
    from tandem.tools.services import free_port

    config = from_mapping({"mode": "development", "data_dir": str(tmp_path), "timeseries": {
        "backend": "influxdb", "url": f"http://127.0.0.1:{free_port()}"}})
    store = InfluxTimeSeries(config, http=InfluxHTTP(config.timeseries.url, "x",
                                                     sleep=lambda _: None))
    try:
        with pytest.raises(StorageUnavailable):
            store.check()
        with pytest.raises(StorageUnavailable):
            store.summaries(SummaryQuery())
    finally:
        store.close()
