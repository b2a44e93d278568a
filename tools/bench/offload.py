"""The small scheduling setup run for real, in the columns of `tandem bench schedule`.

Three gateway processes of one site, the cloud and two `tandem-cloud worker`
processes (SQLite queue); a surge of tasks at one gateway, each a `burn` whose
iterations match its declared compute on this machine. The surge's sizes and
deadlines follow the simulator's small setup (tools/simulate/traces.py),
compressed in time by --scale (compute, deadlines and thresholds alike; the
figures are scaled back), so the real row sits beside the simulated one.
`bytes moved` are the declared input bytes of tasks run away from their input (the
simulator's figure, scaled back); `link bytes` are the bytes that actually crossed
the link for tasks in that run, counted on both sides (request and answer bodies of
the gateways' task agents, tandem_gw_task_bytes, and of the cloud's task routes,
tandem_cloud_task_bytes): gateways -> cloud / cloud -> gateways, not scaled.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections.abc import Sequence
from dataclasses import astuple, dataclass, replace
from pathlib import Path
from typing import Any

import httpx

from tandem.tools.bench.schedule import SMALL
from tandem.tools.scrape import sample_sum
from tandem.tools.simulate import traces
from tandem.tools.site import Site, local_site
from tandem.wire import computescore
from tandem.wire.clock import now_ms
from tandem.wire.resources import CLOUD, TaskSpec, task_to_plain
from tandem.wire.scheduling import Strategy, Tuning
from tandem.wire.tasks import registry

SITE = "plant-a"
GATEWAYS = ("gw-a", "gw-b", "gw-c")
GW_BYTES, CLOUD_BYTES = "tandem_gw_task_bytes_total", "tandem_cloud_task_bytes_total"


@dataclass(frozen=True, slots=True)
class LinkBytes:
    """Task bytes counted so far: by the gateways' agents, and by the cloud's claim and
    result routes (the two sides of the same exchanges)."""

    gw_sent: float
    gw_received: float
    cloud_received: float
    cloud_sent: float
    results_up: float  # result bodies the gateways sent (a map's partial, a task's answer)
    claims_down: float  # claim answers the gateways received (the jobs with their input)
    submitted: float  # task submissions the cloud's API received (operators' input)

    def __sub__(self, before: LinkBytes) -> LinkBytes:
        return LinkBytes(*(a - b for a, b in zip(astuple(self), astuple(before), strict=True)))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the surge once per strategy and print one table row each."""
    args = _parser().parse_args(argv)
    per_score_s = _iterations_per_score_s()
    tasks = _surge(args.surge, args.seed, args.scale)
    with tempfile.TemporaryDirectory(prefix="tandem-offload-") as tmp:
        site = _start(Path(tmp), args.scale)
        try:
            print("| setup | strategy | tasks | deadline hit | mean completion | bytes moved "
                  "| link bytes (measured) | cloud compute | moves |")
            print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
            lines = []
            for strategy in args.strategies:
                before = link_bytes(site)
                rows = _run(site, strategy, tasks, per_score_s, args.timeout)
                row, line = _figures(strategy, tasks, rows, args.scale, args.surge,
                                     link_bytes(site) - before)
                print(row, flush=True)
                lines.append(line)
            print()
            for line in lines:
                print(line)
        finally:
            site.stop_all()
    return 0


def _iterations_per_score_s() -> float:
    """Burn iterations that take one score-second on this machine."""
    start = time.perf_counter()
    registry.run("burn", {"iterations": 500_000})
    seconds = time.perf_counter() - start
    return 500_000 / seconds / computescore.measure(5)


def _surge(count: int, seed: int, scale: float) -> list[TaskSpec]:
    """The simulator's surge tasks (sizes, bytes, privacy), scaled, at gw-a of plant-a."""
    config = replace(SMALL, calm_rate=0.0, burst_rate=0.0, fleet_rate=0.0, surge=count,
                     seed=seed)
    rng = random.Random(seed)
    places = traces.fleet(config, rng)
    arrivals = traces.arrivals(config, places, rng)
    return [replace(a.task, kind="burn", compute=a.task.compute * scale, input_place="gw-a",
                    input_site=SITE,
                    input_bytes=int(a.task.input_bytes * scale),
                    deadline_ms=int((a.task.deadline_ms - a.t_s * 1000) * scale))
            for a in arrivals]


def _start(root: Path, scale: float) -> Site:
    tuning = Tuning()
    site = local_site(root / "site", window_s=1.0, gateway_id="gw-a", cloud_extra=f"""
[tasks]
workers = 1
lease_s = 600
reap_interval_s = 1

[scheduling]
unreachable_after = 10
overload_wait_s = {tuning.overload_wait_s * scale}
idle_wait_s = {tuning.idle_wait_s * scale}
light_compute = {tuning.light_compute * scale}
edge_lease_s = 10.0
cloud_workers = 2
""")
    env = {"TANDEM_GW_STATUS_INTERVAL_S": "0.5", "TANDEM_GW_STATUS_SCORE_ROUNDS": "2",
           "TANDEM_GW_STATUS_SITE": SITE, "TANDEM_GW_TASKS_POLL_S": "0.3"}
    site.start_cloud()
    for n in range(2):
        site.start_worker(f"worker-{n}")
    site.start_gateway(env=env)
    for name in GATEWAYS[1:]:
        other = site.add_gateway(name)
        other.register_gateway()
        other.start_gateway(env=env)
    with site.cloud_client() as cloud:
        _until(lambda: sum(g["reachable"] for g in cloud.get("/api/v1/fleet/status").json()
                           ["gateways"]) == len(GATEWAYS), 120)
    return site


