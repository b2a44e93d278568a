"""The cloud's task ledger: every task placed in the cloud, its lease, and its one result.

A task is `queued` when submitted, `running` while a worker holds its lease,
then `done` (result stored) or `failed`. The task id is the idempotency key:
submitting a known id again changes nothing, and `finish` stores a result
only while none is stored, so a retried task or one answered twice (a gateway
that came back after its task was moved) keeps its first result. A worker or
gateway that dies mid-task leaves its lease to expire; `expired` lists those
tasks so they are placed again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import BigInteger, Integer, String, Table, Text, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from tandem.cloud.db.base import Base
from tandem.cloud.db.upsert import insert_missing_statement
from tandem.wire.tasks.job import Job, job_from_plain, job_to_plain

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"


class CloudTask(Base):
    """One task the cloud placed: where it runs, its lease, its result."""

    __tablename__ = "cloud_tasks"

    task_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    job_json: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), index=True)
    placed: Mapped[str] = mapped_column(String(64))  # "cloud" or the gateway running it
    attempts: Mapped[int] = mapped_column(Integer)
    lease_ms: Mapped[int] = mapped_column(BigInteger)  # running past this: worker presumed dead
    created_ms: Mapped[int] = mapped_column(BigInteger)
    finished_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    result_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    detail: Mapped[str] = mapped_column(Text, default="")


def submit(session: Session, job: Job, placed: str, now_ms: int) -> bool:
    """Record job as queued at `placed`; False (and no change) when its id is known."""
    row = {"task_id": job.task_id, "kind": job.kind, "job_json": json.dumps(job_to_plain(job)),
           "state": QUEUED, "placed": placed, "attempts": 0, "lease_ms": 0,
           "created_ms": now_ms, "detail": ""}
    table = CloudTask.__table__
    assert isinstance(table, Table)
    statement = insert_missing_statement(session.connection(), table, ["task_id"])
    return _changed(session.execute(statement.values(row)))


def claim(session: Session, task_id: str, placed: str, now_ms: int,
          lease_ms: int) -> Job | None:
    """Lease the task to `placed` if queued or its lease expired; its job, or None."""
    claimed = _changed(session.execute(
        update(CloudTask).where(CloudTask.task_id == task_id,
                                (CloudTask.state == QUEUED)
                                | ((CloudTask.state == RUNNING) & (CloudTask.lease_ms < now_ms)))
        .values(state=RUNNING, placed=placed, lease_ms=lease_ms,
                attempts=CloudTask.attempts + 1)))
    if not claimed:
        return None
    job_json = session.scalar(select(CloudTask.job_json).where(CloudTask.task_id == task_id))
    return job_from_plain(json.loads(job_json or "{}"))


def finish(session: Session, task_id: str, result: dict[str, Any], now_ms: int) -> bool:
    """Store the task's result unless one is stored; True when this call stored it."""
    return _changed(session.execute(
        update(CloudTask).where(CloudTask.task_id == task_id, CloudTask.state != DONE)
        .values(state=DONE, result_json=json.dumps(result, sort_keys=True),
                finished_ms=now_ms, detail="")))


def fail(session: Session, task_id: str, reason: str, now_ms: int) -> bool:
    """Mark the task failed with reason unless it finished; True when this call did."""
    return _changed(session.execute(
        update(CloudTask).where(CloudTask.task_id == task_id, CloudTask.state != DONE)
        .values(state=FAILED, detail=reason[:2000], finished_ms=now_ms)))


def expired(session: Session, now_ms: int) -> Sequence[str]:
    """Ids of running tasks whose lease passed: their worker or gateway is presumed dead."""
    return session.scalars(select(CloudTask.task_id).where(
        CloudTask.state == RUNNING, CloudTask.lease_ms < now_ms)).all()


def requeue(session: Session, task_id: str, now_ms: int, placed: str) -> bool:
    """Queue a task whose lease expired again; True for the one caller that did it."""
    return _changed(session.execute(
        update(CloudTask).where(CloudTask.task_id == task_id, CloudTask.state == RUNNING,
                                CloudTask.lease_ms < now_ms)
        .values(state=QUEUED, placed=placed, lease_ms=0)))


def result_of(session: Session, task_id: str) -> dict[str, Any] | None:
    """The stored result of the task, or None while it has none."""
    text = session.scalar(select(CloudTask.result_json).where(CloudTask.task_id == task_id))
    return None if text is None else dict(json.loads(text))


def task(session: Session, task_id: str) -> CloudTask | None:
    """The ledger row of the task."""
    return session.get(CloudTask, task_id)


def _changed(result: Any) -> bool:
    return bool(getattr(result, "rowcount", 0))
