"""A flood of half-open DTLS handshakes must not lock real nodes out (docs/security-policy.md).

The attacker passes the cookie check from many loopback source addresses
(it can receive at each of them) and then never finishes a handshake. Real
MicroPython nodes keep reporting, a node rebooting during the flood
reconnects, and every reading a node saw acknowledged reached the gateway.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from OpenSSL import SSL

from tests.gateway.access_peers import RecordingSink, ServerThread, Site
from tests.nodeproc import NodeProcess, write_node_config
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(240)


class HalfOpenFlood:
    """Cookie-verified ClientHellos from many source addresses, never finished."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._context = SSL.Context(SSL.DTLS_CLIENT_METHOD)
        self._context.set_options(SSL.OP_NO_QUERY_MTU)
        self._sockets: list[socket.socket] = []
        self.sent = 0

    def wave(self, first: int, count: int) -> None:
        """Open `count` half-open handshakes from 127.1.x.y sources numbered from `first`."""
        pending: dict[socket.socket, SSL.Connection] = {}
        for n in range(first, first + count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((f"127.1.{n // 250}.{n % 250 + 1}", 0))
            sock.connect(("127.0.0.1", self._port))
            sock.setblocking(False)
            conn = SSL.Connection(self._context, None)
            conn.set_connect_state()
            conn.set_ciphertext_mtu(1200)
            _step(conn, sock)  # ClientHello without cookie: answered statelessly
            pending[sock] = conn
            self._sockets.append(sock)
        # epoll, not select(): in a long test session descriptors pass 1024
        with selectors.DefaultSelector() as selector:
            for sock in pending:
                selector.register(sock, selectors.EVENT_READ)
            while pending:
                ready = selector.select(5.0)
                if not ready:
                    break
                for key, _ in ready:
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    selector.unregister(sock)
                    self._answer(pending.pop(sock), sock)

    def _answer(self, conn: SSL.Connection, sock: socket.socket) -> None:
        """Feed the HelloVerifyRequest and send the ClientHello with the cookie."""
        conn.bio_write(sock.recv(2048))
        _step(conn, sock)  # the server keeps state from here on
        self.sent += 1

    def close(self) -> None:
        for sock in self._sockets:
            sock.close()


def _step(conn: SSL.Connection, sock: socket.socket) -> None:
    with contextlib.suppress(SSL.WantReadError):
        conn.do_handshake()
    while True:
        try:
            sock.send(conn.bio_read(2048))
        except SSL.WantReadError:
            return


class FloodThread(threading.Thread):
    """Runs waves until told to stop, so the flood overlaps the nodes' whole test."""

    def __init__(self, port: int, waves: int, per_wave: int) -> None:
        super().__init__(daemon=True)
        self.flood = HalfOpenFlood(port)
        self._waves = waves
        self._per_wave = per_wave
        self._halt = threading.Event()
        self.waves_done = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for wave in range(self._waves):
                if self._halt.is_set():
                    return
                self.flood.wave(wave * self._per_wave, self._per_wave)
                self.waves_done += 1
                self._halt.wait(0.3)  # pacing between waves, not a synchronisation
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        self._halt.set()
        self.join(30)
        self.flood.close()


@pytest.fixture
def gateway(site: Site, sink: RecordingSink) -> Iterator[ServerThread]:
    """A DTLS server whose peer table a flood of 1,000 could fill many times over."""
    with ServerThread(site.config(max_peers=128), sink) as running:
        yield running


def test_half_open_flood_does_not_lock_out_nodes(tmp_path: Path, site: Site,
                                                 sink: RecordingSink,
                                                 gateway: ServerThread) -> None:
    stats = gateway.server.stats
    extra = site.ca.issue("node-02", site.device.role)
    first = write_node_config(tmp_path / "n1", site.device, gateway.port, period_ms=200)
    second = write_node_config(tmp_path / "n2", extra, gateway.port, period_ms=200)
    flood = FloodThread(gateway.port, waves=5, per_wave=200)
    with NodeProcess(first) as node:
        node.wait_for("ack", seq=2, timeout=30)
        flood.start()
        try:
            wait_until(lambda: flood.waves_done >= 1 or flood.error is not None, "the first wave",
                       timeout=60)
            with NodeProcess(second) as newcomer:  # a node that boots while the flood runs
                newcomer.wait_for("ack", seq=3, timeout=60)
                node.stop()
                with NodeProcess(first) as rebooted:  # the same node rebooting mid-flood
                    rebooted.wait_for("ack", seq=3, timeout=60)
                    wait_until(lambda: flood.waves_done >= 3, "more waves", timeout=90)
                    rebooted.wait_for("ack", where=lambda e: e["seq"] >= 6, timeout=60)
                    acked = {("node-01", e["boot"], e["seq"]) for e in
                             node.of("ack") + rebooted.of("ack")}
                acked |= {("node-02", e["boot"], e["seq"]) for e in newcomer.of("ack")}
        finally:
            flood.stop()
    assert flood.error is None, flood.error
    assert flood.flood.sent >= 600, "the flood did not run"
    received = {(i.device, i.report.boot, i.report.seq) for i in sink.items}
    assert acked <= received, f"acknowledged but lost: {sorted(acked - received)[:5]}"
    refused = sum(stats[c] for c in ("handshake_budget_full", "handshake_source_limit",
                                     "handshake_rate_limited", "handshake_evicted"))
    assert refused > 0, "the flood was never held back"
    assert stats["peer_table_full"] == 0
