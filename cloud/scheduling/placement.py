"""The decision engine applied to the task ledger: place, migrate, reschedule.

Every decision reads a fresh view: the gateways' latest status reports
(cloud/scheduling/fleetview.py) with the work the ledger has placed at each
place (queued or running there) added, so a decision sees the ones before it.
The engine (tandem.wire.scheduling) decides; this module applies its answers
to the ledger with conditional updates, so two schedulers (the API process and
every `tandem-cloud worker`) never move the same task twice:

* `place`: a submitted task goes where the site's strategy puts it;
* `rebalance`: tasks still queued at an overloaded gateway of a site running a
  dynamic strategy move to the cloud or an idle gateway of the same site, and
  light cloud tasks move down to gateways with spare capacity (`push_down`);
* `reschedule`: a task whose gateway stopped renewing its lease (dead, or cut
  off) is placed again, never at that gateway, never off a private task's site.

Tasks placed at CLOUD must then be handed to the huey queue by the caller.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from tandem.cloud.config import CloudConfig
from tandem.cloud.scheduling import status as status_store
from tandem.cloud.scheduling import strategy as strategies
from tandem.cloud.scheduling.fleetview import cloud_pool, fleet_view
from tandem.cloud.tasks import ledger
from tandem.cloud.tasks.queue import TaskQueue
from tandem.cloud.timestamps import now_ms
from tandem.wire import scheduling
from tandem.wire.resources import CLOUD, Resources, TaskSpec
from tandem.wire.scheduling import DYNAMIC, Fleet, Move, NoPlace, Strategy, Tuning
from tandem.wire.tasks.job import Job, job_from_plain

log = logging.getLogger(__name__)


class BadInput(ValueError):
    """The task names an input place or site the fleet does not know as such."""


@dataclass(frozen=True, slots=True)
class Placed:
    """Where a submitted task went, why, and whether it was new (a known id changes nothing)."""

    task_id: str
    place: str
    reason: str
    new: bool


@dataclass(slots=True)
class View:
    """The engine's fleet, and the specs queued (not yet claimed) at each place, oldest first."""

    fleet: Fleet
    queues: dict[str, list[TaskSpec]]


@functools.cache
def _cloud_score() -> float:
    """The compute score of this machine's cores, measured once per process."""
    return cloud_pool(1).score


