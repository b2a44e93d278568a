"""The decision engine: where a task runs, and which queued tasks move. Pure, no I/O.

One engine for the cloud scheduler, a gateway deciding while its link is down, and
the simulator (tandem.tools.simulate), so the simulated figures are about the code
that really runs. The caller owns a `Fleet` (the latest resources and queue of every
place), asks `place` for arriving tasks, `rebalance` for overloaded gateways and
`push_down` for light cloud tasks, and applies the returned moves.

Privacy is a hard constraint, not a cost: a task whose input may not leave its
site is never placed on, nor moved to, the cloud or another site's gateway, under
any strategy (`allowed` is the single gate every candidate passes through).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from tandem.wire.resources import CLOUD, Privacy, Resources, TaskSpec


class Strategy(StrEnum):
    """How arriving tasks are placed; per site in the cloud config, switchable at run time."""

    ALL_EDGE = "all-edge"              # run where the input is (a gateway of the site)
    ALL_CLOUD = "all-cloud"            # send everything the privacy class lets leave the site
    LEAST_LOADED = "least-loaded"      # the allowed place whose queue drains first
    DEADLINE_COST = "deadline-cost"    # stay local while the deadline holds, else cheapest finish


class NoPlace(ValueError):
    """No reachable place may run the task (e.g. every gateway of a private task's site is down)."""


@dataclass(frozen=True, slots=True)
class Tuning:
    """Engine thresholds and the site LAN, in the units of tandem.wire.resources."""

    lan_bandwidth_bps: float = 12.5e6  # 100 Mbit/s between gateways of one site
    lan_rtt_s: float = 0.001
    overload_wait_s: float = 30.0      # a gateway whose queue needs longer is overloaded
    idle_wait_s: float = 2.0           # one whose queue drains within this has spare capacity
    light_compute: float = 5.0         # score-seconds: a cloud task this light may go to an edge


@dataclass(slots=True)
class Place:
    """One place in the engine's view: what it is and how much work waits there."""

    res: Resources
    queued: float = 0.0                # score-seconds waiting or running
    reachable: bool = True

    @property
    def wait_s(self) -> float:
        """Seconds until a new task would start, with every core busy."""
        return self.queued / self.res.capacity


@dataclass(slots=True)
class Fleet:
    """The engine's view of every place, indexed by id and by site."""

    places: dict[str, Place] = field(default_factory=dict)
    by_site: dict[str, list[Place]] = field(default_factory=dict)

    def add(self, res: Resources) -> Place:
        """Add (or replace) a place; returns its live entry."""
        place = Place(res)
        old = self.places.get(res.place)
        if old is not None and not old.res.is_cloud:
            self.by_site[old.res.site].remove(old)
        self.places[res.place] = place
        if not res.is_cloud:
            self.by_site.setdefault(res.site, []).append(place)
        return place

    def candidates(self, task: TaskSpec) -> Iterable[Place]:
        """Places worth considering: the input's site and the cloud (everywhere for cloud input)."""
        if task.input_place == CLOUD:
            yield from self.places.values()
            return
        yield from self.by_site.get(task.input_site, ())
        cloud = self.places.get(CLOUD)
        if cloud is not None:
            yield cloud


@dataclass(frozen=True, slots=True)
class Decision:
    """Run `task_id` at `place`; `finish_s` is the engine's estimate from now."""

    task_id: str
    place: str
    finish_s: float
    reason: str


@dataclass(frozen=True, slots=True)
class Move:
    """Take queued `task_id` from `source` and run it at `target` instead."""

    task_id: str
    source: str
    target: str
    finish_s: float
    reason: str


def allowed(task: TaskSpec, place: Place) -> bool:
    """The hard constraints: reachable, and a site-private input never leaves its site."""
    if not place.reachable:
        return False
    if task.privacy is Privacy.SITE:
        return not place.res.is_cloud and place.res.site == task.input_site
    return True


def transfer_s(task: TaskSpec, target: Resources, fleet: Fleet, tuning: Tuning) -> float:
    """Seconds to bring the task's input to `target` (0 where the input already is)."""
    if target.place == task.input_place:
        return 0.0
    source = fleet.places[task.input_place].res if task.input_place in fleet.places else None
    if source is None:
        raise NoPlace(f"input place {task.input_place!r} is not in the fleet")
    if not source.is_cloud and not target.is_cloud and source.site == target.site:
        return task.input_bytes / tuning.lan_bandwidth_bps + tuning.lan_rtt_s
    # Via the cloud: up the source's link, down the target's (the cloud's own link is inf/0).
    return sum(task.input_bytes / r.bandwidth_bps + r.rtt_s for r in (source, target))


def finish_s(task: TaskSpec, place: Place, fleet: Fleet, tuning: Tuning) -> float:
    """The cost model: queue wait + compute / score + bytes / bandwidth + RTT."""
    return place.wait_s + task.compute / place.res.score \
        + transfer_s(task, place.res, fleet, tuning)


Chooser = Callable[[TaskSpec, list[Place], "_Estimate", int], tuple[Place, str]]
_Estimate = Callable[[Place], float]


def _tier(task: TaskSpec, place: Place) -> int:
    """0 where the input is, 1 another gateway, 2 the cloud: the order of preference."""
    if place.res.place == task.input_place:
        return 0
    return 2 if place.res.is_cloud else 1


def _all_edge(task: TaskSpec, options: list[Place], est: _Estimate, now_ms: int
              ) -> tuple[Place, str]:
    edges = [p for p in options if not p.res.is_cloud] or options
    return min(edges, key=lambda p: (_tier(task, p), est(p))), "edge"


def _all_cloud(task: TaskSpec, options: list[Place], est: _Estimate, now_ms: int
               ) -> tuple[Place, str]:
    clouds = [p for p in options if p.res.is_cloud]
    if clouds:
        return clouds[0], "cloud"
    return min(options, key=lambda p: (_tier(task, p), est(p))), "cloud not allowed"


def _least_loaded(task: TaskSpec, options: list[Place], est: _Estimate, now_ms: int
                  ) -> tuple[Place, str]:
    return min(options, key=lambda p: (p.wait_s, _tier(task, p))), "least loaded"


def _deadline_cost(task: TaskSpec, options: list[Place], est: _Estimate, now_ms: int
                   ) -> tuple[Place, str]:
    budget = (task.deadline_ms - now_ms) / 1000.0
    costed = [(est(p), p) for p in options]
    feasible = [(f, p) for f, p in costed if f <= budget]
    if feasible:
        return min(feasible, key=lambda fp: (_tier(task, fp[1]), fp[0]))[1], "meets deadline"
    return min(costed, key=lambda fp: fp[0])[1], "earliest finish (deadline missed)"


CHOOSERS: dict[Strategy, Chooser] = {
    Strategy.ALL_EDGE: _all_edge,
    Strategy.ALL_CLOUD: _all_cloud,
    Strategy.LEAST_LOADED: _least_loaded,
    Strategy.DEADLINE_COST: _deadline_cost,
}

# The static baselines place once; the dynamic strategies also migrate and push down.
DYNAMIC = frozenset({Strategy.LEAST_LOADED, Strategy.DEADLINE_COST})


def place(task: TaskSpec, fleet: Fleet, strategy: Strategy, now_ms: int,
          tuning: Tuning = Tuning()) -> Decision:
    """Where an arriving task runs; NoPlace when no allowed place is reachable."""
    options = [p for p in fleet.candidates(task) if allowed(task, p)]
    if not options:
        raise NoPlace(f"task {task.id}: no reachable place may run it ({task.privacy.value})")
    chosen, why = CHOOSERS[strategy](task, options,
                                     lambda p: finish_s(task, p, fleet, tuning), now_ms)
    return Decision(task.id, chosen.res.place, finish_s(task, chosen, fleet, tuning), why)


def commit(fleet: Fleet, task: TaskSpec, target: str, source: str | None = None) -> None:
    """Account a placement or move in the view, so the next decision sees it."""
    if source is not None:
        src = fleet.places[source]
        src.queued = max(0.0, src.queued - task.compute)
    fleet.places[target].queued += task.compute


def rebalance(fleet: Fleet, queues: dict[str, Sequence[TaskSpec]], now_ms: int,
              tuning: Tuning = Tuning()) -> list[Move]:
    """Moves of queued migratable tasks off overloaded gateways (to the cloud or an idle peer)."""
    moves: list[Move] = []
    for source, queue in queues.items():
        src = fleet.places.get(source)
        if src is None or src.res.is_cloud:
            continue
        # The back of the queue waits longest, so it gains most from moving.
        for task in reversed(queue):
            if src.wait_s <= tuning.overload_wait_s:
                break
            move = _relief(task, src, fleet, now_ms, tuning)
            if move is not None:
                commit(fleet, task, move.target, source)
                moves.append(move)
    return moves


def _relief(task: TaskSpec, src: Place, fleet: Fleet, now_ms: int, tuning: Tuning
            ) -> Move | None:
    """The best move for one queued task, if any place would finish it sooner."""
    if not task.migratable:
        return None
    targets = [p for p in fleet.candidates(task)
               if p is not src and allowed(task, p)
               and (p.res.is_cloud or p.wait_s <= tuning.idle_wait_s)]
    if not targets:
        return None
    stay = src.wait_s  # upper bound on its finish where it is: behind the whole queue
    best = min(targets, key=lambda p: finish_s(task, p, fleet, tuning))
    f = finish_s(task, best, fleet, tuning)
    if f >= stay:
        return None
    return Move(task.id, src.res.place, best.res.place, f, "overloaded source")


def push_down(fleet: Fleet, cloud_queue: Sequence[TaskSpec], now_ms: int,
              tuning: Tuning = Tuning()) -> list[Move]:
    """Moves of light migratable cloud tasks to spare edges that still meet the deadline."""
    moves: list[Move] = []
    spare = [p for p in fleet.places.values()
             if not p.res.is_cloud and p.reachable and p.wait_s <= tuning.idle_wait_s]
    for task in cloud_queue:
        if not spare or not task.migratable or task.compute > tuning.light_compute:
            continue
        budget = (task.deadline_ms - now_ms) / 1000.0
        options = [p for p in spare if allowed(task, p) and p.wait_s <= tuning.idle_wait_s]
        costed = [(finish_s(task, p, fleet, tuning), p) for p in options]
        costed = [(f, p) for f, p in costed if f <= budget]
        if not costed:
            continue
        f, best = min(costed, key=lambda fp: fp[0])
        commit(fleet, task, best.res.place, CLOUD)
        moves.append(Move(task.id, CLOUD, best.res.place, f, "spare edge capacity"))
    return moves
