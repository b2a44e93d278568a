"""What a compute place offers and what a task needs, in standard units.

Shared by the gateway (which measures and reports itself), the cloud (which keeps
the fleet's state and describes its worker pool the same way), the decision
engine (wire/scheduling.py) and the simulator. Plain data: CBOR/JSON through
`to_plain`/`from_plain` per type; every decoder raises WireError("resources", why).

Units: cores are counted, compute in score-seconds (one second of one core with
compute score 1.0, the reference machine of `tandem.wire.computescore`), memory and
storage in bytes, bandwidth in bytes per second, times in seconds, instants in
unix milliseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from tandem.wire.errors import WireError

CLOUD = "cloud"            # the place id of the cloud worker pool
MAX_ID = 128


class Privacy(StrEnum):
    """May a task's input leave the site it was recorded at?"""

    SITE = "site"          # input and computation stay on the site's gateways
    ANY = "any"            # may run in the cloud or on another site


@dataclass(frozen=True, slots=True)
class Resources:
    """A gateway (or the cloud worker pool) described by what it can do."""

    place: str                     # gateway id, or CLOUD
    site: str                      # site the gateway belongs to; "" for the cloud
    cores: int                     # worker processes it runs tasks on
    score: float                   # compute score of one core (reference machine = 1.0)
    memory_bytes: int
    storage_free_bytes: int
    accelerators: tuple[str, ...]  # e.g. ("tflite-xnnpack",), () when none
    bandwidth_bps: float           # measured bytes/s of the link to the cloud (inf for the cloud)
    rtt_s: float                   # measured round trip to the cloud (0 for the cloud)

    @property
    def is_cloud(self) -> bool:
        """True for the cloud worker pool."""
        return self.place == CLOUD

    @property
    def capacity(self) -> float:
        """Score-seconds of work it does per second with every core busy."""
        return self.cores * self.score


@dataclass(frozen=True, slots=True)
class Status:
    """A gateway's latest report: how busy it is and how its link is."""

    place: str
    t_ms: int
    load: float                    # 1-minute load average divided by cores
    memory_used_bytes: int
    queue_length: int              # tasks waiting for a worker
    queued_compute: float          # score-seconds of those tasks (running ones' remainder included)
    running: int
    outbox_depth: int              # sealed batches not yet acknowledged by the cloud
    rtt_s: float                   # last measured round trip to the cloud
    bandwidth_bps: float           # last measured uplink bytes/s
    link_up: bool


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """A unit of schedulable work and what it declares it needs."""

    id: str
    kind: str                      # "spectral" | "drift" | "fleet-map" | ...
    deadline_ms: int               # unix ms by which the result is wanted
    compute: float                 # estimated score-seconds
    input_place: str               # gateway id holding the input, or CLOUD
    input_site: str                # site of that gateway ("" when the input is in the cloud)
    input_bytes: int
    privacy: Privacy
    migratable: bool               # may it move once queued somewhere


def resources_to_plain(r: Resources) -> dict[str, Any]:
    """Resources as a CBOR/JSON-friendly map (infinite bandwidth as -1)."""
    return {"place": r.place, "site": r.site, "cores": r.cores, "score": r.score,
            "memory_bytes": r.memory_bytes, "storage_free_bytes": r.storage_free_bytes,
            "accelerators": list(r.accelerators),
            "bandwidth_bps": -1.0 if math.isinf(r.bandwidth_bps) else r.bandwidth_bps,
            "rtt_s": r.rtt_s}


def resources_from_plain(obj: object) -> Resources:
    """Decode and validate a resource description."""
    m = _map(obj)
    bw = _num(m, "bandwidth_bps")
    r = Resources(place=_ident(m, "place"), site=_text(m, "site"), cores=_int(m, "cores"),
                  score=_num(m, "score"), memory_bytes=_int(m, "memory_bytes"),
                  storage_free_bytes=_int(m, "storage_free_bytes"),
                  accelerators=tuple(_texts(m, "accelerators")),
                  bandwidth_bps=math.inf if bw == -1 else bw, rtt_s=_num(m, "rtt_s"))
    if r.cores < 1 or r.score <= 0 or r.bandwidth_bps <= 0:
        raise WireError("resources", "cores, score and bandwidth must be positive")
    return r


