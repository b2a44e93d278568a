"""The engine's fleet view from status reports: queued work as reported, silent gateways out."""

from __future__ import annotations

import pytest

from tandem.cloud.scheduling.fleetview import cloud_pool, fleet_view
from tandem.cloud.scheduling.status import Latest
from tandem.wire.resources import CLOUD, Privacy, Resources, Status, TaskSpec
from tandem.wire.scheduling import NoPlace, Strategy, place

NOW = 10_000_000


def latest(name: str, queued: float, received_ms: int, link_up: bool = True) -> Latest:
    res = Resources(name, "plant-a", 2, 1.0, 1 << 30, 1 << 30, (), 1e6, 0.05)
    status = Status(name, received_ms, 0.2, 1 << 29, 1, queued, 1, 0, 0.05, 1e6, link_up)
    return Latest(name, res, status, 5000, received_ms)


def test_reported_queues_and_reachability_reach_the_engine() -> None:
    view = fleet_view([latest("gw-1", 40.0, NOW), latest("gw-2", 0.0, NOW - 16_000),
                       latest("gw-3", 0.0, NOW, link_up=False)],
                      cloud_pool(4, score=2.0), 6.0, NOW, unreachable_after=3)
    assert view.places["gw-1"].queued == 40.0 and view.places[CLOUD].queued == 6.0
    assert [p for p, e in view.places.items() if not e.reachable] == ["gw-2", "gw-3"]
    task = TaskSpec("t", "spectral", NOW + 60_000, 4.0, "gw-1", "plant-a", 1000, Privacy.ANY,
                    True)
    assert place(task, view, Strategy.LEAST_LOADED, NOW).place == CLOUD
    private = TaskSpec("p", "spectral", NOW + 60_000, 4.0, "gw-2", "plant-a", 1000,
                       Privacy.SITE, True)
    assert place(private, view, Strategy.LEAST_LOADED, NOW).place == "gw-1"
    view.places["gw-1"].reachable = False
    with pytest.raises(NoPlace):
        place(private, view, Strategy.LEAST_LOADED, NOW)
