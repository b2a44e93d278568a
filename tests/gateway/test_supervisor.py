"""Specification of the task supervisor and the periodic-task loop (logic only, no I/O)."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from tandem.gateway.supervisor import (
    RestartPolicy,
    Supervisor,
    SupervisorMetrics,
    TaskState,
    periodic,
    wait_or_stop,
)

pytestmark = pytest.mark.timeout(30)
FAST = RestartPolicy(backoff_s=0.01, backoff_max_s=0.04, budget=3, window_s=60)


class Flaky:
    """A task that fails `failures` times, then runs until stop."""

    def __init__(self, failures: int, stop: asyncio.Event) -> None:
        self.failures = failures
        self.runs = 0
        self.stop = stop

    async def run(self) -> None:
        self.runs += 1
        if self.runs <= self.failures:
            raise OSError(28, "No space left on device")
        await self.stop.wait()


def _supervisor(policy: RestartPolicy = FAST) -> tuple[Supervisor, CollectorRegistry]:
    registry = CollectorRegistry()
    return Supervisor(SupervisorMetrics(registry), policy), registry


async def _until(condition: object, what: str) -> None:
    async with asyncio.timeout(10):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.005)  # polling in-process state of the loop under test


def test_a_failing_task_is_restarted_counted_and_ready_again() -> None:
    async def scenario() -> None:
        stop = asyncio.Event()
        supervisor, registry = _supervisor()
        task = Flaky(2, stop)
        supervisor.spawn("pipeline", task.run)
        await _until(lambda: task.runs == 3, "third run")
        assert supervisor.ready and supervisor.live and supervisor.is_running("pipeline")
        assert registry.get_sample_value("tandem_gw_task_restarts_total",
                                         {"task": "pipeline"}) == 2
        assert registry.get_sample_value("tandem_gw_task_up", {"task": "pipeline"}) == 1
        status = supervisor.status()["pipeline"]
        assert status.restarts == 2 and "No space left" in status.last_error
        stop.set()
        await supervisor.join()
        assert supervisor.status()["pipeline"].state is TaskState.STOPPED
    asyncio.run(scenario())


def test_while_in_backoff_the_task_is_down_and_not_ready() -> None:
    async def scenario() -> None:
        stop = asyncio.Event()
        supervisor, registry = _supervisor(RestartPolicy(backoff_s=30, budget=3))
        supervisor.spawn("pipeline", Flaky(1, stop).run)
        await _until(lambda: supervisor.status()["pipeline"].state is TaskState.BACKOFF, "down")
        assert not supervisor.ready and supervisor.live
        assert not supervisor.is_running("pipeline")
        assert registry.get_sample_value("tandem_gw_task_up", {"task": "pipeline"}) == 0
        supervisor.stop_restarts()  # shutdown does not wait out a 30 s backoff
        async with asyncio.timeout(5):
            await supervisor.join()
        assert not supervisor.failed.is_set()
    asyncio.run(scenario())


def test_a_task_out_of_restart_budget_fails_the_gateway() -> None:
    async def scenario() -> None:
        stop = asyncio.Event()
        supervisor, _ = _supervisor()
        task = Flaky(100, stop)
        supervisor.spawn("pipeline", task.run)
        async with asyncio.timeout(10):
            await supervisor.failed.wait()
        assert task.runs == 4  # the first run and three restarts
        assert not supervisor.live and not supervisor.ready
        assert supervisor.status()["pipeline"].state is TaskState.FAILED
        await supervisor.join()
    asyncio.run(scenario())


def test_a_failure_while_stopping_is_not_a_failed_gateway() -> None:
    async def scenario() -> None:
        stop = asyncio.Event()

        async def fails_on_stop() -> None:
            await stop.wait()
            raise OSError("disk gone while draining")

        supervisor, _ = _supervisor()
        supervisor.spawn("pipeline", fails_on_stop)
        supervisor.stop_restarts()
        stop.set()
        await supervisor.join()
        assert supervisor.live and not supervisor.failed.is_set()
    asyncio.run(scenario())


def test_periodic_runs_the_step_until_stop_and_ends_promptly() -> None:
    async def scenario() -> None:
        stop = asyncio.Event()
        calls: list[int] = []

        async def step() -> None:
            calls.append(1)
            if len(calls) == 3:
                stop.set()

        async with asyncio.timeout(5):
            await periodic(stop, 0.001, step)
        assert len(calls) == 3
        stop2 = asyncio.Event()
        waiter = asyncio.create_task(wait_or_stop(stop2, 60))
        await asyncio.sleep(0)
        stop2.set()
        async with asyncio.timeout(5):
            assert await waiter is True
        assert await wait_or_stop(asyncio.Event(), 0.001) is False
    asyncio.run(scenario())
