"""Staged rollout of a model version to a gateway group: shadow -> canary -> waves -> done.

Each stage lasts at least its soak window; it is then judged on what the
gateways of the stage reported for the new version since the stage began
(cloud/models/feedback.py): alarm rate, inference p99, invoke errors, and
score drift against the version the group runs. Within the rollout's limits
the next stage starts; otherwise the rollout fails, every gateway is sent
back to the previous version (a signed rollback release) and it stops.
Operators can pause, resume and abort. Every step is kept in the rollout's
log (with the gate figures), audited, and shown by the API. Gates are judged
whenever a gateway asks for its assignment, so no scheduler is needed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import BigInteger, Integer, LargeBinary, String, Text, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from tandem.cloud.db.base import Base
from tandem.cloud.fleet.tokens import GatewayGroup
from tandem.cloud.models.feedback import ModelReport

RUNNING, PAUSED, ABORTED, FAILED, COMPLETED = "running", "paused", "aborted", "failed", \
    "completed"
SHADOW, CANARY, DONE = "shadow", "canary", "done"


class RolloutError(ValueError):
    """A rollout request that cannot be carried out; the message says why, `field` at what."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class Limits:
    """What a stage may show and still pass its gate."""

    soak_s: float = 600.0
    min_windows: int = 1            # per gateway of the stage, before a gate is judged
    max_alarm_rate: float = 0.05    # alarms per window scored
    max_p99_ms: float = 50.0
    max_errors: int = 0
    max_drift: float = 0.5          # |mean score new - mean score old| / mean score old

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise RolloutError(f"limit {name}: a number >= 0, not {value!r}", name)


class Rollout(Base):
    """One rollout of `version` to `group`; `previous` is what the group ran before."""

    __tablename__ = "model_rollouts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    group: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[str] = mapped_column(String(64))
    previous: Mapped[str | None] = mapped_column(String(64), nullable=True)
    canaries_json: Mapped[str] = mapped_column(Text)
    wave_size: Mapped[int] = mapped_column(Integer)
    limits_json: Mapped[str] = mapped_column(Text)
    stage: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    stage_started_ms: Mapped[int] = mapped_column(BigInteger)
    log_json: Mapped[str] = mapped_column(Text)
    release: Mapped[bytes] = mapped_column(LargeBinary)            # the new version's manifest
    back: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)  # previous, signed

    def limits(self) -> Limits:
        """The rollout's gate limits."""
        return Limits(**json.loads(self.limits_json))

    def canaries(self) -> list[str]:
        """The canary gateways."""
        return list(json.loads(self.canaries_json))

    def log(self) -> list[dict[str, Any]]:
        """Every step so far."""
        return list(json.loads(self.log_json))

    def note(self, now_ms: int, step: str, **figures: Any) -> None:
        """Append a step to the log."""
        self.log_json = json.dumps([*self.log(), {"t_ms": now_ms, "step": step, **figures}])


@dataclass(frozen=True, slots=True)
class Assignment:
    """What one gateway should run: the active release and, in shadow, the one to score beside."""

    active: bytes | None
    shadow: bytes | None


def start(session: Session, group: str, version: str, previous: str | None, release: bytes,
          back: bytes | None, canaries: Sequence[str], wave_size: int, limits: Limits,
          now_ms: int) -> Rollout:
    """Begin a rollout in shadow; one running or paused rollout per group at a time."""
    if current(session, group) is not None:
        raise RolloutError(f"group {group!r} already has a rollout in progress", "group")
    if not canaries:
        raise RolloutError("a rollout needs at least one canary gateway", "canaries")
    if wave_size < 1:
        raise RolloutError("waves need at least 1 gateway each", "wave_size")
    row = Rollout(group=group, version=version, previous=previous,
                  canaries_json=json.dumps(list(canaries)), wave_size=wave_size,
                  limits_json=json.dumps(asdict(limits)), stage=SHADOW, state=RUNNING,
                  stage_started_ms=now_ms, log_json="[]", release=release, back=back)
    row.note(now_ms, "started", stage=SHADOW, version=version, previous=previous)
    session.add(row)
    session.flush()
    return row


def current(session: Session, group: str) -> Rollout | None:
    """The group's running or paused rollout."""
    return session.scalars(select(Rollout).where(Rollout.group == group,
                                                 Rollout.state.in_((RUNNING, PAUSED)))
                           .order_by(Rollout.id.desc()).limit(1)).first()


def completed_version(session: Session, group: str) -> str | None:
    """The version the group's last completed rollout put in force."""
    return session.scalars(select(Rollout.version).where(
        Rollout.group == group, Rollout.state == COMPLETED)
        .order_by(Rollout.id.desc()).limit(1)).first()


def latest(session: Session, group: str) -> Rollout | None:
    """The group's newest rollout, whatever its state."""
    return session.scalars(select(Rollout).where(Rollout.group == group)
                           .order_by(Rollout.id.desc()).limit(1)).first()


def latest_per_group(session: Session) -> Sequence[Rollout]:
    """Every group's most recent rollout, by group."""
    newest = select(func.max(Rollout.id)).group_by(Rollout.group).scalar_subquery()
    return session.scalars(select(Rollout).where(Rollout.id.in_(newest))
                           .order_by(Rollout.group)).all()


