"""The SimPy model: gateways and the cloud pool as worker queues, the engine deciding.

Each place runs `cores` workers pulling from its queue; an arriving task is
placed by `tandem.wire.scheduling.place` (the engine the cloud runs), input
moved at the link's bandwidth and RTT before it joins the target queue; every
status interval the dynamic strategies `rebalance` overloaded gateways and
`push_down` light cloud tasks. A task's true work differs from its declared
estimate (lognormal noise), so the engine decides on guesses, as it does live.
The engine sees queue state as of the event (the live system sees it as of the
last status report, a few seconds old): a known optimism of the model.
"""

from __future__ import annotations

import random
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import simpy

from tandem.tools.simulate import traces
from tandem.wire.resources import CLOUD, Resources
from tandem.wire.scheduling import (
    DYNAMIC,
    Fleet,
    Move,
    NoPlace,
    Strategy,
    Tuning,
    commit,
    place,
    push_down,
    rebalance,
    transfer_s,
)

Proc = Generator[simpy.Event, Any, None]


@dataclass(frozen=True, slots=True)
class Outcome:
    """One strategy's figures over one trace."""

    strategy: Strategy
    tasks: int
    completed: int
    hit_rate: float                # completed by the deadline / all tasks
    mean_completion_s: float       # arrival to result, completed tasks
    bytes_moved: int               # input bytes sent between places
    cloud_compute: float           # score-seconds run in the cloud
    total_compute: float           # score-seconds run anywhere
    moves: int                     # migrations and push-downs
    unplaced: int                  # NoPlace: no reachable allowed place


@dataclass(slots=True)
class _Job:
    arrival: traces.Arrival
    at: str                        # where its input is now


@dataclass(slots=True)
class _Tally:
    hits: int = 0
    done: int = 0
    completion_s: float = 0.0
    bytes_moved: int = 0
    cloud_compute: float = 0.0
    total_compute: float = 0.0
    moves: int = 0
    unplaced: int = 0


@dataclass
class _Run:
    env: simpy.Environment
    strategy: Strategy
    tuning: Tuning
    fleet: Fleet = field(default_factory=Fleet)
    queues: dict[str, simpy.Store] = field(default_factory=dict)
    jobs: dict[str, _Job] = field(default_factory=dict)
    tally: _Tally = field(default_factory=_Tally)

    def start(self, places: list[Resources]) -> None:
        """One queue and `cores` workers per place."""
        for res in places:
            self.fleet.add(res)
            self.queues[res.place] = simpy.Store(self.env)
            for _ in range(res.cores):
                self.env.process(self.worker(res))

    def sim_ms(self) -> int:
        """Simulated time in ms (the engine's clock in the model)."""
        return int(self.env.now * 1000)

    def feed(self, arrivals: list[traces.Arrival]) -> Proc:
        """Submit each arrival at its time."""
        for a in arrivals:
            yield self.env.timeout(max(0.0, a.t_s - self.env.now))
            self.submit(a)

    def submit(self, a: traces.Arrival) -> None:
        try:
            d = place(a.task, self.fleet, self.strategy, self.sim_ms(), self.tuning)
        except NoPlace:
            self.tally.unplaced += 1
            return
        commit(self.fleet, a.task, d.place)
        job = _Job(a, a.task.input_place)
        self.jobs[a.task.id] = job
        self.send(job, d.place)

    def send(self, job: _Job, target: str) -> None:
        """Queue the job at target, after moving its input there if it is elsewhere."""
        if target == job.at:
            self.queues[target].put(job)
            return
        task = job.arrival.task
        self.tally.bytes_moved += task.input_bytes
        delay = transfer_s(task, self.fleet.places[target].res, self.fleet, self.tuning)
        job.at = target
        self.env.process(self._deliver(job, target, delay))

    def _deliver(self, job: _Job, target: str, delay: float) -> Proc:
        yield self.env.timeout(delay)
        yield self.queues[target].put(job)

    def worker(self, res: Resources) -> Proc:
        """Run queued jobs one at a time at this core's score."""
        queue = self.queues[res.place]
        while True:
            job = yield queue.get()
            yield self.env.timeout(job.arrival.work / res.score)
            self._finished(job, res)

    def _finished(self, job: _Job, res: Resources) -> None:
        task, t = job.arrival.task, self.tally
        entry = self.fleet.places[res.place]
        entry.queued = max(0.0, entry.queued - task.compute)
        del self.jobs[task.id]
        t.done += 1
        t.completion_s += self.env.now - job.arrival.t_s
        t.hits += self.sim_ms() <= task.deadline_ms
        t.total_compute += job.arrival.work
        if res.is_cloud:
            t.cloud_compute += job.arrival.work

    def balance(self, every_s: float, until_s: float) -> Proc:
        """Every status interval: migrate off overloaded gateways, push light cloud work down."""
        while self.env.now < until_s:
            yield self.env.timeout(every_s)
            waiting = {p: [j.arrival.task for j in q.items]
                       for p, q in self.queues.items() if q.items and p != CLOUD}
            moves = rebalance(self.fleet, waiting, self.sim_ms(), self.tuning)
            cloud = [j.arrival.task for j in self.queues[CLOUD].items]
            moves += push_down(self.fleet, cloud, self.sim_ms(), self.tuning)
            for m in moves:
                self._apply(m)

    def _apply(self, m: Move) -> None:
        job = self.jobs[m.task_id]
        self.queues[m.source].items.remove(job)
        self.tally.moves += 1
        self.send(job, m.target)


def simulate(cfg: traces.TraceConfig, strategy: Strategy, tuning: Tuning | None = None,
             status_interval_s: float = 5.0) -> Outcome:
    """Run one strategy over the trace `cfg` describes; drain for up to 3x the trace length."""
    rng = random.Random(cfg.seed)
    places = traces.fleet(cfg, rng)
    arrivals = traces.arrivals(cfg, places, rng)
    env = simpy.Environment()
    run = _Run(env, strategy, tuning or Tuning())
    run.start(places)
    env.process(run.feed(arrivals))
    until = cfg.seconds * 4
    if strategy in DYNAMIC:
        env.process(run.balance(status_interval_s, until))
    env.run(until=until)
    t = run.tally
    return Outcome(strategy, len(arrivals), t.done, t.hits / max(1, len(arrivals)),
                   t.completion_s / max(1, t.done), t.bytes_moved, t.cloud_compute,
                   t.total_compute, t.moves, t.unplaced)
