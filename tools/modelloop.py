"""Drives a local site through the model loop: fleet summaries, labels, dataset, training, rollout.

The model-lifecycle e2e test and `tandem bench modelloop` run this same code
against separate processes (tools/site.py): one cloud, enrolled gateways in
groups, each fed by a MicroPython node whose vibration band energies the
model scores, and a report generator that files a simulated fleet's window
summaries (tools/simfleet.py) as signed batches, as a gateway would. Every
operator step is the operator's own command or API call.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tandem.tools import simfleet
from tandem.tools.pki import Role, SiteCA
from tandem.tools.procs import Child
from tandem.tools.site import NodeSpec, Site, local_site
from tandem.wire.batch import Batch, encode_batch
from tandem.wire.clock import now_ms
from tandem.wire.cose import SoftwareSigner, sign1

REPORTER = "sim-reporter"  # the report generator's gateway identity
BATCH_RECORDS = 200
# The trained model takes the dataset's 8 window features; the gateways feed it 8 vib bands
# (ModelLoop(bands=...) for fixture models of another size).
RULES = """\
version = 1

[features]
window_n = 64
bands = {bands}
min_spectrum_samples = 8
"""
GATEWAY_EXTRA = """
[inference]
channel = "vib"
hop = {hop}

[models]
poll_s = {poll_s}
rate_bytes_s = {rate}
burst_bytes = 1024
"""
ACTIVE = re.compile(r"model (\S+) active")


class LoopError(RuntimeError):
    """An operator step that failed; the message carries the command's error output."""


@dataclass
class LoopGateway:
    """One enrolled gateway of the loop: its site files, group, process and node."""

    site: Site
    group: str
    env: dict[str, str] = field(default_factory=dict)
    process: Child | None = None

    @property
    def name(self) -> str:
        return self.site.gateway_id

    def activations(self) -> list[str]:
        """Every model version this gateway's log says it activated, in order (all runs)."""
        return [m[1] for line in self.site.root.joinpath("activations.log").read_text()
                .splitlines() if (m := ACTIVE.search(line))] \
            if self.site.root.joinpath("activations.log").exists() else []

    def active(self) -> str | None:
        """The version the gateway activated last, by its log (None: none yet)."""
        seen = self.activations()
        return seen[-1] if seen else None


