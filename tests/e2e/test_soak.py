"""Soak: three gateways and their nodes run while faults hit every layer; nothing is lost.

On a schedule over the run: silent TCP connections hold the cloud's sockets,
a login brute force hammers it, a node sends a poison report, a DTLS
half-open flood hits a gateway, a gateway's disk fills up and frees again,
and a gateway's data directory is reset. At the end every reading a node saw
acknowledged is in the cloud exactly once, and each fault's recovery time
(from the fault's end to the affected gateway's next delivered batch) is
printed.

`make test` runs a 3-minute version; `make soak` the 30-minute benchmark
target (TANDEM_SOAK_MINUTES=30, TANDEM_SOAK_NODES=17 per gateway).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tandem.tools.pki import Identity, Role
from tandem.tools.procs import Child
from tandem.tools.site import NodeSpec, Site, local_site
from tandem.wire.report import Report, encode_report
from tests.e2e.readings import assert_exactly, events, wait_for_counts
from tests.gateway.access_peers import DtlsClient, report_post
from tests.gateway.dtls_flood import FloodThread

MINUTES = float(os.environ.get("TANDEM_SOAK_MINUTES", "3"))
NODES_PER_GATEWAY = int(os.environ.get("TANDEM_SOAK_NODES", "4"))
PERIOD_MS = 1000
FAULT_S = min(20.0, max(8.0, MINUTES * 60 * 0.06))
# Nodes buffer up to 120 reports while their gateway is away (the data-dir reset).
NODE_TUNING = (("outbox", 120), ("link", {"backoff_max_ms": 1000}),
               ("coap", {"ack_timeout_ms": 500, "max_retransmit": 2}))
GATEWAY_ENV = {"TANDEM_GW_UPLINK_INTERVAL_S": "0.5", "TANDEM_GW_UPLINK_BACKOFF_MAX_S": "2.0"}

# Each node stops by itself after this many acknowledged reports (about the run's length),
# so no report is in flight when it ends: a node killed mid-exchange may have a reading
# stored in the cloud that it never saw acknowledged.
REPORTS = int(MINUTES * 60 * 1000 / PERIOD_MS)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(int(MINUTES * 60 + 600))]


@dataclass
class Recovery:
    """One fault's outcome: when it ended and when its gateway delivered again."""

    fault: str
    gateway: str
    ended: float
    recovered: float | None = None

    def line(self) -> str:
        took = "never" if self.recovered is None else f"{self.recovered - self.ended:.2f} s"
        return f"[soak] {self.fault:<22} gateway {self.gateway}: recovered in {took}"


@dataclass
class Gateway:
    """One gateway of the soak site: its files, its process and its nodes."""

    site: Site
    process: Child
    nodes: list[tuple[NodeSpec, Child]]

    def delivered_after(self, mark: int, timeout: float) -> float:
        """Wait for a batch delivered after the output mark; the monotonic time it was seen."""
        self.process.wait_for(r"batch \d+ delivered", timeout=timeout, since=mark)
        return time.monotonic()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    running = local_site(tmp_path / "site", window_s=2.0)
    try:
        yield running
    finally:
        running.stop_all()
        for mount in (tmp_path / "site").rglob("gateway-data"):
            subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)


def test_soak_with_faults_loses_and_repeats_nothing(site: Site, tmp_path: Path) -> None:
    site.start_cloud()
    places = [site, site.add_gateway("gw-02"), site.add_gateway("gw-03")]
    _small_disk(places[1].root / "gateway-data", megabytes=24)
    gateways = [_start_gateway(place, index) for index, place in enumerate(places)]
    run_until = time.monotonic() + MINUTES * 60
    faults: list[Callable[[list[Gateway], Site], Recovery]] = [
        _silent_connections, _login_brute_force, _poison_report, _dtls_flood,
        _disk_full_and_back, _data_dir_reset]
    gap = (run_until - time.monotonic() - FAULT_S * len(faults)) / (len(faults) + 1)
    recoveries = []
    for fault in faults:
        _pause(max(1.0, gap), gateways)
        recoveries.append(fault(gateways, site))
    for recovery in recoveries:
        print(recovery.line())
    _wait_for_nodes_to_finish(gateways, timeout=run_until - time.monotonic() + 300)
    _check_exactly_once(gateways, site)
    assert all(r.recovered is not None for r in recoveries), [r.line() for r in recoveries]


