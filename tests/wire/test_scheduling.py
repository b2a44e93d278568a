"""The decision engine, as a specification: each strategy, migration, push-down, privacy."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tandem.wire.resources import CLOUD, Privacy, Resources, TaskSpec
from tandem.wire.scheduling import (
    Fleet,
    NoPlace,
    Strategy,
    Tuning,
    allowed,
    commit,
    place,
    push_down,
    rebalance,
)

NOW = 1_000_000


def gateway(name: str, site: str = "a", cores: int = 2, score: float = 1.0) -> Resources:
    """A gateway with a 1 MB/s, 50 ms link to the cloud."""
    return Resources(name, site, cores, score, 1 << 30, 1 << 30, (), 1e6, 0.05)


def cloud(cores: int = 8, score: float = 2.0) -> Resources:
    return Resources(CLOUD, "", cores, score, 1 << 34, 1 << 40, (), math.inf, 0.0)


def task(tid: str = "t", at: str = "g1", site: str = "a", compute: float = 4.0,
         deadline_s: float = 60.0, privacy: Privacy = Privacy.ANY, migratable: bool = True,
         nbytes: int = 100_000) -> TaskSpec:
    return TaskSpec(tid, "spectral", NOW + int(deadline_s * 1000), compute, at, site, nbytes,
                    privacy, migratable)


def fleet(*places: Resources, queued: dict[str, float] | None = None) -> Fleet:
    f = Fleet()
    for r in places:
        f.add(r)
    for name, work in (queued or {}).items():
        f.places[name].queued = work
    return f


def test_all_edge_runs_where_the_input_is_even_when_that_gateway_is_busy() -> None:
    f = fleet(gateway("g1"), gateway("g2"), cloud(), queued={"g1": 500.0})
    assert place(task(), f, Strategy.ALL_EDGE, NOW).place == "g1"


def test_all_cloud_sends_what_may_leave_and_keeps_what_may_not() -> None:
    f = fleet(gateway("g1"), gateway("g2"), cloud())
    assert place(task(), f, Strategy.ALL_CLOUD, NOW).place == CLOUD
    private = place(task(privacy=Privacy.SITE), f, Strategy.ALL_CLOUD, NOW)
    assert private.place == "g1" and private.reason == "cloud not allowed"


def test_least_loaded_picks_the_queue_that_drains_first() -> None:
    f = fleet(gateway("g1"), gateway("g2"), cloud(), queued={"g1": 40.0, "cloud": 400.0})
    assert place(task(), f, Strategy.LEAST_LOADED, NOW).place == "g2"


def test_least_loaded_prefers_the_input_gateway_on_a_tie() -> None:
    f = fleet(gateway("g2"), gateway("g1"), cloud())
    assert place(task(), f, Strategy.LEAST_LOADED, NOW).place == "g1"


def test_deadline_cost_stays_local_while_the_deadline_holds() -> None:
    # The cloud would finish sooner (score 2, idle), but local meets the deadline for free.
    f = fleet(gateway("g1"), cloud(), queued={"g1": 20.0})
    d = place(task(deadline_s=60), f, Strategy.DEADLINE_COST, NOW)
    assert d.place == "g1" and d.reason == "meets deadline"
    assert d.finish_s == pytest.approx(20.0 / 2 + 4.0)


def test_deadline_cost_offloads_to_an_idle_peer_before_the_cloud() -> None:
    f = fleet(gateway("g1"), gateway("g2"), cloud(), queued={"g1": 200.0})
    assert place(task(deadline_s=60), f, Strategy.DEADLINE_COST, NOW).place == "g2"


def test_deadline_cost_offloads_to_the_cloud_when_the_site_is_full() -> None:
    f = fleet(gateway("g1"), gateway("g2"), cloud(), queued={"g1": 200.0, "g2": 200.0})
    assert place(task(deadline_s=60), f, Strategy.DEADLINE_COST, NOW).place == CLOUD


def test_deadline_cost_counts_the_bytes_to_move() -> None:
    # 100 MB over a 1 MB/s uplink takes longer than waiting for the local queue.
    f = fleet(gateway("g1"), cloud(), queued={"g1": 100.0})
    big = task(deadline_s=20, nbytes=100_000_000)
    d = place(big, f, Strategy.DEADLINE_COST, NOW)
    assert d.place == "g1" and d.reason.startswith("earliest finish")


def test_a_private_task_whose_site_is_down_has_no_place() -> None:
    f = fleet(gateway("g1"), cloud())
    f.places["g1"].reachable = False
    with pytest.raises(NoPlace, match="no reachable place"):
        place(task(privacy=Privacy.SITE), f, Strategy.LEAST_LOADED, NOW)
    assert place(task(), f, Strategy.LEAST_LOADED, NOW).place == CLOUD


def test_commit_makes_the_next_decision_see_the_work() -> None:
    f = fleet(gateway("g1"), gateway("g2"))
    first = place(task("t1"), f, Strategy.LEAST_LOADED, NOW)
    commit(f, task("t1"), first.place)
    assert place(task("t2"), f, Strategy.LEAST_LOADED, NOW).place != first.place


def test_rebalance_moves_migratable_tasks_off_an_overloaded_gateway_until_it_is_not() -> None:
    tune = Tuning(overload_wait_s=10.0)
    queue = [task(f"t{i}", compute=4.0, migratable=i % 2 == 0) for i in range(10)]
    f = fleet(gateway("g1"), gateway("g2"), cloud(), queued={"g1": 40.0})
    moves = rebalance(f, {"g1": queue}, NOW, tune)
    moved = {m.task_id for m in moves}
    assert moved and all(int(t[1:]) % 2 == 0 for t in moved)  # only migratable ones
    assert {m.target for m in moves} <= {"g2", CLOUD}
    assert f.places["g1"].wait_s <= tune.overload_wait_s
    assert f.places["g1"].queued == pytest.approx(40.0 - 4.0 * len(moves))


def test_rebalance_leaves_a_gateway_below_the_threshold_alone() -> None:
    f = fleet(gateway("g1"), cloud(), queued={"g1": 8.0})
    assert rebalance(f, {"g1": [task("t1"), task("t2")]}, NOW) == []


def test_rebalance_never_moves_to_a_busy_peer() -> None:
    tune = Tuning(overload_wait_s=10.0, idle_wait_s=2.0)
    f = fleet(gateway("g1"), gateway("g2"), queued={"g1": 100.0, "g2": 10.0})
    assert rebalance(f, {"g1": [task("t1")]}, NOW, tune) == []


def test_push_down_sends_light_cloud_tasks_to_spare_edges_and_keeps_heavy_ones() -> None:
    f = fleet(gateway("g1"), gateway("g2", site="b"), cloud(), queued={"cloud": 50.0})
    light = task("light", at=CLOUD, site="", compute=1.0, nbytes=1000)
    heavy = task("heavy", at=CLOUD, site="", compute=50.0, nbytes=1000)
    moves = push_down(f, [light, heavy], NOW)
    assert [(m.task_id, m.source) for m in moves] == [("light", CLOUD)]
    assert moves[0].target in {"g1", "g2"}


def test_push_down_does_not_use_a_busy_edge() -> None:
    f = fleet(gateway("g1"), cloud(), queued={"g1": 30.0})
    assert push_down(f, [task("light", at=CLOUD, site="", compute=1.0)], NOW) == []


# --- privacy as a hard constraint, over arbitrary fleets, loads and strategies ---

sites = st.sampled_from(["a", "b", "c"])
gateways = st.lists(
    st.builds(gateway, st.sampled_from([f"g{i}" for i in range(8)]), sites,
              st.integers(1, 8), st.floats(0.1, 4.0)),
    min_size=1, max_size=8, unique_by=lambda r: r.place)
tasks = st.builds(
    task, st.just("t"), st.sampled_from([f"g{i}" for i in range(8)]),
    sites, st.floats(0.0, 100.0), st.floats(0.0, 600.0), st.sampled_from(list(Privacy)),
    st.booleans(), st.integers(0, 10**8))


def _valid(f: Fleet, t: TaskSpec) -> bool:
    r = f.places.get(t.input_place)
    return r is not None and r.res.site == t.input_site


@settings(max_examples=300, deadline=None)
@given(gateways, st.lists(tasks, max_size=20), st.sampled_from(list(Strategy)),
       st.lists(st.floats(0.0, 1000.0), min_size=8, max_size=8),
       st.lists(st.booleans(), min_size=8, max_size=8))
def test_no_placement_or_move_ever_sends_a_site_private_task_off_its_site(
        gws: list[Resources], ts: list[TaskSpec], strategy: Strategy, loads: list[float],
        down: list[bool]) -> None:
    f = fleet(*gws, cloud())
    for i, p in enumerate(f.places.values()):
        p.queued, p.reachable = loads[i % 8], not down[i % 8] or p.res.is_cloud
    ts = [replace(t, id=f"t{i}") for i, t in enumerate(ts) if _valid(f, t)]
    queues: dict[str, list[TaskSpec]] = {}
    for t in ts:
        try:
            d = place(t, f, strategy, NOW, Tuning(overload_wait_s=5.0))
        except NoPlace:
            assert t.privacy is Privacy.SITE
            continue
        commit(f, t, d.place)
        queues.setdefault(d.place, []).append(t)
        assert allowed(t, f.places[d.place])
    moves = rebalance(f, queues, NOW, Tuning(overload_wait_s=5.0))
    moves += push_down(f, queues.get(CLOUD, []), NOW)
    by_id = {t.id: t for t in ts}
    for m in moves:
        t = by_id[m.task_id]
        target = f.places[m.target].res
        if t.privacy is Privacy.SITE:
            assert not target.is_cloud and target.site == t.input_site