class ModelLoop:
    """A site of one cloud and gateways in groups, and the operator's steps of the loop."""

    def __init__(self, root: Path, groups: dict[str, str], *, hop: int = 4,
                 poll_s: float = 0.5, rate_bytes_s: int = 4096, node_period_ms: int = 100,
                 bands: int = 8, echo: Callable[[str, str], None] | None = None) -> None:
        first = next(iter(groups))
        self.site = local_site(root, window_s=1.0, gateway_id=first, echo=echo,
                               rules=RULES.format(bands=bands),
                               gateway_extra=GATEWAY_EXTRA.format(hop=hop, poll_s=poll_s,
                                                                  rate=rate_bytes_s))
        self._enable_enrolment()
        self.gateways = {first: LoopGateway(self.site, groups[first])}
        for name, group in list(groups.items())[1:]:
            self.gateways[name] = LoopGateway(self.site.add_gateway(name), group)
        self.node_period_ms = node_period_ms
        self._echo = echo

    # -- processes -------------------------------------------------------------

    def start(self) -> None:
        """Start the cloud, enrol every gateway into its group, start gateways and nodes."""
        self.site.start_cloud()
        for index, gw in enumerate(self.gateways.values()):
            gw.site.register_gateway()
            token = self.cli("enrol", "token", "--gateway", gw.name, "--group", gw.group,
                             "--ttl", "10m").strip()
            _run([_script("tandem-gateway"), "enrol", "--config",
                  str(gw.site.root / "gateway.toml"), "--cloud", self.site.cloud_url,
                  "--token", token])
            self.start_gateway(gw.name)
            spec = NodeSpec(f"node-{index + 1:02d}", "normal", seed=index + 1,
                            period_ms=self.node_period_ms)
            self.site.start_node(spec, gw.site.issue_node(spec))

    def start_gateway(self, name: str, env: dict[str, str] | None = None) -> Child:
        """(Re)start a gateway; its log lines about activations are kept across restarts."""
        gw = self.gateways[name]
        gw.env.update(env or {})
        log = gw.site.root / "activations.log"

        def echo(who: str, line: str) -> None:
            # The caller's echo first: once wait_active sees a line, the caller has it too.
            if self._echo is not None:  # every gateway's child is "gateway": say which
                self._echo(name if who == "gateway" else who, line)
            if ACTIVE.search(line):
                with log.open("a") as f:
                    f.write(line + "\n")

        gw.site.echo = echo
        gw.process = gw.site.start_gateway(env=gw.env)
        return gw.process

    def stop(self) -> None:
        """Stop every process of the site."""
        self.site.stop_all()

    # -- data and labels --------------------------------------------------------

    def file_fleet(self, fleet: simfleet.SimFleet) -> int:
        """File the fleet's window summaries as signed batches of a report generator."""
        ca = SiteCA.load(self.site.pki)
        identity = ca.issue(REPORTER, Role.GATEWAY, ("127.0.0.1",), overwrite=True)
        self.cli("gateway", "add", REPORTER, "--cert", str(identity.cert_pem))
        key = serialization.load_pem_private_key(identity.key_pem.read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        records = list(simfleet.summaries(fleet))
        headers = {"Content-Type": 'application/cose; cose-type="cose-sign1"'}
        with self.site.cloud_client(timeout=60) as client:
            for seq, first in enumerate(range(0, len(records), BATCH_RECORDS), start=1):
                batch = Batch(REPORTER, seq, now_ms(),
                              tuple(records[first:first + BATCH_RECORDS]))
                body = sign1(encode_batch(batch), REPORTER, SoftwareSigner(key))
                response = client.post("/ingest/v1/batches", content=body, headers=headers)
                if response.status_code >= 300:
                    raise LoopError(f"batch {seq}: HTTP {response.status_code} {response.text}")
        return len(records)

    def label(self, fleet: simfleet.SimFleet, first: int, last: int) -> int:
        """Operators' labels (through the API) agreeing with the ground truth over windows."""
        labels = simfleet.labels(fleet, first, last)
        with self.site.cloud_client() as client:
            for label in labels:
                response = client.post("/api/v1/labels", json={
                    "device": label.device, "label": label.label, "start_ms": label.start_ms,
                    "end_ms": label.end_ms, "note": "model loop"})
                if response.status_code != 201:
                    raise LoopError(f"label: HTTP {response.status_code} {response.text}")
        return len(labels)

    # -- operator's commands ----------------------------------------------------

    def cli(self, *args: str) -> str:
        """Run `tandem-cloud ARGS --config <the site's>`; its output (LoopError on failure)."""
        return _run([_script("tandem-cloud"), *args, "--config", str(self.site.cloud_config)])

    def build_dataset(self, out: Path, fleet: simfleet.SimFleet) -> dict[str, Any]:
        """`tandem-cloud dataset build` over the fleet's period: file, hash, features, splits."""
        result: dict[str, Any] = json.loads(self.cli(
            "dataset", "build", "--out", str(out), "--start", str(fleet.t0(0)),
            "--end", str(fleet.t0(fleet.windows))))
        return result

    def train(self, dataset: Path, out: Path, version: str, parent: Path | None = None,
              epochs: int = 10) -> dict[str, Any]:
        """`tandem-cloud model train`: the new version's card figures."""
        extra = ["--parent", str(parent)] if parent is not None else []
        result: dict[str, Any] = json.loads(_run([  # training reads no cloud configuration
            _script("tandem-cloud"), "model", "train", "--dataset", str(dataset),
            "--out", str(out), "--version", version,
            "--epochs", str(epochs), "--created-by", "model-loop", *extra]))
        return result

    def register(self, directory: Path, chunk_bytes: int) -> str:
        """`tandem-cloud model register` with the artefact's chunk size."""
        return self.cli("model", "register", str(directory), "--by", "model-loop",
                        "--chunk-bytes", str(chunk_bytes)).strip()

    def promote(self, version: str, force: bool = False) -> str:
        """`tandem-cloud model promote` (refused unless it beats the promoted version)."""
        return self.cli("model", "promote", version, *(["--force"] if force else [])).strip()

    def release(self, version: str) -> str:
        """`tandem-cloud model release`: every gateway without a rollout fetches it."""
        return self.cli("model", "release", version).strip()

    def roll_out(self, group: str, version: str, canaries: list[str], wave_size: int,
                 limits: dict[str, float]) -> dict[str, Any]:
        """POST /api/v1/rollouts: a staged rollout of version to group, shadow first."""
        with self.site.cloud_client() as client:
            response = client.post("/api/v1/rollouts", json={
                "group": group, "version": version, "canaries": canaries,
                "wave_size": wave_size, "limits": limits})
        if response.status_code != 200:
            raise LoopError(f"rollout: HTTP {response.status_code} {response.text}")
        result: dict[str, Any] = response.json()
        return result

    def rollout(self, group: str) -> dict[str, Any]:
        """GET /api/v1/rollouts/<group>: stage, state and the log with each gate's figures."""
        with self.site.cloud_client() as client:
            response = client.get(f"/api/v1/rollouts/{group}")
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def settled(self, group: str, timeout: float) -> dict[str, Any]:
        """The group's rollout once it is no longer running (LoopError after timeout)."""
        deadline = time.monotonic() + timeout
        while (state := self.rollout(group))["state"] == "running":
            if time.monotonic() > deadline:
                raise LoopError(f"rollout of {group} still running after {timeout} s: "
                                f"{state['log']}")
            time.sleep(0.2)
        return state

    def reports(self, version: str) -> list[dict[str, Any]]:
        """GET /api/v1/models/<version>/reports: what the gateways reported for version."""
        with self.site.cloud_client() as client:
            response = client.get(f"/api/v1/models/{version}/reports")
        response.raise_for_status()
        found: list[dict[str, Any]] = response.json()["reports"]
        return found

    def wait_active(self, names: list[str], version: str, timeout: float) -> None:
        """Until every gateway named has activated version (LoopError after timeout)."""
        deadline = time.monotonic() + timeout
        while any(self.gateways[n].active() != version for n in names):
            if time.monotonic() > deadline:
                raise LoopError(f"{version} not active on every one of {names} after "
                                f"{timeout} s: {[self.gateways[n].active() for n in names]}")
            time.sleep(0.1)

    def _enable_enrolment(self) -> None:
        """Release and enrolment keys for the cloud: gateways trust its signed models."""
        keys = self.site.root / "cloud-keys"
        for name in ("policy.pem", "data.pem"):
            _run([_script("tandem-cloud"), "policy", "keygen", "--out", str(keys / name)])
        with self.site.cloud_config.open("a") as f:
            f.write(f'\n[enrol]\nca_cert = "{self.site.pki / "ca.pem"}"\n'
                    f'ca_key = "{self.site.pki / "ca.key.pem"}"\n'
                    f'\n[policy]\nsigning_key = "{keys / "policy.pem"}"\n'
                    f'data_key = "{keys / "data.pem"}"\n')


def recent_fleet(devices: int, windows: int, growth: int = 20) -> simfleet.SimFleet:
    """A simulated fleet whose period ended an hour ago (apart from the nodes' live windows)."""
    end = now_ms() - 3_600_000
    return simfleet.fleet(devices, windows, start_ms=end - windows * simfleet.WINDOW_MS,
                          growth=growth)


def _run(argv: list[str], timeout: float = 600) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if done.returncode != 0:
        raise LoopError(f"{' '.join(argv[:4])}: exit {done.returncode}\n{done.stderr[-2000:]}")
    return done.stdout


def _script(name: str) -> str:
    found = Path(sys.executable).parent / name
    return str(found) if found.exists() else name
