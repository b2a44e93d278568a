"""Benchmark of the reflex during a task surge: does the gateway's reflex stay fast?

    tandem bench surge [--trips 1000] [--rounds 3] [--rate 500] [--workers 2] [--queue 16]

In one process, as the gateway runs them: the reflex path of `tandem bench
reflex` (report -> stop coil written and read back, against a Modbus TCP
controller process; its `reflex_latency`) beside the gateway's task worker pool
(gateway/tasks/pool.py, separate processes). The reflex is timed in four phases:

* `idle`: the pool holds no task;
* `surge-here`: bursts of `burn` tasks keep the pool's queue full (all-edge), its
  workers at idle priority (SCHED_IDLE, else nice 19) as the gateway runs them;
* `surge-migrated`: the same bursts, and at every claim poll the decision engine
  (tandem.wire.scheduling.rebalance) moves queued tasks off this overloaded
  gateway to the cloud or an idle peer; those are withdrawn from the pool (they
  run elsewhere, not on this machine; the peers count as idle each round);
* `surge-normal-priority`: the surge kept here with workers left at nice 0, to
  show what the lower priority buys.

The phases take turns for `--rounds` rounds (trips split evenly), so a load that
comes and goes on a shared machine falls on all of them alike. Each phase prints
the reflex p50/p99 and its p99 over the idle p99. The workers' scheduling
policy and nice value are read back from the kernel, not assumed. Why the
reflex suffers, when it does, is profiled from the kernel's scheduler counts
of this (the gateway's) process during the phase: the loop thread's time spent
runnable but waiting for a CPU (/proc/self/schedstat), and how often its
threads were preempted (involuntary context switches).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from tandem.gateway.tasks.pool import PoolSettings, WorkerPool
from tandem.tools.bench.reflex import LIMITS_MS, Figures, reflex_latency
from tandem.wire import scheduling
from tandem.wire.clock import now_ms
from tandem.wire.resources import CLOUD, Privacy, Resources, TaskSpec
from tandem.wire.tasks import registry
from tandem.wire.tasks.job import Job

SITE, HERE, PEER = "plant-a", "gw-a", "gw-b"
POLL_S = 0.3  # the gateway's claim poll in the offload tests and bench
POLICIES = {os.SCHED_OTHER: "SCHED_OTHER", os.SCHED_BATCH: "SCHED_BATCH",
            os.SCHED_IDLE: "SCHED_IDLE"}


@dataclass(frozen=True, slots=True)
class Phase:
    """What the task pool does while the reflex is timed."""

    name: str
    surge: bool = False
    migrate: bool = False
    idle_priority: bool = True


PHASES = (Phase("idle"), Phase("surge-here", surge=True),
          Phase("surge-migrated", surge=True, migrate=True),
          Phase("surge-normal-priority", surge=True, idle_priority=False))


@dataclass(slots=True)
class Tally:
    """Tasks the pool finished and the engine moved away during a phase; the workers' priority."""

    completed: int = 0
    moved: int = 0
    workers: list[str] = field(default_factory=list)
    samples: list[float] = field(default_factory=list)  # reflex latencies, ms
    seconds: float = 0.0  # time the reflex was timed
    runq_wait_s: float = 0.0  # the loop thread runnable, waiting for a CPU
    preempted: int = 0  # involuntary context switches of this process's threads

    def count(self, done: asyncio.Future[dict[str, object]]) -> None:
        """A pool future's done callback: count a completed task (withdrawn ones are cancelled)."""
        if not done.cancelled() and done.exception() is None:
            self.completed += 1


@dataclass(frozen=True, slots=True)
class Surge:
    """The bursts: tasks of `iterations` each declaring `compute` score-seconds (score 1.0)."""

    workers: int
    queue: int
    iterations: int
    compute: float

    def tuning(self) -> scheduling.Tuning:
        """Overloaded past two task lengths of wait, idle within one."""
        return scheduling.Tuning(overload_wait_s=2 * self.compute, idle_wait_s=self.compute)


def main(argv: Sequence[str] | None = None) -> int:
    """Time the reflex in each phase and print its figures beside the idle ones."""
    args = _parser().parse_args(argv)
    started = time.perf_counter()
    registry.run("burn", {"iterations": args.iterations})
    surge = Surge(args.workers, args.queue, args.iterations, time.perf_counter() - started)
    print(f"surge: load average {os.getloadavg()[0]:.2f}; pool of {surge.workers} worker "
          f"processes, queue {surge.queue}, burn {surge.iterations:,} iterations "
          f"({surge.compute:.2f} s) per task; reflex over {args.trips} trips per phase in "
          f"{args.rounds} rounds, background {args.rate:g} reports/s", flush=True)
    phases = [phase for phase in PHASES if phase.name in args.phases]
    tallies = {phase.name: Tally() for phase in phases}
    trips = max(1, args.trips // args.rounds)
    for _ in range(args.rounds):
        for phase in phases:
            asyncio.run(_phase(phase, surge, args, trips, tallies[phase.name]))
    idle = tallies.get("idle")
    idle_p99 = Figures("idle", idle.samples).percentile(99) if idle else math.nan
    for phase in phases:
        tally = tallies[phase.name]
        _print(phase, Figures(phase.name, tally.samples), tally, idle_p99)
    print(f"surge: load average {os.getloadavg()[0]:.2f} at the end")
    return 0


async def _phase(phase: Phase, surge: Surge, args: argparse.Namespace, trips: int,
                 tally: Tally) -> None:
    pool = WorkerPool(PoolSettings(workers=surge.workers, queue_limit=surge.queue,
                                   idle_priority=phase.idle_priority),
                      registry_=CollectorRegistry())
    pool.start()
    stop = asyncio.Event()
    feeder = asyncio.create_task(_feed(pool, phase, surge, stop, tally)) if phase.surge else None
    try:
        if feeder is not None:
            await _all_started(pool, surge.workers)
            print(f"phase {phase.name}: {surge.workers} workers busy", flush=True)
        before = _scheduling()
        run = await reflex_latency(trips, args.rate, args.devices)
        after = _scheduling()
        tally.samples += run.reflex.samples
        tally.seconds += after[0] - before[0]
        tally.runq_wait_s += after[1] - before[1]
        tally.preempted += after[2] - before[2]
        # Read after the run: a worker's initializer (which lowers it) has surely run by now.
        tally.workers = _priorities(pool.worker_pids()) if feeder is not None else []
    finally:
        stop.set()
        if feeder is not None:
            await feeder
        await pool.close()


async def _feed(pool: WorkerPool, phase: Phase, surge: Surge, stop: asyncio.Event,
                tally: Tally) -> None:
    """Keep the pool's queue full with bursts; with `migrate`, apply the engine's moves."""
    n = 0
    while not stop.is_set():
        while pool.queued() < surge.queue:
            n += 1
            pool.submit(_job(f"{phase.name}-{n}", surge)).add_done_callback(tally.count)
        if phase.migrate:
            moved = _moves(pool, surge)
            tally.moved += len(pool.withdraw(only=moved))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), POLL_S)


