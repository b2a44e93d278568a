"""Tumbling windows per (device, channel), summarised when they close.

Windows are aligned to multiples of the window length in the node's time, so
two gateways summarise the same readings into the same windows. A window
closes when a reading for a later window arrives, or when no reading reached
it for one window length of gateway time (a quiet or departed node). A
reading older than its channel's last closed window (rare: nodes send in
order) becomes a summary of its own starting at its timestamp, so nothing is
dropped and no summary key repeats.

A channel this gateway has no filed window for (a node it has never seen, or
every node after its data directory was reset) starts its first window at its
first reading, not at the aligned start: a summary never claims time its
gateway did not see, so it cannot overwrite in the cloud the part of that
window an earlier gateway (or this one, before the reset) already filed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tandem.wire.batch import Summary


@dataclass(slots=True)
class _Window:
    t0_ms: int
    t1_ms: int
    count: int
    total: float
    minimum: float
    maximum: float
    last: float
    touched_ms: int

    def add(self, value: float, now_ms: int) -> None:
        self.count += 1
        self.total += value
        self.minimum = min(self.minimum, value)
        self.maximum = max(self.maximum, value)
        self.last = value
        self.touched_ms = now_ms


class TumblingWindows:
    """Accumulates readings; returns summaries of the windows that close."""

    def __init__(self, window_ms: int, max_open: int = 100_000) -> None:
        if window_ms <= 0:
            raise ValueError("window length must be positive")
        self.window_ms = window_ms
        self.max_open = max_open
        self._open: dict[tuple[str, str], _Window] = {}
        self._closed_until: dict[tuple[str, str], int] = {}
        self._closed_changed: dict[tuple[str, str], int] = {}
        self.late = 0

    def restore_closed(self, closed: dict[tuple[str, str], int]) -> None:
        """Window ends already filed in an earlier run (from the journal)."""
        self._closed_until.update(closed)

    def is_filed(self, device: str, channel: str, t_ms: int) -> bool:
        """Whether a reading at t_ms falls before its channel's last closed window end."""
        return t_ms < self._closed_until.get((device, channel), -1)

    def take_closed_changes(self) -> dict[tuple[str, str], int]:
        """Window ends that moved since the last call (to persist with the summaries)."""
        changes, self._closed_changed = self._closed_changed, {}
        return changes

    def keep_closed_changes(self, changes: dict[tuple[str, str], int]) -> None:
        """Put back changes whose persisting failed, to retry with the next flush."""
        for key, until in changes.items():
            self._closed_changed[key] = max(until, self._closed_changed.get(key, until))

    def open_start(self, device: str) -> int | None:
        """Earliest start of the device's open windows, None when none is open."""
        starts = [w.t0_ms for (d, _), w in self._open.items() if d == device]
        return min(starts) if starts else None

    def add(self, device: str, channel: str, t_ms: int, value: float,
            now_ms: int) -> list[Summary]:
        """Add one reading; return the summaries this closes (usually none)."""
        key = (device, channel)
        if t_ms < self._closed_until.get(key, -1):
            self.late += 1
            return [_summary(key, _Window(t_ms, t_ms + 1, 1, value, value, value, value, now_ms))]
        end = t_ms - t_ms % self.window_ms + self.window_ms
        window = self._open.get(key)
        closed: list[Summary] = []
        if window is not None and window.t1_ms != end:
            closed.append(self._close(key))
            window = None
        if window is None:
            if len(self._open) >= self.max_open:
                closed.extend(self.flush_oldest())
            start = end - self.window_ms if key in self._closed_until else t_ms
            window = _Window(start, end, 0, 0.0, math.inf, -math.inf, 0.0, now_ms)
            self._open[key] = window
        window.add(value, now_ms)
        return closed

    def expire(self, now_ms: int) -> list[Summary]:
        """Close windows nobody has added to for one window length."""
        idle = [k for k, w in self._open.items() if now_ms - w.touched_ms >= self.window_ms]
        return [self._close(k) for k in idle]

    def flush(self) -> list[Summary]:
        """Close every open window (shutdown)."""
        return [self._close(k) for k in list(self._open)]

    def flush_oldest(self) -> list[Summary]:
        """Close the least recently touched window, keeping memory bounded."""
        key = min(self._open, key=lambda k: self._open[k].touched_ms)
        return [self._close(key)]

    @property
    def open_count(self) -> int:
        """How many windows are accumulating now."""
        return len(self._open)

    def _close(self, key: tuple[str, str]) -> Summary:
        window = self._open.pop(key)
        until = max(self._closed_until.get(key, -1), window.t1_ms)
        self._closed_until[key] = self._closed_changed[key] = until
        if len(self._closed_until) > 4 * self.max_open:
            self._closed_until.pop(next(iter(self._closed_until)))
        return _summary(key, window)


def _summary(key: tuple[str, str], w: _Window) -> Summary:
    return Summary(device=key[0], channel=key[1], t0_ms=w.t0_ms, t1_ms=w.t1_ms, count=w.count,
                   minimum=w.minimum, maximum=w.maximum, mean=_clamped_mean(w), last=w.last)


def _clamped_mean(w: _Window) -> float:
    # Float rounding can push total/count a hair outside [min, max]; the wire
    # format rejects that, so clamp.
    return min(max(w.total / w.count, w.minimum), w.maximum)
