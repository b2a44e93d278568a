"""The cloud's task ledger: every task placed in the cloud, its lease, and its one result.

A task is `queued` when submitted, `running` while a worker holds its lease,
then `done` (result stored) or `failed`. The task id is the idempotency key:
submitting a known id again changes nothing, and `finish` stores a result
only while none is stored, so a retried task or one answered twice (a gateway
that came back after its task was moved) keeps its first result. A worker or
gateway that dies mid-task leaves its lease to expire; `expired` lists those
tasks so they are placed again.

A task placed at a gateway waits here (queued, `placed` = the gateway) until
that gateway claims it; until then the scheduler may move it (`move`, counted
in `moves`). A gateway renews the leases of the tasks it runs with every claim
poll, so a lease expires only when the gateway stops asking.
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
    moves: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


def submit(session: Session, job: Job, placed: str, now_ms: int) -> bool:
    """Record job as queued at `placed`; False (and no change) when its id is known."""
    row = {"task_id": job.task_id, "kind": job.kind, "job_json": json.dumps(job_to_plain(job)),
           "state": QUEUED, "placed": placed, "attempts": 0, "lease_ms": 0,
           "created_ms": now_ms, "detail": "", "moves": 0}
    table = CloudTask.__table__
    assert isinstance(table, Table)
    statement = insert_missing_statement(session.connection(), table, ["task_id"])
    return _changed(session.execute(statement.values(row)))


def claim(session: Session, task_id: str, placed: str, now_ms: int,
          lease_ms: int) -> Job | None:
    """Lease the task to `placed` if queued there or its lease expired; its job, or None.

    A task queued at another place is not taken: the scheduler moved it there.
    """
    claimed = _changed(session.execute(
        update(CloudTask).where(CloudTask.task_id == task_id,
                                ((CloudTask.state == QUEUED) & (CloudTask.placed == placed))
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


def expired(session: Session, now_ms: int, at: str | None = None) -> Sequence[str]:
    """Ids of running tasks (held `at` one place) whose lease passed: holder presumed dead."""
    query = select(CloudTask.task_id).where(CloudTask.state == RUNNING,
                                            CloudTask.lease_ms < now_ms)
    if at is not None:
        query = query.where(CloudTask.placed == at)
    return session.scalars(query).all()


def expired_at_gateways(session: Session, now_ms: int, cloud: str) -> Sequence[CloudTask]:
    """Running tasks held by a gateway (not `cloud`) whose lease passed."""
    return session.scalars(select(CloudTask).where(
        CloudTask.state == RUNNING, CloudTask.lease_ms < now_ms, CloudTask.placed != cloud)
        .order_by(CloudTask.created_ms, CloudTask.task_id)).all()


def open_tasks(session: Session) -> Sequence[CloudTask]:
    """Every queued or running task, oldest first (the scheduler's view of placed work)."""
    return session.scalars(select(CloudTask).where(CloudTask.state.in_((QUEUED, RUNNING)))
                           .order_by(CloudTask.created_ms, CloudTask.task_id)).all()


def move(session: Session, task_id: str, source: str, target: str) -> bool:
    """Move a task still queued at source to target; True when this call moved it."""
    return _changed(session.execute(
        update(CloudTask).where(CloudTask.task_id == task_id, CloudTask.state == QUEUED,
                                CloudTask.placed == source)
        .values(placed=target, moves=CloudTask.moves + 1)))


def claim_queued(session: Session, place: str, limit: int, now_ms: int,
                 lease_ms: int) -> list[Job]:
    """Lease up to limit of the tasks queued at place (oldest first); their jobs."""
    ids = session.scalars(select(CloudTask.task_id).where(
        CloudTask.state == QUEUED, CloudTask.placed == place)
        .order_by(CloudTask.created_ms, CloudTask.task_id).limit(limit)).all()
    return [job for job in (claim(session, i, place, now_ms, lease_ms) for i in ids)
            if job is not None]


def renew(session: Session, place: str, task_ids: Sequence[str], lease_ms: int) -> int:
    """Extend the leases of place's running tasks among task_ids; how many were extended."""
    if not task_ids:
        return 0
    result = session.execute(update(CloudTask).where(
        CloudTask.task_id.in_(list(task_ids)), CloudTask.placed == place,
        CloudTask.state == RUNNING).values(lease_ms=lease_ms))
    return int(getattr(result, "rowcount", 0))


def finish_at(session: Session, task_id: str, place: str, result: dict[str, Any],
              now_ms: int) -> bool:
    """Store the result of a task place holds (running there); True when this call stored it."""
    return _changed(session.execute(
        update(CloudTask).where(CloudTask.task_id == task_id, CloudTask.placed == place,
                                CloudTask.state == RUNNING)
        .values(state=DONE, result_json=json.dumps(result, sort_keys=True),
                finished_ms=now_ms, detail="")))


def fail_at(session: Session, task_id: str, place: str, reason: str, now_ms: int) -> bool:
    """Mark a task place holds failed with reason; True when this call did."""
    return _changed(session.execute(
        update(CloudTask).where(CloudTask.task_id == task_id, CloudTask.placed == place,
                                CloudTask.state == RUNNING)
        .values(state=FAILED, detail=reason[:2000], finished_ms=now_ms)))


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
