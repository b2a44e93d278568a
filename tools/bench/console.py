"""Page load times of the operator console's main lists, with a fleet of N nodes registered.

Runs a real cloud (`tandem-cloud serve`, HTTPS) from tandem/tools/site.py,
registers N nodes under its gateway and ingests one alarm per node through the
real signed-batch path, signs an admin in through the login form, then loads
each console list `--loads` times over HTTPS. Printed per page: p50 and max
in ms (goal: under 300 ms with 500 nodes).
"""

from __future__ import annotations

import argparse
import re
import ssl
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tandem.cloud.access import accounts
from tandem.cloud.config import load_config
from tandem.cloud.db import engine as database
from tandem.cloud.fleet import registry
from tandem.tools.site import Site, local_site
from tandem.wire.batch import Batch, Event, Summary, encode_batch
from tandem.wire.clock import now_ms
from tandem.wire.cose import MEDIA_TYPE, SoftwareSigner, sign1

PAGES = ("/admin/", "/admin/console_gateways/", "/admin/console_nodes/",
         "/admin/console_alarms/", "/admin/console_alarms/?device=node-0000&hours=1",
         "/admin/console_audit/", "/admin/console_policies/")
PASSWORD = "bench password, long enough"
GOAL_MS = 300


def main(argv: Sequence[str] | None = None) -> int:
    """Measure and print console page load times."""
    args = _parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tandem-console-") as tmp:
        site = local_site(Path(tmp) / "site")
        try:
            site.start_cloud()
            _populate(site, args.nodes)
            timings = _measure(site, args.loads)
        finally:
            site.stop_all()
    print(f"console pages     : {len(PAGES)} lists, {args.nodes} nodes and alarms, "
          f"{args.loads} loads each (goal < {GOAL_MS} ms)")
    for page, ms in timings.items():
        print(f"  {page:<48} p50 {statistics.median(ms):6.1f} ms  max {max(ms):6.1f} ms")
    worst = max(statistics.median(ms) for ms in timings.values())
    print(f"console worst p50 : {worst:.1f} ms")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tandem bench console",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--loads", type=int, default=20, help="loads of each page")
    return parser


def _populate(site: Site, nodes: int) -> None:
    """N nodes of the site's gateway, one summary and one alarm each (signed batches)."""
    names = [f"node-{i:04}" for i in range(nodes)]
    config = load_config(site.cloud_config)
    with database.cli_session(config) as session:
        registry.claim_devices(session, site.gateway_id, names, now_ms())
        accounts.add_user(session, "bench-admin", "admin", PASSWORD, now_ms())
        session.commit()
    identity = site.pki / "gateway" / site.gateway_id
    key = serialization.load_pem_private_key((identity / "key.pem").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    signer, t = SoftwareSigner(key), now_ms() - 60_000
    with _client(site) as client:
        for seq, start in enumerate(range(0, nodes, 100), start=1):
            records = [r for name in names[start:start + 100] for r in (
                Summary(name, "temp", t, t + 10_000, 10, 20.0, 22.0, 21.0, 21.5),
                Event(name, "hot25", t + 5_000, 3, {"temp": 25.5}))]
            batch = Batch(gateway=site.gateway_id, seq=seq, sent_ms=now_ms(),
                          records=tuple(records))
            body = sign1(encode_batch(batch), site.gateway_id, signer)
            answer = client.post("/ingest/v1/batches", content=body,
                                 headers={"Content-Type": MEDIA_TYPE})
            answer.raise_for_status()


def _measure(site: Site, loads: int) -> dict[str, list[float]]:
    """Sign in through the form, then time each page's loads (ms)."""
    timings: dict[str, list[float]] = {}
    with _client(site) as client:
        form = client.get("/login").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', form)
        assert token is not None
        signed = client.post("/login", data={"user": "bench-admin", "password": PASSWORD,
                                             "csrf_token": token.group(1)},
                             headers={"Referer": f"{site.cloud_url}/login"})  # HTTPS CSRF
        assert signed.status_code == 302, signed.text
        for page in PAGES:
            assert client.get(page).status_code == 200, page  # warm, and check
            timings[page] = [_timed(client, page) for _ in range(loads)]
    return timings


def _timed(client: httpx.Client, page: str) -> float:
    started = time.perf_counter()
    client.get(page).raise_for_status()
    return (time.perf_counter() - started) * 1000


def _client(site: Site) -> httpx.Client:
    trust = ssl.create_default_context(cafile=site.pki / "ca.pem")
    return httpx.Client(base_url=site.cloud_url, verify=trust, timeout=30)
