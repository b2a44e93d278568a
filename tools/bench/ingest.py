"""Ingest benchmark: raw store writes versus cloud ingest of signed batches, in one run.

For each backend (InfluxDB on a throwaway influxd, SQLite in a temporary
directory) it measures
  (a) raw: summaries written straight into the store (InfluxDB line protocol
      over HTTP in batches of --raw-batch; SQLite upserts of the same size), and
  (b) cloud: the same number of summaries as COSE-signed batches of --batch
      records POSTed to the real Flask app (test client): verified, decoded,
      ledger-checked and written,
and prints points/s for both and their ratio. Signing happens before the
clock starts: it is the gateway's cost, not the cloud's.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask

from tandem.cloud import close_app, create_app
from tandem.cloud.db import engine as database
from tandem.cloud.db.upsert import upsert_statement
from tandem.cloud.fleet import registry
from tandem.cloud.timeseries.lineprotocol import summary_line
from tandem.cloud.timeseries.sql import summaries_table
from tandem.tools.services import influxd
from tandem.wire.batch import Batch, Summary, encode_batch
from tandem.wire.clock import now_ms
from tandem.wire.cose import MEDIA_TYPE, SoftwareSigner, sign1

GATEWAY = "gw-bench"
BACKENDS = ("influxdb", "sqlite")
GOAL_POINTS_PER_S = 50_000


@dataclass(frozen=True)
class Result:
    """Points written and seconds taken by one measurement."""

    label: str
    points: int
    seconds: float
    cpu_s: float = 0.0  # this process's CPU time (the cloud's, for a cloud measurement)

    @property
    def rate(self) -> float:
        """Points per second."""
        return self.points / self.seconds if self.seconds else float("inf")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; exit 0 (figures are printed, not judged), 2 on bad arguments."""
    args = _parser().parse_args(argv)
    summaries = list(_summaries(args.points, args.series))
    for backend in args.backends or BACKENDS:
        with _backend(backend) as (raw_write, app_config):
            raw = _measure(f"{backend} raw", summaries, args.raw_batch, raw_write)
            cloud = _cloud_ingest(backend, summaries, args.batch, args.clients, app_config)
        _report(raw, cloud)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tandem bench ingest", description=__doc__.split("\n\n")[0],
        epilog=f"Goal: cloud ingest >= {GOAL_POINTS_PER_S:,} points/s.")
    parser.add_argument("--points", type=_positive, default=200_000,
                        help="summaries per measurement (default 200000)")
    parser.add_argument("--batch", type=_positive, default=1000,
                        help="records per signed uplink batch (default 1000, at most 10000)")
    parser.add_argument("--raw-batch", type=_positive, default=5000,
                        help="points per raw write (default 5000)")
    parser.add_argument("--series", type=_positive, default=400,
                        help="distinct device/channel series (default 400)")
    parser.add_argument("--clients", type=_positive, default=1,
                        help="concurrent uploaders into the one app (default 1)")
    parser.add_argument("--backend", dest="backends", action="append", choices=BACKENDS,
                        help="measure only this backend (repeatable; default all)")
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _summaries(count: int, series: int) -> Iterator[Summary]:
    start = (now_ms() // 60_000 - count // series - 1) * 60_000
    for i in range(count):
        t0 = start + (i // series) * 60_000
        k = i % series
        yield Summary(f"dev-{k // 4:04d}", f"ch{k % 4}", t0, t0 + 60_000, 60,
                      float(k), float(k) + 2.0, float(k) + 1.0, float(k) + 1.5)


RawWrite = Callable[[Sequence[Summary]], None]


@contextmanager
def _backend(name: str) -> Iterator[tuple[RawWrite, Callable[[Path], dict[str, Any]]]]:
    """The raw writer and the app config (for a data dir) of one backend."""
    with ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tandem-bench-")))
        if name == "influxdb":
            server = stack.enter_context(influxd())
            yield _influx_raw(stack, server.url), lambda data: {"timeseries": {
                "backend": "influxdb", "url": server.url, "database": f"cloud_{data.name}"}}
        else:
            yield _sqlite_raw(stack, root), lambda data: {}


def _influx_raw(stack: ExitStack, url: str) -> RawWrite:
    http = stack.enter_context(httpx.Client(base_url=url, timeout=60))
    http.post("/query", params={"q": 'CREATE DATABASE "raw"'}).raise_for_status()

    def write(chunk: Sequence[Summary]) -> None:
        body = "\n".join(summary_line(GATEWAY, s) for s in chunk).encode()
        response = http.post("/write", params={"db": "raw", "precision": "ms"}, content=body)
        response.raise_for_status()

    return write


def _sqlite_raw(stack: ExitStack, root: Path) -> RawWrite:
    app = create_app(_config(root / "raw"))
    stack.callback(close_app, app)
    engine = database.engine(app)
    # The conflict key is the table's own primary key, so the baseline follows
    # the store when its key changes (summaries are keyed with their span).
    keys = tuple(column.name for column in summaries_table.primary_key.columns)
    values = tuple(column.name for column in summaries_table.columns if column.name not in keys)

    def write(chunk: Sequence[Summary]) -> None:
        rows = [{"gateway": GATEWAY, "device": s.device, "channel": s.channel,
                 "t0_ms": s.t0_ms, "t1_ms": s.t1_ms, "n": s.count, "min": s.minimum,
                 "max": s.maximum, "mean": s.mean, "last": s.last} for s in chunk]
        with engine.begin() as tx:
            tx.execute(upsert_statement(tx, summaries_table, keys, values), rows)

    return write


def _measure(label: str, summaries: Sequence[Summary], batch: int, write: RawWrite) -> Result:
    started = time.perf_counter()
    for i in range(0, len(summaries), batch):
        write(summaries[i:i + batch])
    return Result(label, len(summaries), time.perf_counter() - started)


def _cloud_ingest(backend: str, summaries: Sequence[Summary], batch: int, clients: int,
                  extra: Callable[[Path], dict[str, Any]]) -> Result:
    with tempfile.TemporaryDirectory(prefix="tandem-bench-cloud-") as tmp:
        data = Path(tmp) / "data"
        app = create_app(_config(data) | extra(data))
        try:
            signer = _register(app)
            now = now_ms()
            bodies = [sign1(encode_batch(Batch(GATEWAY, seq, now, tuple(
                summaries[i:i + batch]))), GATEWAY, signer)
                for seq, i in enumerate(range(0, len(summaries), batch), start=1)]
            return _post_all(app, f"{backend} cloud", bodies, len(summaries), clients)
        finally:
            close_app(app)


def _post_all(app: Flask, label: str, bodies: list[bytes], points: int,
              clients: int) -> Result:
    """POST every body, from `clients` threads at once (as several gateways would)."""
    def upload(share: list[bytes]) -> None:
        client = app.test_client()
        for body in share:
            response = client.post("/ingest/v1/batches", data=body,
                                   headers={"Content-Type": MEDIA_TYPE})
            if response.status_code != 200 or response.json is None \
                    or response.json["status"] != "stored":
                raise RuntimeError(f"ingest failed: {response.status_code} {response.text}")

    shares = [bodies[i::clients] for i in range(clients)]
    started, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        for done in [pool.submit(upload, share) for share in shares]:
            done.result()
    suffix = f" x{clients}" if clients > 1 else ""
    return Result(label + suffix, points, time.perf_counter() - started,
                  time.process_time() - cpu)


def _config(data: Path) -> dict[str, Any]:
    return {"version": 1, "mode": "development", "data_dir": str(data)}


def _register(app: Flask) -> SoftwareSigner:
    """Register a fresh key as the bench gateway (no certificate needed for a direct add)."""
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    with database.sessions(app).begin() as session:
        registry.add_gateway(session, GATEWAY, "", public.decode(), "bench", 0)
    return SoftwareSigner(key)


def _report(raw: Result, cloud: Result) -> None:
    for result in (raw, cloud):
        print(f"{result.label:>16}: {result.points:>9,} points in {result.seconds:7.2f} s = "
              f"{result.rate:>10,.0f} points/s")
    # CPU per point does not depend on what else the machine runs, unlike points/s
    print(f"{'cloud CPU':>16}: {cloud.cpu_s / cloud.points * 1e6:.1f} us/point "
          f"({cloud.points / cloud.cpu_s:,.0f} points per CPU-second, influxd's own not counted)"
          if cloud.cpu_s else f"{'cloud CPU':>16}: not measured")
    verdict = "meets" if cloud.rate >= GOAL_POINTS_PER_S else "below"
    print(f"{'cloud / raw':>16}: {cloud.rate / raw.rate:.2f} "
          f"(cloud {verdict} the {GOAL_POINTS_PER_S:,} points/s goal)", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
