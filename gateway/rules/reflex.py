"""The local reflex: on each report, features -> model score -> rules -> actions + events.

`take()` is an ingress observer: it runs synchronously when a new report is
submitted, before the journal commit, so a report is judged the moment it
arrives. Only I/O is left to tasks: each action runs as its
own task (the pipeline never waits for Modbus), and the Event records of a
firing go to the outbox at Priority.ALARM. Action outcomes are filed as
events too, so the cloud learns whether the stop was verified.

A safety action (an emergency stop) that was not verified is re-asserted:
tried again every `reassert_s` (doubling up to `reassert_max_s`) for as long
as its rule stays in the state that ran it, until it is verified. So a stop
whose controller was away when the rule fired is written when the controller
returns. Each retry counts in `tandem_gw_safety_reasserts`; the verified one
files its outcome event like the first attempt.

With an `offload` (the field-bus thread's `run`), Modbus actions run on that
thread's own loop: the write and its read-back then never wait behind this
loop's backlog, and the outcome's `done_ns` is stamped there, when the
read-back matched. A stop whose port takes writes synchronously (the actuator
process, gateway/modbus/actuatorclient.py) is sent from `take` itself, and
its `done_ns` is the child's. Either hand-over happens in `take`, before this
loop runs anything else; only awaiting the outcome is left to a task.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from tandem.gateway.actuator import Attempt
from tandem.gateway.features.extract import FeatureBank
from tandem.gateway.inference.slot import ModelSlot
from tandem.gateway.metrics import GatewayMetrics
from tandem.gateway.pipeline.summarise import RecordStore
from tandem.gateway.reports import DeviceReport
from tandem.gateway.rules.actions import (
    FIELDBUS_KINDS,
    Action,
    ActionContext,
    ActuatorPorts,
    EmergencyStop,
    Firing,
    LoggingNodeCommander,
    NodeCommander,
    build_actions,
)
from tandem.gateway.rules.definitions import SCORE_CHANNEL, Input, RuleSet
from tandem.gateway.rules.engine import RuleEngine, Transition
from tandem.gateway.store.outbox import OutboxFull, Priority
from tandem.wire.batch import Event, Record

log = logging.getLogger(__name__)

SAFETY_KINDS = frozenset({"emergency_stop"})

T = TypeVar("T")
Started = tuple[Awaitable[Attempt], int]  # an attempt handed over, and perf_counter_ns then


class Offload(Protocol):
    """Runs a coroutine on another loop (the field-bus thread's), handed over when called
    (not when awaited); the awaitable gives its result."""

    def __call__(self, coro: Coroutine[Any, Any, T], /) -> Awaitable[T]: ...


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one action went, and how long after its report was taken."""

    action: str
    firing: Firing
    ok: bool
    error: str
    taken_ns: int
    done_ns: int


@dataclass(frozen=True, slots=True)
class ScoreSource:
    """Which channel's band energies the model scores, and how often (every `hop` samples)."""

    channel: str = "vib"
    hop: int = 16


class Reflex:
    """Judges every report against the rules and acts without waiting for anything."""

    def __init__(self, ruleset: RuleSet, store: RecordStore, metrics: GatewayMetrics, *,
                 ports: ActuatorPorts | None = None, commander: NodeCommander | None = None,
                 model: ModelSlot | None = None, score_source: ScoreSource = ScoreSource(),
                 on_outcome: Callable[[Outcome], None] | None = None,
                 offload: Offload | None = None, reassert_s: float = 0.5,
                 reassert_max_s: float = 5.0) -> None:
        self._store = store
        self._offload = offload
        self.reassert_s = reassert_s
        self.reassert_max_s = reassert_max_s
        # Checked before each action starts (the policy's max actions per minute).
        self.may_act: Callable[[], bool] = _always
        self._metrics = metrics
        self._context = ActionContext(ports or ActuatorPorts(),
                                      commander or LoggingNodeCommander())
        self.model = model
        self.score_source = score_source
        self.on_outcome = on_outcome
        self.engine = RuleEngine()
        self.bank = FeatureBank(ruleset.features)
        self.ruleset = ruleset
        self._actions: dict[str, Action] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # Safety actions being re-asserted, by (action, rule, device, fired); not in _tasks,
        # so settle() does not wait for a controller that may never come back.
        self._reasserting: dict[tuple[str, str, str, bool], asyncio.Task[None]] = {}
        self._closing = asyncio.Event()
        self._series_seen = 0
        self.install(ruleset)

    def install(self, ruleset: RuleSet) -> None:
        """Put a (re)loaded rule set in force; windows restart only if their settings changed."""
        if ruleset.features != self.bank.settings:
            self.bank = FeatureBank(ruleset.features)
        self._actions = build_actions(ruleset.actions, self._context)
        self.engine.replace(ruleset.rules)
        self.ruleset = ruleset
        self._metrics.rules_loaded.set(len(ruleset.rules))

    def take(self, item: DeviceReport) -> None:
        """Judge one report (synchronous; schedules actions and events as tasks); never raises."""
        try:
            self._judge(item)
        except Exception:  # a fault here must not refuse the report to the node
            self._metrics.reflex_faults.inc()
            log.exception("reflex failed on a report from %s", item.device)

    def _judge(self, item: DeviceReport) -> None:
        taken = time.perf_counter_ns()
        device, t_ms, bank = item.device, item.t_ms, self.bank
        values = item.report.values
        for channel, value in values.items():
            bank.add(device, channel, t_ms, value)
        score = self._score(device, t_ms, values)
        if score is not None:
            values = {**values, SCORE_CHANNEL: score}

        def lookup(ref: Input) -> float | None:
            if ref.feature is None:
                return values.get(ref.channel)
            return bank.feature(device, ref.channel, ref.feature)

        if len(bank) != self._series_seen:
            self._series_seen = len(bank)
            self._metrics.feature_series.set(self._series_seen)
        transitions = self.engine.evaluate(device, t_ms, values.keys(), lookup)
        if transitions:
            self._dispatch(transitions, taken)
        self._metrics.rule_eval_latency.observe((time.perf_counter_ns() - taken) / 1e9)

    async def settle(self) -> None:
        """Wait until every action and event write started so far has finished."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    @property
    def reasserting(self) -> int:
        """How many safety actions are waiting to be re-asserted."""
        return len(self._reasserting)

    async def close(self) -> None:
        """Stop re-asserting, finish in-flight actions and events, drop controller connections."""
        self._closing.set()
        await asyncio.gather(*self._reasserting.values(), return_exceptions=True)
        await self.settle()
        closing = self._context.ports.close()
        await (self._offload(closing) if self._offload else closing)

    def _score(self, device: str, t_ms: int, values: dict[str, float]) -> float | None:
        source, slot = self.score_source, self.model
        if slot is None or slot.model is None or source.channel not in values:
            return None
        series = self.bank.get(device, source.channel)
        if series is None or series.kept % source.hop != 0:
            return None
        bands = series.bands()
        if bands is None or len(bands) != slot.model.size:
            return None
        started = time.perf_counter_ns()
        score = slot.score(bands)
        self._metrics.inference_latency.observe((time.perf_counter_ns() - started) / 1e9)
        if score is not None:
            self.bank.add(device, SCORE_CHANNEL, t_ms, score)
        return score

    def _dispatch(self, transitions: list[Transition], taken_ns: int) -> None:
        events: list[Record] = []
        for tr in transitions:
            rule = tr.rule
            firing = Firing(rule.name, tr.device, tr.t_ms, tr.active, rule.severity, tr.values)
            for name in rule.actions if tr.active else rule.clear_actions:
                action = self._actions[name]
                # An emergency stop is a safety function: no policy limit may hold it back.
                if action.kind in SAFETY_KINDS or self.may_act():
                    started = self._hand_over(action, firing)
                    self._spawn(self._run_action(action, firing, taken_ns, started))
                else:
                    log.error("action %s of rule %s NOT run: over the policy's action limit",
                              name, rule.name)
            label = "fire" if tr.active else "clear"
            self._metrics.rule_transitions.labels(rule=rule.name, transition=label).inc()
            events.append(Event(tr.device, rule.name if tr.active else f"{rule.name}/clear",
                                tr.t_ms, rule.severity if tr.active else 0, tr.values))
        self._spawn(self._file(events))

    def _hand_over(self, action: Action, firing: Firing) -> Started | None:
        """Start the attempt now, from the observer, where it runs elsewhere (the actuator
        process, the field-bus thread); None: it runs on this loop, in its task."""
        now = time.perf_counter_ns()
        handed = action.hand_over() if isinstance(action, EmergencyStop) else None
        if handed is not None:
            return handed, now
        if self._offload is not None and action.kind in FIELDBUS_KINDS:
            return self._offload(_attempt(action, firing)), now
        return None

    async def _run_action(self, action: Action, firing: Firing, taken_ns: int,
                          started: Started | None) -> None:
        ok = await self._run_once(action, firing, taken_ns, started=started)
        key = (action.name, firing.rule, firing.device, firing.active)
        if not ok and action.kind in SAFETY_KINDS and key not in self._reasserting:
            task = asyncio.get_running_loop().create_task(self._reassert(action, firing,
                                                                         taken_ns))
            self._reasserting[key] = task
            task.add_done_callback(lambda _: self._reasserting.pop(key, None))

    async def _run_once(self, action: Action, firing: Firing, taken_ns: int,
                        quiet: bool = False, started: Started | None = None) -> bool:
        """One attempt (handed over already, or now); its outcome is logged, measured and
        filed (a quiet failure only measured: a re-assertion failing again says nothing new)."""
        attempt, begun = started or self._hand_over(action, firing) or \
            (_attempt(action, firing), time.perf_counter_ns())
        ok, error, done = await attempt
        result = "ok" if ok else ("error" if error else "unverified")
        self._metrics.action_latency.labels(action=action.name, result=result).observe(
            (done - begun) / 1e9)
        if quiet and not ok:
            return False
        if not ok:
            log.error("action %s for rule %s on %s: %s", action.name, firing.rule,
                      firing.device, error or "not verified")
        if self.on_outcome is not None:
            self.on_outcome(Outcome(action.name, firing, ok, error, taken_ns, done))
        await self._file([Event(firing.device, f"{firing.rule}/{action.name}"[:64], firing.t_ms,
                                1 if ok else 3, {"ok": float(ok),
                                                 "ms": round((done - taken_ns) / 1e6, 3)})])
        return ok

    async def _reassert(self, action: Action, firing: Firing, taken_ns: int) -> None:
        """Try a safety action again, backing off, while its rule holds, until verified."""
        log.warning("action %s for rule %s on %s not verified: re-asserting every %.1f-%.1f s "
                    "while the rule holds", action.name, firing.rule, firing.device,
                    self.reassert_s, self.reassert_max_s)
        delay = self.reassert_s
        while not await _stopped(self._closing, delay):
            current = self._actions.get(action.name)
            if current is None or self.engine.active(firing.rule, firing.device) != \
                    firing.active:
                log.warning("action %s for rule %s on %s: rule changed, re-asserting ends",
                            action.name, firing.rule, firing.device)
                return
            ok = await self._run_once(current, firing, taken_ns, quiet=True)
            self._metrics.safety_reasserts.labels(action=action.name,
                                                  result="ok" if ok else "failed").inc()
            if ok:
                log.warning("action %s for rule %s on %s verified on re-assertion",
                            action.name, firing.rule, firing.device)
                return
            delay = min(delay * 2, self.reassert_max_s)

    async def _file(self, events: list[Record]) -> None:
        try:
            await self._store.put(events, Priority.ALARM)
        except (OutboxFull, RuntimeError) as exc:
            self._metrics.events_unstored.inc(len(events))
            log.critical("rule events not stored (%s): %s", exc, events)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def _attempt(action: Action, firing: Firing) -> Attempt:
    """Run one action where it is awaited; stamp its end there too."""
    error = ""
    try:
        ok = await action.run(firing)
    except Exception as exc:  # noqa: BLE001 - an action's failure must not touch the pipeline
        ok, error = False, f"{type(exc).__name__}: {exc}"
    return ok, error, time.perf_counter_ns()


def _always() -> bool:
    return True


async def _stopped(stop: asyncio.Event, timeout: float) -> bool:
    """Wait up to timeout seconds; True if stop was set meanwhile."""
    try:
        await asyncio.wait_for(stop.wait(), timeout)
    except TimeoutError:
        return False
    return True
