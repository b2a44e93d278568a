"""A job: a task's declared needs (what the engine places) and its arguments (what a worker runs).

The needs are wire/resources.py's TaskSpec, shared with the decision engine;
the arguments are the task kind's input (wire/tasks/registry.py). The task id
is the idempotency key: a result is stored once per id, however often the job
was retried or moved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tandem.wire.errors import WireError
from tandem.wire.resources import TaskSpec, task_from_plain, task_to_plain


@dataclass(frozen=True, slots=True)
class Job:
    """One task to run: its spec and the kind's arguments."""

    spec: TaskSpec
    args: dict[str, Any] = field(default_factory=dict)

    @property
    def task_id(self) -> str:
        """The idempotency key."""
        return self.spec.id

    @property
    def kind(self) -> str:
        """Which function of the registry runs it."""
        return self.spec.kind


def job_to_plain(job: Job) -> dict[str, Any]:
    """The job as a CBOR/JSON-friendly map."""
    return {"task": task_to_plain(job.spec), "args": job.args}


def job_from_plain(obj: Any) -> Job:
    """The job of a decoded map; WireError naming the first bad field."""
    if not isinstance(obj, dict) or not isinstance(obj.get("args", {}), dict):
        raise WireError("schema", "job must be a map with a task and an args map")
    return Job(task_from_plain(obj.get("task")), obj.get("args", {}))
