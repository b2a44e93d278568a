"""The gateway daemon as systemd runs it: notifications, private data files, clear refusals."""

from __future__ import annotations

import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tandem.tools.site import Site, local_site

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    running = local_site(tmp_path / "site")
    try:
        yield running
    finally:
        running.stop_all()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    """A unix datagram socket standing in for systemd's NOTIFY_SOCKET."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(30)
    try:
        yield sock
    finally:
        sock.close()


def _next_state(sock: socket.socket, wanted: str) -> list[str]:
    """Datagrams received up to and including `wanted`."""
    seen: list[str] = []
    while wanted not in seen:
        seen.append(sock.recv(4096).decode())
    return seen


def test_sd_notify_ready_watchdog_and_stopping(site: Site, notify_socket: socket.socket) -> None:
    gateway = site.start_gateway({"NOTIFY_SOCKET": notify_socket.getsockname(),
                                  "WATCHDOG_USEC": "200000"})
    assert _next_state(notify_socket, "READY=1") == ["READY=1"]  # nothing before ready
    assert _next_state(notify_socket, "WATCHDOG=1")[-1] == "WATCHDOG=1"
    assert _next_state(notify_socket, "WATCHDOG=1")[-1] == "WATCHDOG=1"  # keeps pinging
    assert gateway.stop(timeout=30) == 0, gateway.tail()
    assert "STOPPING=1" in _next_state(notify_socket, "STOPPING=1")


def test_health_endpoints_answer_json_next_to_metrics(site: Site) -> None:
    site.start_gateway()
    base = f"http://127.0.0.1:{site.ports.metrics}"
    live, ready = httpx.get(f"{base}/health/live"), httpx.get(f"{base}/health/ready")
    assert (live.status_code, ready.status_code) == (200, 200)
    tasks = ready.json()["tasks"]
    assert {"ingress", "pipeline", "uplink"} <= set(tasks)
    assert all(t["state"] == "running" and t["restarts"] == 0 for t in tasks.values())
    assert 'tandem_gw_task_up{task="pipeline"} 1.0' in httpx.get(f"{base}/metrics").text


def test_data_files_are_private(site: Site) -> None:
    gateway = site.start_gateway()
    data = site.root / "gateway-data"
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    files = [p for p in data.iterdir() if p.name.startswith("gateway.sqlite3")]
    assert {p.name for p in files} >= {"gateway.sqlite3", "gateway.sqlite3-wal"}
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in files} == \
        {p.name: 0o600 for p in files}
    gateway.stop()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    gateway = str(Path(sys.executable).with_name("tandem-gateway"))
    return subprocess.run([gateway, *args], capture_output=True, text=True, timeout=60)


def test_check_config_refuses_what_the_daemon_would_refuse_in_one_line(site: Site) -> None:
    bad_map = site.root / "bad-map.toml"
    bad_map.write_text("version = 1\n[[point]]\nname = 3\n")
    config = site.root / "gateway.toml"
    config.write_text(config.read_text() + f'''
[[modbus.bus]]
name = "line1"
kind = "tcp"
host = "127.0.0.1"
tcp_port = 1502
units = [{{name = "node-01", unit_id = 1, map = "{bad_map}"}}]
''')
    for command in ("check-config", "run"):
        started = time.monotonic()
        result = _cli(command, "--config", str(config))
        assert result.returncode == 2, result
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and str(bad_map) in lines[0], result.stderr
        assert "Traceback" not in result.stdout + result.stderr
        assert time.monotonic() - started < 30
