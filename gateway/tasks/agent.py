"""Runs the tasks the cloud's scheduler places here, and returns their results.

    POST /edge/v1/tasks/claim   COSE_Sign1 op "task-claim" {"free": n, "running": [ids]}
                                -> {"tasks": [job, ...], "lease_ms"}
    POST /edge/v1/tasks/result  COSE_Sign1 op "task-result" {"id", "ok", "result" | "reason"}

The gateway claims only as many tasks as it has free workers: the rest stay
queued in the cloud's ledger, where the scheduler can still move them to the
cloud or an idle peer. Each claim renews the leases of the tasks held here
(running, or finished with the result not yet delivered), so a gateway that
dies or is cut off loses them and the cloud places them again. A result is kept
(at most `unreported`, oldest dropped with a WARNING, the lease then expires and
the task runs elsewhere) until the cloud stored it or answered that this gateway
no longer holds the task.

The bytes each exchange moved over the link (signed request body sent, response
body received) are counted by operation in `tandem_gw_task_bytes`, once the
answer arrived, so they match what the cloud's task routes count on their side.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter

from tandem.gateway.cloudlink.client import CloudEndpoint
from tandem.gateway.cloudlink.statusreport import QueueFigures
from tandem.gateway.config import TasksSection
from tandem.gateway.supervisor import wait_or_stop
from tandem.gateway.tasks.pool import PoolSettings, QueueFull, WorkerPool
from tandem.wire.clock import now_ms
from tandem.wire.cose import Signer
from tandem.wire.errors import WireError
from tandem.wire.gwrequest import MEDIA_TYPE, sign_request
from tandem.wire.tasks.job import Job, job_from_plain

log = logging.getLogger(__name__)
CLAIM_PATH, RESULT_PATH = "/edge/v1/tasks/claim", "/edge/v1/tasks/result"
CLAIM_OP, RESULT_OP = "task-claim", "task-result"
Offload = Callable[..., Awaitable[Any]]  # runs a function where the key store may be used


class TaskAgent:
    """Claims tasks for the worker pool, renews their leases, delivers their results."""

    def __init__(self, gateway: str, pool: WorkerPool, http: httpx.AsyncClient, signer: Signer,
                 offload: Offload, config: TasksSection,
                 registry: CollectorRegistry | None = None) -> None:
        self.gateway = gateway
        self.pool = pool
        self._http = http
        self._signer = signer
        self._offload = offload
        self._config = config
        self._held: set[str] = set()  # claimed here and not yet answered to the cloud
        self._results: OrderedDict[str, dict[str, Any]] = OrderedDict()  # id -> result body
        self._wake = asyncio.Event()
        self._started = False
        self.results = Counter("tandem_gw_task_results", "Task results offered to the cloud, by "
                               "outcome (stored, late: moved away meanwhile, refused, dropped)",
                               ["outcome"], registry=registry)
        for outcome in ("stored", "late", "refused", "dropped"):
            self.results.labels(outcome)
        self.moved = Counter("tandem_gw_task_bytes", "Body bytes of task exchanges with the "
                             "cloud: requests sent, answers received, by operation",
                             ["op", "direction"], registry=registry)
        for op in (CLAIM_OP, RESULT_OP):
            for direction in ("sent", "received"):
                self.moved.labels(op, direction)

    async def run(self, stop: asyncio.Event) -> None:
        """Poll every poll_s, and at once when a task finishes, until stop is set."""
        if not self._started:
            self.pool.start()
            self._started = True
        relay = asyncio.create_task(self._relay(stop))
        try:
            while not stop.is_set():
                self._wake.clear()
                await self._poll_logged()
                await wait_or_stop(self._wake, self._config.poll_s)
        finally:
            relay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relay

    async def _relay(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._wake.set()

    async def _poll_logged(self) -> None:
        try:
            await self.poll_once()
        except (httpx.HTTPError, ValueError) as exc:
            log.info("tasks: poll failed (%s)", exc)

    async def poll_once(self) -> list[Job]:
        """Deliver finished results, renew leases, claim work for free workers; the new jobs."""
        await self._deliver()
        free = max(0, self._config.workers - self.pool.queued())
        body = {"free": free, "running": sorted(self._held)}
        response = await self._post(CLAIM_PATH, CLAIM_OP, body)
        if response.status_code != 200:
            log.warning("tasks: claim refused: HTTP %d %s", response.status_code,
                        response.text[:200])
            return []
        jobs = []
        for item in response.json().get("tasks", []):
            try:
                jobs.append(job_from_plain(item))
            except WireError as exc:  # its lease expires and the cloud places it again
                log.warning("tasks: the cloud sent a job that does not decode: %s", exc)
        for job in jobs:
            self._start(job)
        return jobs

    def figures(self) -> QueueFigures:
        """The pool's queue for the status report."""
        jobs = self.pool.jobs()
        return QueueFigures(queue_length=sum(1 for _, started in jobs if not started),
                            queued_compute=sum(job.spec.compute for job, _ in jobs),
                            running=sum(1 for _, started in jobs if started))

    def _start(self, job: Job) -> None:
        self._held.add(job.task_id)
        try:
            future = self.pool.submit(job)
        except QueueFull:  # not renewed: its lease expires and the cloud places it again
            self._held.discard(job.task_id)
            return
        future.add_done_callback(lambda done: self._finished(job.task_id, done))
        log.info("task %s (%s) started here", job.task_id, job.kind)

    def _finished(self, task_id: str, done: asyncio.Future[dict[str, Any]]) -> None:
        if done.cancelled():  # the pool closed: the lease expires, the cloud places it again
            self._held.discard(task_id)
            return
        error = done.exception()
        self._answer(task_id, {"id": task_id, "ok": True, "result": done.result()}
                     if error is None else {"id": task_id, "ok": False, "reason": str(error)})

    def _answer(self, task_id: str, body: dict[str, Any]) -> None:
        self._results[task_id] = body
        while len(self._results) > self._config.unreported:
            dropped, _ = self._results.popitem(last=False)
            self._held.discard(dropped)  # no renewal: the cloud places it again
            self.results.labels("dropped").inc()
            log.warning("task %s: result dropped undelivered (%d waiting); it will run again",
                        dropped, self._config.unreported)
        self._wake.set()

    async def _deliver(self) -> None:
        for task_id, body in list(self._results.items()):
            try:
                response = await self._post(RESULT_PATH, RESULT_OP, body)
            except httpx.HTTPError:
                return  # the link is down: the next poll tries again
            outcome = {200: "stored", 409: "late"}.get(response.status_code, "refused")
            if outcome == "refused" and response.status_code >= 500:
                return  # the cloud's trouble: try again
            if outcome != "stored":
                log.warning("task %s: result not stored: HTTP %d %s", task_id,
                            response.status_code, response.text[:200])
            self.results.labels(outcome).inc()
            del self._results[task_id]
            self._held.discard(task_id)

    async def _post(self, path: str, op: str, body: dict[str, Any]) -> httpx.Response:
        signed = await self._offload(sign_request, op, self.gateway, body, now_ms(), self._signer)
        response = await self._http.post(path, content=signed,
                                         headers={"Content-Type": MEDIA_TYPE})
        self.moved.labels(op, "sent").inc(len(signed))
        self.moved.labels(op, "received").inc(len(response.content))
        return response

    @classmethod
    def of(cls, gateway: str, config: TasksSection, endpoint: CloudEndpoint, signer: Signer,
           offload: Offload, registry: CollectorRegistry | None = None) -> TaskAgent:
        """An agent with its own pool of config.workers idle-priority processes."""
        pool = WorkerPool(PoolSettings(workers=config.workers, queue_limit=config.workers,
                                       attempts=config.attempts), registry_=registry)
        return cls(gateway, pool, endpoint.async_client(), signer, offload, config, registry)

    async def close(self) -> None:
        """Stop the workers and close the HTTP client (after run ended)."""
        await self.pool.close()
        await self._http.aclose()
