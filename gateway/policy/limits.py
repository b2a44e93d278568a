"""At most N rule actions per minute (the policy's `limits.max_actions_per_minute`)."""

from __future__ import annotations

import collections
import time
from collections.abc import Callable

WINDOW_S = 60.0


class ActionLimiter:
    """A sliding one-minute window of action starts; 0 means no limit."""

    def __init__(self, per_minute: int = 0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.refused = 0
        self._clock = clock
        self._starts: collections.deque[float] = collections.deque()

    def allow(self) -> bool:
        """True (and counted) if one more action fits in the last minute."""
        if self.per_minute <= 0:
            return True
        now = self._clock()
        while self._starts and now - self._starts[0] >= WINDOW_S:
            self._starts.popleft()
        if len(self._starts) >= self.per_minute:
            self.refused += 1
            return False
        self._starts.append(now)
        return True