# -- site ---------------------------------------------------------------------------


def _start_gateway(place: Site, index: int) -> Gateway:
    if place.parent is not None:
        place.register_gateway()
    process = place.start_gateway(GATEWAY_ENV)
    nodes = []
    for n in range(NODES_PER_GATEWAY):
        spec = NodeSpec(f"node-{index + 1}-{n + 1}", ("normal", "bearing_fault")[n % 2],
                        seed=index * 100 + n, period_ms=PERIOD_MS, max_reports=REPORTS,
                        extra=NODE_TUNING)
        nodes.append((spec, place.start_node(spec, place.issue_node(spec))))
    for _, node in nodes:
        node.wait_for(r'"ev": ?"ack"', timeout=120)
    return Gateway(place, process, nodes)


def _small_disk(directory: Path, megabytes: int) -> None:
    """Mount a small tmpfs as the gateway's data directory, so the disk can fill up."""
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m,mode=0700", "tmpfs",
                    str(directory)], check=True, capture_output=True)


def _pause(seconds: float, gateways: list[Gateway]) -> None:
    """Let the site run; fail early if a process died (a node may finish its reports)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for gateway in gateways:
            assert gateway.process.proc.poll() is None, gateway.process.tail()
            for spec, node in gateway.nodes:
                assert node.proc.poll() in (None, 0), f"{spec.name} failed:\n{node.tail()}"
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))  # a paced watch loop


def _wait_for_nodes_to_finish(gateways: list[Gateway], timeout: float) -> None:
    """Every node ends by itself once its last report is acknowledged."""
    deadline = time.monotonic() + timeout
    for gateway in gateways:
        for spec, node in gateway.nodes:
            left = max(1.0, deadline - time.monotonic())
            try:
                code = node.proc.wait(timeout=left)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"{spec.name} still running:\n{node.tail()}") from None
            assert code == 0, f"{spec.name} exited with {code}:\n{node.tail()}"


def _check_exactly_once(gateways: list[Gateway], site: Site) -> None:
    with site.cloud_client(timeout=30) as client:
        for gateway in gateways:
            for spec, node in gateway.nodes:
                acks = events(node, "ack")
                assert len(acks) == REPORTS, f"{spec.name}: {len(acks)} of {REPORTS} acked"
                assert events(node, "dropped") == [], f"{spec.name} dropped readings"
                points = wait_for_counts(client, spec.name, len(acks), timeout=180)
                assert_exactly(points, acks)


# -- faults ---------------------------------------------------------------------------


def _silent_connections(gateways: list[Gateway], site: Site) -> Recovery:
    """50 TCP connections to the cloud that never send a byte, while gateways upload."""
    marks = [g.process.mark() for g in gateways]
    with _silent_sockets(site.ports.cloud, 50):
        for gateway, mark in zip(gateways, marks, strict=True):
            gateway.delivered_after(mark, timeout=FAULT_S + 30)
        time.sleep(FAULT_S)  # the fault's duration: connections held open, not a wait
    return _recovered("silent connections", gateways[0], time.monotonic())


@contextmanager
def _silent_sockets(port: int, count: int) -> Iterator[None]:
    sockets = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(count)]
    try:
        yield
    finally:
        for sock in sockets:
            sock.close()


def _login_brute_force(gateways: list[Gateway], site: Site) -> Recovery:
    """Wrong passwords from 8 threads for the fault's duration, while gateways upload."""
    stop = threading.Event()
    threads = [threading.Thread(target=_guess_passwords, args=(site, stop), daemon=True)
               for _ in range(8)]
    for thread in threads:
        thread.start()
    mark = gateways[0].process.mark()
    try:
        gateways[0].delivered_after(mark, timeout=FAULT_S + 30)
        stop.wait(FAULT_S)  # the fault's duration
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    return _recovered("login brute force", gateways[0], time.monotonic())


