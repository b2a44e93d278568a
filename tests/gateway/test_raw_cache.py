"""The raw cache: bounded by bytes and count (oldest evicted), expired by age, found by time."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterator
from pathlib import Path

import cbor2
import pytest
from prometheus_client import CollectorRegistry

from tandem.gateway.config import RawCacheSection
from tandem.gateway.nodes.rawcache import RawCache
from tandem.gateway.store.database import DATABASE_FILE, GatewayDatabase
from tandem.wire.raw import RawSnippet, encode_raw_record

T0 = 1_764_230_400_000


def snippet(t_ms: int, device: str = "node-01", frames: int = 64) -> RawSnippet:
    """frames of x, y, z at 800 Hz (80 ms for 64 frames)."""
    samples = struct.pack(f"<{3 * frames}h", *([0, 0, 256] * frames))
    return RawSnippet(device, t_ms, 800, 1 / 256, "xyz", samples)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def db(tmp_path: Path) -> Iterator[GatewayDatabase]:
    database = GatewayDatabase(tmp_path / DATABASE_FILE)
    yield database
    database.close()


def cache_of(db: GatewayDatabase, clock: Clock, **limits: float) -> tuple[RawCache,
                                                                           CollectorRegistry]:
    registry = CollectorRegistry()
    return RawCache(db, RawCacheSection(**limits), registry, clock), registry  # type: ignore[arg-type]


def metric(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    assert value is not None, name
    return value


def test_find_returns_the_window_nearest_the_time_asked_within_match_ms(
        db: GatewayDatabase) -> None:
    cache, _ = cache_of(db, Clock(), match_ms=500)
    for t in (T0, T0 + 1000, T0 + 2000):
        db.call_sync(cache.put_sync, snippet(t), T0)
    db.call_sync(cache.put_sync, snippet(T0 + 1000, device="node-02"), T0)

    def found(device: str, t_ms: int) -> int | None:
        hit = db.call_sync(cache.find_sync, device, t_ms)
        return None if hit is None else hit.t_ms

    assert found("node-01", T0 + 1040) == T0 + 1000  # inside its window
    assert found("node-01", T0 + 1900) == T0 + 2000  # the nearest start
    assert found("node-01", T0 + 3000) is None  # 920 ms after the last window ended
    assert found("node-03", T0) is None


def test_over_max_bytes_or_count_the_oldest_are_evicted_and_counted(
        db: GatewayDatabase) -> None:
    one = len(cbor2.dumps(encode_raw_record(snippet(T0)), canonical=True))
    cache, registry = cache_of(db, Clock(), max_bytes=3 * one, max_snippets=100, match_ms=100)
    for i in range(5):
        db.call_sync(cache.put_sync, snippet(T0 + 1000 * i), T0)
    count, size = db.call_sync(cache.totals_sync)
    assert count == 3 and size <= 3 * one
    assert db.call_sync(cache.find_sync, "node-01", T0) is None  # the oldest went first
    assert db.call_sync(cache.find_sync, "node-01", T0 + 4000) is not None
    assert metric(registry, "tandem_gw_rawcache_events_total", event="evicted") == 2
    assert metric(registry, "tandem_gw_rawcache_snippets") == 3 and size == 3 * one
    assert metric(registry, "tandem_gw_rawcache_bytes") == size

    counted, registry = cache_of(db, Clock(), max_snippets=2)
    db.call_sync(counted.put_sync, snippet(T0 + 9000), T0)
    assert db.call_sync(counted.totals_sync)[0] == 2
    assert metric(registry, "tandem_gw_rawcache_events_total", event="evicted") == 2


def test_the_purge_task_removes_expired_snippets_and_stops_when_told(
        db: GatewayDatabase) -> None:
    clock = Clock()
    cache, registry = cache_of(db, clock, ttl_s=60, purge_s=0.05)
    db.call_sync(cache.put_sync, snippet(T0), T0 - 61_000)  # received 61 s ago: expired
    db.call_sync(cache.put_sync, snippet(T0 + 1000), T0 - 30_000)

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(cache.run(stop))
        while metric(registry, "tandem_gw_rawcache_events_total", event="expired") < 1:
            await asyncio.sleep(0.01)
        clock.now += 31_000  # now the second is past its TTL too
        while db.call_sync(cache.totals_sync)[0]:
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(main())
    assert metric(registry, "tandem_gw_rawcache_events_total", event="expired") == 2
    assert metric(registry, "tandem_gw_rawcache_snippets") == 0


def test_put_tells_the_listeners_and_survives_a_restart(tmp_path: Path) -> None:
    heard: list[tuple[RawSnippet, int]] = []
    database = GatewayDatabase(tmp_path / DATABASE_FILE)
    cache, _ = cache_of(database, Clock())
    cache.arrivals.append(lambda s, received: heard.append((s, received)))
    asyncio.run(cache.put(snippet(T0)))
    database.close()
    assert heard == [(snippet(T0), T0)]
    reopened = GatewayDatabase(tmp_path / DATABASE_FILE)
    try:
        again, registry = cache_of(reopened, Clock())
        assert asyncio.run(again.find("node-01", T0)) == snippet(T0)
        assert metric(registry, "tandem_gw_rawcache_snippets") == 1
    finally:
        reopened.close()