def _run(site: Site, strategy: Strategy, tasks: list[TaskSpec], per_score_s: float,
         timeout: float) -> list[dict[str, Any]]:
    """Submit the surge under strategy; every task's final ledger view."""
    with site.cloud_client(timeout=30) as cloud:
        cloud.put(f"/api/v1/sites/{SITE}/strategy", json={"strategy": strategy.value})
        start = now_ms()
        ids = []
        for task in tasks:
            spec = replace(task, id=f"{strategy.value}-{task.id}",
                           deadline_ms=start + task.deadline_ms)
            ids.append(spec.id)
            answer = cloud.post("/api/v1/tasks", json={
                "task": task_to_plain(spec),
                "args": {"iterations": max(1, int(spec.compute * per_score_s))}})
            answer.raise_for_status()
        rows: dict[str, dict[str, Any]] = {}

        def finished() -> bool:
            for task_id in ids:
                if task_id not in rows:
                    row = cloud.get(f"/api/v1/tasks/{task_id}").json()
                    if row["state"] in ("done", "failed"):
                        rows[task_id] = row
            return len(rows) == len(ids)

        _until(finished, timeout)
    for row, task in zip((rows[i] for i in ids), tasks, strict=True):
        row["spec"], row["submitted_ms"] = task, start
    return [rows[i] for i in ids]


def link_bytes(site: Site) -> LinkBytes:
    """The task bytes every gateway of the site and the cloud counted so far."""
    gw_sent = gw_received = results_up = claims_down = 0.0
    for gateway in (site, *site.gateways):
        text = httpx.get(f"http://127.0.0.1:{gateway.ports.metrics}/metrics", timeout=10).text
        gw_sent += sample_sum(text, GW_BYTES, direction="sent")
        gw_received += sample_sum(text, GW_BYTES, direction="received")
        results_up += sample_sum(text, GW_BYTES, op="task-result", direction="sent")
        claims_down += sample_sum(text, GW_BYTES, op="task-claim", direction="received")
    with site.cloud_client() as cloud:
        text = cloud.get("/metrics").text
    return LinkBytes(gw_sent, gw_received,
                     sum(sample_sum(text, CLOUD_BYTES, route=r, direction="received")
                         for r in ("claim", "result")),
                     sum(sample_sum(text, CLOUD_BYTES, route=r, direction="sent")
                         for r in ("claim", "result")),
                     results_up, claims_down,
                     sample_sum(text, CLOUD_BYTES, route="submit", direction="received"))


def _figures(strategy: Strategy, tasks: list[TaskSpec], rows: list[dict[str, Any]],
             scale: float, surge: int, link: LinkBytes) -> tuple[str, str]:
    done = [r for r in rows if r["state"] == "done"]
    for r in rows:
        if r["state"] != "done":
            print(f"task {r['id']} failed at {r['placed']}: {r['detail']}")
    hits = sum(1 for r in done if r["finished_ms"] <= r["submitted_ms"] + r["spec"].deadline_ms)
    mean_s = sum(r["finished_ms"] - r["created_ms"] for r in done) / max(1, len(done)) / 1000
    moved = sum(r["spec"].input_bytes for r in done if r["placed"] != "gw-a") / scale
    total = sum(r["spec"].compute for r in done) / scale
    cloud = sum(r["spec"].compute for r in done if r["placed"] == CLOUD) / scale
    moves = sum(r["moves"] for r in rows)
    share = cloud / total if total else 0.0
    hit = hits / max(1, len(rows))
    measured = f"{link.gw_sent / 1e3:,.1f} kB / {link.gw_received / 1e3:,.1f} kB"
    row = (f"| real small (3 gw, surge {surge}) | {strategy.value} | {len(rows)} | {hit:.1%} "
           f"| {mean_s / scale:.1f} s | {moved / 1e6:,.0f} MB | {measured} "
           f"| {cloud:,.0f} score-s ({share:.0%}) | {moves} |")
    line = (f"offload {strategy.value:<14} tasks {len(rows)}  deadline hit {hit:.1%}  mean "
            f"{mean_s / scale:.1f} s  bytes {moved / 1e6:.1f} MB declared  cloud {share:.0%}  "
            f"moves {moves}\n"
            f"link bytes {strategy.value:<14} {link.gw_sent:,.0f} B sent / "
            f"{link.gw_received:,.0f} B received at the gateways (results up "
            f"{link.results_up:,.0f} B, claim answers down {link.claims_down:,.0f} B, the rest "
            f"claim polls); the cloud's claim and result routes {link.cloud_received:,.0f} B in "
            f"/ {link.cloud_sent:,.0f} B out; submissions {link.submitted:,.0f} B in")
    return row, line


def _until(check: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not done within {timeout:g} s")
        time.sleep(0.3)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tandem bench offload",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--surge", type=int, default=SMALL.surge, help="tasks at gw-a")
    parser.add_argument("--scale", type=float, default=0.1,
                        help="time compression: compute, deadlines, thresholds x scale")
    parser.add_argument("--strategies", type=Strategy, nargs="*", default=list(Strategy))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=900.0, help="per strategy, s")
    return parser
