"""Retention: old points and old ledger entries are deleted; `prune` and serve's timer do it."""

from __future__ import annotations

import threading

import pytest

from tandem.cloud import close_app, create_app
from tandem.cloud.cli.main import main
from tandem.cloud.db import engine as database
from tandem.cloud.timeseries import retention
from tandem.cloud.timeseries import store as timeseries
from tandem.cloud.timeseries.store import EventQuery, SummaryQuery

DAY = 86_400_000
NOW = 1_800_000_000_000
NO_RAW = {"raw_snippets": 0, "raw_requests": 0}  # raw snippets on demand: none here


@pytest.fixture
def keeping(tmp_path, pki, kit, storage_config):
    """An app keeping summaries 10 days, events 30 days, batches (replay window) 2 days."""
    config = kit.app_config(tmp_path, pki, replay_window_s=2 * 86_400) | storage_config
    config["timeseries"] = {**config.get("timeseries", {}), "summary_retention_days": 10,
                            "event_retention_days": 30}
    app = create_app(config)
    yield app
    close_app(app)


@pytest.mark.storages("sqlite", "postgresql")
def test_prune_deletes_points_past_retention_and_ledger_past_the_replay_window(keeping, kit):
    from tandem.cloud.fleet import registry

    store = timeseries.store(keeping)
    with database.engine(keeping).begin() as tx:
        store.write("gw-01", [kit.summary(t0_ms=NOW - 11 * DAY), kit.summary(t0_ms=NOW - 9 * DAY),
                              kit.event(t_ms=NOW - 31 * DAY), kit.event(t_ms=NOW - 11 * DAY)],
                    tx)
    with database.sessions(keeping).begin() as session:
        registry.add_gateway(session, "gw-01", "cert", "key", "fp", NOW)
        for seq, sent in ((1, NOW - 3 * DAY), (2, NOW - DAY)):
            registry.record_batch(session, registry.BatchKey("gw-01", 1, seq, "d"), sent, sent,
                                  1)
    deleted = retention.prune(keeping.config["TANDEM"], store, database.sessions(keeping), NOW)
    assert deleted == {"summaries": 1, "events": 1, "ledger": 1, **NO_RAW}
    assert [p.summary.t0_ms for p in store.summaries(SummaryQuery())] == [NOW - 9 * DAY]
    assert [e.event.t_ms for e in store.events(EventQuery())] == [NOW - 11 * DAY]
    assert retention.prune(keeping.config["TANDEM"], store, database.sessions(keeping),
                           NOW) == {"summaries": 0, "events": 0, "ledger": 0, **NO_RAW}


def test_without_retention_or_replay_window_nothing_is_pruned(kit, tmp_path, pki):
    app = create_app(kit.app_config(tmp_path, pki, replay_window_s=0))
    try:
        assert retention.prune(app.config["TANDEM"], timeseries.store(app),
                               database.sessions(app), NOW) == NO_RAW  # raw: always bounded
    finally:
        close_app(app)


def test_prune_command(tmp_path, capsys):
    path = tmp_path / "cloud.toml"
    path.write_text('version = 1\nmode = "development"\n[timeseries]\nsummary_retention_days = 5\n')
    assert main(["prune", "--config", str(path)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "pruned 0 ledger", "pruned 0 raw_requests", "pruned 0 raw_snippets", "pruned 0 summaries"]


def test_prune_timer_runs_at_once_and_repeatedly_then_stops():
    runs = []
    twice = threading.Event()

    def run():
        runs.append(1)
        if len(runs) == 1:
            raise RuntimeError("database down")  # logged; the timer carries on
        twice.set()

    timer = retention.PruneTimer(run, interval_s=0.01)
    timer.start()
    try:
        assert twice.wait(10)
    finally:
        timer.stop()
    assert not any(t.name == "tandem-cloud-prune" for t in threading.enumerate())
