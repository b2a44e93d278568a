"""The cloud task queue: the ledger keeps one result per task id; huey workers on SQLite
or Redis (configuration only) run tasks, and a worker killed mid-task has its task rerun."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from tandem.cloud.config import CloudConfig, from_mapping
from tandem.cloud.db import engine as database
from tandem.cloud.tasks import ledger
from tandem.cloud.tasks.queue import TaskQueue
from tandem.tools.procs import Child, ProcessFailed
from tandem.wire.resources import Privacy, TaskSpec
from tandem.wire.tasks import registry
from tandem.wire.tasks.job import Job
from tests.services import redis_server  # noqa: F401 - fixture
from tests.waiting import eventually

T = 1_800_000_000_000


def burn(task_id: str, iterations: int) -> Job:
    return Job(TaskSpec(task_id, "burn", T, 1.0, "cloud", "", 0, Privacy.ANY, True),
               {"iterations": iterations})


def cloud_config(tmp: Path, **tasks: Any) -> CloudConfig:
    return from_mapping({"mode": "development", "data_dir": str(tmp / "data"),
                         "tasks": {"lease_s": 2, "reap_interval_s": 1, **tasks}}, base=tmp)


@pytest.fixture
def config(tmp_path: Path) -> Iterator[CloudConfig]:
    config = cloud_config(tmp_path)
    with database.cli_engine(config):
        pass
    yield config


def test_the_ledger_records_a_task_once_and_keeps_its_first_result(config: CloudConfig) -> None:
    engine = database.open_engine(config.database.url)
    with Session(engine) as session, session.begin():
        assert ledger.submit(session, burn("t1", 10), "cloud", T)
        assert not ledger.submit(session, burn("t1", 99), "cloud", T)
        assert ledger.claim(session, "t1", "cloud", T, T + 1000) == burn("t1", 10)
        assert ledger.claim(session, "t1", "gw-2", T + 1, T + 1000) is None  # lease is live
        assert ledger.finish(session, "t1", {"v": 1}, T + 2)
        assert not ledger.finish(session, "t1", {"v": 2}, T + 3)
        assert not ledger.fail(session, "t1", "late", T + 4)
        assert ledger.result_of(session, "t1") == {"v": 1}
        assert ledger.claim(session, "t1", "cloud", T + 5000, T + 9000) is None
    engine.dispose()


def test_an_expired_lease_is_requeued_by_exactly_one_reaper(config: CloudConfig) -> None:
    engine = database.open_engine(config.database.url)
    with Session(engine) as session, session.begin():
        ledger.submit(session, burn("t2", 10), "gw-1", T)
        assert ledger.claim(session, "t2", "cloud", T, T + 1000) is None  # queued for gw-1
        assert ledger.claim(session, "t2", "gw-1", T, T + 1000) is not None
        assert ledger.expired(session, T + 500) == []
        assert ledger.expired(session, T + 1001) == ["t2"]
        assert ledger.requeue(session, "t2", T + 1001, "cloud")
        assert not ledger.requeue(session, "t2", T + 1001, "cloud")
        assert ledger.claim(session, "t2", "cloud", T + 1002, T + 5000) is not None
        assert ledger.task(session, "t2").attempts == 2  # type: ignore[union-attr]
    engine.dispose()


def test_a_task_running_past_its_lease_keeps_it_while_its_worker_lives(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The body is held on an event (unit logic: no huey consumer), the lease is 1 s.
    config = cloud_config(tmp_path, lease_s=1)
    with database.cli_engine(config):
        pass
    queue = TaskQueue(config)
    release = threading.Event()
    real_run = registry.run
    monkeypatch.setattr(registry, "run",
                        lambda kind, args: release.wait(30) and real_run(kind, args))
    assert queue.submit(burn("slow", 10))
    runner = threading.Thread(target=queue.execute, args=("slow",))
    runner.start()
    try:
        first = eventually(lambda: _lease_after(queue, "slow", 0), "the task to be claimed")
        eventually(lambda: _lease_after(queue, "slow", first + 2000), "two renewals", 15)
        assert queue.reap() == []  # past the first lease: a renewed one is not reaped
    finally:
        release.set()
        runner.join(30)
    with Session(queue.engine()) as session:
        row = ledger.task(session, "slow")
        assert row is not None and row.state == ledger.DONE and row.attempts == 1
        assert ledger.result_of(session, "slow") == real_run("burn", {"iterations": 10})


def _lease(session: Session, task_id: str) -> int | None:
    session.expire_all()
    row = ledger.task(session, task_id)
    return row.lease_ms if row is not None and row.state == ledger.RUNNING else None


def _lease_after(queue: TaskQueue, task_id: str, at_least: int) -> int | None:
    # A fresh session per probe: one kept open would read SQLite's snapshot of its first
    # query and never see the claim made after it.
    with Session(queue.engine()) as session:
        lease = _lease(session, task_id)
        return lease if lease is not None and lease >= at_least else None


def worker(config_file: Path, name: str) -> Child:
    child = Child(name, [sys.executable, "-m", "tandem.cloud.cli.main", "worker",
                         "--config", str(config_file)])
    child.wait_for(r"huey consumer started|The following commands are available", 60)
    return child


def write_config(tmp: Path, backend: str, redis_url: str = "") -> CloudConfig:
    extra = f'redis_url = "{redis_url}"\n' if redis_url else ""
    (tmp / "cloud.toml").write_text(
        f'version = 1\nmode = "development"\ndata_dir = "{tmp / "data"}"\n'
        f'[tasks]\nbackend = "{backend}"\nworkers = 2\nlease_s = 2\nreap_interval_s = 1\n{extra}')
    config = cloud_config(tmp, backend=backend, workers=2,
                          **({"redis_url": redis_url} if redis_url else {}))
    with database.cli_engine(config):
        pass
    return config


def result(queue: TaskQueue, task_id: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        with Session(queue.engine()) as session:
            return ledger.result_of(session, task_id)
    return eventually(probe, f"the result of {task_id}", timeout=120, poll_s=0.1)


def run_two_workers_and_kill_one_mid_task(tmp: Path, backend: str, redis_url: str = "") -> None:
    config = write_config(tmp, backend, redis_url)
    queue = TaskQueue(config)
    with ExitStack() as stack:
        workers = [worker(tmp / "cloud.toml", f"worker-{i}") for i in range(2)]
        for child in workers:
            stack.callback(child.stop)
        specs = [burn(f"quick-{i}", 1000 + i) for i in range(6)]
        for spec in specs:
            assert queue.submit(spec)
        assert not queue.submit(specs[0])  # a known id is not queued twice
        for spec in specs:
            assert result(queue, spec.task_id) == registry.run("burn", spec.args)
        long = burn("long", 3_000_000)
        marks = [child.mark() for child in workers]
        queue.submit(long)
        running = eventually(lambda: next((
            (child, m) for child, mark in zip(workers, marks, strict=True)
            if (m := _running(child, "long", mark))), None), "the long task to start", 60, 0.05)
        os.kill(int(running[1]), signal.SIGKILL)  # the huey worker process, mid-task
        try:
            assert result(queue, "long") == registry.run("burn", long.args)
        except AssertionError as error:
            raise AssertionError(f"{error}; workers said:\n" + "\n".join(
                child.tail() for child in workers)) from None
        with Session(queue.engine()) as session:
            row = ledger.task(session, "long")
            assert row is not None and row.state == ledger.DONE and row.attempts >= 2
        assert sum(line.count("task long done") for c in workers for line in c.lines) >= 1


def _running(child: Child, task_id: str, since: int) -> str | None:
    try:
        return child.wait_for(rf"task {task_id} running in pid (\d+)", 0.01, since).group(1)
    except ProcessFailed:  # not yet
        return None


def test_two_sqlite_workers_run_tasks_and_rerun_one_whose_worker_died(tmp_path: Path) -> None:
    run_two_workers_and_kill_one_mid_task(tmp_path, "sqlite")


def test_two_redis_workers_do_the_same_with_only_the_configuration_changed(
        tmp_path: Path, redis_server: Any) -> None:  # noqa: F811 - fixture
    run_two_workers_and_kill_one_mid_task(tmp_path, "redis", redis_server.url)
