"""Counters for device access, with rate-limited logging of each cause."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

_log = logging.getLogger("tandem.gateway.access")


class AccessStats:
    """Counts events by cause and logs each cause at most once per interval.

    A metrics layer reads `snapshot()`; the counters never reset.
    """

    def __init__(self, log_interval_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._counts: Counter[str] = Counter()
        self._last_logged: dict[str, float] = {}
        self._interval = log_interval_s
        self._clock = clock

    def count(self, cause: str, detail: str = "", level: int = logging.INFO) -> None:
        """Add one to cause; log it with detail unless logged within the interval."""
        self._counts[cause] += 1
        now = self._clock()
        last = self._last_logged.get(cause)
        if last is None or now - last >= self._interval:
            self._last_logged[cause] = now
            _log.log(level, "%s (%d so far)%s", cause, self._counts[cause],
                     f": {detail}" if detail else "")

    def __getitem__(self, cause: str) -> int:
        return self._counts[cause]

    def snapshot(self) -> dict[str, int]:
        """A copy of all counters, for a metrics exporter."""
        return dict(self._counts)
