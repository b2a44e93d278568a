"""Rules and actions as plain frozen data, as read from a rules file (no I/O, no state).

A rule watches one device (or every device, "*"), evaluates a condition tree
on each report and fires after the condition has held for `for_ms`; it clears
after the condition has been false for `clear_ms`. Leaves are thresholds
with hysteresis on a raw channel (`temp`), a window feature (`vib.rms`), the
model's score (`score`), or the rate of change of any of those.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tandem.gateway.features.extract import FeatureSettings

ANY_DEVICE = "*"
SCORE_CHANNEL = "score"


@dataclass(frozen=True, slots=True)
class Input:
    """What a leaf reads: a raw channel value (`feature` None) or a window feature."""

    channel: str
    feature: str | None = None

    @property
    def name(self) -> str:
        """As written in the rules file: `temp`, `vib.rms`."""
        return self.channel if self.feature is None else f"{self.channel}.{self.feature}"


@dataclass(frozen=True, slots=True)
class Threshold:
    """On when the value passes `level` in `direction`, off once it is back past `clear`.

    With `rate_ms` > 0 the value is the input's rate of change per second over
    the last `rate_ms` of report time.
    """

    input: Input
    direction: Literal["above", "below"]
    level: float
    clear: float
    rate_ms: int = 0


@dataclass(frozen=True, slots=True)
class AllOf:
    """True when every condition is."""

    conditions: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    """True when at least one condition is."""

    conditions: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class Not:
    """True when the condition is not."""

    condition: Condition


Condition = Threshold | AllOf | AnyOf | Not


def leaves(condition: Condition) -> Iterator[Threshold]:
    """The thresholds of a condition tree, depth first (their evaluation order)."""
    if isinstance(condition, Threshold):
        yield condition
    elif isinstance(condition, Not):
        yield from leaves(condition.condition)
    else:
        for child in condition.conditions:
            yield from leaves(child)


@dataclass(frozen=True, slots=True)
class Rule:
    """One named rule."""

    name: str
    when: Condition
    device: str = ANY_DEVICE
    for_ms: int = 0
    clear_ms: int = 0
    severity: int = 2
    actions: tuple[str, ...] = ()
    clear_actions: tuple[str, ...] = ()

    @property
    def inputs(self) -> tuple[Input, ...]:
        """Every distinct input the rule reads, in order of appearance."""
        return tuple(dict.fromkeys(leaf.input for leaf in leaves(self.when)))


@dataclass(frozen=True, slots=True)
class EmergencyStopSpec:
    """Write a coil (or a holding register) on a Modbus device, then read it back.

    The device is a Modbus TCP `host`:`port`, or a unit on a `bus` of the gateway
    config (any kind, RTU too), written through that bus's coordinator.
    """

    host: str = ""
    port: int = 502
    unit: int = 1
    coil: int | None = None
    register: int | None = None
    value: int = 1
    timeout_s: float = 0.5
    bus: str = ""


@dataclass(frozen=True, slots=True)
class NodeAlarmSpec:
    """Send a CoAP command to the device the rule fired for (or to `node`)."""

    path: str = "alarm"
    node: str = ""


@dataclass(frozen=True, slots=True)
class LocalAlarmSpec:
    """Log, count, and optionally write `text` to a file (a GPIO value file, a flag)."""

    file: Path | None = None
    text: str = "1"


ActionSpec = EmergencyStopSpec | NodeAlarmSpec | LocalAlarmSpec


@dataclass(frozen=True)
class RuleSet:
    """Everything a rules file declares."""

    rules: tuple[Rule, ...] = ()
    actions: Mapping[str, ActionSpec] = field(default_factory=dict)
    features: FeatureSettings = field(default_factory=FeatureSettings)
    source: str = "<rules>"
