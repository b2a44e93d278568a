"""The scheduling simulator: the engine over a SimPy fleet, reproducible, every task accounted."""

from __future__ import annotations

import random
from dataclasses import replace

from tandem.tools.simulate import traces
from tandem.tools.simulate.model import simulate
from tandem.wire.resources import CLOUD
from tandem.wire.scheduling import Strategy

SMALL = traces.TraceConfig(gateways=6, per_site=3, seconds=120.0, seed=3, surge=30)


def test_the_same_seed_gives_the_same_figures() -> None:
    assert simulate(SMALL, Strategy.DEADLINE_COST) == simulate(SMALL, Strategy.DEADLINE_COST)


def test_traces_are_bursty_and_cover_every_gateway() -> None:
    cfg = replace(SMALL, gateways=40, seconds=600.0, surge=0, fleet_rate=0.0)
    rng = random.Random(cfg.seed)
    places = traces.fleet(cfg, rng)
    per_gateway: dict[str, int] = {}
    for a in traces.arrivals(cfg, places, rng):
        per_gateway[a.task.input_place] = per_gateway.get(a.task.input_place, 0) + 1
    counts = sorted(per_gateway.values())
    assert CLOUD not in per_gateway
    assert counts[-1] > 3 * max(1, counts[len(counts) // 2])  # a few gateways surge


def test_every_strategy_finishes_every_task_of_a_drained_trace() -> None:
    for strategy in Strategy:
        o = simulate(SMALL, strategy)
        assert o.unplaced == 0 and o.completed == o.tasks
        assert 0.0 < o.hit_rate <= 1.0


def test_all_edge_uses_no_cloud_and_all_cloud_uses_it_for_everything_that_may_leave() -> None:
    edge = simulate(SMALL, Strategy.ALL_EDGE)
    assert edge.cloud_compute == 0.0 and edge.moves == 0
    open_trace = replace(SMALL, private_share=0.0)
    cloud = simulate(open_trace, Strategy.ALL_CLOUD)
    assert cloud.cloud_compute == cloud.total_compute


def test_a_private_only_trace_never_computes_in_the_cloud() -> None:
    private = replace(SMALL, private_share=1.0, fleet_rate=0.0)
    for strategy in Strategy:
        assert simulate(private, strategy).cloud_compute == 0.0


def test_under_a_surge_offloading_beats_staying_put() -> None:
    stay = simulate(SMALL, Strategy.ALL_EDGE)
    dynamic = simulate(SMALL, Strategy.DEADLINE_COST)
    assert dynamic.hit_rate > stay.hit_rate
    assert dynamic.mean_completion_s < stay.mean_completion_s
