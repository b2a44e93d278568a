"""A DTLS half-open flood: cookie-verified ClientHellos from many loopback sources, never
finished. Shared by the gateway's admission tests and the soak."""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading

from OpenSSL import SSL


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
