"""The task agent against a real cloud over a real socket: it claims the tasks placed at its
gateway (only as many as workers are free), runs them in idle-priority worker processes,
renews their leases while they run, and delivers each result once; an answer for a task that
was placed elsewhere meanwhile is counted late and dropped, never retried forever.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cbor2
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from prometheus_client import CollectorRegistry
from sqlalchemy import update
from werkzeug.serving import make_server

from tandem.cloud import close_app, create_app
from tandem.cloud.db import engine as database
from tandem.cloud.fleet import registry as fleet
from tandem.cloud.fleet.enrolment import check_gateway_cert
from tandem.cloud.metrics import metrics
from tandem.cloud.tasks import ledger
from tandem.gateway.config import TasksSection
from tandem.gateway.tasks.agent import TaskAgent
from tandem.gateway.tasks.pool import PoolSettings, WorkerPool
from tandem.tools.pki import Identity, Role, SiteCA
from tandem.wire.clock import now_ms
from tandem.wire.cose import SoftwareSigner
from tandem.wire.resources import Privacy, TaskSpec
from tandem.wire.tasks import registry, trend
from tandem.wire.tasks.job import Job
from tests.waiting import eventually

pytestmark = pytest.mark.timeout(120)
HOUR = 3_600_000


@pytest.fixture
def identity(tmp_path: Path) -> Identity:
    return SiteCA.create(tmp_path / "pki", "site").issue("gw-01", Role.GATEWAY)


@pytest.fixture
def app(tmp_path: Path, identity: Identity) -> Iterator[Flask]:
    ca = tmp_path / "pki" / "ca.pem"
    application = create_app({"version": 1, "mode": "development",
                              "data_dir": str(tmp_path / "cloud"),
                              "server": {"trust_ca": str(ca)}})
    checked = check_gateway_cert("gw-01", identity.cert_pem.read_bytes(), ca.read_bytes())
    with database.sessions(application).begin() as session:
        fleet.add_gateway(session, checked.name, checked.cert_pem, checked.public_key_pem,
                          checked.fingerprint, now_ms())
    yield application
    close_app(application)


@pytest.fixture
def cloud_url(app: Flask) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)


def burn(task_id: str, iterations: int) -> Job:
    return Job(TaskSpec(task_id, "burn", now_ms() + HOUR, 1.0, "gw-01", "plant-a", 0,
                        Privacy.SITE, True), {"iterations": iterations})


def place(app: Flask, *jobs: Job) -> None:
    with database.sessions(app).begin() as session:
        for job in jobs:
            ledger.submit(session, job, "gw-01", now_ms())


def row(app: Flask, task_id: str) -> ledger.CloudTask:
    with database.read_session(app) as session:
        found = ledger.task(session, task_id)
        assert found is not None
        session.expunge(found)
        return found


def agent_of(identity: Identity, url: str, metrics: CollectorRegistry) -> TaskAgent:
    key = serialization.load_pem_private_key(identity.key_pem.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)

    async def offload(fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    config = TasksSection(workers=1, poll_s=0.2)
    pool = WorkerPool(PoolSettings(workers=1, queue_limit=1), registry_=metrics)
    return TaskAgent("gw-01", pool, httpx.AsyncClient(base_url=url, timeout=10),
                     SoftwareSigner(key), offload, config, metrics)


async def running(agent: TaskAgent, check: Callable[[], bool], what: str,
                  timeout: float = 60.0) -> None:
    """Run the agent until check holds (polled off the loop), then stop and close it."""
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        await asyncio.to_thread(eventually, check, what, timeout)
    finally:
        stop.set()
        await task
        await agent.close()


def test_placed_tasks_are_claimed_one_per_free_worker_run_and_answered_once(
        app: Flask, cloud_url: str, identity: Identity) -> None:
    metrics = CollectorRegistry()
    agent = agent_of(identity, cloud_url, metrics)
    long, short = burn("long", 4_000_000), burn("short", 1000)
    place(app, long, short)
    leases: list[int] = []
    seen_queue: list[int] = []

    def both_done() -> bool:
        first = row(app, "long")
        if first.state == ledger.RUNNING:
            leases.append(first.lease_ms)
            seen_queue.append(agent.figures().running)
            assert row(app, "short").state == ledger.QUEUED  # one worker: one task claimed
        return first.state == ledger.DONE and row(app, "short").state == ledger.DONE

    asyncio.run(running(agent, both_done, "both tasks answered"))
    assert len(set(leases)) > 1, "the lease was renewed while the task ran"
    assert 1 in seen_queue
    for job in (long, short):
        done = row(app, job.task_id)
        assert json.loads(done.result_json or "null") == registry.run("burn", job.args)
        assert done.attempts == 1
    assert metrics.get_sample_value("tandem_gw_task_results_total", {"outcome": "stored"}) == 2


def test_an_answer_for_a_task_placed_elsewhere_meanwhile_is_counted_late_and_dropped(
        app: Flask, cloud_url: str, identity: Identity) -> None:
    metrics = CollectorRegistry()
    agent = agent_of(identity, cloud_url, metrics)
    place(app, burn("moved", 3_000_000))

    def taken_away() -> bool:
        if row(app, "moved").state != ledger.RUNNING:
            return False
        with database.sessions(app).begin() as session:  # as if its lease had expired
            session.execute(update(ledger.CloudTask).values(lease_ms=0))
            assert ledger.requeue(session, "moved", now_ms(), "gw-02")
        return True

    def dropped() -> bool:
        return metrics.get_sample_value("tandem_gw_task_results_total",
                                        {"outcome": "late"}) == 1.0

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        try:
            await asyncio.to_thread(eventually, taken_away, "the task running at gw-01", 60)
            await asyncio.to_thread(eventually, dropped, "the late answer refused", 60)
            assert agent._results == {} and agent._held == set()
        finally:
            stop.set()
            await task
            await agent.close()

    asyncio.run(scenario())
    moved = row(app, "moved")
    assert (moved.state, moved.placed, moved.result_json) == (ledger.QUEUED, "gw-02", None)


def test_bytes_crossing_the_link_are_counted_alike_at_the_gateway_and_the_cloud(
        app: Flask, cloud_url: str, identity: Identity) -> None:
    # A map task's input (windows) comes down in the claim answer, its partial goes up in the
    # result: both sides count the same bodies, and they hold at least what was carried.
    gateway_metrics = CollectorRegistry()
    agent = agent_of(identity, cloud_url, gateway_metrics)
    end = now_ms() // 60_000 * 60_000
    windows = [[f"pump-{d}", end - trend.PERIOD_MS + day * trend.DAY_MS, 0.2 + 0.01 * d * day]
               for d in range(4) for day in range(30)]
    args = {"end_ms": end, "min_slope": 0.0, "windows": windows}
    job = Job(TaskSpec("map", "trend_map", now_ms() + HOUR, 0.1, "gw-01", "plant-a", 0,
                       Privacy.SITE, False), args)
    place(app, job)

    asyncio.run(running(agent, lambda: row(app, "map").state == ledger.DONE, "the map answered"))

    def at_gateway(op: str, direction: str) -> float:
        value = gateway_metrics.get_sample_value("tandem_gw_task_bytes_total",
                                                 {"op": op, "direction": direction})
        assert value is not None
        return value

    def at_cloud(route: str, direction: str) -> float:
        value = metrics(app).registry.get_sample_value("tandem_cloud_task_bytes_total",
                                                       {"route": route, "direction": direction})
        assert value is not None
        return value

    for op, route in (("task-claim", "claim"), ("task-result", "result")):
        assert at_gateway(op, "sent") == at_cloud(route, "received") > 0
        assert at_gateway(op, "received") == at_cloud(route, "sent") > 0
    assert at_gateway("task-claim", "received") >= len(json.dumps(args, separators=(",", ":")))
    result = json.loads(row(app, "map").result_json or "{}")
    assert at_gateway("task-result", "sent") >= len(cbor2.dumps(result))
