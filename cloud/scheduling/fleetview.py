"""The decision engine's view of the fleet, built from the gateways' latest status reports.

The cloud scheduler (and anything else placing tasks) calls `fleet_view` and
hands the result to tandem.wire.scheduling: each reporting gateway with the
resources it described and the work it reported queued, unreachable ones marked
so (no task is placed there), and the cloud pool as the place CLOUD.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable

from tandem.cloud.scheduling.status import Latest
from tandem.wire import computescore
from tandem.wire.resources import CLOUD, Resources
from tandem.wire.scheduling import Fleet


def cloud_pool(workers: int, score: float | None = None) -> Resources:
    """The cloud's queue workers as one place (score measured here unless given)."""
    return Resources(CLOUD, "", workers, score if score is not None else computescore.measure(),
                     os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), 0, (),
                     math.inf, 0.0)


def fleet_view(latest: Iterable[Latest], cloud: Resources, cloud_queued: float, now_ms: int,
               unreachable_after: int) -> Fleet:
    """A Fleet of every reporting gateway plus the cloud pool, with their queued work."""
    fleet = Fleet()
    for state in latest:
        place = fleet.add(state.resources)
        place.queued = state.status.queued_compute
        place.reachable = state.reachable(now_ms, unreachable_after) and state.status.link_up
    fleet.add(cloud).queued = cloud_queued
    return fleet
