"""A TCP proxy on loopback whose link can be cut, to test network failures for real.

Modes: `pass` forwards bytes both ways; `refuse` closes every connection at
once (a cut cable with a router that answers); `blackhole` accepts and then
never forwards nor answers (a silent cut: only timeouts notice).
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading


class CuttableLink:
    """Forwards 127.0.0.1:<port> to a target address until told otherwise."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.mode = "pass"
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name="netcut", daemon=True)
        self._thread.start()

    def set_mode(self, mode: str) -> None:
        """Switch to pass, refuse or blackhole; existing connections are dropped on a cut."""
        assert mode in ("pass", "refuse", "blackhole")
        self.mode = mode
        if mode != "pass":
            self._drop_all()

    def close(self) -> None:
        """Stop accepting and drop every connection."""
        self._closed.set()
        self._listener.close()
        self._drop_all()
        self._thread.join(5)

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.mode == "refuse":
                client.close()
                continue
            self._track(client)
            if self.mode == "blackhole":
                continue  # held open, never answered, dropped at the next mode change
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            self._track(upstream)
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        selector.register(a, selectors.EVENT_READ, b)
        selector.register(b, selectors.EVENT_READ, a)
        try:
            while self.mode == "pass" and not self._closed.is_set():
                for key, _ in selector.select(timeout=0.2):
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)
        except OSError:
            pass
        finally:
            selector.close()
            for sock in (a, b):
                with contextlib.suppress(OSError):
                    sock.close()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._open = [s for s in self._open if s.fileno() != -1]
            self._open.append(sock)

    def _drop_all(self) -> None:
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()
            self._open = []