def _job(task_id: str, surge: Surge) -> Job:
    spec = TaskSpec(task_id, "burn", now_ms() + 3_600_000, surge.compute, HERE, SITE, 0,
                    Privacy.ANY, True)
    return Job(spec, {"iterations": surge.iterations})


def _moves(pool: WorkerPool, surge: Surge) -> set[str]:
    """The ids the decision engine moves off this gateway now (to the cloud or the peer)."""
    fleet = scheduling.Fleet()
    here = fleet.add(_place(HERE, surge.workers, 1.25e6, 0.01))
    fleet.add(_place(PEER, surge.workers, 1.25e6, 0.01))
    fleet.add(_place(CLOUD, 2 * surge.workers, math.inf, 0.0))
    jobs = pool.jobs()
    here.queued = sum(job.spec.compute for job, _ in jobs)
    waiting = [job.spec for job, started in jobs if not started]
    moves = scheduling.rebalance(fleet, {HERE: waiting}, now_ms(), surge.tuning())
    return {move.task_id for move in moves}


def _place(name: str, cores: int, bandwidth_bps: float, rtt_s: float) -> Resources:
    return Resources(name, "" if name == CLOUD else SITE, cores, 1.0, 0, 0, (), bandwidth_bps,
                     rtt_s)


async def _all_started(pool: WorkerPool, workers: int, timeout: float = 60.0) -> None:
    """Wait until every worker process runs a task (the surge is on)."""
    deadline = time.monotonic() + timeout
    while sum(1 for _, started in pool.jobs() if started) < workers \
            or len(pool.worker_pids()) < workers:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the pool's {workers} workers did not start within {timeout} s")
        await asyncio.sleep(0.05)


def _scheduling() -> tuple[float, float, int]:
    """Now, the loop thread's run-queue wait so far (s), this process's preemptions so far."""
    with open("/proc/thread-self/schedstat") as stat:
        waited_ns = int(stat.read().split()[1])
    return time.monotonic(), waited_ns / 1e9, resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw


def _priorities(pids: list[int]) -> list[str]:
    """Each worker's scheduling policy and nice value, as the kernel has them."""
    return [f"pid {pid} {POLICIES.get(os.sched_getscheduler(pid), '?')} nice "
            f"{os.getpriority(os.PRIO_PROCESS, pid)}" for pid in pids]


def _print(phase: Phase, figures: Figures, tally: Tally, idle_p99: float) -> None:
    p99 = figures.percentile(99)
    limit = dict(LIMITS_MS)[99.0]
    print(f"reflex {phase.name:<22} p50 {figures.percentile(50):7.3f} ms  p99 {p99:7.3f} ms  "
          f"p99/idle {p99 / idle_p99:5.2f}  p99/limit {p99 / limit:5.2f} (limit {limit:g} ms)  "
          f"tasks done {tally.completed}  moved {tally.moved}", flush=True)
    seconds = tally.seconds or math.nan
    print(f"profile {phase.name:<21} loop thread waited for a CPU "
          f"{1000 * tally.runq_wait_s / seconds:6.1f} ms/s; preempted "
          f"{tally.preempted / seconds:6.1f} times/s", flush=True)
    if tally.workers:
        print(f"workers {phase.name:<21} " + "; ".join(tally.workers), flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tandem bench surge",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--trips", type=int, default=1000, help="stop firings timed per phase")
    parser.add_argument("--rounds", type=int, default=3, help="turns the phases take")
    parser.add_argument("--phases", nargs="*", choices=[p.name for p in PHASES],
                        default=[p.name for p in PHASES], help="which phases (default all)")
    parser.add_argument("--rate", type=float, default=500.0, help="background reports/s")
    parser.add_argument("--devices", type=int, default=100, help="background devices")
    parser.add_argument("--workers", type=int, default=2, help="task worker processes")
    parser.add_argument("--queue", type=int, default=16, help="tasks the pool may hold")
    parser.add_argument("--iterations", type=int, default=3_000_000, help="burn size per task")
    return parser
