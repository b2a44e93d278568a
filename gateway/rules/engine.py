"""Evaluates rules on each report, synchronously: hysteresis, debounce, rate of change.

Time is report time (the `t_ms` given), so behaviour is the same in tests,
replays and production. A condition is only re-checked when a report for
one of its channels arrives; a leaf whose input is absent keeps its state.
State lives per (rule, device), bounded by `max_states` with LRU eviction.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from tandem.gateway.rules.definitions import (
    ANY_DEVICE,
    AllOf,
    AnyOf,
    Condition,
    Input,
    Not,
    Rule,
    Threshold,
    leaves,
)

Lookup = Callable[[Input], float | None]
CONTEXT_DEPTH = 4
MAX_EVENT_VALUES = 64
MAX_RATE_POINTS = 512


@dataclass(frozen=True, slots=True)
class Transition:
    """A rule fired (`active`) or cleared for a device at report time `t_ms`."""

    rule: Rule
    device: str
    t_ms: int
    active: bool
    values: dict[str, float]


class _State:
    """Per (rule, device): leaf states, rate histories, debounce phase, recent inputs."""

    __slots__ = ("active", "leaf_on", "rates", "recent", "since_ms")

    def __init__(self, leaf_count: int, context: int) -> None:
        self.leaf_on = [False] * leaf_count
        self.rates: list[deque[tuple[int, float]]] = [
            deque(maxlen=MAX_RATE_POINTS) for _ in range(leaf_count)]
        self.active = False
        self.since_ms: int | None = None
        self.recent: deque[tuple[float | None, ...]] = deque(maxlen=context)


class _Compiled:
    """A rule with its leaves numbered and its inputs listed once."""

    __slots__ = ("context", "evaluate", "inputs", "leaf_count", "rule")

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.inputs = rule.inputs
        self.leaf_count = sum(1 for _ in leaves(rule.when))
        self.context = max(1, min(CONTEXT_DEPTH, MAX_EVENT_VALUES // max(1, len(self.inputs))))
        counter = iter(range(self.leaf_count))
        self.evaluate = _node(rule.when, counter)


Node = Callable[[_State, Lookup, int], bool]


def _node(condition: Condition, counter: Iterator[int]) -> Node:
    """A closure evaluating the condition; every leaf is evaluated (no short cut)."""
    if isinstance(condition, Threshold):
        return _leaf(condition, next(counter))
    if isinstance(condition, Not):
        inner = _node(condition.condition, counter)
        return lambda s, get, t: not inner(s, get, t)
    children = [_node(c, counter) for c in condition.conditions]
    combine = all if isinstance(condition, AllOf) else any
    assert isinstance(condition, AllOf | AnyOf)
    return lambda s, get, t: combine([child(s, get, t) for child in children])


def _leaf(leaf: Threshold, index: int) -> Node:
    above = leaf.direction == "above"

    def evaluate(state: _State, get: Lookup, t_ms: int) -> bool:
        value = get(leaf.input)
        if value is not None and leaf.rate_ms:
            value = _rate(state.rates[index], t_ms, value, leaf.rate_ms)
        if value is None:
            return state.leaf_on[index]
        on = state.leaf_on[index]
        if above:
            on = value > leaf.level if not on else not value < leaf.clear
        else:
            on = value < leaf.level if not on else not value > leaf.clear
        state.leaf_on[index] = on
        return on

    return evaluate


def _rate(points: deque[tuple[int, float]], t_ms: int, value: float,
          window_ms: int) -> float | None:
    """Change per second between the oldest point in the window and now."""
    if points and t_ms < points[-1][0]:
        points.clear()  # time went backwards (node reboot, clock step): start again
    points.append((t_ms, value))
    while len(points) > 1 and points[1][0] <= t_ms - window_ms:
        points.popleft()
    t0, v0 = points[0]
    return None if t_ms == t0 else (value - v0) * 1000.0 / (t_ms - t0)


class RuleEngine:
    """Holds the rules and their states; `evaluate` runs in the pipeline task."""

    def __init__(self, rules: Sequence[Rule] = (), max_states: int = 100_000) -> None:
        self.max_states = max_states
        self._states: OrderedDict[tuple[str, str], _State] = OrderedDict()
        self._rules: list[_Compiled] = []
        self._by_channel: dict[str, list[_Compiled]] = {}
        self.evicted = 0
        self.replace(rules)

    @property
    def rules(self) -> tuple[Rule, ...]:
        """The rules in force."""
        return tuple(c.rule for c in self._rules)

    def replace(self, rules: Sequence[Rule]) -> None:
        """Install new rules; an unchanged rule keeps its state (an active alarm stays active)."""
        kept = {c.rule.name: c.rule for c in self._rules}
        unchanged = {r.name for r in rules if kept.get(r.name) == r}
        for key in [k for k in self._states if k[0] not in unchanged]:
            del self._states[key]
        self._rules = [_Compiled(r) for r in rules]
        self._by_channel = {}
        for compiled in self._rules:
            for channel in dict.fromkeys(i.channel for i in compiled.inputs):
                self._by_channel.setdefault(channel, []).append(compiled)

    def evaluate(self, device: str, t_ms: int, channels: Iterable[str],
                 get: Lookup) -> list[Transition]:
        """Evaluate the rules that read any of `channels`; return what fired or cleared."""
        transitions: list[Transition] = []
        for compiled in self._candidates(channels):
            rule = compiled.rule
            if rule.device != ANY_DEVICE and rule.device != device:
                continue
            state = self._state(compiled, device)
            condition = compiled.evaluate(state, get, t_ms)
            state.recent.append(tuple(get(i) for i in compiled.inputs))
            if self._debounce(rule, state, condition, t_ms):
                transitions.append(Transition(rule, device, t_ms, state.active,
                                              _context(compiled, state)))
        return transitions

    def _candidates(self, channels: Iterable[str]) -> list[_Compiled]:
        found: dict[int, _Compiled] = {}
        for channel in channels:
            for compiled in self._by_channel.get(channel, ()):
                found.setdefault(id(compiled), compiled)
        return list(found.values())

    def _state(self, compiled: _Compiled, device: str) -> _State:
        key = (compiled.rule.name, device)
        state = self._states.get(key)
        if state is None:
            state = _State(compiled.leaf_count, compiled.context)
            self._states[key] = state
            if len(self._states) > self.max_states:
                self._states.popitem(last=False)
                self.evicted += 1
        else:
            self._states.move_to_end(key)
        return state

    @staticmethod
    def _debounce(rule: Rule, state: _State, condition: bool, t_ms: int) -> bool:
        """Advance the fire/clear debounce; True when the rule changed state."""
        if condition == state.active:
            state.since_ms = None
            return False
        if state.since_ms is None or t_ms < state.since_ms:
            state.since_ms = t_ms
        hold = rule.for_ms if condition else rule.clear_ms
        if t_ms - state.since_ms < hold:
            return False
        state.active = condition
        state.since_ms = None
        return True

    def active(self, rule: str, device: str) -> bool:
        """Whether a rule is fired for a device now."""
        state = self._states.get((rule, device))
        return state is not None and state.active


def _context(compiled: _Compiled, state: _State) -> dict[str, float]:
    """The last few values of every input the rule reads: `temp`, `temp@-1`, ..."""
    values: dict[str, float] = {}
    for age, snapshot in enumerate(reversed(state.recent)):
        for ref, value in zip(compiled.inputs, snapshot, strict=True):
            if value is not None and math.isfinite(value) and len(values) < MAX_EVENT_VALUES:
                values[ref.name if age == 0 else f"{ref.name}@-{age}"] = value
    return values
