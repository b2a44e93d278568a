"""A full disk: the gateway refuses what it cannot store, heals by itself, or exits non-zero.

The gateway's data directory is a small tmpfs mounted by the test (as root):
filled up, the journal and the pipeline fail; the gateway answers 5.03 (never
a 2.04 for data it cannot store), its health endpoint says not ready and its
metrics count the restarts. When space returns the supervisor's restart
brings the pipeline back and the readings reach the cloud, without restarting
the process. A task that cannot recover within its budget makes the daemon
exit 1 (for systemd to restart it); SIGTERM still exits 0 after failures.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from aiocoap import CHANGED
from aiocoap.numbers.codes import Code

from tandem.tools.pki import Identity, Role, SiteCA
from tandem.tools.procs import Child
from tandem.tools.site import Site, local_site
from tandem.wire.report import Report, encode_report
from tests.e2e.readings import wait_for_counts
from tests.gateway.access_peers import DtlsClient, report_post

pytestmark = pytest.mark.timeout(300)

DEVICE = "node-disk"
SUPERVISION = {"TANDEM_GW_SUPERVISOR_BACKOFF_S": "1.0",
               "TANDEM_GW_SUPERVISOR_BACKOFF_MAX_S": "1.0",
               "TANDEM_GW_PIPELINE_WINDOW_S": "0.5"}


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    """A local site whose gateway data directory is a 24 MB tmpfs (unmounted after)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    running = local_site(tmp_path / "site", window_s=0.5)
    data = running.root / "gateway-data"
    data.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m,mode=0700", "tmpfs", str(data)],
                   check=True)
    try:
        yield running
    finally:
        running.stop_all()
        subprocess.run(["umount", "-l", str(data)], check=False)


@pytest.fixture
def device(site: Site) -> Identity:
    return SiteCA.load(site.pki).issue(DEVICE, Role.DEVICE, overwrite=True)


def _fill(directory: Path) -> Path:
    """Write zeros until the filesystem is full; return the filler file."""
    filler = directory / "filler"
    block = bytes(1 << 16)
    with filler.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(block)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    with filler.open("ab", buffering=0) as f:  # the last partial block too
        try:
            while True:
                f.write(b"\0")
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


class Reporter:
    """A real DTLS client posting reports with increasing seq, as a node would."""

    def __init__(self, site: Site, identity: Identity) -> None:
        self.client = DtlsClient(site.ports.coap, identity, site.pki / "ca.pem")
        self.client.handshake()
        self.seq = 0
        self.acked = 0

    def post(self) -> Code:
        self.seq += 1
        t_ms = time.time_ns() // 1_000_000
        reply = self.client.request(report_post(encode_report(
            Report(self.seq, 0xD15C, t_ms, {"temp": float(self.seq)}))))
        if reply.code == CHANGED:
            self.acked += 1
        else:
            self.seq -= 1  # a node resends a refused report with the same seq
        return reply.code

    def close(self) -> None:
        self.client.close()


def _scrape(site: Site) -> str:
    return httpx.get(f"http://127.0.0.1:{site.ports.metrics}/metrics", timeout=10).text


def _metric(site: Site, name: str, labels: str = "") -> float:
    pattern = rf"^{re.escape(name)}{re.escape(labels)} (\S+)$"
    match = re.search(pattern, _scrape(site), re.M)
    return float(match.group(1)) if match else 0.0


def _ready(site: Site) -> tuple[int, dict[str, object]]:
    response = httpx.get(f"http://127.0.0.1:{site.ports.metrics}/health/ready", timeout=10)
    return response.status_code, response.json()


def _task_state(site: Site) -> object:
    tasks = _ready(site)[1]["tasks"]
    assert isinstance(tasks, dict)
    return tasks["pipeline"]["state"]


def _eventually(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)  # polling a running process's endpoints for a condition


def _start(site: Site, **env: str) -> Child:
    return site.start_gateway({**SUPERVISION, **env})


def test_a_full_disk_is_refused_with_5_03_and_the_pipeline_heals_without_a_restart(
        site: Site, device: Identity) -> None:
    site.start_cloud()
    gateway = _start(site)
    pid = gateway.proc.pid
    reporter = Reporter(site, device)
    try:
        assert [reporter.post() for _ in range(5)] == [CHANGED] * 5
        assert _ready(site)[0] == 200
        filler = _fill(site.root / "gateway-data")

        # The pipeline fails on its next flush: restarted, counted, not ready meanwhile.
        _eventually(lambda: _metric(site, "tandem_gw_task_restarts_total",
                                    '{task="pipeline"}') >= 1, "a pipeline restart")
        _eventually(lambda: _ready(site)[0] == 503 and _task_state(site) == "backoff",
                    "/health/ready: 503 with the pipeline in backoff")
        _eventually(lambda: _metric(site, "tandem_gw_outbox_degraded") == 1, "degraded gauge")
        codes = {reporter.post() for _ in range(5)}
        assert codes == {Code.SERVICE_UNAVAILABLE}, codes  # never 2.04 for unstorable data
        assert httpx.get(f"http://127.0.0.1:{site.ports.metrics}/health/live").status_code == 200

        filler.unlink()  # space returns
        _eventually(lambda: _ready(site)[0] == 200, "/health/ready to recover")
        _eventually(lambda: reporter.post() == CHANGED, "a 2.04 again")
        while reporter.acked < 10:
            assert reporter.post() == CHANGED
        with site.cloud_client() as client:
            wait_for_counts(client, DEVICE, reporter.acked, timeout=120)
        assert gateway.proc.pid == pid and gateway.proc.poll() is None  # never restarted
    finally:
        reporter.close()
    assert gateway.stop(timeout=30) == 0, gateway.tail()
    assert any("stopped" in line for line in gateway.lines[-5:]), gateway.tail()


def test_a_task_that_cannot_recover_makes_the_daemon_exit_1(site: Site,
                                                            device: Identity) -> None:
    gateway = _start(site, TANDEM_GW_SUPERVISOR_RESTART_BUDGET="1",
                     TANDEM_GW_SUPERVISOR_BACKOFF_S="0.1")
    reporter = Reporter(site, device)
    try:
        assert [reporter.post() for _ in range(3)] == [CHANGED] * 3
        _fill(site.root / "gateway-data")  # and it stays full
        assert gateway.proc.wait(timeout=60) == 1, gateway.tail()
    finally:
        reporter.close()
    gateway.wait_for(r"cannot recover", timeout=10)
    assert not any("Traceback" in line and "Task exception" in line for line in gateway.lines)


def test_sigterm_exits_0_while_a_task_is_down(site: Site, device: Identity) -> None:
    gateway = _start(site, TANDEM_GW_SUPERVISOR_BACKOFF_S="30",
                     TANDEM_GW_SUPERVISOR_BACKOFF_MAX_S="30")
    reporter = Reporter(site, device)
    try:
        assert [reporter.post() for _ in range(3)] == [CHANGED] * 3
        _fill(site.root / "gateway-data")
        _eventually(lambda: _metric(site, "tandem_gw_task_restarts_total",
                                    '{task="pipeline"}') >= 1, "a pipeline restart")
    finally:
        reporter.close()
    started = time.monotonic()
    assert gateway.stop(timeout=30) == 0, gateway.tail()
    assert time.monotonic() - started < 20  # did not wait out the 30 s backoff