def status_to_plain(s: Status) -> dict[str, Any]:
    """Status as a CBOR/JSON-friendly map."""
    return {"place": s.place, "t_ms": s.t_ms, "load": s.load,
            "memory_used_bytes": s.memory_used_bytes, "queue_length": s.queue_length,
            "queued_compute": s.queued_compute, "running": s.running,
            "outbox_depth": s.outbox_depth, "rtt_s": s.rtt_s,
            "bandwidth_bps": s.bandwidth_bps, "link_up": s.link_up}


def status_from_plain(obj: object) -> Status:
    """Decode and validate a status report."""
    m = _map(obj)
    up = m.get("link_up")
    if not isinstance(up, bool):
        raise WireError("resources", "link_up must be a boolean")
    return Status(place=_ident(m, "place"), t_ms=_int(m, "t_ms"), load=_num(m, "load"),
                  memory_used_bytes=_int(m, "memory_used_bytes"),
                  queue_length=_int(m, "queue_length"), queued_compute=_num(m, "queued_compute"),
                  running=_int(m, "running"), outbox_depth=_int(m, "outbox_depth"),
                  rtt_s=_num(m, "rtt_s"), bandwidth_bps=_num(m, "bandwidth_bps"), link_up=up)


def task_to_plain(t: TaskSpec) -> dict[str, Any]:
    """A task spec as a CBOR/JSON-friendly map."""
    return {"id": t.id, "kind": t.kind, "deadline_ms": t.deadline_ms, "compute": t.compute,
            "input_place": t.input_place, "input_site": t.input_site,
            "input_bytes": t.input_bytes, "privacy": t.privacy.value, "migratable": t.migratable}


def task_from_plain(obj: object) -> TaskSpec:
    """Decode and validate a task spec."""
    m = _map(obj)
    try:
        privacy = Privacy(str(m.get("privacy")))
    except ValueError:
        raise WireError("resources", f"privacy must be one of {[p.value for p in Privacy]}") \
            from None
    mig = m.get("migratable")
    if not isinstance(mig, bool):
        raise WireError("resources", "migratable must be a boolean")
    t = TaskSpec(id=_ident(m, "id"), kind=_ident(m, "kind"), deadline_ms=_int(m, "deadline_ms"),
                 compute=_num(m, "compute"), input_place=_ident(m, "input_place"),
                 input_site=_text(m, "input_site"), input_bytes=_int(m, "input_bytes"),
                 privacy=privacy, migratable=mig)
    if privacy is Privacy.SITE and t.input_place == CLOUD:
        raise WireError("resources", "a site-private task cannot have its input in the cloud")
    return t


def _map(obj: object) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise WireError("resources", "not a map")
    return obj


def _text(m: dict[str, Any], key: str) -> str:
    v = m.get(key)
    if not isinstance(v, str) or len(v) > MAX_ID:
        raise WireError("resources", f"{key} must be text of at most {MAX_ID} characters")
    return v


def _ident(m: dict[str, Any], key: str) -> str:
    v = _text(m, key)
    if not v:
        raise WireError("resources", f"{key} must not be empty")
    return v


def _texts(m: dict[str, Any], key: str) -> list[str]:
    v = m.get(key)
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise WireError("resources", f"{key} must be a list of text")
    return v


def _int(m: dict[str, Any], key: str) -> int:
    v = m.get(key)
    if type(v) is not int or v < 0:
        raise WireError("resources", f"{key} must be a non-negative integer")
    return v


def _num(m: dict[str, Any], key: str) -> float:
    v = m.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
        raise WireError("resources", f"{key} must be a number")
    if v < 0 and not (key == "bandwidth_bps" and v == -1):
        raise WireError("resources", f"{key} must not be negative")
    return float(v)
