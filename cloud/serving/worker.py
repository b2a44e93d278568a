"""gunicorn's threaded worker, with TLS handshakes and request heads read in its event loop.

Stock gthread (gunicorn 27) hands every accepted connection to a thread that
waits up to 5 s for a first byte and then runs a blocking TLS handshake with
no deadline: a few silent clients hold every thread, and requests queue behind
them for as long as those clients like. Here the event loop drives the
handshake and reads the request head without blocking, and a thread gets a
connection only once its whole head has arrived. Each stage has a deadline:

- handshake: from accept until the TLS handshake is done;
- header: from then (or from a kept-alive connection's next byte) until the
  head is complete, however slowly it trickles in;
- body: the longest wait for the next piece of a body, or to send the answer
  (a socket timeout in the thread; the app turns it into 408).

Connections per process are bounded by `worker_connections`: past that the
worker stops accepting and new clients wait in the kernel's backlog.
"""

from __future__ import annotations

import enum
import errno
import logging
import selectors
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar

from gunicorn import http, sock
from gunicorn.workers.gthread import TConn, ThreadWorker

log = logging.getLogger(__name__)

# A head larger than this goes to gunicorn's parser as it is, which refuses it with a 400
# (its own limits: a 4094-byte request line, 100 fields of at most 8190 bytes).
MAX_HEAD_BYTES = 64 * 1024
_HEAD_END = b"\r\n\r\n"
_WARN_EVERY_S = 60.0


@dataclass(frozen=True)
class Deadlines:
    """How long a client may take for each stage of a request, in seconds."""

    handshake_s: float = 5.0
    header_s: float = 10.0
    body_s: float = 30.0


class _Next(enum.Enum):
    """What a connection in the event loop waits for after a step."""

    READ = selectors.EVENT_READ
    WRITE = selectors.EVENT_WRITE
    DONE = 0  # head complete: hand to a thread
    CLOSE = -1  # failed handshake, or the client went away


@dataclass(eq=False)
class _Arrival:
    """A connection still in the event loop: handshaking or reading its head."""

    conn: TConn
    deadline: float
    step: Callable[[_Arrival], _Next]
    head: bytearray = field(default_factory=bytearray)
    registered: bool = False


class _Connection(TConn):  # type: ignore[misc]  # gunicorn has no type hints
    """A connection whose parser is made in the event loop; init() only arms the body timeout."""

    body_timeout_s: float = 30.0

    def init(self) -> None:
        # gthread's handle() calls this after setblocking(True), before reading the body
        self.sock.settimeout(self.body_timeout_s)


