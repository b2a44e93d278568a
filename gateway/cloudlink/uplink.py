"""Moves sealed batches from the outbox to the cloud over HTTPS.

One batch in flight at a time, oldest first. The cloud answers 200 only after
it has committed the batch (or already had it), and only then is the batch
deleted here. Failures back off exponentially with full jitter
(cloudlink/backoff.py) so a fleet of gateways does not hammer a recovering
cloud in step. While the cloud cannot even be connected to, a cheap probe (a
TCP connect, every `probe_s`) runs between the long backoffs, so the backlog
leaves within a probe period of the cloud's return instead of a backoff
period; a cloud that answers with an error gets no probes, only the backoff.
A 409 `batch_conflict` (the cloud holds this number with other content) moves
the batch past the cloud's `next_seq`, re-signed, and sends it again.

Alarms and events have an urgent lane: setting `urgent` (the outbox does it
after an alarm's commit) ends the idle wait at once, and only the urgent
records are sealed, in a signed batch of their own, so an alarm reaches the
cloud in one round trip while summaries keep their `interval_s` batching.
During a backoff `urgent` ends nothing: the alarms wait in the outbox and, being
most urgent, are the first batch sealed when the cloud answers again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import logging
import time
from collections.abc import Callable, Sequence
from enum import Enum

import httpx

from tandem.gateway.cloudlink.backoff import Backoff
from tandem.gateway.cloudlink.budget import DailyBudget
from tandem.gateway.cloudlink.client import CloudEndpoint
from tandem.gateway.config import UplinkSection
from tandem.gateway.metrics import GatewayMetrics
from tandem.gateway.store.outbox import Outbox, Priority, SealedBatch
from tandem.wire.batch import Batch, Record, decode_batch, encode_batch
from tandem.wire.clock import now_ms
from tandem.wire.cose import MEDIA_TYPE, Signer, own_payload, sign1

log = logging.getLogger(__name__)

INGEST_PATH = "/ingest/v1/batches"
# The batch itself is wrong: resending the same bytes can never succeed.
_PERMANENT = {400, 413, 415, 422}


class Outcome(Enum):
    """What one delivery attempt achieved."""

    EMPTY = "empty"
    DELIVERED = "delivered"
    SET_ASIDE = "set_aside"
    RENUMBERED = "renumbered"
    RETRY = "retry"


_AT_ONCE = (Outcome.DELIVERED, Outcome.SET_ASIDE, Outcome.RENUMBERED)
# Failures that mean "nothing answered": only these are worth a probe.
_UNREACHABLE = (httpx.ConnectError, httpx.ConnectTimeout)
Clock = Callable[[], float]


class Uplink:
    """Drains the outbox to the cloud's ingest endpoint."""

    def __init__(self, config: UplinkSection, endpoint: CloudEndpoint, gateway_id: str,
                 outbox: Outbox, signer: Signer, metrics: GatewayMetrics,
                 budget: DailyBudget | None = None, backoff: Backoff | None = None,
                 clock: Clock = time.monotonic) -> None:
        self._config = config
        self._endpoint = endpoint
        self._budget = budget or DailyBudget(outbox.database, config.daily_budget_bytes)
        self._gateway_id = gateway_id
        self._outbox = outbox
        self._signer = signer
        self._metrics = metrics
        self._backoff = backoff or Backoff(base_s=config.interval_s, max_s=config.backoff_max_s)
        self._clock = clock
        self._client = endpoint.async_client(headers={"Content-Type": MEDIA_TYPE})
        self._unreachable = False  # the last attempt could not connect at all
        self.last_delivered_ms = 0  # wall time of the last batch the cloud confirmed
        self.last_failure = ""  # why the last attempt failed ("" after a delivery)
        self.wakeup = asyncio.Event()
        self.urgent = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until stop is set; sleep between empty polls, back off on failure."""
        while not stop.is_set():
            outcome = await self.deliver_one()
            if outcome in _AT_ONCE:
                continue
            if outcome is Outcome.EMPTY:
                outcome = await self._idle(stop)
            if outcome is Outcome.RETRY:
                await self._back_off(stop)
            self.wakeup.clear()

    async def _idle(self, stop: asyncio.Event) -> Outcome:
        """Wait out the flush interval; urgent records that come meanwhile go at once."""
        end = self._clock() + self._config.interval_s
        while not stop.is_set() and (left := end - self._clock()) > 0:
            if not await _wait_any(stop, self.urgent, left, self.wakeup) or \
                    not self.urgent.is_set():
                break  # the interval is over, or stop, or a routine wake-up
            self.urgent.clear()
            outcome = await self._deliver_urgent()
            if outcome is Outcome.RETRY:
                return outcome
        return Outcome.EMPTY

    async def _deliver_urgent(self) -> Outcome:
        """Deliver until no alarm or event waits (a batch sealed earlier goes first)."""
        while (outcome := await self.deliver_one(Priority.EVENT)) in _AT_ONCE:
            pass
        return outcome

    async def _back_off(self, stop: asyncio.Event) -> None:
        """Wait out the backoff; while nothing answered, end it early once a probe connects."""
        end = self._clock() + self._backoff.next_delay()
        probe_s = self._config.probe_s if self._unreachable else 0.0
        while not stop.is_set() and (left := end - self._clock()) > 0:
            if await _wait_any(stop, self.wakeup, min(left, probe_s) if probe_s else left):
                return
            if probe_s and await self._probe():
                return

    async def _probe(self) -> bool:
        reachable = await self._endpoint.reachable()
        self._metrics.uplink_probes.labels(
            result="reachable" if reachable else "unreachable").inc()
        if reachable:
            log.info("cloud reachable again: sending the backlog now")
        return reachable

    async def deliver_one(self, max_priority: Priority = Priority.BULK) -> Outcome:
        """Seal (records up to max_priority) or pick the oldest batch and deliver it once."""
        routine = self._budget.allows_routine()
        self._metrics.uplink_budget_exhausted.set(0 if routine else 1)
        batch = await self._outbox.seal_or_pending(
            self._config.batch_max_records, self._build_envelope, now_ms(),
            max_priority if routine else Priority.EVENT)
        if batch is None:
            return Outcome.EMPTY
        return await self._send(batch)

    async def close(self) -> None:
        """Close the HTTP connection pool."""
        await self._client.aclose()

    def _build_envelope(self, seq: int, records: Sequence[Record]) -> bytes:
        payload = encode_batch(Batch(self._gateway_id, seq, now_ms(), tuple(records),
                                     epoch=self._outbox.epoch))
        return sign1(payload, self._gateway_id, self._signer)

    def _resign(self, seq: int, envelope: bytes) -> bytes:
        """The same records under a new number (and send time), signed again."""
        batch = decode_batch(own_payload(envelope))
        payload = encode_batch(dataclasses.replace(batch, seq=seq, sent_ms=now_ms()))
        return sign1(payload, self._gateway_id, self._signer)

    async def _send(self, batch: SealedBatch) -> Outcome:
        body, headers = self._encode(batch.envelope)
        started = time.perf_counter()
        try:
            response = await self._client.post(INGEST_PATH, content=body, headers=headers)
        except httpx.HTTPError as exc:
            self._unreachable = isinstance(exc, _UNREACHABLE)
            return self._failed(batch, f"{type(exc).__name__}: {exc}")
        self._unreachable = False
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
            self.last_delivered_ms, self.last_failure = now_ms(), ""
            log.info("batch %d delivered (%d records, %d bytes, %s)", batch.seq, batch.records,
                     len(batch.envelope), _status_of(response))
            return Outcome.DELIVERED
        if response.status_code in _PERMANENT:
            await self._outbox.set_aside(batch.seq, f"{response.status_code} {response.text[:200]}")
            self._metrics.uplink_batches.labels(result="set_aside").inc()
            log.error("cloud refused batch %d for good (%d %s); set aside for an operator",
                      batch.seq, response.status_code, response.text[:200])
            return Outcome.SET_ASIDE
        resume = _conflict_resume(response)
        if resume is not None:
            return await self._renumber(batch, resume, response.text[:200])
        return self._failed(batch, f"HTTP {response.status_code} {response.text[:200]}")

    async def _renumber(self, batch: SealedBatch, resume: int, detail: str) -> Outcome:
        """The cloud holds batch.seq with other content: resume numbering where it says."""
        moved = await self._outbox.renumber(batch.seq, resume, self._resign)
        self._metrics.uplink_batches.labels(result="conflict").inc()
        log.warning("cloud holds batch %d of epoch %d with other content (%s); "
                    "renumbered it %d and sending it again", batch.seq, self._outbox.epoch,
                    detail, moved.seq)
        return Outcome.RENUMBERED

    def _encode(self, envelope: bytes) -> tuple[bytes, dict[str, str]]:
        # gzip on the HTTP layer: the signature covers the envelope itself, and
        # any HTTP stack or proxy understands Content-Encoding.
        if not self._config.compress:
            return envelope, {}
        return gzip.compress(envelope, compresslevel=6), {"Content-Encoding": "gzip"}

    def _failed(self, batch: SealedBatch, reason: str) -> Outcome:
        self._metrics.uplink_batches.labels(result="retry").inc()
        self.last_failure = reason
        log.warning("batch %d not delivered (%s); will retry", batch.seq, reason)
        return Outcome.RETRY


def _conflict_resume(response: httpx.Response) -> int | None:
    """next_seq of a 409 batch_conflict answer; None for any other answer."""
    if response.status_code != 409:
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    resume = body.get("next_seq") if isinstance(body, dict) else None
    if body.get("error") != "batch_conflict" or type(resume) is not int or resume < 1:
        return None
    return resume


def _status_of(response: httpx.Response) -> str:
    try:
        return str(response.json().get("status", "?"))
    except ValueError:
        return "?"


async def _wait_any(stop: asyncio.Event, wakeup: asyncio.Event, timeout: float,
                    *more: asyncio.Event) -> bool:
    """Wait until stop or a wakeup is set (True) or timeout seconds passed (False)."""
    waiters = [asyncio.ensure_future(e.wait()) for e in (stop, wakeup, *more)]
    try:
        done, _ = await asyncio.wait(waiters, timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    return bool(done)
