"""Outbox drain benchmark: how fast a gateway empties its backlog after an outage.

Fills a real outbox (SQLite, WAL, fsync per commit) with --records window
summaries, as a long cloud outage would, then drains it through the real
uplink (seal, sign, gzip, HTTPS POST, confirm) to
  (a) a null cloud: an HTTPS server on loopback that accepts every batch
      without looking at it, so the figure is the gateway's own limit, and
  (b) the real cloud (`tandem-cloud serve`, SQLite store) as its own process,
and prints records/s for each. The goal is >= 20,000 records/s.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tqdm import tqdm

from tandem.gateway.cloudlink.client import CloudEndpoint
from tandem.gateway.cloudlink.uplink import Outcome, Uplink
from tandem.gateway.config import UplinkSection
from tandem.gateway.metrics import GatewayMetrics
from tandem.gateway.store.database import DATABASE_FILE, GatewayDatabase
from tandem.gateway.store.outbox import Outbox, Priority
from tandem.tools.pki import Role, SiteCA
from tandem.tools.site import Site, SitePorts, free_tcp_port
from tandem.wire.batch import Summary
from tandem.wire.cose import SoftwareSigner

GOAL_RECORDS_PER_S = 20_000
GATEWAY = "gw-bench"
_FILL_CHUNK = 5_000


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print figures (exit 0: figures are not judged)."""
    args = _parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tandem-drain-") as tmp:
        root = Path(tmp)
        with _null_cloud(root) as (url, ca):
            rate = asyncio.run(_fill_and_drain(root / "null", url, ca, None, args))
            print(f"drain to null cloud : {rate:10,.0f} records/s  (gateway-side limit)")
        with _real_cloud(root / "site") as (url, ca, key):
            rate = asyncio.run(_fill_and_drain(root / "real", url, ca, key, args))
            print(f"drain to real cloud : {rate:10,.0f} records/s  (tandem-cloud, SQLite)")
    print(f"goal                : {GOAL_RECORDS_PER_S:10,} records/s")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tandem bench drain",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000, help="backlog size")
    parser.add_argument("--batch", type=int, default=2_000, help="records per uplink batch")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


async def _fill_and_drain(directory: Path, url: str, ca: Path,
                          key: ec.EllipticCurvePrivateKey | None,
                          args: argparse.Namespace) -> float:
    database = GatewayDatabase(directory / DATABASE_FILE)
    outbox = Outbox(database, max_records=args.records + 1)
    started = time.perf_counter()
    for start in range(0, args.records, _FILL_CHUNK):
        count = min(_FILL_CHUNK, args.records - start)
        await outbox.put([_summary(i) for i in range(start, start + count)], Priority.SUMMARY)
    fill = time.perf_counter() - started
    print(f"outbox fill         : {args.records / fill:10,.0f} records/s  "
          f"({args.records:,} records, {_FILL_CHUNK:,} per commit)")
    signer = SoftwareSigner(key or ec.generate_private_key(ec.SECP256R1()))
    config = UplinkSection(url=url, ca=ca, batch_max_records=args.batch, timeout_s=60)
    uplink = Uplink(config, CloudEndpoint(url, ca, config.timeout_s), GATEWAY, outbox, signer,
                    GatewayMetrics())
    bar = tqdm(total=args.records, unit="rec", desc="draining", disable=args.quiet)
    started = time.perf_counter()
    while (outcome := await uplink.deliver_one()) is not Outcome.EMPTY:
        if outcome is not Outcome.DELIVERED:
            raise RuntimeError(f"drain failed: {outcome}")
        bar.update(args.records - bar.n - (await outbox.depth())[0])
    seconds = time.perf_counter() - started
    bar.close()
    await uplink.close()
    database.close()
    return float(args.records) / seconds


def _summary(i: int) -> Summary:
    value = 20.0 + (i % 97) / 10
    return Summary(f"node-{i % 50:02d}", "temp", 1_700_000_000_000 + i * 1000,
                   1_700_000_001_000 + i * 1000, 10, value - 1, value + 1, value, value)


@contextmanager
def _null_cloud(root: Path) -> Iterator[tuple[str, Path]]:
    ca = SiteCA.create(root / "null-pki", "bench")
    server = ca.issue("cloud", Role.SERVER, ("127.0.0.1",))

    class Accept(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            body = b'{"status": "stored"}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Accept)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(server.cert_pem, server.key_pem)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{httpd.server_address[1]}", ca.cert_pem_path
    finally:
        httpd.shutdown()
        httpd.server_close()


@contextmanager
def _real_cloud(root: Path) -> Iterator[tuple[str, Path, ec.EllipticCurvePrivateKey]]:
    site = Site(root, SitePorts(free_tcp_port(), 0, 0), gateway_id=GATEWAY)
    site.prepare("bench")
    try:
        site.start_cloud()
        print("cloud up", flush=True)
        key = serialization.load_pem_private_key(
            (site.pki / "gateway" / GATEWAY / "key.pem").read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        yield site.cloud_url, site.pki / "ca.pem", key
    finally:
        site.stop_all()


if __name__ == "__main__":
    raise SystemExit(main())
