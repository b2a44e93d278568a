"""The cloud's task queue: huey carries task ids to worker processes; the ledger keeps results.

The backend is configuration only (`[tasks] backend`): SqliteHuey, embedded,
for one machine (the demo), RedisHuey when worker machines share a Redis.
huey itself acknowledges nothing: a worker killed mid-task loses the message.
So the ledger (cloud/tasks/ledger.py) holds the truth: a worker claims a task
with a lease, renews it while the task runs and stores the result once;
`reap` puts every task whose lease expired (dead worker or gateway) back on
the queue, exactly once however many reapers run, since only one of them
flips it to queued.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from huey import Huey, RedisHuey, SqliteHuey
from huey.consumer import Consumer
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from tandem.cloud.config import CloudConfig, TasksConfig
from tandem.cloud.db.engine import open_engine
from tandem.cloud.tasks import ledger
from tandem.cloud.timestamps import now_ms
from tandem.wire.errors import WireError
from tandem.wire.tasks import registry
from tandem.wire.tasks.job import Job

log = logging.getLogger(__name__)
CLOUD = "cloud"


def _sqlite(config: CloudConfig) -> Huey:
    path = config.tasks.sqlite_file or Path(config.data_dir) / "task-queue.db"
    return SqliteHuey("tandem-tasks", filename=str(path), results=False)


def _redis(config: CloudConfig) -> Huey:
    return RedisHuey("tandem-tasks", url=config.tasks.redis_url, results=False)


BACKENDS: dict[str, Callable[[CloudConfig], Huey]] = {"sqlite": _sqlite, "redis": _redis}


class ForkGate:
    """Keeps huey's fork of a worker process out of the side threads' database passes.

    huey forks worker processes from the consumer, beside the lease reaper and
    the scheduler threads. A fork while one of them is inside SQLite or holds a
    connection-pool lock leaves the child a lock that nobody will release. Those
    threads hold the gate for each pass; once installed, a fork waits for it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def install(self) -> None:
        """Hold forks of this process back while a pass runs (once per process)."""
        os.register_at_fork(before=self._lock.acquire, after_in_parent=self._lock.release,
                            after_in_child=self._lock.release)

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


class TaskQueue:
    """Submit tasks to the cloud's workers, run them there, and reap expired leases."""

    def __init__(self, config: CloudConfig, engine: Engine | None = None) -> None:
        self.config = config
        self.huey = BACKENDS[config.tasks.backend](config)
        self._engine = engine
        self._engine_pid = os.getpid() if engine is not None else 0
        self.fork_gate = ForkGate()
        self._execute = self.huey.task(retries=config.tasks.retries, retry_delay=1,
                                       name="tandem.execute")(self.execute)

    @property
    def settings(self) -> TasksConfig:
        """The [tasks] section."""
        return self.config.tasks

    def submit(self, job: Job) -> bool:
        """Record job in the ledger and queue it; False (nothing queued) if its id is known."""
        with Session(self.engine()) as session, session.begin():
            new = ledger.submit(session, job, CLOUD, now_ms())
        if new:
            self._execute(job.task_id)
        return new

    def enqueue(self, task_id: str) -> None:
        """Hand a task the ledger placed at the cloud to the workers."""
        self._execute(task_id)

    def execute(self, task_id: str) -> None:
        """Claim, run and store the result of one task (the body huey workers run)."""
        lease = now_ms() + self.settings.lease_s * 1000
        with Session(self.engine()) as session, session.begin():
            job = ledger.claim(session, task_id, CLOUD, now_ms(), lease)
        if job is None:
            return  # finished meanwhile, or another worker holds a live lease
        log.info("task %s running in pid %d", task_id, os.getpid())
        done = threading.Event()
        heartbeat = threading.Thread(target=self._renew, args=(task_id, done),
                                     name=f"lease-{task_id}", daemon=True)
        heartbeat.start()
        try:
            result = registry.run(job.kind, job.args)
        except WireError as error:
            with Session(self.engine()) as session, session.begin():
                ledger.fail(session, task_id, str(error), now_ms())
            log.warning("task %s failed: %s", task_id, error)
            return
        finally:
            done.set()
            heartbeat.join()
        with Session(self.engine()) as session, session.begin():
            stored = ledger.finish(session, task_id, result, now_ms())
        log.info("task %s done in pid %d (%s)", task_id, os.getpid(),
                 "stored" if stored else "a result was stored already; this one dropped")

    def _renew(self, task_id: str, done: threading.Event) -> None:
        # The lease says "this worker is alive", not "the task is short": renewed at a third
        # of its length, so only a worker that died (or hangs its whole process) loses it.
        period = self.settings.lease_s / 3
        while not done.wait(period):
            try:
                with Session(self.engine()) as session, session.begin():
                    ledger.renew(session, CLOUD, [task_id],
                                 now_ms() + self.settings.lease_s * 1000)
            except Exception:  # a database hiccup: the next beat tries again
                log.warning("renewing the lease of task %s failed", task_id, exc_info=True)

    def reap(self) -> list[str]:
        """Queue again every task whose lease expired; the ids this call requeued."""
        requeued = []
        now = now_ms()
        with Session(self.engine()) as session, session.begin():
            candidates = ledger.expired(session, now, at=CLOUD)
        for task_id in candidates:
            with Session(self.engine()) as session, session.begin():
                if ledger.requeue(session, task_id, now, CLOUD):
                    requeued.append(task_id)
        for task_id in requeued:
            log.warning("task %s lost its worker; queued again", task_id)
            self._execute(task_id)
        return requeued

    def consumer(self) -> Consumer:
        """A huey consumer running `[tasks] workers` worker processes."""
        return self.huey.create_consumer(workers=self.settings.workers, worker_type="process",
                                         periodic=False, health_check_interval=1)

    def engine(self) -> Engine:
        """The database engine of this process: a forked worker opens its own."""
        if self._engine is None or self._engine_pid != os.getpid():
            self._engine = open_engine(self.config.database.url)
            self._engine_pid = os.getpid()
        return self._engine


def run_reaper(queue: TaskQueue, stop: threading.Event) -> None:
    """Reap expired leases every reap_interval_s until stop is set (a consumer's side thread)."""
    while not stop.wait(queue.settings.reap_interval_s):
        try:
            with queue.fork_gate:
                queue.reap()
        except Exception:  # a database hiccup must not end the reaper
            log.exception("reaping task leases failed; trying again")
