"""What the installer page shows of each node: last seen, sequence gaps, recent values.

An ingress observer: `take` runs for every accepted report, after the reflex,
and only appends to bounded deques (no I/O, no allocation beyond the point),
so it costs the reflex path nothing measurable. History per node is kept for
`keep_ms` and at most `max_points` reports; at most `max_nodes` nodes are
tracked (least recently heard dropped first).
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from tandem.gateway.reports import DeviceReport

MAX_NODES = 2000
MAX_POINTS = 3600


@dataclass(slots=True)
class NodeTrack:
    """One node as the gateway has heard it."""

    device: str
    boot: int = 0
    last_seq: int = -1
    gaps: int = 0  # reports missing between consecutive sequence numbers (same boot)
    reports: int = 0
    last_seen_ms: int = 0
    latest: dict[str, float] = field(default_factory=dict)
    history: deque[tuple[int, dict[str, float]]] = field(default_factory=deque)


class LiveValues:
    """Bounded per-node state fed by the ingress; read by the installer page."""

    def __init__(self, keep_ms: int = 3_600_000, max_points: int = MAX_POINTS,
                 max_nodes: int = MAX_NODES,
                 clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000) -> None:
        self.keep_ms = keep_ms
        self.max_points = max_points
        self.max_nodes = max_nodes
        self._clock_ms = clock_ms
        self.nodes: OrderedDict[str, NodeTrack] = OrderedDict()

    def take(self, item: DeviceReport) -> None:
        """Observe one accepted report."""
        track = self.nodes.get(item.device)
        if track is None:
            track = self.nodes[item.device] = NodeTrack(item.device, history=deque(
                maxlen=self.max_points))
            while len(self.nodes) > self.max_nodes:
                self.nodes.popitem(last=False)
        else:
            self.nodes.move_to_end(item.device)
        report = item.report
        if report.boot == track.boot and report.seq > track.last_seq + 1 and track.reports:
            track.gaps += report.seq - track.last_seq - 1
        track.boot, track.last_seq = report.boot, report.seq
        track.reports += 1
        track.last_seen_ms = item.received_ms
        track.latest.update(report.values)
        track.history.append((item.t_ms, report.values))

    def series(self, device: str, since_ms: int) -> list[tuple[int, dict[str, float]]]:
        """A node's reports with t_ms after since_ms (oldest first)."""
        track = self.nodes.get(device)
        if track is None:
            return []
        return [p for p in track.history if p[0] > since_ms]

    def recent(self, since_ms: int) -> list[tuple[str, int, dict[str, float]]]:
        """Every node's reports after since_ms, in time order (for a rules dry run)."""
        merged = [(t, device, values) for device, track in list(self.nodes.items())
                  for t, values in list(track.history) if t > since_ms]
        merged.sort(key=lambda p: p[0])
        return [(device, t, values) for t, device, values in merged]

    def now_ms(self) -> int:
        """The clock this board uses."""
        return self._clock_ms()
