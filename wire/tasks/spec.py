"""What a task declares: its kind, deadline, compute, input and where it may run.

The decision engine places a task by these needs alone; the executors run it
by `kind` (wire/tasks/registry.py). `task_id` is the idempotency key: a result
is stored once per task id, however often the task was retried or moved.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from tandem.wire.errors import WireError


class Privacy(enum.Enum):
    """May the task's input leave the site that holds it?"""

    SITE = "site"  # input stays on the site's gateways
    ANY = "any"  # input may go to the cloud


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """One unit of work with its declared needs; `args` are the kind's arguments."""

    task_id: str
    kind: str
    deadline_ms: int
    compute: float  # estimated work in compute-score seconds
    input_site: str
    input_bytes: int
    privacy: Privacy = Privacy.ANY
    migratable: bool = True
    args: dict[str, Any] = field(default_factory=dict)

    def to_map(self) -> dict[str, Any]:
        """The CBOR/JSON map of this spec."""
        return {"id": self.task_id, "kind": self.kind, "deadline": self.deadline_ms,
                "compute": self.compute, "site": self.input_site, "bytes": self.input_bytes,
                "privacy": self.privacy.value, "migratable": self.migratable,
                "args": self.args}


def spec_from_map(obj: Any) -> TaskSpec:
    """The spec in a decoded map; WireError("schema") naming the first bad field."""
    if not isinstance(obj, dict):
        raise WireError("schema", "task must be a map")
    task_id, kind, site = (_text(obj, name) for name in ("id", "kind", "site"))
    if type(obj.get("deadline")) is not int or type(obj.get("bytes")) is not int:
        raise WireError("schema", "task deadline and bytes must be integers")
    compute = obj.get("compute")
    if isinstance(compute, bool) or not isinstance(compute, int | float) or compute < 0:
        raise WireError("schema", "task compute must be a number >= 0")
    try:
        privacy = Privacy(obj.get("privacy", "any"))
    except ValueError:
        raise WireError("schema", "task privacy must be 'site' or 'any'") from None
    args = obj.get("args", {})
    if not isinstance(args, dict) or not isinstance(obj.get("migratable", True), bool):
        raise WireError("schema", "task args must be a map and migratable a boolean")
    return TaskSpec(task_id, kind, obj["deadline"], float(compute), site, obj["bytes"],
                    privacy, obj.get("migratable", True), args)


def _text(obj: dict[str, Any], name: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not 0 < len(value) <= 128:
        raise WireError("schema", f"task {name} must be text of 1..128 chars")
    return value