class GuardedThreadWorker(ThreadWorker):  # type: ignore[misc]
    """gthread whose threads only ever see connections with a complete request head."""

    deadlines: ClassVar[Deadlines] = Deadlines()
    # called with the stage ("handshake", "header") of each connection closed for its deadline
    on_slow_client: Callable[[str], None] = staticmethod(lambda _stage: None)

    def init_process(self) -> None:
        """Build the TLS context once (gunicorn builds one per connection), then run."""
        self._tls: ssl.SSLContext | None = sock.ssl_context(self.cfg) if self.cfg.is_ssl else None
        self._arrivals: set[_Arrival] = set()
        self._dropped = {"handshake": 0, "header": 0}
        self._warned_at = time.monotonic()
        super().init_process()

    def accept(self, listener: socket.socket) -> None:
        """Accept one connection and start its handshake (or head) in the event loop."""
        try:
            client, address = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        client.setblocking(False)
        if self._tls is not None:
            client = self._tls.wrap_socket(client, server_side=True,
                                           do_handshake_on_connect=False,
                                           suppress_ragged_eofs=self.cfg.suppress_ragged_eofs)
        conn = _Connection(self.cfg, client, address, listener.getsockname())
        conn.body_timeout_s = self.deadlines.body_s
        conn.parser = http.get_parser(self.cfg, client, address)
        conn.initialized = True
        if self._tls is None:
            self._admit(conn, self.deadlines.header_s, self._read_head)
        else:
            self._admit(conn, self.deadlines.handshake_s, self._handshake)

    def on_client_socket_readable(self, conn: TConn, client: socket.socket) -> None:
        """A kept-alive connection has a next request: read its head here, not in a thread."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._admit(conn, self.deadlines.header_s, self._read_head)

    def murder_pending(self) -> None:
        """Also close connections past their handshake or header deadline (all, when stopping)."""
        super().murder_pending()
        now = time.monotonic()
        for arrival in [a for a in self._arrivals if a.deadline <= now or not self.alive]:
            if self.alive:
                stage = "handshake" if arrival.step == self._handshake else "header"
                self._dropped[stage] += 1
                self.on_slow_client(stage)
            self._close(arrival)
        self._warn_dropped(now)

    def _admit(self, conn: TConn, timeout_s: float, step: Callable[[_Arrival], _Next]) -> None:
        arrival = _Arrival(conn, time.monotonic() + timeout_s, step)
        self._arrivals.add(arrival)
        self._progress(arrival)

    def _progress(self, arrival: _Arrival, _fileobj: object = None) -> None:
        """Run arrival's step and act on what it needs next."""
        outcome = arrival.step(arrival)
        if outcome is _Next.READ or outcome is _Next.WRITE:
            callback = partial(self._progress, arrival)
            if arrival.registered:
                self.poller.modify(arrival.conn.sock, outcome.value, callback)
            else:
                self.poller.register(arrival.conn.sock, outcome.value, callback)
                arrival.registered = True
        elif outcome is _Next.DONE:
            self._leave_loop(arrival)
            arrival.conn.parser.unreader.unread(bytes(arrival.head))
            self.enqueue_req(arrival.conn)
        else:
            self._close(arrival)

    def _handshake(self, arrival: _Arrival) -> _Next:
        try:
            arrival.conn.sock.do_handshake()
        except ssl.SSLWantReadError:
            return _Next.READ
        except ssl.SSLWantWriteError:
            return _Next.WRITE
        except OSError as exc:  # ssl.SSLError included: not TLS, or a certificate it refused
            log.debug("TLS handshake with %s failed: %s", arrival.conn.client, exc)
            return _Next.CLOSE
        arrival.step = self._read_head
        arrival.deadline = time.monotonic() + self.deadlines.header_s
        return self._read_head(arrival)  # the request may have come with the last flight

    def _read_head(self, arrival: _Arrival) -> _Next:
        while True:
            try:
                data = arrival.conn.sock.recv(16384)
            except (ssl.SSLWantReadError, BlockingIOError):
                return _Next.READ
            except ssl.SSLWantWriteError:
                return _Next.WRITE
            except OSError:
                return _Next.CLOSE
            if not data:
                return _Next.CLOSE
            searched_from = max(0, len(arrival.head) - len(_HEAD_END) + 1)
            arrival.head += data
            if arrival.head.find(_HEAD_END, searched_from) >= 0 \
                    or len(arrival.head) > MAX_HEAD_BYTES:
                return _Next.DONE

    def _leave_loop(self, arrival: _Arrival) -> None:
        self._arrivals.discard(arrival)
        if arrival.registered:
            self.poller.unregister(arrival.conn.sock)
            arrival.registered = False

    def _close(self, arrival: _Arrival) -> None:
        self._leave_loop(arrival)
        self.nr_conns -= 1
        arrival.conn.close()

    def _warn_dropped(self, now: float) -> None:
        """One WARNING a minute at most, so a flood of slow clients cannot flood the log."""
        if now - self._warned_at < _WARN_EVERY_S or not any(self._dropped.values()):
            return
        log.warning("closed %d connections that did not finish the TLS handshake within %g s "
                    "and %d that did not send a request head within %g s (last %d s)",
                    self._dropped["handshake"], self.deadlines.handshake_s,
                    self._dropped["header"], self.deadlines.header_s, now - self._warned_at)
        self._dropped = dict.fromkeys(self._dropped, 0)
        self._warned_at = now


def with_deadlines(deadlines: Deadlines) -> type[GuardedThreadWorker]:
    """The worker class with deadlines (gunicorn takes a class, not an instance)."""
    attributes: dict[str, Any] = {"deadlines": deadlines}
    return type("GuardedThreadWorker", (GuardedThreadWorker,), attributes)
