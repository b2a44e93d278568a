"""Per model version: windows scored, score summary, alarms, invoke latency histogram, errors.

The slot calls `scored`/`failed` on the reflex path, so they only add to
counters under a lock; `take` hands the agent one report per version and
starts the next period. The agent signs and sends them ("model-report").
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tandem.gateway.inference.model import ScoringModel

# Upper bounds (ms) of the latency histogram's buckets; the last bucket is everything above.
LATENCY_BOUNDS_MS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0)


@dataclass
class VersionStats:
    """One version's figures over one report period."""

    windows: int = 0
    score_sum: float = 0.0
    score_max: float = 0.0
    alarms: int = 0
    errors: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS_MS) + 1))

    def p99_ms(self) -> float:
        """The bucket bound under which 99 % of invokes finished (inf when above the last)."""
        total, seen = sum(self.latency), 0
        for bound, count in zip((*LATENCY_BOUNDS_MS, float("inf")), self.latency, strict=True):
            seen += count
            if total and seen >= 0.99 * total:
                return bound
        return 0.0

    def to_plain(self, version: str, role: str) -> dict[str, Any]:
        """The report body for the cloud."""
        return {"version": version, "role": role, "windows": self.windows,
                "score_mean": self.score_sum / self.windows if self.windows else 0.0,
                "score_max": self.score_max, "alarms": self.alarms, "errors": self.errors,
                "latency_bounds_ms": list(LATENCY_BOUNDS_MS), "latency": list(self.latency),
                "latency_p99_ms": min(self.p99_ms(), 1e9)}


class Feedback:
    """The slot's observer: counts per version; a faulting model triggers `on_fault` once."""

    def __init__(self, thresholds: Callable[[str], float | None],
                 on_fault: Callable[[str, Exception], None]) -> None:
        self._thresholds = thresholds
        self._on_fault = on_fault
        self._lock = threading.Lock()
        self._stats: dict[str, VersionStats] = {}
        self._versions: dict[int, str] = {}

    def name(self, model: ScoringModel, version: str) -> None:
        """Report `model`'s figures under the registry version (not its file hash)."""
        self._versions[id(model)] = version

    def scored(self, model: ScoringModel, score: float, seconds: float) -> None:
        """One window scored."""
        version = self._versions.get(id(model), model.version)
        threshold = self._thresholds(version)
        with self._lock:
            stats = self._stats.setdefault(version, VersionStats())
            stats.windows += 1
            stats.score_sum += score
            stats.score_max = max(stats.score_max, score)
            stats.alarms += int(threshold is not None and score >= threshold)
            stats.latency[bisect.bisect_left(LATENCY_BOUNDS_MS, seconds * 1000)] += 1

    def failed(self, model: ScoringModel, error: Exception) -> None:
        """An invoke fault: counted, and the agent falls back to the last-known-good."""
        version = self._versions.get(id(model), model.version)
        with self._lock:
            self._stats.setdefault(version, VersionStats()).errors += 1
        self._on_fault(version, error)

    def put_back(self, taken: dict[str, VersionStats]) -> None:
        """Return figures that could not be sent, merged into the current period."""
        with self._lock:
            for version, old in taken.items():
                stats = self._stats.setdefault(version, VersionStats())
                stats.windows += old.windows
                stats.score_sum += old.score_sum
                stats.score_max = max(stats.score_max, old.score_max)
                stats.alarms += old.alarms
                stats.errors += old.errors
                stats.latency = [a + b for a, b in zip(stats.latency, old.latency, strict=True)]

    def take(self) -> dict[str, VersionStats]:
        """The figures since the last take, per version."""
        with self._lock:
            taken, self._stats = self._stats, {}
        return taken
