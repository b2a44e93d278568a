"""The pipeline's entry: a bounded queue that drops repeated reports.

A node resends a report it has no ACK for, possibly over a new DTLS session
where CoAP's message-ID de-duplication cannot see it; (boot, seq) catches
those. Nodes send in order, so remembering the highest seq per boot suffices.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from gateway.model import DeviceReport

MAX_TRACKED_DEVICES = 100_000


class Ingress:
    """A ReportSink: bounded, de-duplicating, consumed by one pipeline task."""

    def __init__(self, max_pending: int) -> None:
        self.queue: asyncio.Queue[DeviceReport] = asyncio.Queue(maxsize=max_pending)
        self._last: OrderedDict[str, tuple[int, int]] = OrderedDict()
        self.accepted = 0
        self.duplicates = 0
        self.rejected_full = 0

    def submit(self, item: DeviceReport) -> bool:
        """Queue a report; a repeat counts as accepted (the node may stop resending)."""
        if self._is_repeat(item):
            self.duplicates += 1
            return True
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.rejected_full += 1
            return False
        self._remember(item)
        self.accepted += 1
        return True

    def snapshot(self) -> dict[str, int]:
        """Counters for the metrics exporter."""
        return {"accepted": self.accepted, "duplicate": self.duplicates,
                "queue_full": self.rejected_full}

    def _is_repeat(self, item: DeviceReport) -> bool:
        last = self._last.get(item.device)
        return last is not None and last[0] == item.report.boot and item.report.seq <= last[1]

    def _remember(self, item: DeviceReport) -> None:
        self._last[item.device] = (item.report.boot, item.report.seq)
        self._last.move_to_end(item.device)
        if len(self._last) > MAX_TRACKED_DEVICES:
            self._last.popitem(last=False)
