"""The pipeline task: journaled reports -> window summaries -> outbox.

Summaries are filed in groups, one transaction per flush interval, which
also removes the journal rows they cover: a crash at any moment leaves each
reading either in the journal or in a summary, never in both or neither.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Protocol

from tandem.gateway.metrics import GatewayMetrics
from tandem.gateway.pipeline.journal import Journal, Journaled, Recovery, Watermark
from tandem.gateway.pipeline.quarantine import DATA_ERRORS, Fault, fault_of, record_fault
from tandem.gateway.pipeline.windows import TumblingWindows
from tandem.gateway.reports import DeviceReport
from tandem.gateway.store.outbox import OutboxFull, Priority
from tandem.wire.batch import Record, Summary
from tandem.wire.clock import now_ms

log = logging.getLogger(__name__)

MAX_UNSTORED = 100_000
_END_OF_TIME = (1 << 63) - 1


class RecordStore(Protocol):
    """Where records go next (the outbox)."""

    async def put(self, records: list[Record], priority: Priority) -> None:
        """Store records durably."""
        ...


class SummaryPipeline:
    """Consumes journaled reports, files summaries of closed windows."""

    def __init__(self, queue: asyncio.Queue[Journaled], windows: TumblingWindows,
                 journal: Journal, metrics: GatewayMetrics,
                 flush_interval_s: float = 0.5) -> None:
        self._queue = queue
        self._windows = windows
        self._journal = journal
        self._metrics = metrics
        self._flush_interval_s = flush_interval_s
        self._closed: list[Summary] = []
        self._poisoned: list[tuple[Journaled, Fault]] = []
        self._last_row = 0

    def recover(self, recovery: Recovery) -> None:
        """Rebuild the open windows from the journal before serving (start-up)."""
        self._windows.restore_closed(recovery.closed)
        for row in recovery.rows:
            self._take(row, skip_filed=row.row_id <= recovery.filed_through)
        self._last_row = max([recovery.filed_through, *(r.row_id for r in recovery.rows)])
        if recovery.rows:
            log.info("recovered %d journaled reports into %d open windows", len(recovery.rows),
                     self._windows.open_count)

    async def run(self, stop: asyncio.Event) -> None:
        """Process until stop is set, then drain the queue and close every window."""
        next_flush = time.monotonic() + self._flush_interval_s
        while not stop.is_set():
            timeout = max(0.0, next_flush - time.monotonic())
            with contextlib.suppress(TimeoutError):
                self._take(await asyncio.wait_for(self._queue.get(), timeout))
            # A group commit queues hundreds of reports at once: take them all now, or the
            # queue grows (one item per loop turn) until the ingress refuses with 5.03.
            while not self._queue.empty():
                self._take(self._queue.get_nowait())
            if time.monotonic() >= next_flush:
                self._closed.extend(self._windows.expire(now_ms()))
                await self._flush()
                next_flush = time.monotonic() + self._flush_interval_s
        await self.drain()

    async def drain(self) -> None:
        """Take what is queued, close all windows and store the summaries (shutdown)."""
        while not self._queue.empty():
            self._take(self._queue.get_nowait())
        self._closed.extend(self._windows.flush())
        await self._flush()

    def _take(self, row: Journaled, skip_filed: bool = False) -> None:
        item = row.item
        self._last_row = row.row_id
        fault = record_fault(item)
        if fault is None:
            try:
                self._add(item, skip_filed)
            except DATA_ERRORS as exc:  # never let one record stop the others
                fault = fault_of(exc)
        if fault is not None:
            self._poisoned.append((row, fault))
            return
        self._metrics.reports.inc()
        self._metrics.readings.inc(len(item.report.values))
        self._metrics.device_last_seen.labels(
            device=self._metrics.device_label(item.device)).set(item.received_ms / 1000)

    def _add(self, item: DeviceReport, skip_filed: bool) -> None:
        now, t_ms = now_ms(), item.t_ms
        for channel, value in item.report.values.items():
            if skip_filed and self._windows.is_filed(item.device, channel, t_ms):
                continue
            self._closed.extend(self._windows.add(item.device, channel, t_ms, value, now))

    async def _flush(self) -> None:
        if self._poisoned:
            await self._journal.quarantine(self._poisoned)
            self._poisoned = []
        if not self._closed:
            return
        devices = {s.device for s in self._closed}
        watermarks = [Watermark(d, self._open_start(d), self._last_row) for d in devices]
        changes = self._windows.take_closed_changes()
        try:
            await self._journal.file(self._closed, watermarks, changes, self._last_row)
        except OutboxFull as exc:
            self._windows.keep_closed_changes(changes)
            self._hold_back(exc)
            return
        except BaseException:  # a disk error: the supervisor restarts us, nothing is lost
            self._windows.keep_closed_changes(changes)
            raise
        self._metrics.summaries.inc(len(self._closed))
        log.debug("filed %d summaries", len(self._closed))
        self._closed = []

    def _open_start(self, device: str) -> int:
        start = self._windows.open_start(device)
        return _END_OF_TIME if start is None else start

    def _hold_back(self, exc: OutboxFull) -> None:
        # The readings stay in the journal, so nothing acknowledged is lost;
        # memory stays bounded by dropping the oldest summaries held here
        # (they are rebuilt from the journal after a restart).
        overflow = len(self._closed) - MAX_UNSTORED
        if overflow > 0:
            del self._closed[:overflow]
            self._metrics.summaries_dropped.inc(overflow)
        log.error("outbox full (%s): %d summaries held in memory", exc, len(self._closed))
