"""Fleet ingest benchmark: gateways upload to the cloud under gunicorn on PostgreSQL + influxd.

One throwaway PostgreSQL and one influxd serve every run; for each worker
count the bench prepares a fresh cloud (its own database on both servers),
registers --gateways simulated gateways, starts `tandem-cloud serve` with that
many workers and lets the gateways upload signed batches for --seconds
(fleetuplink.py). It prints, per worker count, the batches and points/s
acknowledged, p50/p99/max upload latency, the 5xx count (goal 0), the CPU
seconds of the cloud, the load generator (this process), PostgreSQL and
influxd, and the exactly-once check: the ledger rows in PostgreSQL, the points
in influxd and the cloud's summed records metric against what was
acknowledged. Last, the throughput of each worker count relative to one worker.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import resource
import statistics
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from tandem.cloud import close_app, create_app
from tandem.cloud.access import accounts
from tandem.cloud.config import load_config
from tandem.cloud.db import engine as database
from tandem.cloud.fleet import registry
from tandem.tools.bench.fleetuplink import Load, SimGateway, Tally, fleet, run_fleet
from tandem.tools.procs import Child
from tandem.tools.services import (
    InfluxServer,
    PostgresCluster,
    influxd,
    postgres,
    scratch_database,
)
from tandem.wire.clock import now_ms

LISTENING = r"tandem-cloud listening on http://127\.0\.0\.1:(\d+)"
BOOTING = re.compile(r"Booting worker with pid")
COMPLAINT = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b|\[(ERROR|CRITICAL|WARNING)\]|Traceback")
_TICK = os.sysconf("SC_CLK_TCK")
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Verification:
    """What the stores hold after a run, beside what the gateways saw acknowledged."""

    ledger_batches: int
    ledger_records: int
    influx_points: int
    metric_records: float

    def exact(self, tally: Tally) -> bool:
        """Every acknowledged point stored once, nothing else (no loss, no duplicate)."""
        if tally.unacknowledged:  # a batch given up may or may not be stored: bounds only
            return tally.acked_points <= self.influx_points
        return (self.ledger_batches == tally.acked_batches
                and self.ledger_records == self.influx_points == tally.acked_points
                and self.metric_records == tally.acked_points)


@dataclass(frozen=True)
class CpuSeconds:
    """CPU seconds spent during the upload window, per party."""

    cloud: float
    generator: float
    postgres: float
    influxd: float

    def __sub__(self, earlier: CpuSeconds) -> CpuSeconds:
        return CpuSeconds(self.cloud - earlier.cloud, self.generator - earlier.generator,
                          self.postgres - earlier.postgres, self.influxd - earlier.influxd)


@dataclass(frozen=True)
class WorkerRun:
    """One worker count's figures."""

    workers: int
    seconds: float
    tally: Tally
    cpu: CpuSeconds
    verified: Verification
    worker_boots: int
    load_average: float
    complaints: list[str]  # the cloud's WARNING/ERROR log lines

    @property
    def points_per_s(self) -> float:
        """Points acknowledged within the timed window, per second."""
        return self.tally.measured_points / self.seconds


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; exit 0 (figures are printed, not judged), 1 if not exactly once."""
    args = _parser().parse_args(argv)
    load = Load(args.rate, args.interval, args.batch, args.seconds)
    runs = []
    with postgres() as cluster, influxd() as influx:
        print(f"storage up: PostgreSQL on {cluster.port}, influxd at {influx.url}", flush=True)
        for workers in args.workers:
            run = _one_cloud(cluster, influx, workers, args.gateways, load)
            _report(run, args.gateways, load)
            runs.append(run)
    _report_scaling(runs)
    return 0 if all(run.verified.exact(run.tally) for run in runs) else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tandem bench fleet-ingest",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=_counts, default=(1, 2, 4),
                        help="gunicorn worker counts, one cloud each (default 1,2,4)")
    parser.add_argument("--gateways", type=_positive, default=50,
                        help="simulated gateways (default 50)")
    parser.add_argument("--seconds", type=float, default=300.0,
                        help="upload time per worker count (default 300)")
    parser.add_argument("--rate", type=float, default=200.0,
                        help="summaries/s per gateway; 0: as fast as acknowledged (default 200)")
    parser.add_argument("--interval", type=float, default=1.0,
                        help="seconds between a gateway's uploads (default 1)")
    parser.add_argument("--batch", type=_positive, default=1000,
                        help="most records per batch (default 1000)")
    return parser


def _positive(text_value: str) -> int:
    value = int(text_value)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _counts(text_value: str) -> tuple[int, ...]:
    return tuple(_positive(part) for part in text_value.split(","))


def _one_cloud(cluster: PostgresCluster, influx: InfluxServer, workers: int, count: int,
               load: Load) -> WorkerRun:
    """A fresh cloud with `workers` workers, uploaded to by `count` gateways, then checked."""
    name = f"fleet_w{workers}_{now_ms()}"
    gateways = fleet(count)
    with tempfile.TemporaryDirectory(prefix="tandem-fleet-") as tmp, \
            scratch_database(cluster, name) as db_url:
        config = _write_config(Path(tmp), workers, db_url, influx.url, name)
        token = _prepare(config, gateways)
        cloud = Child(f"cloud-w{workers}", [sys.executable, "-m", "tandem.cloud.cli.main",
                                            "serve", "--config", str(config),
                                            "--insecure-http"], cwd=REPO)
        try:
            url = f"http://127.0.0.1:{cloud.wait_for(LISTENING, timeout=120).group(1)}"
            print(f"cloud up: {workers} worker(s) at {url}", flush=True)
            parties = _Parties(cloud.proc.pid, _postmaster(cluster), influx.child.proc.pid)
            before = parties.cpu()
            tally = run_fleet(url, gateways, load)
            cpu = parties.cpu() - before
            load_average = os.getloadavg()[0]
            verified = _verify(url, token, db_url, influx.url, name)
        finally:
            cloud.stop()
        boots = sum(1 for line in cloud.lines if BOOTING.search(line))
        complaints = [line for line in cloud.lines
                      if COMPLAINT.search(line) and "DEVELOPMENT MODE" not in line]
        return WorkerRun(workers, load.seconds, tally, cpu, verified, boots, load_average,
                         complaints)


def _write_config(root: Path, workers: int, db_url: str, influx_url: str, name: str) -> Path:
    config = root / "cloud.toml"
    config.write_text(f"""version = 1
