"""The pipeline's entry: de-duplicate, journal durably (group commit), then queue.

A node resends a report it has no ACK for, possibly over a new DTLS session
where CoAP's message-ID de-duplication cannot see it; (boot, seq) catches
those, and the last pair per device survives restarts in the journal.
Concurrent reports share one commit: while one fsync runs, the next group
gathers, so throughput grows with load while each node waits for one fsync.
A report the journal cannot hold is quarantined within that commit; the
rest of its group is stored as usual.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable

from tandem.gateway.pipeline.journal import Journal, Journaled
from tandem.gateway.reports import DeviceReport

log = logging.getLogger(__name__)

MAX_TRACKED_DEVICES = 100_000
MAX_GROUP = 5_000


class Ingress:
    """A ReportSink: bounded, de-duplicating, durable before it says yes."""

    def __init__(self, journal: Journal, max_pending: int,
                 last: dict[str, tuple[int, int]] | None = None) -> None:
        self.queue: asyncio.Queue[Journaled] = asyncio.Queue()
        self.max_pending = max_pending
        self.observers: list[Callable[[DeviceReport], None]] = []
        # False while the stages after the journal are down (the runtime asks its supervisor).
        self.accepting: Callable[[], bool] = lambda: True
        self._journal = journal
        self._last: OrderedDict[str, tuple[int, int]] = OrderedDict(last or {})
        self._pending: list[tuple[DeviceReport, asyncio.Future[bool]]] = []
        self._committing = 0
        self._in_flight: dict[tuple[str, int, int], asyncio.Future[bool]] = {}
        self._kick = asyncio.Event()
        self.counts = {"accepted": 0, "duplicate": 0, "queue_full": 0, "journal_failed": 0,
                       "quarantined": 0, "not_ready": 0}

    async def submit(self, item: DeviceReport) -> bool:
        """Journal a report; a repeat counts as accepted (the node may stop resending)."""
        if self._is_repeat(item):
            self.counts["duplicate"] += 1
            in_flight = self._in_flight.get(_key(item))
            # A repeat of a report still being committed gets that commit's answer.
            return True if in_flight is None else await asyncio.shield(in_flight)
        if not self.accepting():  # 5.03: nothing is taken that cannot move on
            self.counts["not_ready"] += 1
            return False
        if len(self._pending) + self._committing + self.queue.qsize() >= self.max_pending:
            self.counts["queue_full"] += 1
            return False
        previous = self._remember(item)
        for observe in self.observers:  # the reflex sees it now, not after the fsync
            observe(item)
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((item, done))
        self._in_flight[_key(item)] = done
        self._kick.set()
        try:
            stored = await asyncio.shield(done)
        finally:
            self._in_flight.pop(_key(item), None)
        if stored:
            self.counts["accepted"] += 1
            return True
        self._forget(item, previous)
        return False

    async def run(self, stop: asyncio.Event) -> None:
        """Commit groups until stop is set and nothing is pending."""
        while not (stop.is_set() and not self._pending):
            if not self._pending:
                waiter = asyncio.ensure_future(self._kick.wait())
                stopper = asyncio.ensure_future(stop.wait())
                await asyncio.wait([waiter, stopper], return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopper.cancel()
                self._kick.clear()
                continue
            await self._commit_group()

    def snapshot(self) -> dict[str, int]:
        """Counters for the metrics exporter."""
        return dict(self.counts)

    async def _commit_group(self) -> None:
        group, self._pending = self._pending[:MAX_GROUP], self._pending[MAX_GROUP:]
        self._committing = len(group)
        try:
            ids = await self._journal.append([item for item, _ in group])
        except Exception as exc:  # noqa: BLE001 - disk full, I/O error: refuse, keep serving
            self.counts["journal_failed"] += len(group)
            log.error("journal write failed (%s): %d reports refused with 5.03", exc, len(group))
            for _, done in group:
                done.set_result(False)
            return
        finally:
            self._committing = 0
        for row_id, (item, done) in zip(ids, group, strict=True):
            if row_id is None:  # kept in quarantine: acknowledged, a resend would not help
                self.counts["quarantined"] += 1
            else:
                self.queue.put_nowait(Journaled(row_id, item))
            done.set_result(True)

    def _is_repeat(self, item: DeviceReport) -> bool:
        last = self._last.get(item.device)
        return last is not None and last[0] == item.report.boot and item.report.seq <= last[1]

    def _remember(self, item: DeviceReport) -> tuple[int, int] | None:
        previous = self._last.get(item.device)
        self._last[item.device] = (item.report.boot, item.report.seq)
        self._last.move_to_end(item.device)
        if len(self._last) > MAX_TRACKED_DEVICES:
            self._last.popitem(last=False)
        return previous

    def _forget(self, item: DeviceReport, previous: tuple[int, int] | None) -> None:
        # Not stored: the node's retry must not be mistaken for a repeat.
        if self._last.get(item.device) == (item.report.boot, item.report.seq):
            if previous is None:
                del self._last[item.device]
            else:
                self._last[item.device] = previous


def _key(item: DeviceReport) -> tuple[str, int, int]:
    return item.device, item.report.boot, item.report.seq
