"""Simulated gateways for `tandem bench fleet-ingest`: signed batches uploaded like the uplink.

Each gateway makes `rate` summaries a second (0: as fast as the cloud takes
them), and every `interval_s` it signs what is pending as one COSE_Sign1 CBOR
batch of at most `batch_max` records, gzips it (as the uplink does) and POSTs
it, one batch in flight per gateway. A batch is sent again, unchanged, until
the cloud answers 200 ("stored", or "duplicate" when an earlier try was
stored and its answer lost), exactly as the real uplink retries; the tally
keeps each acknowledged (gateway, seq) once, which is what the bench then
checks against the databases.
"""

from __future__ import annotations

import asyncio
import gzip
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tandem.wire.batch import Batch, Summary, encode_batch
from tandem.wire.clock import now_ms
from tandem.wire.cose import MEDIA_TYPE, SoftwareSigner, sign1

INGEST_PATH = "/ingest/v1/batches"
SERIES = 100  # device/channel series per gateway (25 devices x 4 channels)
RETRY_FIRST_S = 0.1
RETRY_MAX_S = 2.0
GIVE_UP_AFTER_S = 60.0  # past the end of the run, a batch still not acknowledged is reported


@dataclass(frozen=True)
class SimGateway:
    """One simulated gateway: its name and signing key."""

    name: str
    key: ec.EllipticCurvePrivateKey

    @property
    def public_pem(self) -> str:
        """The public key as the cloud's registry stores it."""
        return self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def fleet(count: int) -> list[SimGateway]:
    """count gateways with fresh P-256 keys."""
    return [SimGateway(f"gw-fleet-{i:03d}", ec.generate_private_key(ec.SECP256R1()))
            for i in range(count)]


@dataclass(frozen=True)
class Load:
    """What every gateway offers: records/s (0: unpaced), upload interval and batch size."""

    rate: float
    interval_s: float
    batch_max: int
    seconds: float


@dataclass
class Tally:
    """What the fleet saw: acknowledged batches and points, latencies, failed tries by kind."""

    acked_batches: int = 0
    acked_points: int = 0
    measured_points: int = 0  # acknowledged within the timed window
    latencies_s: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)  # "503", "ReadTimeout", ...
    failed_at_s: list[float] = field(default_factory=list)  # seconds into the run, each failure
    # how long the connection had been idle when a try failed (keep-alive races show here)
    failed_idle_s: list[float] = field(default_factory=list)
    unacknowledged: int = 0  # batches given up GIVE_UP_AFTER_S after the end
    started: float = 0.0  # time.monotonic() at the start of the run

    @property
    def server_errors(self) -> int:
        """Answers with a 5xx status."""
        return sum(n for kind, n in self.failures.items() if kind.startswith("5"))


def run_fleet(url: str, gateways: list[SimGateway], load: Load) -> Tally:
    """Upload from every gateway for load.seconds; the tally once all are done."""
    return asyncio.run(_fleet(url, gateways, load))


async def _fleet(url: str, gateways: list[SimGateway], load: Load) -> Tally:
    tally = Tally()
    end = time.monotonic() + load.seconds
    tally.started = end - load.seconds
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    clients = [httpx.AsyncClient(base_url=url, timeout=30, limits=limits,
                                 headers={"Content-Type": MEDIA_TYPE,
                                          "Content-Encoding": "gzip"})
               for _ in gateways]
    try:
        await asyncio.gather(*(_gateway(g, c, load, end, tally)
                               for g, c in zip(gateways, clients, strict=True)))
    finally:
        for client in clients:
            await client.aclose()
    return tally


async def _gateway(gateway: SimGateway, client: httpx.AsyncClient, load: Load, end: float,
                   tally: Tally) -> None:
    """Make records at load.rate and upload them every interval until end."""
    signer = SoftwareSigner(gateway.key)
    records = _records(gateway.name)
    started = time.monotonic()
    made, seq = 0, 0
    answered = [time.monotonic()]  # when this gateway's connection last carried an answer
    tick = started + random.uniform(0, load.interval_s)  # gateways are not in step
    while tick < end:
        await asyncio.sleep(max(0.0, tick - time.monotonic()))
        now = time.monotonic()
        due = int(load.rate * (now - started)) if load.rate else made + load.batch_max
        while made < due and time.monotonic() < end:  # what is pending, batch_max at a time
            count = min(due - made, load.batch_max)
            seq += 1
            batch = Batch(gateway.name, seq, now_ms(),
                          tuple(next(records) for _ in range(count)))
            body = gzip.compress(sign1(encode_batch(batch), gateway.name, signer),
                                 compresslevel=6)
            if await _deliver(client, body, end, tally, answered):
                tally.acked_batches += 1
                tally.acked_points += count
                tally.measured_points += count if time.monotonic() <= end else 0
            made += count
        tick = max(tick + load.interval_s, time.monotonic()) if load.rate else now


async def _deliver(client: httpx.AsyncClient, body: bytes, end: float, tally: Tally,
                   answered: list[float]) -> bool:
    """POST body until a 200; False if still refused GIVE_UP_AFTER_S after the run's end."""
    pause = RETRY_FIRST_S
    while True:
        sent, idle = time.perf_counter(), time.monotonic() - answered[0]
        try:
            answer = await client.post(INGEST_PATH, content=body)
        except httpx.HTTPError as exc:
            tally.failures[type(exc).__name__] += 1
            tally.failed_at_s.append(time.monotonic() - tally.started)
            tally.failed_idle_s.append(idle)
        else:
            answered[0] = time.monotonic()
            if answer.status_code == 200:
                tally.latencies_s.append(time.perf_counter() - sent)
                return True
            if 400 <= answer.status_code < 500 and answer.status_code not in (408, 429):
                raise RuntimeError(f"the cloud refused a well-formed batch: "
                                   f"{answer.status_code} {answer.text[:300]}")
            tally.failures[str(answer.status_code)] += 1
            tally.failed_at_s.append(time.monotonic() - tally.started)
        if time.monotonic() > end + GIVE_UP_AFTER_S:
            tally.unacknowledged += 1
            return False
        await asyncio.sleep(pause)
        pause = min(pause * 2, RETRY_MAX_S)


def _records(gateway: str) -> Iterator[Summary]:
    """Distinct summaries, newest window first, so none is ever stamped in the future."""
    top = (now_ms() // 60_000 - 1) * 60_000
    index = 0
    while True:
        t0 = top - (index // SERIES) * 60_000
        k = index % SERIES
        yield Summary(f"{gateway}-d{k // 4:02d}", f"ch{k % 4}", t0, t0 + 60_000, 60,
                      float(k), float(k) + 2.0, float(k) + 1.0, float(k) + 1.5)
        index += 1
