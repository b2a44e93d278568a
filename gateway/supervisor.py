"""Supervised long-running tasks (restart with backoff, counted), and the periodic-task loop.

A task that raises is restarted after a growing delay, so a full disk or a
lost database handle heals once the cause goes away, without an operator.
Every restart is counted (`tandem_gw_task_restarts_total{task}`) and each
task's state is a gauge (`tandem_gw_task_up{task}`); `ready` is false while
any task is down. A task restarted more than its budget within the budget
window cannot recover: the supervisor sets `failed`, and the daemon exits
non-zero so systemd restarts the whole process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

log = logging.getLogger(__name__)

TaskFactory = Callable[[], Coroutine[Any, Any, None]]


async def wait_or_stop(stop: asyncio.Event, timeout_s: float) -> bool:
    """Wait up to timeout_s for stop; True if it was set (the caller should end)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout_s)
    return stop.is_set()


async def periodic(stop: asyncio.Event, interval: float | Callable[[], float],
                   step: Callable[[], Awaitable[object]]) -> None:
    """Run step, then wait interval seconds (or until stop), until stop is set.

    interval may be a function, read before each wait (a step can shorten the next wait).
    """
    while not stop.is_set():
        await step()
        if await wait_or_stop(stop, interval() if callable(interval) else interval):
            return


class TaskState(Enum):
    """Where one supervised task is."""

    RUNNING = "running"
    BACKOFF = "backoff"  # failed; waiting to be restarted
    FAILED = "failed"  # out of restart budget: the gateway is not live
    STOPPED = "stopped"  # returned (normally at shutdown)


@dataclass(frozen=True)
class RestartPolicy:
    """Backoff doubles from backoff_s up to backoff_max_s; budget restarts per window."""

    backoff_s: float = 0.5
    backoff_max_s: float = 30.0
    budget: int = 10
    window_s: float = 600.0


@dataclass
class TaskStatus:
    """What the health endpoint shows of one task."""

    name: str
    state: TaskState = TaskState.RUNNING
    restarts: int = 0
    last_error: str = ""
    recent: deque[float] = field(default_factory=deque, repr=False)  # restart times

    def as_json(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {"state": self.state.value, "restarts": self.restarts,
                "last_error": self.last_error}


class SupervisorMetrics:
    """Restarts and up/down state per task, on the gateway's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.restarts = Counter("tandem_gw_task_restarts", "Restarts of a gateway task after "
                                "it failed", ["task"], registry=registry)
        self.up = Gauge("tandem_gw_task_up", "1 while a gateway task runs, 0 while it is "
                        "down (backoff, failed)", ["task"], registry=registry)


class Supervisor:
    """Runs named tasks; restarts the ones that raise; knows whether the gateway is healthy."""

    def __init__(self, metrics: SupervisorMetrics, policy: RestartPolicy = RestartPolicy(),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.metrics = metrics
        self.policy = policy
        self.failed = asyncio.Event()  # some task cannot recover
        self._clock = clock
        self._stopping = asyncio.Event()
        self._status: dict[str, TaskStatus] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def spawn(self, name: str, factory: TaskFactory) -> asyncio.Task[None]:
        """Run factory() under supervision; the returned task ends when it stops for good."""
        if name in self._tasks:
            raise ValueError(f"task {name!r} is already supervised")
        status = self._status[name] = TaskStatus(name)
        self.metrics.up.labels(task=name).set(1)
        task = asyncio.create_task(self._supervise(status, factory), name=f"supervise-{name}")
        self._tasks[name] = task
        return task

    def is_running(self, *names: str) -> bool:
        """True if each named task is supervised and running now."""
        return all(self._state(n) is TaskState.RUNNING for n in names)

    @property
    def live(self) -> bool:
        """False once a task ran out of restarts (the process should be restarted)."""
        return not self.failed.is_set()

    @property
    def ready(self) -> bool:
        """True while every task runs (none in backoff or failed)."""
        return self.live and all(s.state is TaskState.RUNNING for s in self._status.values())

    def status(self) -> dict[str, TaskStatus]:
        """Each task's status, by name."""
        return dict(self._status)

    def stop_restarts(self) -> None:
        """Restart nothing from now on (shutdown began); a task in backoff ends at once."""
        self._stopping.set()

    async def join(self, *names: str) -> None:
        """Wait until the named tasks (all when none is named) have ended.

        Tasks end on the stop events their owner gave them, not on this call.
        """
        for name in names or tuple(self._tasks):
            task = self._tasks.get(name)
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def _state(self, name: str) -> TaskState | None:
        status = self._status.get(name)
        return status.state if status else None

    async def _supervise(self, status: TaskStatus, factory: TaskFactory) -> None:
        while True:
            self._set(status, TaskState.RUNNING)
            try:
                await factory()
            except Exception as exc:  # any failure of a task is restarted
                if not self._restart_allowed(status, exc):
                    return
                delay = self._backoff(status)
                log.error("gateway task %s failed (%r): restart %d in %.1f s", status.name, exc,
                          status.restarts, delay, exc_info=exc)
                if await wait_or_stop(self._stopping, delay):
                    self._set(status, TaskState.STOPPED)
                    return
                continue
            self._set(status, TaskState.STOPPED)
            return

    def _restart_allowed(self, status: TaskStatus, exc: Exception) -> bool:
        status.last_error = repr(exc)[:200]
        if self._stopping.is_set():  # shutting down: report it, but the stop stays clean
            log.error("gateway task %s failed while stopping (%r)", status.name, exc,
                      exc_info=exc)
            self._set(status, TaskState.STOPPED)
            return False
        now = self._clock()
        while status.recent and now - status.recent[0] > self.policy.window_s:
            status.recent.popleft()
        if len(status.recent) >= self.policy.budget:
            self._set(status, TaskState.FAILED)
            log.critical("gateway task %s failed (%r) and cannot recover (%d restarts in %.0f s)",
                         status.name, exc, len(status.recent), self.policy.window_s, exc_info=exc)
            self.failed.set()
            return False
        status.recent.append(now)
        status.restarts += 1
        self.metrics.restarts.labels(task=status.name).inc()
        self._set(status, TaskState.BACKOFF)
        return True

    def _backoff(self, status: TaskStatus) -> float:
        exponent = min(len(status.recent) - 1, 30)
        return float(min(self.policy.backoff_max_s, self.policy.backoff_s * 2 ** exponent))

    def _set(self, status: TaskStatus, state: TaskState) -> None:
        status.state = state
        self.metrics.up.labels(task=status.name).set(1 if state is TaskState.RUNNING else 0)
