"""Resumable, rate-bounded download of one model artefact with HTTP Range.

The partial file `<dir>/<sha256>.part` holds only whole chunks that matched
their sha256 in the signed manifest, each fsynced before the next is asked
for, so its length is the persisted offset: after a link cut or a restart the
download resumes there and at most the chunk in flight is sent again. A chunk
with wrong bytes is refused as it arrives and fetched once more; the whole
artefact must match its sha256 before it is handed on (renamed `<sha256>`).
Any HTTP server with Range support can serve the artefacts.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry, Counter

from tandem.wire.modelrelease import Artefact

log = logging.getLogger(__name__)
PART_SUFFIX = ".part"
CHUNK_RETRIES = 3


class TransferError(Exception):
    """A download that cannot complete; `reason` is the metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class TokenBucket:
    """Bounds bandwidth: `rate` bytes per second on average, bursts up to `burst` bytes."""

    def __init__(self, rate: float, burst: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst = rate, burst
        self._tokens = burst
        self._clock = clock
        self._at = clock()

    async def take(self, amount: int) -> None:
        """Wait until `amount` bytes may be sent (amounts over the burst wait for the deficit)."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        self._tokens -= amount
        if self._tokens < 0:
            await asyncio.sleep(-self._tokens / self.rate)


@dataclass
class TransferMetrics:
    """Bytes fetched, chunks refused and downloads by result."""

    registry: CollectorRegistry

    def __post_init__(self) -> None:
        self.bytes = Counter("tandem_gw_model_transfer_bytes",
                             "Model artefact bytes received (accepted chunks)",
                             registry=self.registry)
        self.chunks_refused = Counter("tandem_gw_model_chunks_refused",
                                      "Model artefact chunks whose sha256 did not match",
                                      registry=self.registry)
        self.results = Counter("tandem_gw_model_transfers", "Model downloads by result",
                               ["result"], registry=self.registry)


Headers = Callable[[], Awaitable[dict[str, str]]]


class Download:
    """One artefact into `directory`; `run` returns the verified file's path."""

    def __init__(self, http: httpx.AsyncClient, artefact: Artefact, directory: Path,
                 headers: Headers, metrics: TransferMetrics,
                 bucket: TokenBucket | None = None) -> None:
        self.artefact = artefact
        self.final = directory / artefact.sha256
        self.part = directory / (artefact.sha256 + PART_SUFFIX)
        self.resumed_from = 0
        self.received = 0
        self._http = http
        self._headers = headers
        self._metrics = metrics
        self._bucket = bucket

    async def run(self) -> Path:
        """Fetch what is missing, verify, and return the complete file."""
        if self.final.exists():
            return self.final
        self.part.parent.mkdir(parents=True, exist_ok=True)
        offset = await asyncio.to_thread(self._valid_prefix)
        self.resumed_from = offset
        if offset:
            log.info("model artefact %s: resuming at %d of %d bytes", self.artefact.sha256[:12],
                     offset, self.artefact.size)
        try:
            while offset < self.artefact.size:
                offset = await self._next_chunk(offset)
            await asyncio.to_thread(self._finish)
        except TransferError as exc:
            self._metrics.results.labels(exc.reason).inc()
            raise
        self._metrics.results.labels("ok").inc()
        return self.final

    def _valid_prefix(self) -> int:
        """Length of the partial file's leading chunks that match; the rest is cut off."""
        chunk, good = self.artefact.chunk, 0
        try:
            with self.part.open("r+b") as f:
                for expected in self.artefact.chunks:
                    data = f.read(chunk)
                    if not data or hashlib.sha256(data).hexdigest() != expected:
                        break
                    good += len(data)
                f.truncate(good)
        except FileNotFoundError:
            return 0
        return good

    async def _next_chunk(self, offset: int) -> int:
        index = offset // self.artefact.chunk
        end = min(offset + self.artefact.chunk, self.artefact.size) - 1
        for _ in range(CHUNK_RETRIES):
            if self._bucket is not None:
                await self._bucket.take(end - offset + 1)
            data = await self._fetch(offset, end)
            if hashlib.sha256(data).hexdigest() == self.artefact.chunks[index]:
                await asyncio.to_thread(self._append, data)
                self.received += len(data)
                self._metrics.bytes.inc(len(data))
                log.info("model artefact %s: %d/%d bytes", self.artefact.sha256[:12],
                         end + 1, self.artefact.size)
                return end + 1
            self._metrics.chunks_refused.inc()
            log.warning("model artefact %s: chunk %d has wrong bytes; fetching it again",
                        self.artefact.sha256[:12], index)
        raise TransferError("chunk_hash", f"chunk {index} of {self.artefact.sha256[:12]} "
                                          f"had wrong bytes {CHUNK_RETRIES} times")

    async def _fetch(self, first: int, last: int) -> bytes:
        headers = await self._headers()
        headers["Range"] = f"bytes={first}-{last}"
        response = await self._http.get(self.artefact.url, headers=headers)
        if response.status_code == 206:
            return response.content
        if response.status_code == 200 and first == 0 and len(response.content) == last + 1:
            return response.content  # a server without Range, for an artefact of one chunk
        raise TransferError("http", f"GET {self.artefact.url} {headers['Range']}: HTTP "
                                    f"{response.status_code}")

    def _append(self, data: bytes) -> None:
        fd = os.open(self.part, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        start = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError as exc:
            os.ftruncate(fd, start)  # keep only whole, verified chunks
            raise TransferError("disk", f"cannot write {self.part}: {exc}") from None
        finally:
            os.close(fd)

    def _finish(self) -> None:
        digest = hashlib.sha256()
        with self.part.open("rb") as f:
            for block in iter(lambda: f.read(1 << 16), b""):
                digest.update(block)
        if digest.hexdigest() != self.artefact.sha256:
            self.part.unlink()
            raise TransferError("artefact_hash", f"{self.artefact.sha256[:12]}: reassembled "
                                                 "bytes do not match the manifest")
        self.part.replace(self.final)
