"""`tandem demo`: the whole system on one machine, on embedded defaults.

Starts the cloud, one gateway and three MicroPython nodes (normal, bearing
fault, over-temperature), prints where to look, then one live line every few
seconds of what reached the cloud. Ctrl-C stops every process.
"""

from __future__ import annotations

import secrets
import signal
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import httpx

from tandem.tools.procs import ProcessFailed
from tandem.tools.site import NodeSpec, Site, SitePorts

SCENARIOS = ("normal", "bearing_fault", "over_temp")

# The gateway acts on these locally (docs/rules.md); the cloud sees the events.
DEMO_RULES = """\
version = 1

[action.siren]
kind = "local_alarm"

[[rule]]
name = "overheat"
severity = 3
for_ms = 2000
when = { input = "temp", above = 25.0, clear_below = 24.0 }
actions = ["siren"]

[[rule]]
name = "bearing"
severity = 2
for_ms = 2000
when = { input = "vib", above = 0.2, clear_below = 0.15 }
actions = ["siren"]
"""


@dataclass(frozen=True)
class DemoOptions:
    """What the demo command was asked for."""

    workdir: Path
    nodes: int
    cloud_port: int
    coap_port: int
    metrics_port: int
    window_s: float
    duration_s: float


def run_demo(options: DemoOptions) -> int:
    """Run until Ctrl-C (or duration); return the exit code."""
    started = time.monotonic()
    stop = threading.Event()
    _on_signals(stop)
    site = Site(options.workdir.resolve(),
                SitePorts(options.cloud_port, options.coap_port, options.metrics_port),
                window_s=options.window_s, echo=_echo_problems, rules=DEMO_RULES)
    try:
        installer_password = _installer_login(site)
        installer_url = _start(site, options)
        console_password = _console_login(site)
        print(f"\nTandem demo is up after {time.monotonic() - started:.1f} s:\n"
              f"  cloud API     {site.cloud_url}/api/v1/summaries   (CA: {site.pki / 'ca.pem'})\n"
              f"  API token     {site.api_token}   (send as Authorization: Bearer)\n"
              f"  console       {site.cloud_url}/admin/   (user demo, password "
              f"{console_password})\n"
              f"  installer     {installer_url}   (gateway page; password {installer_password},"
              " certificate from the demo CA)\n"
              f"  gateway CoAP  coaps://127.0.0.1:{options.coap_port}/r\n"
              f"  metrics       http://127.0.0.1:{options.metrics_port}/metrics\n"
              f"  files         {site.root}\n"
              "Ctrl-C stops everything.\n", flush=True)
        _live(site, stop, started, options.duration_s)
    except (ProcessFailed, RuntimeError, FileNotFoundError) as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    finally:
        print("stopping nodes, gateway and cloud ...", flush=True)
        site.stop_all()
    print("demo stopped cleanly")
    return 0


def _console_login(site: Site) -> str:
    """Create the demo's console admin with a fresh password, and return the password."""
    password = secrets.token_urlsafe(12)
    secret = site.root / "console-password.txt"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    added = subprocess.run([str(Path(sys.executable).parent / "tandem-cloud"), "user", "add",
                            "demo", "--role", "admin", "--password-file", str(secret),
                            "--config", str(site.cloud_config)],
                           capture_output=True, text=True, check=False, timeout=60)
    if added.returncode != 0:
        raise RuntimeError(f"creating the console user failed:\n{added.stderr}")
    return password


def _installer_login(site: Site) -> str:
    """Prepare the site and set the gateway's installer password; return the password."""
    print(f"preparing site in {site.root} (PKI, configs) ...", flush=True)
    site.prepare()
    password = secrets.token_urlsafe(12)
    (site.root / "installer-password.txt").write_text(password + "\n")
    (site.root / "installer-password.txt").chmod(0o600)
    done = subprocess.run([str(Path(sys.executable).parent / "tandem-gateway"),
                           "installer-password", "--config", str(site.root / "gateway.toml")],
                          input=password + "\n", capture_output=True, text=True, check=False,
                          timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"setting the installer password failed:\n{done.stderr}")
    return password


def _start(site: Site, options: DemoOptions) -> str:
    """Start cloud, gateway and nodes on the prepared site; return the installer page URL."""
    site.start_cloud()
    print(f"cloud up on {site.cloud_url}", flush=True)
    gateway = site.start_gateway()
    print(f"gateway {site.gateway_id} up on coaps://127.0.0.1:{options.coap_port}", flush=True)
    for index in range(options.nodes):
        spec = NodeSpec(f"node-{index + 1:02d}", SCENARIOS[index % len(SCENARIOS)], seed=index + 1)
        site.issue_node(spec)
        site.start_node(spec)
        print(f"node {spec.name} started ({spec.scenario})", flush=True)
    return site.installer_url(gateway)


def _live(site: Site, stop: threading.Event, started: float, duration_s: float) -> None:
    trust = ssl.create_default_context(cafile=site.pki / "ca.pem")
    client = httpx.Client(base_url=site.cloud_url, verify=trust, timeout=5,
                          headers=site.api_headers())
    first_seen = False
    while not stop.wait(2.0):
        for child in site.children:
            if child.proc.poll() is not None:
                raise RuntimeError(f"{child.name} exited ({child.proc.returncode}):\n"
                                   f"{child.tail()}")
        line = _status_line(client)
        if line:
            if not first_seen:
                first_seen = True
                print(f"first data in the cloud {time.monotonic() - started:.1f} s after start")
            print(time.strftime("%H:%M:%S ") + line, flush=True)
        if duration_s and time.monotonic() - started > duration_s:
            break
    client.close()


def _status_line(client: httpx.Client) -> str:
    try:
        points = client.get("/api/v1/summaries", params={"limit": 1000}).json()["points"]
        fired = client.get("/api/v1/events", params={"limit": 1000}).json()["events"]
    except (httpx.HTTPError, ValueError, KeyError):
        return ""
    latest: dict[tuple[str, str], dict[str, float]] = {}
    for point in points:
        key = (point["device"], point["channel"])
        if key not in latest or point["t0"] > latest[key]["t0"]:
            latest[key] = point
    devices = sorted({device for device, _ in latest})
    nodes = [f"{d} " + " ".join(f"{ch}={latest[(d, ch)]['mean']:.2f}"
                                for dd, ch in sorted(latest) if dd == d) for d in devices]
    alarms = sorted({f"{e['name']}@{e['device']}" for e in fired
                     if "/" not in e["name"] and e["severity"] > 0})
    said = f"{len(alarms)} alarms ({', '.join(alarms)})" if alarms else "no alarms"
    return f"cloud: {len(points)} summaries, {said} | " + " | ".join(nodes) if nodes else ""


def _echo_problems(name: str, line: str) -> None:
    if any(word in line for word in ("ERROR", "CRITICAL", "Traceback", '"fatal"', '"error"')):
        print(f"[{name}] {line}", flush=True)


def _on_signals(stop: threading.Event) -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
