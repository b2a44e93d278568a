"""Moves sealed batches from the outbox to the cloud over HTTPS.

One batch in flight at a time, oldest first. The cloud answers 200 only after
it has committed the batch (or already had it), and only then is the batch
deleted here. Failures back off exponentially with full jitter so a fleet of
gateways does not hammer a recovering cloud in step.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import random
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import httpx

from tandem.gateway.cloudlink.budget import DailyBudget
from tandem.gateway.config import UplinkSection
from tandem.gateway.metrics import GatewayMetrics
from tandem.gateway.store.outbox import Outbox, Priority, SealedBatch
from tandem.wire.batch import Batch, Record, encode_batch
from tandem.wire.clock import now_ms
from tandem.wire.cose import MEDIA_TYPE, Signer, sign1

log = logging.getLogger(__name__)

INGEST_PATH = "/ingest/v1/batches"
# The batch itself is wrong: resending the same bytes can never succeed.
_PERMANENT = {400, 413, 415, 422}


class Outcome(Enum):
    """What one delivery attempt achieved."""

    EMPTY = "empty"
    DELIVERED = "delivered"
    SET_ASIDE = "set_aside"
    RETRY = "retry"


@dataclass
class Backoff:
    """Exponential backoff with full jitter, reset on success."""

    base_s: float
    max_s: float
    attempt: int = 0

    def next_delay(self) -> float:
        """Delay before the next try; grows until max_s."""
        ceiling = min(self.max_s, self.base_s * 2 ** min(self.attempt, 30))
        self.attempt += 1
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        """Forget past failures."""
        self.attempt = 0


class Uplink:
    """Drains the outbox to the cloud's ingest endpoint."""

    def __init__(self, config: UplinkSection, gateway_id: str, outbox: Outbox, signer: Signer,
                 metrics: GatewayMetrics, budget: DailyBudget | None = None) -> None:
        self._config = config
        self._budget = budget or DailyBudget(outbox.database, config.daily_budget_bytes)
        self._gateway_id = gateway_id
        self._outbox = outbox
        self._signer = signer
        self._metrics = metrics
        self._backoff = Backoff(base_s=config.interval_s, max_s=config.backoff_max_s)
        self._client = httpx.AsyncClient(
            base_url=config.url, verify=_tls_context(config), timeout=config.timeout_s,
            headers={"Content-Type": MEDIA_TYPE})
        self.wakeup = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until stop is set; sleep between empty polls, back off on failure."""
        while not stop.is_set():
            outcome = await self.deliver_one()
            if outcome in (Outcome.DELIVERED, Outcome.SET_ASIDE):
                continue
            delay = self._config.interval_s if outcome is Outcome.EMPTY \
                else self._backoff.next_delay()
            await _wait_any(stop, self.wakeup, delay)
            self.wakeup.clear()

    async def deliver_one(self) -> Outcome:
        """Seal or pick the oldest batch and try to deliver it once."""
        routine = self._budget.allows_routine()
        self._metrics.uplink_budget_exhausted.set(0 if routine else 1)
        batch = await self._outbox.seal_or_pending(
            self._config.batch_max_records, self._build_envelope, now_ms(),
            Priority.BULK if routine else Priority.EVENT)
        if batch is None:
            return Outcome.EMPTY
        return await self._send(batch)

    async def close(self) -> None:
        """Close the HTTP connection pool."""
        await self._client.aclose()

    def _build_envelope(self, seq: int, records: Sequence[Record]) -> bytes:
        payload = encode_batch(Batch(self._gateway_id, seq, now_ms(), tuple(records)))
        return sign1(payload, self._gateway_id, self._signer)

    async def _send(self, batch: SealedBatch) -> Outcome:
        body, headers = self._encode(batch.envelope)
        started = time.perf_counter()
        try:
            response = await self._client.post(INGEST_PATH, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return self._failed(batch, f"{type(exc).__name__}: {exc}")
        self._metrics.uplink_latency.observe(time.perf_counter() - started)
        kind = "urgent" if batch.priority <= Priority.EVENT else "routine"
        self._metrics.uplink_bytes.labels(kind=kind).inc(len(body))
        if kind == "routine":
            await self._budget.spend(len(body))
        if response.status_code == 200:
            await self._outbox.confirm(batch.seq)
            self._metrics.uplink_batches.labels(result="delivered").inc()
            self._metrics.uplink_records.inc(batch.records)
            self._backoff.reset()
            log.info("batch %d delivered (%d records, %d bytes, %s)", batch.seq, batch.records,
                     len(batch.envelope), _status_of(response))
            return Outcome.DELIVERED
        if response.status_code in _PERMANENT:
            await self._outbox.set_aside(batch.seq, f"{response.status_code} {response.text[:200]}")
            self._metrics.uplink_batches.labels(result="set_aside").inc()
            log.error("cloud refused batch %d for good (%d %s); set aside for an operator",
                      batch.seq, response.status_code, response.text[:200])
            return Outcome.SET_ASIDE
        return self._failed(batch, f"HTTP {response.status_code} {response.text[:200]}")

    def _encode(self, envelope: bytes) -> tuple[bytes, dict[str, str]]:
        # gzip on the HTTP layer: the signature covers the envelope itself, and
        # any HTTP stack or proxy understands Content-Encoding.
        if not self._config.compress:
            return envelope, {}
        return gzip.compress(envelope, compresslevel=6), {"Content-Encoding": "gzip"}

    def _failed(self, batch: SealedBatch, reason: str) -> Outcome:
        self._metrics.uplink_batches.labels(result="retry").inc()
        log.warning("batch %d not delivered (%s); will retry", batch.seq, reason)
        return Outcome.RETRY


def _tls_context(config: UplinkSection) -> ssl.SSLContext | bool:
    if config.url.startswith("http://"):
        return False
    context = ssl.create_default_context(cafile=str(config.ca) if config.ca else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _status_of(response: httpx.Response) -> str:
    try:
        return str(response.json().get("status", "?"))
    except ValueError:
        return "?"


async def _wait_any(stop: asyncio.Event, wakeup: asyncio.Event, timeout: float) -> None:
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wakeup.wait())]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
