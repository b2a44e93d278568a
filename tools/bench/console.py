"""Page load times of the operator console's main lists, with a fleet of N nodes registered.

Runs a real cloud (`tandem-cloud serve`, HTTPS) from tandem/tools/site.py,
registers N nodes under its gateway and ingests one alarm per node through the
real signed-batch path; the gateway reports its status (signed), `--versions`
model versions are registered, a rollout started per `--groups` group and one
raw request made per node through the REST API. An admin signs in through the
login form, then each console list (and a device's chart over a from/to range)
is loaded `--loads` times over HTTPS. Printed per page: p50 and max in ms
(goal: under 300 ms with 500 nodes).
"""

from __future__ import annotations

import argparse
import hashlib
import json
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
from tandem.cloud.console.view import utc_input
from tandem.cloud.db import engine as database
from tandem.cloud.fleet import registry
from tandem.cloud.keys.keyfiles import write_new_key
from tandem.cloud.models import registry as models
from tandem.tools.make_model import build_tflite, fit_autoencoder, healthy_windows
from tandem.tools.site import Site, local_site
from tandem.wire import gwrequest
from tandem.wire.batch import Batch, Event, Summary, encode_batch
from tandem.wire.clock import now_ms
from tandem.wire.cose import MEDIA_TYPE, SoftwareSigner, sign1
from tandem.wire.modelcard import InputSpec, ModelCard, to_plain
from tandem.wire.resources import Resources, Status, resources_to_plain, status_to_plain

PAGES = ("/admin/", "/admin/console_gateways/", "/admin/console_nodes/",
         "/admin/console_alarms/", "/admin/console_alarms/?device=node-0000&hours=1",
         "/admin/console_alarms/?device=node-0000&start={start}&end={end}",
         "/admin/console_raw/", "/admin/console_models/", "/admin/console_audit/",
         "/admin/console_policies/")
PASSWORD = "bench password, long enough"
GOAL_MS = 300


def main(argv: Sequence[str] | None = None) -> int:
    """Measure and print console page load times."""
    args = _parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tandem-console-") as tmp:
        site = local_site(Path(tmp) / "site")
        write_new_key(Path(tmp) / "release.pem")  # rollouts sign their releases
        with site.cloud_config.open("a") as config:
            config.write(f'\n[policy]\nsigning_key = "{Path(tmp) / "release.pem"}"\n')
        try:
            site.start_cloud()
            _populate(site, args.nodes)
            _populate_models(site, Path(tmp), args.versions, args.groups)
            timings = _measure(site, args.loads)
        finally:
            site.stop_all()
    print(f"console pages     : {len(PAGES)} lists, {args.nodes} nodes, alarms and raw "
          f"requests, {args.versions} model versions, {args.groups} rollouts, "
          f"{args.loads} loads each (goal < {GOAL_MS} ms)")
    for page, ms in timings.items():
        print(f"  {page[:64]:<64} p50 {statistics.median(ms):6.1f} ms  max {max(ms):6.1f} ms")
    worst = max(statistics.median(ms) for ms in timings.values())
    print(f"console worst p50 : {worst:.1f} ms")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tandem bench console",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--loads", type=int, default=20, help="loads of each page")
    parser.add_argument("--versions", type=int, default=20, help="model versions registered")
    parser.add_argument("--groups", type=int, default=10, help="groups with a rollout")
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
        _report_status(client, site, signer)
    with site.cloud_client() as api:
        for name in names:  # one raw request per node, as an operator would ask
            api.post("/api/v1/raw-requests", json={"device": name}).raise_for_status()


def _report_status(client: httpx.Client, site: Site, signer: SoftwareSigner) -> None:
    """The gateway's status report, signed, so the gateway list shows its health."""
    t = now_ms()
    resources = Resources(site.gateway_id, "bench", 4, 1.0, 4 << 30, 10 << 30, (), 1.25e6, 0.01)
    status = Status(site.gateway_id, t, 0.5, 1 << 30, 0, 0.0, 0, 3, 0.01, 1.25e6, True)
    body = {"resources": resources_to_plain(resources), "status": status_to_plain(status),
            "interval_ms": 5000}
    signed = gwrequest.sign_request("gateway-status", site.gateway_id, body, t, signer)
    client.post("/edge/v1/status", content=signed,
                headers={"Content-Type": gwrequest.MEDIA_TYPE}).raise_for_status()


def _populate_models(site: Site, tmp: Path, versions: int, groups: int) -> None:
    """Register model versions (a chain of children) and start a rollout per group via the API."""
    weights = fit_autoencoder(healthy_windows(120, 16, 256, 1), 4)
    config = load_config(site.cloud_config)
    with database.cli_session(config) as session:
        for i in range(1, versions + 1):
            directory = tmp / f"m-{i:04}"
            _write_version(directory, f"m-{i:04}", f"m-{i - 1:04}" if i > 1 else None,
                           build_tflite(weights, f"bench version {i}"), 0.7 + i / (10 * versions))
            models.register(session, config, directory, "bench", now_ms())
        session.commit()
    with site.cloud_client(timeout=60) as api:
        for g in range(groups if versions > 1 else 0):
            api.post("/api/v1/rollouts", json={
                "group": f"group-{g:02}", "version": f"m-{versions:04}",
                "previous": f"m-{versions - 1:04}", "canaries": [site.gateway_id],
                "wave_size": 1, "limits": {"soak_s": 3600}}).raise_for_status()


def _write_version(directory: Path, version: str, parent: str | None, model: bytes,
                   f1: float) -> None:
    """A trainer's output directory: model.tflite and its card."""
    card = ModelCard(version=version, name="bench-ae", kind="autoencoder", parent=parent,
                     dataset_sha256=hashlib.sha256(version.encode()).hexdigest(),
                     code_version="bench", sha256=hashlib.sha256(model).hexdigest(),
                     size=len(model), input=InputSpec(tuple(f"band{i}" for i in range(16)),
                                                      (0.0,) * 16, (1.0,) * 16),
                     threshold=2.0, metrics={"f1": round(f1, 3), "precision": 0.8,
                                             "recall": 0.7, "roc_auc": 0.9},
                     created_by="bench")
    directory.mkdir(parents=True)
    (directory / "model.tflite").write_bytes(model)
    (directory / "card.json").write_text(json.dumps(to_plain(card)))


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
        end = now_ms()
        for template in PAGES:
            page = template.format(start=utc_input(end - 3600_000), end=utc_input(end))
            assert client.get(page).status_code == 200, page  # warm, and check
            timings[template] = [_timed(client, page) for _ in range(loads)]
    return timings


def _timed(client: httpx.Client, page: str) -> float:
    started = time.perf_counter()
    client.get(page).raise_for_status()
    return (time.perf_counter() - started) * 1000


def _client(site: Site) -> httpx.Client:
    trust = ssl.create_default_context(cafile=site.pki / "ca.pem")
    return httpx.Client(base_url=site.cloud_url, verify=trust, timeout=30)