def control(row: Rollout, action: str, now_ms: int) -> None:
    """pause, resume or abort (an abort sends every gateway back to the previous version)."""
    allowed = {"pause": (RUNNING, PAUSED), "resume": (PAUSED, RUNNING),
               "abort": (row.state, ABORTED)}
    if action not in allowed or row.state not in (RUNNING, PAUSED) \
            or row.state != allowed[action][0]:
        raise RolloutError(f"cannot {action} a rollout that is {row.state}")
    row.state = allowed[action][1]
    if action == "resume":
        row.stage_started_ms = now_ms  # the soak window starts again
    row.note(now_ms, action, stage=row.stage)


def members(session: Session, group: str) -> list[str]:
    """The group's gateways, sorted."""
    return sorted(session.scalars(select(GatewayGroup.gateway)
                                  .where(GatewayGroup.group == group)).all())


def _stage_gateways(row: Rollout, gateways: list[str]) -> list[str]:
    canaries = [g for g in row.canaries() if g in gateways]
    if row.stage in (SHADOW, DONE):
        return gateways
    if row.stage == CANARY:
        return canaries
    rest = [g for g in gateways if g not in canaries]
    waves = int(row.stage.split(":")[1])
    return canaries + rest[:waves * row.wave_size]


def _next_stage(row: Rollout, gateways: list[str]) -> str:
    if row.stage == SHADOW:
        return CANARY
    covered = len(_stage_gateways(row, gateways))
    if covered >= len(gateways):
        return DONE
    return "wave:1" if row.stage == CANARY else f"wave:{int(row.stage.split(':')[1]) + 1}"


def gate(session: Session, row: Rollout, now_ms: int) -> dict[str, Any] | None:
    """The figures of the current stage once its soak is over (None while soaking)."""
    limits = row.limits()
    if now_ms - row.stage_started_ms < limits.soak_s * 1000:
        return None
    gateways = _stage_gateways(row, members(session, row.group))
    reports = session.scalars(select(ModelReport).where(
        ModelReport.gateway.in_(gateways), ModelReport.received_ms >= row.stage_started_ms,
        ModelReport.role != "event")).all()
    new = [r for r in reports if r.version == row.version]
    old = [r for r in reports if r.version == row.previous]
    windows = {g: sum(r.windows for r in new if r.gateway == g) for g in gateways}
    if min(windows.values(), default=0) < limits.min_windows:
        return None  # soak until every gateway of the stage has scored enough
    total = sum(windows.values())
    new_mean = sum(r.score_mean * r.windows for r in new) / total
    old_total = sum(r.windows for r in old)
    old_mean = sum(r.score_mean * r.windows for r in old) / old_total if old_total else None
    return {"stage": row.stage, "gateways": gateways, "windows": total,
            "alarm_rate": round(sum(r.alarms for r in new) / total, 4),
            "p99_ms": max(r.latency_p99_ms for r in new),
            "errors": sum(r.errors for r in new),
            "drift": None if not old_mean else round(abs(new_mean - old_mean) / old_mean, 4)}


def judge(figures: dict[str, Any], limits: Limits) -> list[str]:
    """The limits the figures break (empty: the gate passes)."""
    broken = []
    # A shadow raises no alarm; its alarm rate is logged, and judged once it acts (canary).
    if figures["stage"] != SHADOW and figures["alarm_rate"] > limits.max_alarm_rate:
        broken.append(f"alarm rate {figures['alarm_rate']} > {limits.max_alarm_rate}")
    if figures["p99_ms"] > limits.max_p99_ms:
        broken.append(f"inference p99 {figures['p99_ms']} ms > {limits.max_p99_ms} ms")
    if figures["errors"] > limits.max_errors:
        broken.append(f"errors {figures['errors']} > {limits.max_errors}")
    if figures["drift"] is not None and figures["drift"] > limits.max_drift:
        broken.append(f"score drift {figures['drift']} > {limits.max_drift}")
    return broken


def advance(session: Session, row: Rollout, now_ms: int) -> str | None:
    """Judge the stage's gate when its soak is over; the step taken ("passed"/"failed"), if any."""
    if row.state != RUNNING or row.stage == DONE:
        return None
    figures = gate(session, row, now_ms)
    if figures is None:
        return None
    broken = judge(figures, row.limits())
    if broken:
        row.state = FAILED
        row.note(now_ms, "gate failed: rolled back", broken=broken, **figures)
        return "failed"
    row.stage = _next_stage(row, members(session, row.group))
    row.stage_started_ms = now_ms
    row.note(now_ms, "gate passed", next=row.stage, **figures)
    if row.stage == DONE:
        row.state = COMPLETED
    return "passed"


def assignment(row: Rollout | None, gateway: str, gateways: list[str]) -> Assignment | None:
    """What gateway should run under row (None: no rollout speaks for this group)."""
    if row is None:
        return None
    if row.state in (FAILED, ABORTED):
        return Assignment(row.back, None)
    if row.stage == SHADOW:
        return Assignment(row.back, row.release)
    if gateway in _stage_gateways(row, gateways):
        return Assignment(row.release, None)
    return Assignment(row.back, row.release if row.stage != DONE else None)


def to_plain(row: Rollout) -> dict[str, Any]:
    """A rollout as the API shows it."""
    return {"id": row.id, "group": row.group, "version": row.version,
            "previous": row.previous, "stage": row.stage, "state": row.state,
            "canaries": row.canaries(), "wave_size": row.wave_size,
            "limits": json.loads(row.limits_json), "stage_started_ms": row.stage_started_ms,
            "log": row.log()}
