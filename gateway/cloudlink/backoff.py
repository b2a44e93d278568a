"""Retry pacing for calls to the cloud: exponential backoff with full jitter.

Full jitter (a delay drawn uniformly from [0, ceiling]) spreads a fleet of
gateways that failed together over the whole interval, so a recovering cloud
is not hit by all of them in step; the ceiling doubles per failure up to
`max_s` and resets on success.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

Draw = Callable[[float, float], float]  # (low, high) -> a delay in between


@dataclass
class Backoff:
    """Exponential backoff with full jitter, reset on success."""

    base_s: float
    max_s: float
    draw: Draw = field(default=random.uniform, repr=False)
    attempt: int = 0

    def ceiling(self) -> float:
        """The longest delay the next failure may wait."""
        return float(min(self.max_s, self.base_s * 2 ** min(self.attempt, 30)))

    def next_delay(self) -> float:
        """Delay before the next try, anywhere in [0, ceiling]; the ceiling then doubles."""
        ceiling = self.ceiling()
        self.attempt += 1
        return self.draw(0.0, ceiling)

    def reset(self) -> None:
        """Forget past failures."""
        self.attempt = 0