def _guess_passwords(site: Site, stop: threading.Event) -> None:
    trust = ssl.create_default_context(cafile=site.pki / "ca.pem")
    with httpx.Client(base_url=site.cloud_url, verify=trust, timeout=10) as client:
        while not stop.is_set():
            # a throttled or dropped attempt is part of what is tested
            with contextlib.suppress(httpx.HTTPError):
                client.post("/login", data={"user": "admin", "password": "guess"})


def _poison_report(gateways: list[Gateway], site: Site) -> Recovery:
    """A report timed at 2^63 ms (a valid uint64) from a node with a valid certificate."""
    gateway = gateways[0]
    site.issue_node(NodeSpec("node-poison"))
    identity = Identity("node-poison", Role.DEVICE, site.pki / "device" / "node-poison")
    poison = encode_report(Report(seq=1, boot=1, t_ms=2**63 + 5, values={"temp": 1.0}))
    with DtlsClient(gateway.site.ports.coap, identity, site.pki / "ca.pem") as client:
        client.handshake()
        reply = client.request(report_post(poison))
    assert reply.code.class_ in (2, 4), reply.code  # 2.04 quarantined, or 4.00 refused
    return _recovered("poison report", gateway, time.monotonic())


def _dtls_flood(gateways: list[Gateway], site: Site) -> Recovery:
    """Half-open DTLS handshakes from 1,000 loopback addresses against one gateway."""
    gateway = gateways[0]
    flood = FloodThread(gateway.site.ports.coap, waves=10, per_wave=100)
    flood.start()
    try:
        flood.join(FAULT_S + 60)
    finally:
        flood.stop()
    assert flood.error is None, flood.error
    return _recovered("DTLS flood", gateway, time.monotonic())


def _disk_full_and_back(gateways: list[Gateway], site: Site) -> Recovery:
    """Fill the gateway's small data disk, hold it full, then free it."""
    gateway = gateways[1]
    filler = gateway.site.root / "gateway-data" / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=1M", "count=1024"],
                   capture_output=True, check=False)  # stops at "No space left on device"
    try:
        time.sleep(FAULT_S)  # the fault's duration: the disk stays full
    finally:
        filler.unlink()
    return _recovered("disk full and back", gateway, time.monotonic())


def _data_dir_reset(gateways: list[Gateway], site: Site) -> Recovery:
    """Drain the gateway's backlog, stop it, wipe its data directory, start it again."""
    gateway = gateways[2]
    gateway.process.stop()
    gateway.site.forget(gateway.process)
    drained = _drain_without_nodes(gateway.site)
    shutil.rmtree(gateway.site.root / "gateway-data")
    assert drained
    gateway.process = gateway.site.start_gateway(GATEWAY_ENV)
    return _recovered("data-dir reset", gateway, time.monotonic())


def _drain_without_nodes(place: Site) -> bool:
    """Run the gateway with its CoAP port elsewhere until its journal and outbox are empty.

    Reports replayed from the journal reach the outbox only when their window closes, so
    the outbox must stay empty for longer than a window before the directory may go.
    """
    env = {**GATEWAY_ENV, "TANDEM_GW_COAP_PORT": "0"}
    process = place.start_gateway(env)
    settle = 3 * place.window_s + 2
    try:
        deadline = time.monotonic() + 120
        empty_since: float | None = None
        while time.monotonic() < deadline:
            if _outbox_depth(place.ports.metrics) == 0:
                empty_since = empty_since or time.monotonic()
                if time.monotonic() - empty_since >= settle:
                    return True
            else:
                empty_since = None
            time.sleep(0.5)  # polling the metrics endpoint for a condition
        return False
    finally:
        process.stop()
        place.forget(process)


def _outbox_depth(port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    depth = 0.0
    for line in text.splitlines():
        if line.startswith(("tandem_gw_outbox_records ", "tandem_gw_outbox_batches ")):
            depth += float(line.rsplit(" ", 1)[1])
    return depth


def _recovered(fault: str, gateway: Gateway, ended: float) -> Recovery:
    """Wait for the gateway's next delivered batch after the fault ended."""
    recovery = Recovery(fault, gateway.site.gateway_id, ended)
    mark = gateway.process.mark()
    try:
        recovery.recovered = gateway.delivered_after(mark, timeout=120)
    except Exception:
        recovery.recovered = None
    return recovery
