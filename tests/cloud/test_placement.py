"""The scheduler on the ledger: submitted tasks go where the site's strategy puts them; queued
migratable tasks leave an overloaded gateway for the cloud or an idle peer of its site; a
site-private task never leaves its site; a task whose gateway stopped renewing its lease is
placed again elsewhere, once.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import update
from sqlalchemy.orm import Session

from tandem.cloud.config import CloudConfig, from_mapping
from tandem.cloud.db import engine as database
from tandem.cloud.scheduling import status as status_store
from tandem.cloud.scheduling import strategy as strategies
from tandem.cloud.scheduling.placement import BadInput, Scheduler
from tandem.cloud.tasks import ledger
from tandem.wire.resources import CLOUD, Privacy, Resources, Status, TaskSpec
from tandem.wire.scheduling import NoPlace, Strategy
from tandem.wire.tasks.job import Job

NOW = 1_800_000_000_000
HOUR = 3_600_000
SITE = {"gw-a": "plant-a", "gw-b": "plant-a", "gw-c": "plant-a", "gw-x": "plant-b"}


def report(session: Session, gateway: str, at: int = NOW) -> None:
    """gateway reports one worker of score 1 and an idle queue."""
    resources = Resources(gateway, SITE[gateway], 1, 1.0, 1 << 30, 1 << 30, (), 1e6, 0.01)
    status = Status(gateway, at, 0.1, 1 << 20, 0, 0.0, 0, 0, 0.01, 1e6, True)
    status_store.record(session, resources, status, 60_000, at)


def job(task_id: str, at: str = "gw-a", privacy: Privacy = Privacy.ANY,
        migratable: bool = True, compute: float = 2.0) -> Job:
    spec = TaskSpec(task_id, "burn", NOW + HOUR, compute, at, SITE.get(at, ""), 1000, privacy,
                    migratable)
    return Job(spec, {"iterations": 10})


@pytest.fixture
def scheduler(app: Flask) -> Scheduler:
    config: CloudConfig = app.config["TANDEM"]
    tuned = from_mapping({"mode": "development", "data_dir": str(config.data_dir),
                          "scheduling": {"overload_wait_s": 4.0, "idle_wait_s": 2.0,
                                         "light_compute": 1.0}})
    cloud = Resources(CLOUD, "", 2, 1.0, 1 << 30, 0, (), math.inf, 0.0)
    with database.sessions(app).begin() as session:
        for gateway in SITE:
            report(session, gateway)
    return Scheduler(tuned, cloud)


def rows(app: Flask) -> dict[str, Any]:
    with database.read_session(app) as session:
        return {r.task_id: r for r in ledger.open_tasks(session)}


def test_an_arriving_task_runs_where_its_input_is_while_the_deadline_holds(
        app: Flask, scheduler: Scheduler) -> None:
    with database.sessions(app).begin() as session:
        placed = scheduler.place(session, job("t1"), NOW)
        again = scheduler.place(session, job("t1", at="gw-b"), NOW)
    assert (placed.place, placed.new) == ("gw-a", True)
    assert (again.place, again.new, again.reason) == ("gw-a", False, "known task id")


def test_a_surge_at_one_gateway_moves_migratable_tasks_to_the_cloud_and_idle_peers(
        app: Flask, scheduler: Scheduler) -> None:
    surge = [job(f"s{i:02}") for i in range(20)]
    surge += [job("private", privacy=Privacy.SITE), job("pinned", migratable=False)]
    with database.sessions(app).begin() as session:
        for j in surge:
            assert scheduler.place(session, j, NOW).place == "gw-a"
        moves = scheduler.rebalance(session, NOW)
    after = rows(app)
    targets = {m.target for m in moves}
    assert CLOUD in targets and targets & {"gw-b", "gw-c"}
    assert "gw-x" not in targets  # another site's gateway is no peer
    assert after["private"].placed in {"gw-a", "gw-b", "gw-c"}
    assert after["pinned"].placed == "gw-a" and after["pinned"].moves == 0
    assert sum(r.moves for r in after.values()) == len(moves)
    assert all(after[m.task_id].placed == m.target for m in moves)
    with database.sessions(app).begin() as session:  # the view counts moved work: no ping-pong
        assert scheduler.rebalance(session, NOW) == []


def test_a_surge_of_private_tasks_stays_on_its_site(app: Flask, scheduler: Scheduler) -> None:
    with database.sessions(app).begin() as session:
        for i in range(20):
            scheduler.place(session, job(f"p{i:02}", privacy=Privacy.SITE), NOW)
        moves = scheduler.rebalance(session, NOW)
    assert moves and {m.target for m in moves} <= {"gw-b", "gw-c"}
    assert {r.placed for r in rows(app).values()} <= {"gw-a", "gw-b", "gw-c"}


def test_a_static_strategy_places_once_and_never_migrates(app: Flask, scheduler: Scheduler
                                                          ) -> None:
    with database.sessions(app).begin() as session:
        strategies.override(session, "plant-a", Strategy.ALL_EDGE, "test", NOW)
        for i in range(20):
            scheduler.place(session, job(f"e{i:02}"), NOW)
        assert scheduler.rebalance(session, NOW) == []


def test_a_task_whose_gateway_went_silent_is_placed_again_elsewhere_once(
        app: Flask, scheduler: Scheduler) -> None:
    with database.sessions(app).begin() as session:
        for j in (job("lost-private", at="gw-b", privacy=Privacy.SITE), job("lost-any", at="gw-b")):
            scheduler.place(session, j, NOW)
            assert ledger.claim(session, j.task_id, "gw-b", NOW, NOW + 3000) is not None
        assert scheduler.reschedule(session, NOW + 2000) == []  # leases still live
        again = dict(scheduler.reschedule(session, NOW + 3001))
        assert scheduler.reschedule(session, NOW + 3001) == []  # queued now: not twice
    assert again["lost-private"] in {"gw-a", "gw-c"}
    assert again["lost-any"] != "gw-b"
    after = rows(app)
    assert after["lost-private"].state == ledger.QUEUED and after["lost-private"].attempts == 1


def test_a_private_task_waits_while_no_gateway_of_its_site_is_reachable(
        app: Flask, scheduler: Scheduler) -> None:
    with database.sessions(app).begin() as session:
        scheduler.place(session, job("alone", at="gw-x", privacy=Privacy.SITE), NOW)
        ledger.claim(session, "alone", "gw-x", NOW, NOW + 1000)
        assert scheduler.reschedule(session, NOW + 1001) == []
    assert rows(app)["alone"].state == ledger.RUNNING  # still expired: tried again next round


def test_an_input_the_fleet_does_not_know_is_refused(app: Flask, scheduler: Scheduler) -> None:
    wrong_site = Job(TaskSpec("w", "burn", NOW + HOUR, 1.0, "gw-a", "plant-b", 0, Privacy.ANY,
                              True), {"iterations": 1})
    with database.sessions(app).begin() as session:
        with pytest.raises(BadInput, match="plant-a"):
            scheduler.place(session, wrong_site, NOW)
        with pytest.raises(BadInput, match="reports"):
            scheduler.place(session, job("u", at="gw-nobody"), NOW)
    with database.sessions(app).begin() as session:  # every gateway of the site silent
        session.execute(update(status_store.GatewayStatus).values(received_ms=NOW - HOUR))
    with database.sessions(app).begin() as session, pytest.raises(NoPlace):
        scheduler.place(session, job("v", privacy=Privacy.SITE), NOW)
    assert rows(app) == {}


def test_a_light_cloud_task_is_pushed_down_to_a_spare_gateway_and_a_heavy_one_stays(
        app: Flask, scheduler: Scheduler) -> None:
    light = Job(TaskSpec("light", "burn", NOW + HOUR, 0.5, CLOUD, "", 1000, Privacy.ANY, True),
                {"iterations": 1})
    heavy = Job(TaskSpec("heavy", "burn", NOW + HOUR, 1.5, CLOUD, "", 1000, Privacy.ANY, True),
                {"iterations": 1})
    with database.sessions(app).begin() as session:
        assert scheduler.place(session, light, NOW).place == CLOUD
        assert scheduler.place(session, heavy, NOW).place == CLOUD
        moves = scheduler.rebalance(session, NOW)
    assert [(m.task_id, m.source) for m in moves] == [("light", CLOUD)]
    after = rows(app)
    assert after["light"].placed in SITE and after["light"].moves == 1
    assert after["heavy"].placed == CLOUD
