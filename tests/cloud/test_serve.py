"""The real `tandem-cloud serve` over HTTPS: register, upload, query with a token, SIGTERM exit."""

from __future__ import annotations

import queue
import re
import signal
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tandem.wire.cose import MEDIA_TYPE

REPO = Path(__file__).resolve().parents[2]
LISTENING = re.compile(r"^tandem-cloud listening on https://127\.0\.0\.1:(\d+)$")


class Server:
    """A `tandem-cloud serve` child process whose stdout lines arrive on a queue."""

    def __init__(self, config: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-u", "-m", "tandem.cloud.cli.main", "serve", "--config", str(config)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, pattern: re.Pattern[str], timeout: float = 15.0) -> re.Match[str]:
        """Block until a stdout line matches pattern; fail if the process ends first."""
        while True:
            line = self.lines.get(timeout=timeout)
            if line is None:
                raise AssertionError(f"server exited: {self.process.wait()} "
                                     f"{self.process.stderr.read() if self.process.stderr else ''}")
            if match := pattern.match(line):
                return match

    def stop(self) -> None:
        """Kill the process if a test left it running, and reap it."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        self._reader.join(timeout=10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def server_config(tmp_path: Path, pki) -> Path:
    path = tmp_path / "cloud.toml"
    path.write_text(f"""version = 1
data_dir = "data"
[server]
host = "127.0.0.1"
port = 0
tls_cert = "{pki.server.cert_pem}"
tls_key = "{pki.server.key_pem}"
trust_ca = "{pki.ca.cert_pem_path}"
secret_key = "a-real-secret-for-this-test"
""")
    return path


@pytest.fixture
def server(server_config: Path) -> Iterator[Server]:
    running = Server(server_config)
    try:
        yield running
    finally:
        running.stop()


def cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tandem.cloud.cli.main", *argv], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.timeout(60)
def test_serve_ingests_over_https_and_stops_on_sigterm(server, server_config, pki, kit):
    port = int(server.wait_for(LISTENING).group(1))
    added = cli("gateway", "add", "gw-01", "--cert", str(pki.gateway.cert_pem),
                "--config", str(server_config))
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("gateway gw-01 added (sha256:")

    assert cli("user", "add", "reader", "--role", "viewer", "--no-password",
               "--config", str(server_config)).returncode == 0
    issued = cli("token", "create", "--user", "reader", "--name", "test",
                 "--config", str(server_config))
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip()

    trust = ssl.create_default_context(cafile=str(pki.ca.cert_pem_path))
    base = f"https://127.0.0.1:{port}"
    records = [kit.summary(device="dev-9", t0_ms=1_000_000), kit.event(device="dev-9")]
    with httpx.Client(base_url=base, verify=trust, timeout=10) as http:
        posted = http.post("/ingest/v1/batches", content=kit.envelope(pki.gateway, 1, records),
                           headers={"Content-Type": MEDIA_TYPE})
        assert posted.status_code == 200
        assert posted.json() == {"status": "stored", "gateway": "gw-01", "seq": 1, "records": 2}
        assert http.get("/api/v1/summaries").status_code == 401
        points = http.get("/api/v1/summaries", params={"device": "dev-9"},
                          headers={"Authorization": f"Bearer {token}"}).json()["points"]
        assert [(p["gateway"], p["t0"], p["mean"]) for p in points] == [("gw-01", 1_000_000, 20.0)]
        assert http.get("/healthz").json() == {"status": "ok"}

    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=15) == 0
    assert server.wait_for(re.compile(r"^tandem-cloud stopped$"))


@pytest.mark.timeout(60)
def test_server_certificate_is_refused_without_the_site_ca(server):
    port = int(server.wait_for(LISTENING).group(1))
    with pytest.raises(httpx.ConnectError), httpx.Client(verify=True, timeout=10) as http:
        http.get(f"https://127.0.0.1:{port}/healthz")
    server.process.send_signal(signal.SIGINT)
    assert server.process.wait(timeout=15) == 0
