"""Offload with the cloud's queue on Redis, every hop real: two gateway processes of one site,
the cloud and two `tandem-cloud worker` processes sharing one redis-server, with nothing but
`[tasks] backend = "redis"` changed. A surge at one gateway moves queued migratable tasks to
the cloud's Redis-fed workers, each run once and stored once; a cloud
worker SIGKILLed mid-task has the task rerun by a live one and its result stored exactly once.
The bytes of the results that crossed the link are counted alike by the gateways and the cloud.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from tandem.tools.procs import Child
from tandem.tools.scrape import sample_sum
from tandem.tools.site import Site, local_site
from tandem.wire.resources import CLOUD
from tandem.wire.tasks import registry
from tests.e2e.offloadkit import Fleet, spec
from tests.services import redis_server  # noqa: F401 - fixture
from tests.waiting import eventually

pytestmark = pytest.mark.timeout(300)
GATEWAYS = ("gw-a", "gw-b")
SURGE = 16
REDIS_DB = 7  # apart from the queue tests' database on the same session-wide server
CLOUD_TOML = """
[tasks]
backend = "redis"
redis_url = "{url}"
workers = 1
lease_s = 5
reap_interval_s = 1

[scheduling]
unreachable_after = 10
overload_wait_s = 4.0
idle_wait_s = 2.0
edge_lease_s = 5.0
light_compute = 1.0
cloud_workers = 2
"""


@pytest.fixture(scope="module")
def redis_url(redis_server: Any) -> Iterator[str]:  # noqa: F811 - fixture
    url = redis_server.url.rsplit("/", 1)[0] + f"/{REDIS_DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Fleet]:
    site = local_site(tmp_path_factory.mktemp("offload-redis"), window_s=1.0, gateway_id="gw-a",
                      cloud_extra=CLOUD_TOML.format(url=redis_url))
    try:
        site.start_cloud()
        running = Fleet(site, site.cloud_client(timeout=30))
        for n in range(2):
            running.gateways[f"worker-{n}"] = site.start_worker(f"worker-{n}")
        running.start_gateways(GATEWAYS)
        yield running
        running.cloud.close()
    finally:
        site.stop_all()


def workers(fleet: Fleet) -> list[Child]:
    return [child for name, child in fleet.gateways.items() if name.startswith("worker-")]


def stored_lines(fleet: Fleet, task_id: str) -> list[str]:
    """The cloud workers' lines saying they finished task_id (stored, or dropped as a rerun)."""
    return [line for child in workers(fleet) for line in child.lines
            if re.search(rf"task {task_id} done in pid \d+", line)]


def test_a_surge_moves_tasks_to_redis_fed_cloud_workers_each_run_and_stored_once(
        fleet: Fleet, redis_url: str) -> None:
    surge = [spec(f"surge-{i:02}", "burn", "gw-a") for i in range(SURGE)]
    args = {"iterations": 1_000_000}
    for task in surge:
        assert fleet.submit(task, args)["placed"] == "gw-a"
    finished = {t.id: fleet.done(t.id, timeout=180) for t in surge}

    expected = registry.run("burn", args)
    assert all(t["result"] == expected and t["attempts"] == 1 for t in finished.values())
    at_cloud = [i for i, t in finished.items() if t["placed"] == CLOUD]
    assert at_cloud and all(finished[i]["moves"] >= 1 for i in at_cloud), finished
    # Whether the idle peer gets some too depends on timing (test_offload.py proves it);
    # here the point is the cloud's side of the move, on Redis.
    for task_id in at_cloud:  # run by exactly one cloud worker, and stored by it
        lines = stored_lines(fleet, task_id)
        assert len(lines) == 1 and "(stored)" in lines[0], lines
    commands = redis.Redis.from_url(redis_url).info("commandstats")
    assert commands.get("cmdstat_lpush", {}).get("calls", 0) >= len(at_cloud)  # huey's enqueue
    assert not (fleet.site.root / "cloud-data" / "task-queue.db").exists()  # no SQLite queue


def result_bytes(fleet: Fleet) -> tuple[float, float]:
    """Result bytes the gateways say they sent, and the cloud says it received."""
    sent = 0.0
    for gateway in (fleet.site, *fleet.site.gateways):
        sent += sample_sum(_metrics(gateway), "tandem_gw_task_bytes_total", op="task-result",
                           direction="sent")
    received = sample_sum(fleet.cloud.get("/metrics").text, "tandem_cloud_task_bytes_total",
                          route="result", direction="received")
    return sent, received


def _metrics(gateway: Site) -> str:
    return httpx.get(f"http://127.0.0.1:{gateway.ports.metrics}/metrics", timeout=10).text


def test_the_bytes_of_results_sent_up_are_counted_alike_by_the_gateways_and_the_cloud(
        fleet: Fleet) -> None:
    # Every surge task run at a gateway sent its result body up once: both sides agree.
    at_gateways = sum(1 for i in range(SURGE) if fleet.task(f"surge-{i:02}")["placed"] != CLOUD)
    assert at_gateways > 0
    sent, _ = eventually(lambda: (b := result_bytes(fleet))[0] == b[1] and b,
                         "the gateways' and the cloud's result bytes to agree", 30)
    assert sent >= at_gateways * 100  # a signed result is ~150 bytes; none went uncounted


def test_a_cloud_worker_killed_mid_task_has_it_rerun_and_stored_exactly_once(
        fleet: Fleet) -> None:
    long = [spec(f"long-{i}", "burn", "gw-a", compute=8.0) for i in range(3)]
    args = {"iterations": 20_000_000}
    for task in long:
        fleet.submit(task, args)

    def running_at_cloud() -> tuple[str, int] | None:
        for child in workers(fleet):
            for line in child.lines[-200:]:
                found = re.search(r"task (long-\d) running in pid (\d+)", line)
                if found and fleet.task(found.group(1))["state"] == "running":
                    return found.group(1), int(found.group(2))
        return None

    victim, pid = eventually(running_at_cloud, "a long task running at a cloud worker", 120,
                             poll_s=0.05)
    os.kill(pid, signal.SIGKILL)  # the huey worker process, mid-task
    rerun = fleet.done(victim, timeout=180)  # the others may still run: not this test's point

    assert rerun["result"] == registry.run("burn", args)
    assert rerun["placed"] == CLOUD and rerun["attempts"] >= 2
    assert rerun["moves"] >= 1  # migrated off gw-a, where its input is
    lines = stored_lines(fleet, victim)
    assert len([line for line in lines if "(stored)" in line]) == 1, lines
    for child in workers(fleet):  # the consumers live on (huey restarts a killed worker)
        assert child.proc.poll() is None, child.tail()
