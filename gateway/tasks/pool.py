"""A bounded pool of worker processes at idle priority that runs tasks, each result once.

Workers are separate processes scheduled SCHED_IDLE (nice 19 where that is
refused), so a surge of analysis tasks takes only CPU the reflex path and the
pipeline leave over. The queue is bounded: a task past `queue_limit` is
refused with QueueFull (a metric and a WARNING), never dropped silently.
A queued task can be withdrawn (the decision engine migrates it elsewhere).
A task id is the idempotency key: the same id submitted again while queued,
running or done yields the one result; a worker that dies mid-task is
replaced and its task run again up to `attempts` times.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from collections import OrderedDict
from collections.abc import Callable, Collection
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from tandem.wire.tasks import registry
from tandem.wire.tasks.job import Job

log = logging.getLogger(__name__)

Runner = Callable[[str, dict[str, Any]], dict[str, Any]]  # module-level: it is pickled


class QueueFull(Exception):
    """The pool holds queue_limit tasks already; place this one elsewhere or later."""


class TaskFailed(Exception):
    """The task raised, or its worker died more often than attempts allows."""


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """How many workers, how many tasks may wait or run, how often a crashed task is retried."""

    workers: int = 2
    queue_limit: int = 64
    attempts: int = 2
    remembered: int = 1024  # finished task ids kept to answer a duplicate with its result
    idle_priority: bool = True  # False only to measure what the lower priority buys (benches)


@dataclass(slots=True)
class _Entry:
    job: Job
    result: asyncio.Future[dict[str, Any]] = field(default_factory=asyncio.Future)
    started: bool = False


def lower_priority() -> None:
    """Make this process run only on CPU no one else wants (SCHED_IDLE, else nice 19)."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (OSError, AttributeError):
        log.warning("SCHED_IDLE refused; task workers fall back to nice 19")
    os.nice(19 - os.nice(0))


class WorkerPool:
    """Queue of jobs, run FIFO by `workers` idle-priority processes."""

    def __init__(self, settings: PoolSettings, runner: Runner = registry.run,
                 registry_: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self._runner = runner
        self._entries: dict[str, _Entry] = {}
        self._done: OrderedDict[str, asyncio.Future[dict[str, Any]]] = OrderedDict()
        self._ready: asyncio.Queue[str] = asyncio.Queue()
        self._executor = self._new_executor()
        self._dispatchers: list[asyncio.Task[None]] = []
        self._depth = Gauge("tandem_gw_tasks_queued", "Tasks waiting or running in the worker pool",
                            registry=registry_)
        self._events = Counter("tandem_gw_tasks", "Tasks completed, failed, refused (queue full), "
                               "withdrawn (migrated) or retried (worker died)", ["event"],
                               registry=registry_)
        for event in ("completed", "failed", "refused", "withdrawn", "retried"):
            self._events.labels(event)

    def start(self) -> None:
        """Start one dispatcher per worker on the running loop."""
        self._dispatchers = [asyncio.create_task(self._dispatch())
                             for _ in range(self.settings.workers)]

    async def close(self) -> None:
        """Stop dispatching, fail what is still queued, and stop the worker processes."""
        for task in self._dispatchers:
            task.cancel()
        await asyncio.gather(*self._dispatchers, return_exceptions=True)
        for entry in self._entries.values():
            if not entry.result.done():
                entry.result.set_exception(TaskFailed("worker pool closed"))
        await asyncio.to_thread(self._stop_workers)

    def submit(self, job: Job) -> asyncio.Future[dict[str, Any]]:
        """The future result of job, queued unless its id is known; QueueFull past the bound."""
        known = self._entries.get(job.task_id)
        if known is not None:
            return known.result
        if job.task_id in self._done:
            return self._done[job.task_id]
        if len(self._entries) >= self.settings.queue_limit:
            self._events.labels("refused").inc()
            log.warning("task %s refused: %d tasks queued", job.task_id, len(self._entries))
            raise QueueFull(job.task_id)
        self._entries[job.task_id] = _Entry(job)
        self._ready.put_nowait(job.task_id)
        self._depth.set(len(self._entries))
        return self._entries[job.task_id].result

    def withdraw(self, migratable_only: bool = True,
                 only: Collection[str] | None = None) -> list[Job]:
        """Take every queued, not yet started (and migratable) task (of `only` ids, if given)
        out, to run elsewhere."""
        taken = [e for e in self._entries.values()
                 if not e.started and (e.job.spec.migratable or not migratable_only)
                 and (only is None or e.job.task_id in only)]
        for entry in taken:
            del self._entries[entry.job.task_id]
            entry.result.cancel()
        self._events.labels("withdrawn").inc(len(taken))
        self._depth.set(len(self._entries))
        return [e.job for e in taken]

    def queued(self) -> int:
        """Tasks waiting or running."""
        return len(self._entries)

    def jobs(self) -> list[tuple[Job, bool]]:
        """Every job waiting or running, and whether it has started (for status reports)."""
        return [(e.job, e.started) for e in self._entries.values()]

    def worker_pids(self) -> list[int]:
        """The live worker processes (for tests and the status report)."""
        processes = getattr(self._executor, "_processes", None) or {}
        return sorted(processes)

    async def _dispatch(self) -> None:
        while True:
            task_id = await self._ready.get()
            entry = self._entries.get(task_id)
            if entry is None:  # withdrawn while queued
                continue
            entry.started = True
            await self._run(entry)
            self._finish(entry)

    async def _run(self, entry: _Entry) -> None:
        loop = asyncio.get_running_loop()
        for attempt in range(1, self.settings.attempts + 1):
            executor = self._executor
            try:
                result = await loop.run_in_executor(
                    executor, self._runner, entry.job.kind, entry.job.args)
            except BrokenProcessPool:
                self._replace(executor)
                self._events.labels("retried").inc()
                log.warning("worker died running task %s (attempt %d)", entry.job.task_id, attempt)
                continue
            except Exception as error:  # noqa: BLE001 - the task's own fault: report, no retry
                self._fail(entry, f"{type(error).__name__}: {error}")
                return
            entry.result.set_result(result)
            self._events.labels("completed").inc()
            return
        self._fail(entry, f"worker died {self.settings.attempts} times")

    def _fail(self, entry: _Entry, reason: str) -> None:
        log.warning("task %s failed: %s", entry.job.task_id, reason)
        self._events.labels("failed").inc()
        entry.result.set_exception(TaskFailed(reason))

    def _finish(self, entry: _Entry) -> None:
        del self._entries[entry.job.task_id]
        self._done[entry.job.task_id] = entry.result
        while len(self._done) > self.settings.remembered:
            self._done.popitem(last=False)
        self._depth.set(len(self._entries))

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        if self._executor is broken:  # another dispatcher may have replaced it already
            broken.shutdown(wait=False, cancel_futures=True)
            self._executor = self._new_executor()

    def _stop_workers(self) -> None:
        """Stop the workers now: a task still running is abandoned (its caller was failed)."""
        processes = list((getattr(self._executor, "_processes", None) or {}).values())
        self._executor.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
        for process in processes:
            process.join()

    def _new_executor(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self.settings.workers,
            initializer=lower_priority if self.settings.idle_priority else None,
            mp_context=multiprocessing.get_context("forkserver"))