mode = "development"
data_dir = "data"
[server]
host = "127.0.0.1"
port = 0
workers = {workers}
[database]
url = "{db_url}"
[timeseries]
backend = "influxdb"
url = "{influx_url}"
database = "{name}"
""", encoding="utf-8")
    return config


def _prepare(config: Path, gateways: list[SimGateway]) -> str:
    """Create the schema, register the gateways; an API token that may read /metrics."""
    app = create_app(load_config(config, env={}))
    try:
        now = now_ms()
        with database.sessions(app).begin() as session:
            for gateway in gateways:
                registry.add_gateway(session, gateway.name, "", gateway.public_pem, "bench", now)
            accounts.add_user(session, "bench-admin", "admin", None, now)
        with database.sessions(app).begin() as session:
            return accounts.create_token(session, "bench-admin", "fleet", now)
    finally:
        close_app(app)


@dataclass(frozen=True)
class _Parties:
    """The processes whose CPU time the bench reads from /proc."""

    cloud: int
    postgres: int
    influxd: int

    def cpu(self) -> CpuSeconds:
        own = resource.getrusage(resource.RUSAGE_SELF)
        return CpuSeconds(_tree_cpu_s(self.cloud), own.ru_utime + own.ru_stime,
                          _tree_cpu_s(self.postgres), _tree_cpu_s(self.influxd))


def _tree_cpu_s(root: int) -> float:
    """User + system CPU seconds of root and its live descendants (all threads)."""
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stats[int(entry)] = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1] \
                    .split()
    tree, frontier = {root}, {root}
    while frontier:
        frontier = {pid for pid, f in stats.items() if int(f[1]) in frontier} - tree
        tree |= frontier
    return sum(int(stats[p][11]) + int(stats[p][12]) for p in tree if p in stats) / _TICK


def _postmaster(cluster: PostgresCluster) -> int:
    return int((cluster.root / "data" / "postmaster.pid").read_text().split()[0])


def _verify(url: str, token: str, db_url: str, influx_url: str, name: str) -> Verification:
    """Count the ledger in PostgreSQL, the points in influxd, and the cloud's records metric."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            batches, records = conn.execute(text(
                "SELECT count(*), coalesce(sum(record_count), 0) FROM ingested_batches")).one()
    finally:
        engine.dispose()
    with httpx.Client(timeout=120) as http:
        answer = http.get(f"{influx_url}/query", params={
            "db": name, "q": 'SELECT count("n") FROM "summaries"."summary"'})
        answer.raise_for_status()
        series = answer.json()["results"][0].get("series", [])
        points = int(series[0]["values"][0][1]) if series else 0
        scraped = http.get(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"})
        scraped.raise_for_status()
    metric = sum(sample.value for family in text_string_to_metric_families(scraped.text)
                 for sample in family.samples
                 if sample.name == "tandem_cloud_records_ingested_total")
    return Verification(int(batches), int(records), points, metric)


def _report(run: WorkerRun, gateways: int, load: Load) -> None:
    tally, cpu, v = run.tally, run.cpu, run.verified
    lat = sorted(tally.latencies_s) or [0.0]
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    offered = f"{gateways * load.rate:,.0f}" if load.rate else "unpaced"
    label = f"workers {run.workers}"
    print(f"{label}: {tally.acked_batches:,} batches, {run.points_per_s:,.0f} points/s "
          f"acknowledged (offered {offered}), "
          f"{tally.acked_batches / run.seconds:,.1f} batches/s", flush=True)
    print(f"{label} latency p50 / p99 / max: {statistics.median(lat) * 1000:.1f} / "
          f"{p99 * 1000:.1f} / {lat[-1] * 1000:.1f} ms")
    failures = ", ".join(f"{k} x{n}" for k, n in sorted(tally.failures.items())) or "none"
    print(f"{label} 5xx: {tally.server_errors} (goal 0); failed tries: {failures}; "
          f"worker boots {run.worker_boots} (of {run.workers}: more means a worker died)")
    if tally.failed_at_s:
        print(f"{label} failed tries at {min(tally.failed_at_s):.1f}..."
              f"{max(tally.failed_at_s):.1f} s into the run"
              + (f", connection idle {min(tally.failed_idle_s):.1f}..."
                 f"{max(tally.failed_idle_s):.1f} s before a failed transport try"
                 if tally.failed_idle_s else ""))
    print(f"{label} cloud log: {len(run.complaints)} WARNING/ERROR lines"
          + "".join(f"\n    {line}" for line in run.complaints[:5]))
    print(f"{label} CPU s: cloud {cpu.cloud:.1f}, load generator {cpu.generator:.1f}, "
          f"postgres {cpu.postgres:.1f}, influxd {cpu.influxd:.1f} "
          f"(of {2 * run.seconds:.0f} on 2 cores: {os.cpu_count()} here); "
          f"load average {run.load_average:.2f}")
    verdict = "yes" if v.exact(tally) else "NO"
    print(f"{label} exactly once: {verdict} (acknowledged {tally.acked_batches:,} batches / "
          f"{tally.acked_points:,} points; ledger {v.ledger_batches:,} / {v.ledger_records:,}; "
          f"influxd {v.influx_points:,} points; records metric {v.metric_records:,.0f}; "
          f"given up {tally.unacknowledged})", flush=True)


def _report_scaling(runs: list[WorkerRun]) -> None:
    if not runs:
        return
    base = runs[0]
    ratios = ", ".join(f"{r.workers}: {r.points_per_s / base.points_per_s:.2f}"
                       if base.points_per_s else f"{r.workers}: n/a" for r in runs)
    print(f"scaling vs {base.workers} worker(s): {ratios}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
