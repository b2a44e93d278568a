"""The gateway's task worker pool: idle priority, bounded, each task's result once, crash-safe."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from tandem.gateway.tasks.pool import PoolSettings, QueueFull, TaskFailed, WorkerPool
from tandem.wire.resources import Privacy, TaskSpec
from tandem.wire.tasks import registry as tasks
from tandem.wire.tasks.job import Job
from tests.gateway import taskprobes
from tests.waiting import until


def spec(task_id: str, kind: str = "run", migratable: bool = True, **args: Any) -> Job:
    return Job(TaskSpec(task_id, kind, 0, 1.0, "gw-1", "site-a", 0, Privacy.ANY, migratable),
               args)


def gate_args(tmp: Path, name: str) -> dict[str, Any]:
    return {"log": str(tmp / "runs.log"), "started": str(tmp / f"{name}.started"),
            "gate": str(tmp / "gate")}


def metric(registry: CollectorRegistry, event: str) -> float:
    return registry.get_sample_value("tandem_gw_tasks_total", {"event": event}) or 0.0


def runs(tmp: Path) -> list[str]:
    log = tmp / "runs.log"
    return log.read_text().split() if log.exists() else []


async def with_pool(settings: PoolSettings, runner: Any, body: Any) -> Any:
    registry = CollectorRegistry()
    pool = WorkerPool(settings, runner, registry)
    pool.start()
    try:
        return await body(pool, registry)
    finally:
        await pool.close()
        assert pool.worker_pids() == []


def test_workers_are_separate_processes_at_idle_priority() -> None:
    async def body(pool: WorkerPool, _: CollectorRegistry) -> dict[str, Any]:
        return await pool.submit(spec("p1"))
    result = asyncio.run(with_pool(PoolSettings(workers=1), taskprobes.report_priority, body))
    assert result["pid"] != os.getpid()
    assert result["policy"] == os.SCHED_IDLE
    assert result["nice"] == 19


def test_real_task_kinds_run_in_the_pool() -> None:
    async def body(pool: WorkerPool, _: CollectorRegistry) -> dict[str, Any]:
        return await pool.submit(spec("b1", "burn", iterations=1000))
    result = asyncio.run(with_pool(PoolSettings(workers=1), tasks.run, body))
    assert result == {"checksum": sum(i * i for i in range(1000)) % 1_000_003}


def test_the_queue_is_bounded_and_a_refusal_is_counted(tmp_path: Path) -> None:
    async def body(pool: WorkerPool, registry: CollectorRegistry) -> None:
        first = pool.submit(spec("a", **gate_args(tmp_path, "a")))
        pool.submit(spec("b", **gate_args(tmp_path, "b")))
        with pytest.raises(QueueFull):
            pool.submit(spec("c", **gate_args(tmp_path, "c")))
        assert metric(registry, "refused") == 1
        (tmp_path / "gate").touch()
        await first
    asyncio.run(with_pool(PoolSettings(workers=1, queue_limit=2), taskprobes.gated, body))


def test_a_task_id_submitted_twice_runs_once_and_both_get_its_result(tmp_path: Path) -> None:
    async def body(pool: WorkerPool, _: CollectorRegistry) -> None:
        args = gate_args(tmp_path, "a")
        first, again = pool.submit(spec("a", **args)), pool.submit(spec("a", **args))
        (tmp_path / "gate").touch()
        assert await first == await again
        assert await pool.submit(spec("a", **args)) == await first  # after it finished
    asyncio.run(with_pool(PoolSettings(workers=1), taskprobes.gated, body))
    assert runs(tmp_path) == ["run"]


def test_queued_migratable_tasks_are_withdrawn_and_site_bound_ones_stay(tmp_path: Path) -> None:
    async def body(pool: WorkerPool, registry: CollectorRegistry) -> list[str]:
        running = pool.submit(spec("busy", **gate_args(tmp_path, "busy")))
        await until((tmp_path / "busy.started").exists, "the first task to start")
        pool.submit(spec("move", **gate_args(tmp_path, "move")))
        stay = pool.submit(spec("stay", migratable=False, **gate_args(tmp_path, "stay")))
        moved = [s.task_id for s in pool.withdraw()]
        assert metric(registry, "withdrawn") == 1
        (tmp_path / "gate").touch()
        await asyncio.gather(running, stay)
        return moved
    moved = asyncio.run(with_pool(PoolSettings(workers=1), taskprobes.gated, body))
    assert moved == ["move"]
    assert runs(tmp_path) == ["run", "run"]


def test_only_the_tasks_the_engine_names_are_withdrawn(tmp_path: Path) -> None:
    async def body(pool: WorkerPool, registry: CollectorRegistry) -> list[str]:
        running = pool.submit(spec("busy", **gate_args(tmp_path, "busy")))
        await until((tmp_path / "busy.started").exists, "the first task to start")
        named = pool.submit(spec("named", **gate_args(tmp_path, "named")))
        kept = pool.submit(spec("kept", **gate_args(tmp_path, "kept")))
        moved = [s.task_id for s in pool.withdraw(only={"named", "busy"})]  # busy has started
        assert named.cancelled() and metric(registry, "withdrawn") == 1
        (tmp_path / "gate").touch()
        await asyncio.gather(running, kept)
        return moved
    assert asyncio.run(with_pool(PoolSettings(workers=1), taskprobes.gated, body)) == ["named"]
    assert runs(tmp_path) == ["run", "run"]


def test_a_worker_killed_mid_task_is_replaced_and_the_task_result_comes_once(
        tmp_path: Path) -> None:
    killed = []

    async def body(pool: WorkerPool, registry: CollectorRegistry) -> dict[str, Any]:
        result = pool.submit(spec("k", **gate_args(tmp_path, "k")))
        started = tmp_path / "k.started"
        await until(started.exists, "the task to start in a worker")
        killed.append(int(started.read_text()))
        os.kill(killed[0], signal.SIGKILL)
        await until(lambda: metric(registry, "retried") == 1, "the pool to notice the death")
        (tmp_path / "gate").touch()
        value = await result
        assert metric(registry, "completed") == 1
        return value
    result = asyncio.run(with_pool(PoolSettings(workers=1), taskprobes.gated, body))
    assert runs(tmp_path) == ["run", "run"]
    assert result["pid"] != killed[0]


def test_a_task_that_raises_fails_with_its_reason_and_is_not_retried(tmp_path: Path) -> None:
    async def body(pool: WorkerPool, registry: CollectorRegistry) -> None:
        (tmp_path / "gate").touch()
        with pytest.raises(TaskFailed, match="bad input"):
            await pool.submit(spec("f", kind="fail", **gate_args(tmp_path, "f")))
        assert metric(registry, "failed") == 1
    asyncio.run(with_pool(PoolSettings(workers=1), taskprobes.gated, body))
    assert runs(tmp_path) == ["fail"]


def test_a_real_task_with_bad_args_fails_with_its_reason_not_as_a_dead_worker() -> None:
    async def body(pool: WorkerPool, registry: CollectorRegistry) -> None:
        with pytest.raises(TaskFailed, match="bad drift task args"):
            await pool.submit(spec("d", "drift", split_ms=0))
        assert (metric(registry, "failed"), metric(registry, "retried")) == (1, 0)
    asyncio.run(with_pool(PoolSettings(workers=1), tasks.run, body))
