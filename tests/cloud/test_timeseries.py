"""Every time-series backend: writes are upserts keyed per the wire model, so rewriting
changes nothing; reads filter, order and limit alike."""

from __future__ import annotations

import pytest

from tandem.cloud.db import engine as database
from tandem.cloud.timeseries import store as timeseries
from tandem.cloud.timeseries.store import EventQuery, SummaryQuery
from tandem.wire.batch import Summary

pytestmark = pytest.mark.storages("sqlite", "influxdb", "postgresql")


def write(app, gateway, records):
    with database.engine(app).begin() as tx:
        timeseries.store(app).write(gateway, records, tx)


def test_rewriting_a_summary_replaces_it(app, kit):
    write(app, "gw-01", [kit.summary(mean=1.0)])
    write(app, "gw-01", [kit.summary(mean=2.0)])
    points = timeseries.store(app).summaries(SummaryQuery())
    assert [(p.gateway, p.summary.mean) for p in points] == [("gw-01", 2.0)]


def test_same_window_from_two_gateways_is_two_points(app, kit):
    write(app, "gw-01", [kit.summary()])
    write(app, "gw-02", [kit.summary()])
    assert len(timeseries.store(app).summaries(SummaryQuery())) == 2


def test_events_are_keyed_by_device_name_and_time(app, kit):
    write(app, "gw-01", [kit.event(severity=1), kit.event(severity=2),
                         kit.event(t_ms=2_000_000), kit.event(name="door")])
    found = timeseries.store(app).events(EventQuery())
    assert [(e.event.name, e.event.t_ms, e.event.severity) for e in found] == [
        ("door", 1_000_000, 2), ("overheat", 1_000_000, 2), ("overheat", 2_000_000, 2)]


def test_a_rolled_back_transaction_leaves_no_points(app, kit, storage):
    if storage.endswith("influxdb"):
        pytest.skip("InfluxDB cannot join the SQL transaction: see "
                    "test_a_failure_after_the_points_is_repaired_by_the_resend")
    class Abort(Exception):
        pass

    try:
        with database.engine(app).begin() as tx:
            timeseries.store(app).write("gw-01", [kit.summary(), kit.event()], tx)
            raise Abort
    except Abort:
        pass
    assert timeseries.store(app).summaries(SummaryQuery()) == []
    assert timeseries.store(app).events(EventQuery()) == []


def test_limit_keeps_the_earliest_with_ties_in_key_order(app, kit):
    # Same t0 everywhere: the limit must cut by (t0, device, channel, gateway), as SQL does.
    records = [kit.summary(device=d, channel=c, t0_ms=t) for t in (3_000_000, 2_000_000)
               for d in ("dev-b", "dev-a") for c in ("x", "a b", "a")]
    write(app, "gw-02", records)
    write(app, "gw-01", records)
    store = timeseries.store(app)
    everything = store.summaries(SummaryQuery())
    keys = [(p.summary.t0_ms, p.summary.device, p.summary.channel, p.gateway)
            for p in everything]
    assert keys == sorted(keys) and len(keys) == 24
    for limit in (1, 5, 12, 13, 23):
        assert store.summaries(SummaryQuery(limit=limit)) == everything[:limit]
    assert list(store.iter_summaries(SummaryQuery())) == everything


def test_summary_filters_and_time_range(app, kit):
    write(app, "gw-01", [kit.summary(device=d, channel=c, t0_ms=t * 60_000)
                         for d in ("dev-1", "dev-2") for c in ("temp", "hum") for t in range(10)])
    write(app, "gw-02", [kit.summary(device="dev-1", t0_ms=0)])
    store = timeseries.store(app)
    found = store.summaries(SummaryQuery(device="dev-1", channel="temp", gateway="gw-01",
                                         start_ms=120_000, end_ms=300_000))
    assert [p.summary.t0_ms for p in found] == [120_000, 180_000, 240_000]
    assert len(store.summaries(SummaryQuery(gateway="gw-02"))) == 1
    assert store.summaries(SummaryQuery(device="nobody")) == []


def test_window_merges_the_same_way(app, kit):
    write(app, "gw-01", [kit.summary(t0_ms=t * 60_000, mean=float(t), count=t + 1)
                         for t in range(10)])
    merged = timeseries.store(app).summaries(SummaryQuery(window_ms=300_000))
    assert [(p.summary.t0_ms, p.summary.count) for p in merged] == [(0, 15), (300_000, 40)]
    assert merged[0].summary.mean == pytest.approx(sum(t * (t + 1) for t in range(5)) / 15)


def test_event_filters(app, kit):
    write(app, "gw-01", [kit.event(device="dev-1", name="door", t_ms=1, severity=0),
                         kit.event(device="dev-2", name="overheat", t_ms=2, severity=3)])
    write(app, "gw-02", [kit.event(device="dev-3", name="door", t_ms=3, severity=1)])
    store = timeseries.store(app)

    def names(**query):
        return [e.event.device for e in store.events(EventQuery(**query))]

    assert names() == ["dev-1", "dev-2", "dev-3"]
    assert names(gateway="gw-02") == ["dev-3"]
    assert names(name="door", min_severity=1) == ["dev-3"]
    assert names(start_ms=2, end_ms=3) == ["dev-2"]
    assert names(limit=2) == ["dev-1", "dev-2"]
    assert [e.event.values for e in store.iter_events(EventQuery(device="dev-2"))] == [
        {"temp": 81.5}]


def test_a_streaming_reader_does_not_block_a_writer(app, kit):
    write(app, "gw-01", [kit.summary(t0_ms=t) for t in range(3)])
    reading = timeseries.store(app).iter_summaries(SummaryQuery())
    assert next(reading).summary.t0_ms == 0  # a read in progress (an export)
    write(app, "gw-01", [kit.summary(t0_ms=99)])  # SQLite: would wait for the reader's lock
    assert [p.summary.t0_ms for p in reading] == [1, 2]



def test_a_late_readings_summary_and_the_window_starting_with_it_are_both_kept(app, kit):
    window = Summary("dev-1", "temp", 1_000_000, 1_060_000, 10, 1.0, 3.0, 2.0, 2.5)
    late = Summary("dev-1", "temp", 1_000_000, 1_000_001, 1, 9.0, 9.0, 9.0, 9.0)
    write(app, "gw-01", [window, late])
    write(app, "gw-01", [late])  # a replay still changes nothing
    points = timeseries.store(app).summaries(SummaryQuery())
    assert [(p.summary.t1_ms, p.summary.count) for p in points] == [(1_000_001, 1),
                                                                    (1_060_000, 10)]
