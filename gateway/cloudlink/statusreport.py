"""Status reports to the cloud's scheduler: what this gateway can do and how busy it is.

At start the gateway describes itself (tandem.wire.resources.Resources: cores,
a compute score from the numpy FFT self-benchmark, memory, free storage); every
`[status] interval_s` it posts a signed "gateway-status" request with its load,
memory in use, task queue (from the worker pool when one is attached), outbox
depth and link quality (RTT of a TCP connect to the cloud). A failed post is a
WARNING and a counted outcome; the next interval tries again, and the cloud marks
the gateway unreachable after a few missed intervals.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter

from tandem.gateway.cloudlink.client import CloudEndpoint
from tandem.gateway.config import StatusSection
from tandem.gateway.store.outbox import Outbox
from tandem.gateway.supervisor import periodic
from tandem.wire import computescore
from tandem.wire.clock import now_ms
from tandem.wire.cose import Signer
from tandem.wire.gwrequest import MEDIA_TYPE, sign_request
from tandem.wire.resources import Resources, Status, resources_to_plain, status_to_plain

log = logging.getLogger(__name__)
STATUS_PATH = "/edge/v1/status"
STATUS_OP = "gateway-status"
Offload = Callable[..., Awaitable[Any]]  # runs a function where the key store may be used


@dataclass(frozen=True, slots=True)
class QueueFigures:
    """The worker pool's queue: tasks waiting, their score-seconds, tasks running."""

    queue_length: int = 0
    queued_compute: float = 0.0
    running: int = 0


def describe(gateway: str, site: str, config: StatusSection, data_dir: Path,
             cores: int | None = None) -> Resources:
    """This machine in standard units (runs the compute benchmark: call off the event loop).

    cores: the task workers it runs (default: every CPU).
    """
    return Resources(place=gateway, site=site or gateway, cores=cores or os.cpu_count() or 1,
                     score=computescore.measure(config.score_rounds),
                     memory_bytes=os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
                     storage_free_bytes=shutil.disk_usage(data_dir).free,
                     accelerators=tuple(config.accelerators),
                     bandwidth_bps=config.bandwidth_bps, rtt_s=0.0)


def memory_used_bytes(meminfo: Path = Path("/proc/meminfo")) -> int:
    """MemTotal - MemAvailable, from the kernel's accounting."""
    fields = {}
    for line in meminfo.read_text().splitlines():
        name, _, rest = line.partition(":")
        fields[name] = int(rest.split()[0]) * 1024
    return fields["MemTotal"] - fields["MemAvailable"]


class StatusReporter:
    """Posts this gateway's status to the cloud every interval."""

    def __init__(self, gateway: str, config: StatusSection, data_dir: Path, outbox: Outbox,
                 endpoint: CloudEndpoint, signer: Signer, offload: Offload,
                 registry: CollectorRegistry | None = None,
                 queue: Callable[[], QueueFigures] = QueueFigures) -> None:
        self.gateway = gateway
        self.queue = queue  # the worker pool replaces this when it is attached
        self.cores: int | None = None  # task workers, set with queue (default: every CPU)
        self.resources: Resources | None = None
        self._config = config
        self._data_dir = data_dir
        self._outbox = outbox
        self._endpoint = endpoint
        self._http = endpoint.async_client()
        self._signer = signer
        self._offload = offload
        self._link_up = True  # until a report fails
        self.reports = Counter("tandem_gw_status_reports", "Status reports to the cloud, by "
                               "outcome (ok, refused, failed)", ["outcome"], registry=registry)

    async def run(self, stop: asyncio.Event) -> None:
        """Describe the machine once, then report every interval until stop is set."""
        if self.resources is None:
            self.resources = await asyncio.to_thread(
                describe, self.gateway, self._config.site, self._config, self._data_dir,
                self.cores)
        await periodic(stop, self._config.interval_s, self._report_guarded)

    async def _report_guarded(self) -> None:
        """One report; a local measuring fault is a WARNING, not a restart of the task."""
        try:
            await self.report_once()
        except (OSError, ValueError, KeyError) as exc:
            self._outcome("failed", f"status report not measured: {exc!r}")

    async def report_once(self) -> bool:
        """Measure and post one status report; True when the cloud recorded it."""
        rtt = await self._rtt()
        status = await self._status(rtt)
        resources = self.resources
        if resources is None:
            raise RuntimeError("status reporter not started")
        body = {"resources": resources_to_plain(resources), "status": status_to_plain(status),
                "interval_ms": int(self._config.interval_s * 1000)}
        signed = await self._offload(sign_request, STATUS_OP, self.gateway, body, status.t_ms,
                                     self._signer)
        try:
            response = await self._http.post(STATUS_PATH, content=signed,
                                             headers={"Content-Type": MEDIA_TYPE})
        except httpx.HTTPError as exc:
            self._outcome("failed", f"status report not delivered: {exc!r}")
            return False
        if response.status_code != 200:
            self._outcome("refused", f"status report refused: HTTP {response.status_code} "
                          f"{response.text[:200]}")
            return False
        self._link_up = True
        self.reports.labels("ok").inc()
        return True

    def _outcome(self, outcome: str, message: str) -> None:
        self._link_up = outcome == "refused"  # refused: the link works, the cloud said no
        self.reports.labels(outcome).inc()
        log.warning("%s", message)

    async def _rtt(self) -> float | None:
        start = time.monotonic()
        return time.monotonic() - start if await self._endpoint.reachable() else None

    async def _status(self, rtt: float | None) -> Status:
        _records, batches = await self._outbox.depth()
        queue = self.queue()
        cores = os.cpu_count() or 1
        return Status(place=self.gateway, t_ms=now_ms(), load=os.getloadavg()[0] / cores,
                      memory_used_bytes=memory_used_bytes(), queue_length=queue.queue_length,
                      queued_compute=queue.queued_compute, running=queue.running,
                      outbox_depth=batches, rtt_s=rtt or 0.0,
                      bandwidth_bps=self._config.bandwidth_bps,
                      link_up=rtt is not None and self._link_up)

    async def close(self) -> None:
        """Close the HTTP client (after the task ended)."""
        await self._http.aclose()
