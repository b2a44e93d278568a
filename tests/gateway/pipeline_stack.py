"""The gateway's durable pipeline as the runtime builds it, for tests that crash and
recover it: database, outbox, journal, ingress and summary pipeline on one file."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from tandem.gateway.metrics import GatewayMetrics
from tandem.gateway.pipeline.ingress import Ingress
from tandem.gateway.pipeline.journal import Journal
from tandem.gateway.pipeline.summarise import SummaryPipeline
from tandem.gateway.pipeline.windows import TumblingWindows
from tandem.gateway.reports import DeviceReport
from tandem.gateway.store.database import GatewayDatabase
from tandem.gateway.store.outbox import Outbox
from tandem.wire.batch import Record, Summary


class Stack:
    """Database, outbox, journal, ingress and pipeline as the runtime builds them."""

    def __init__(self, path: Path, max_pending: int = 1000) -> None:
        self.database = GatewayDatabase(path)
        self.outbox = Outbox(self.database)
        self.journal = Journal(self.database, self.outbox)
        recovery = self.journal.recover()
        self.ingress = Ingress(self.journal, max_pending, recovery.last)
        self.pipeline = SummaryPipeline(self.ingress.queue, TumblingWindows(1000), self.journal,
                                        GatewayMetrics(), flush_interval_s=0.01)
        self.pipeline.recover(recovery)

    async def submit_all(self, items: Sequence[DeviceReport]) -> list[bool]:
        stop = asyncio.Event()
        committer = asyncio.create_task(self.ingress.run(stop))
        results = await asyncio.gather(*(self.ingress.submit(i) for i in items))
        stop.set()
        await committer
        return list(results)

    async def process_queue(self) -> None:
        """Let the pipeline take what is queued and file what closed (no shutdown flush)."""
        while not self.ingress.queue.empty():
            self.pipeline._take(self.ingress.queue.get_nowait())
        await self.pipeline._flush()

    def summaries(self) -> list[Summary]:
        captured: list[Sequence[Record]] = []

        def build(seq: int, records: Sequence[Record]) -> bytes:
            captured.append(records)
            return b"x"

        while (batch := self.outbox.seal_or_pending_sync(10_000, build, 0)) is not None:
            self.outbox.confirm_sync(batch.seq)
        return [r for recs in captured for r in recs if isinstance(r, Summary)]


def count_readings(summaries: list[Summary]) -> dict[str, int]:
    """Readings per channel across summaries."""
    counts: dict[str, int] = {}
    for s in summaries:
        counts[s.channel] = counts.get(s.channel, 0) + s.count
    return counts
