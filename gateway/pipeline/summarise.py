"""The pipeline task: reports from the ingress queue -> window summaries -> outbox.

Summaries are written in groups (one commit per flush interval) to spare the
flash from a commit per window.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from gateway.metrics import GatewayMetrics
from gateway.model import DeviceReport
from gateway.outbox import OutboxFull, Priority
from gateway.pipeline.windows import TumblingWindows
from wire.batch import Record, Summary

log = logging.getLogger(__name__)

MAX_UNSTORED = 100_000


class RecordStore(Protocol):
    """Where records go next (the outbox)."""

    async def put(self, records: list[Record], priority: Priority) -> None:
        """Store records durably."""
        ...


class ReportStage(Protocol):
    """A synchronous step that sees every report first (the local reflex)."""

    def take(self, item: DeviceReport) -> None:
        """Judge one report without awaiting anything."""
        ...


class SummaryPipeline:
    """Consumes reports, files summaries of closed windows."""

    def __init__(self, queue: asyncio.Queue[DeviceReport], windows: TumblingWindows,
                 store: RecordStore, metrics: GatewayMetrics,
                 flush_interval_s: float = 0.5, stage: ReportStage | None = None) -> None:
        self._queue = queue
        self._stage = stage
        self._windows = windows
        self._store = store
        self._metrics = metrics
        self._flush_interval_s = flush_interval_s
        self._closed: list[Summary] = []

    async def run(self, stop: asyncio.Event) -> None:
        """Process until stop is set, then drain the queue and close every window."""
        next_flush = time.monotonic() + self._flush_interval_s
        while not stop.is_set():
            timeout = max(0.0, next_flush - time.monotonic())
            try:
                item = await asyncio.wait_for(self._queue.get(), timeout)
                self._take(item)
            except TimeoutError:
                pass
            if time.monotonic() >= next_flush:
                self._closed.extend(self._windows.expire(_now_ms()))
                await self._flush()
                next_flush = time.monotonic() + self._flush_interval_s
        await self.drain()

    async def drain(self) -> None:
        """Take what is queued, close all windows and store the summaries (shutdown)."""
        while not self._queue.empty():
            self._take(self._queue.get_nowait())
        self._closed.extend(self._windows.flush())
        await self._flush()

    def _take(self, item: DeviceReport) -> None:
        if self._stage is not None:
            self._stage.take(item)
        now = _now_ms()
        t_ms = item.t_ms
        for channel, value in item.report.values.items():
            self._closed.extend(self._windows.add(item.device, channel, t_ms, value, now))
        self._metrics.reports.inc()
        self._metrics.readings.inc(len(item.report.values))
        self._metrics.device_last_seen.labels(device=item.device).set(item.received_ms / 1000)

    async def _flush(self) -> None:
        if not self._closed:
            return
        try:
            await self._store.put(list(self._closed), Priority.SUMMARY)
        except OutboxFull as exc:
            # Keep them in memory and retry next flush; past the bound, the
            # oldest go (counted), so a full disk cannot exhaust memory too.
            overflow = len(self._closed) - MAX_UNSTORED
            if overflow > 0:
                del self._closed[:overflow]
                self._metrics.summaries_dropped.inc(overflow)
            log.error("outbox full (%s): %d summaries held in memory", exc, len(self._closed))
            return
        self._metrics.summaries.inc(len(self._closed))
        log.debug("filed %d summaries", len(self._closed))
        self._closed = []


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