class Scheduler:
    """Applies the engine's decisions to the ledger, under the cloud's [scheduling] config."""

    def __init__(self, config: CloudConfig, cloud: Resources | None = None) -> None:
        self.config = config
        self._cloud = cloud
        s = config.scheduling
        self.tuning = Tuning(overload_wait_s=s.overload_wait_s, idle_wait_s=s.idle_wait_s,
                             light_compute=s.light_compute)

    @property
    def cloud(self) -> Resources:
        """The cloud worker pool as a place (its score measured on first use)."""
        if self._cloud is None:
            workers = self.config.scheduling.cloud_workers or self.config.tasks.workers
            self._cloud = cloud_pool(workers, _cloud_score())
        return self._cloud

    def view(self, session: Session, now: int) -> View:
        """The fleet now: reported status, plus the ledger's open work at every place."""
        work: dict[str, float] = {}
        queues: dict[str, list[TaskSpec]] = {}
        for row in ledger.open_tasks(session):
            spec = _job(row).spec
            work[row.placed] = work.get(row.placed, 0.0) + spec.compute
            if row.state == ledger.QUEUED:
                queues.setdefault(row.placed, []).append(spec)
        fleet = fleet_view(status_store.latest(session), self.cloud, work.get(CLOUD, 0.0), now,
                           self.config.scheduling.unreachable_after)
        for name, place in fleet.places.items():
            if name != CLOUD:
                place.queued = max(place.queued, work.get(name, 0.0))
        return View(fleet, queues)

    def strategy(self, session: Session, site: str) -> Strategy:
        """The strategy the site runs now (API override, TOML, default)."""
        return strategies.effective(session, self.config.scheduling, site)[0]

    def place(self, session: Session, job: Job, now: int) -> Placed:
        """Record job where its site's strategy puts it; NoPlace or BadInput when it cannot be."""
        known = ledger.task(session, job.task_id)
        if known is not None:
            return Placed(job.task_id, known.placed, "known task id", False)
        view = self.view(session, now)
        _check_input(job.spec, view.fleet)
        strategy = self.strategy(session, job.spec.input_site)
        decision = scheduling.place(job.spec, view.fleet, strategy, now, self.tuning)
        new = ledger.submit(session, job, decision.place, now)
        return Placed(job.task_id, decision.place, decision.reason, new)

    def rebalance(self, session: Session, now: int) -> list[Move]:
        """Move queued migratable tasks off overloaded gateways of dynamic sites, and light
        cloud tasks of dynamic sites down to spare gateways; the moves applied.
        """
        view = self.view(session, now)
        dynamic = {name: queue for name, queue in view.queues.items()
                   if name != CLOUD and name in view.fleet.places
                   and self.strategy(session, view.fleet.places[name].res.site) in DYNAMIC}
        moves = scheduling.rebalance(view.fleet, dynamic, now, self.tuning)
        light = [t for t in view.queues.get(CLOUD, [])
                 if self.strategy(session, t.input_site) in DYNAMIC]
        moves += scheduling.push_down(view.fleet, light, now, self.tuning)
        applied = [m for m in moves if ledger.move(session, m.task_id, m.source, m.target)]
        for move in applied:
            log.info("task %s moved %s -> %s (%s, finish in %.1f s)", move.task_id, move.source,
                     move.target, move.reason, move.finish_s)
        return applied

    def reschedule(self, session: Session, now: int) -> list[tuple[str, str]]:
        """Place again every task whose gateway let its lease expire; (task, new place) pairs."""
        expired = ledger.expired_at_gateways(session, now, CLOUD)
        if not expired:
            return []
        view = self.view(session, now)
        placed: list[tuple[str, str]] = []
        for row in expired:
            holder = view.fleet.places.get(row.placed)
            if holder is not None:
                holder.reachable = False  # it stopped asking: no task goes back there now
            spec = _job(row).spec
            try:
                strategy = self.strategy(session, spec.input_site)
                decision = scheduling.place(spec, view.fleet, strategy, now, self.tuning)
            except NoPlace as why:
                log.warning("task %s lost gateway %s and cannot be placed again yet: %s",
                            row.task_id, row.placed, why)
                continue
            if ledger.requeue(session, row.task_id, now, decision.place):
                scheduling.commit(view.fleet, spec, decision.place)
                placed.append((row.task_id, decision.place))
                log.warning("task %s lost gateway %s (lease expired); placed again at %s",
                            row.task_id, row.placed, decision.place)
        return placed


def _job(row: ledger.CloudTask) -> Job:
    return job_from_plain(json.loads(row.job_json))


def _check_input(spec: TaskSpec, fleet: Fleet) -> None:
    """The input place must be the cloud or a reporting gateway of the site the task names."""
    if spec.input_place == CLOUD:
        return
    holder = fleet.places.get(spec.input_place)
    if holder is None:
        raise BadInput(f"input place {spec.input_place!r} is no gateway that reports its status")
    if holder.res.site != spec.input_site:
        raise BadInput(f"input place {spec.input_place!r} is on site {holder.res.site!r}, "
                       f"not {spec.input_site!r}")


def tick(scheduler: Scheduler, queue: TaskQueue) -> tuple[list[Move], list[tuple[str, str]]]:
    """One round: reschedule lost tasks, rebalance; hand cloud-bound ones to the huey queue."""
    engine: Engine = queue.engine()
    with Session(engine) as session, session.begin():
        rescheduled = scheduler.reschedule(session, now_ms())
    with Session(engine) as session, session.begin():
        moves = scheduler.rebalance(session, now_ms())
    for task_id in _to_cloud(moves, rescheduled):
        queue.enqueue(task_id)
    return moves, rescheduled


def _to_cloud(moves: Sequence[Move], rescheduled: Sequence[tuple[str, str]]) -> list[str]:
    return [m.task_id for m in moves if m.target == CLOUD] \
        + [task_id for task_id, place in rescheduled if place == CLOUD]


def run(scheduler: Scheduler, queue: TaskQueue, stop: threading.Event) -> None:
    """Tick every `[tasks] reap_interval_s` until stop is set (a worker's side thread)."""
    while not stop.wait(queue.settings.reap_interval_s):
        try:
            with queue.fork_gate:
                tick(scheduler, queue)
        except Exception:  # a database hiccup must not end scheduling
            log.exception("scheduling round failed; trying again")
