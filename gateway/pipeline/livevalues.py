"""The gateway's one latest-values board: each node's newest value per channel, recent history.

Read by the installer page (last seen, sequence gaps, charts, rules dry run)
and by the live lane to the cloud (gateway/cloudlink/livelane.py), which asks
what changed since its last look through a change cursor: every report taken
bumps `cursor`, and the node and each channel it carried remember the cursor
of their last update, so "changed since c" is an integer comparison.

An ingress observer: `take` runs for every accepted report, after the reflex,
and only appends to bounded deques (no I/O, no allocation beyond the point),
so it costs the reflex path nothing measurable. History per node is kept for
`keep_ms` and at most `max_points` reports; at most `max_nodes` nodes are
tracked (least recently heard dropped first).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from tandem.gateway.reports import DeviceReport
from tandem.wire.clock import now_ms
from tandem.wire.live import LiveValue

MAX_NODES = 2000
MAX_POINTS = 3600


@dataclass(frozen=True, slots=True)
class Stamp:
    """When a channel last changed: the board's cursor then, and the reading's time."""

    cursor: int
    t_ms: int


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
    changed: int = 0  # the board's cursor when this node was last updated
    stamps: dict[str, Stamp] = field(default_factory=dict)  # channel -> its last update
    history: deque[tuple[int, dict[str, float]]] = field(default_factory=deque)


class LiveValues:
    """Bounded per-node state fed by the ingress; read by the installer page."""

    def __init__(self, keep_ms: int = 3_600_000, max_points: int = MAX_POINTS,
                 max_nodes: int = MAX_NODES,
                 clock_ms: Callable[[], int] = now_ms) -> None:
        self.keep_ms = keep_ms
        self.max_points = max_points
        self.max_nodes = max_nodes
        self._clock_ms = clock_ms
        self.nodes: OrderedDict[str, NodeTrack] = OrderedDict()
        self.cursor = 0  # bumped by every report taken

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
        self.cursor += 1
        track.changed = self.cursor
        stamp = Stamp(self.cursor, item.t_ms)
        for name in report.values:
            track.stamps[name] = stamp
        track.history.append((item.t_ms, report.values))

    def changed_since(self, device: str, cursor: int) -> dict[str, LiveValue]:
        """Device's channels updated after cursor, each with its newest value (empty if none)."""
        track = self.nodes.get(device)
        if track is None or track.changed <= cursor:
            return {}
        return {name: LiveValue(track.latest[name], stamp.t_ms)
                for name, stamp in track.stamps.items() if stamp.cursor > cursor}

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

    def clock(self) -> int:
        """The clock this board uses."""
        return self._clock_ms()
