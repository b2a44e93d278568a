"""The bounded local cache of raw snippets nodes uploaded (POST /raw), with a time to live.

Snippets stay at the edge: the cloud gets summaries, and a snippet only when
it asks for one (gateway/nodes/rawrequests.py). The cache lives in the gateway's
SQLite database, bounded by total bytes and by count (the oldest go first)
and by age (`[rawcache] ttl_s`; `run` purges expired ones every `purge_s`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import cbor2
from prometheus_client import CollectorRegistry, Counter, Gauge

from tandem.gateway.config import RawCacheSection
from tandem.gateway.store.database import GatewayDatabase
from tandem.gateway.supervisor import periodic
from tandem.wire.clock import now_ms
from tandem.wire.raw import RawSnippet, decode_raw_record, encode_raw_record

log = logging.getLogger(__name__)

# Tables: gateway/store/migrations.py (the database makes them on open).

Arrival = Callable[[RawSnippet, int], None]  # (snippet, received_ms)


class RawCache:
    """Raw snippets by device and time, bounded in bytes, count and age."""

    def __init__(self, database: GatewayDatabase, config: RawCacheSection,
                 registry: CollectorRegistry | None = None,
                 clock_ms: Callable[[], int] | None = None) -> None:
        self.database = database
        self.config = config
        self.arrivals: list[Arrival] = []  # told of every snippet stored, on the event loop
        self._clock_ms = clock_ms or now_ms
        self._bytes = Gauge("tandem_gw_rawcache_bytes", "Bytes of raw snippets cached",
                            registry=registry)
        self._count = Gauge("tandem_gw_rawcache_snippets", "Raw snippets cached",
                            registry=registry)
        self._events = Counter("tandem_gw_rawcache_events",
                               "Raw snippets stored, evicted (over a bound) or expired (TTL)",
                               ["event"], registry=registry)
        for event in ("stored", "evicted", "expired"):
            self._events.labels(event)
        database.call_sync(self._update_gauges)

    # -- async facade ----------------------------------------------------------

    async def put(self, snippet: RawSnippet) -> None:
        """Store snippet (evicting the oldest past a bound), then tell the listeners."""
        received = self._clock_ms()
        await self.database.call(self.put_sync, snippet, received)
        for arrival in list(self.arrivals):
            arrival(snippet, received)

    async def find(self, device: str, t_ms: int) -> RawSnippet | None:
        """The cached snippet of device whose window is nearest t_ms (within match_ms)."""
        return await self.database.call(self.find_sync, device, t_ms)

    async def purge(self) -> int:
        """Delete expired snippets; how many."""
        return await self.database.call(self.purge_sync, self._clock_ms())

    async def run(self, stop: asyncio.Event) -> None:
        """Purge expired snippets every purge_s until stop is set."""
        await periodic(stop, self.config.purge_s, self.purge)

    # -- synchronous core: on the database thread -------------------------------

    def put_sync(self, snippet: RawSnippet, received_ms: int) -> None:
        """Insert and enforce the bounds in one transaction."""
        body = cbor2.dumps(encode_raw_record(snippet), canonical=True)
        db = self.database.connection
        with db:
            db.execute("INSERT INTO raw_cache (device, t_ms, end_ms, received_ms, bytes, body) "
                       "VALUES (?,?,?,?,?,?)", (snippet.device, snippet.t_ms,
                                                snippet.t_ms + snippet.duration_ms,
                                                received_ms, len(body), body))
            evicted = self._evict()
        self._events.labels("stored").inc()
        if evicted:
            self._events.labels("evicted").inc(evicted)
            log.info("raw cache full: %d oldest snippets evicted", evicted)
        self._update_gauges()

    def find_sync(self, device: str, t_ms: int) -> RawSnippet | None:
        """See find()."""
        slack = self.config.match_ms
        row = self.database.connection.execute(
            "SELECT body FROM raw_cache WHERE device = ? AND t_ms - ? <= ? AND ? < end_ms + ? "
            "ORDER BY abs(t_ms - ?), id DESC LIMIT 1",
            (device, slack, t_ms, t_ms, slack, t_ms)).fetchone()
        return None if row is None else decode_raw_record(cbor2.loads(row[0]))

    def purge_sync(self, now_ms: int) -> int:
        """Delete snippets received more than ttl_s before now_ms."""
        db = self.database.connection
        with db:
            cursor = db.execute("DELETE FROM raw_cache WHERE received_ms < ?",
                                (now_ms - int(self.config.ttl_s * 1000),))
        if cursor.rowcount:
            self._events.labels("expired").inc(cursor.rowcount)
            self._update_gauges()
        return cursor.rowcount

    def totals_sync(self) -> tuple[int, int]:
        """(snippets, bytes) cached."""
        count, size = self.database.connection.execute(
            "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM raw_cache").fetchone()
        return int(count), int(size)

    def _evict(self) -> int:
        evicted = 0
        count, size = self.totals_sync()
        while count > self.config.max_snippets or size > self.config.max_bytes:
            row = self.database.connection.execute(
                "SELECT id, bytes FROM raw_cache ORDER BY id LIMIT 1").fetchone()
            self.database.connection.execute("DELETE FROM raw_cache WHERE id = ?", (row[0],))
            count, size, evicted = count - 1, size - row[1], evicted + 1
        return evicted

    def _update_gauges(self) -> None:
        count, size = self.totals_sync()
        self._count.set(count)
        self._bytes.set(size)
