"""A DTLS 1.2 server endpoint on an asyncio UDP socket: cookies, a bounded peer table, expiry."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import time
from dataclasses import dataclass, field
from typing import cast

from OpenSSL import SSL

from tandem.gateway.access.admission import AdmissionLimits, HandshakeAdmission
from tandem.gateway.access.dtls_session import DtlsSession, SessionState
from tandem.gateway.access.records import client_hello_random, is_client_hello, looks_like_dtls
from tandem.gateway.access.session import Address, SessionHandler
from tandem.gateway.access.stats import AccessStats


@dataclass(frozen=True, slots=True)
class PeerLimits:
    """Bounds on the state one endpoint keeps for its peers."""

    max_peers: int = 1024
    idle_timeout_s: float = 120.0
    # A node's handshake takes well under a second (seconds on a slow board); a half-open
    # one that lingers longer only holds a slot.
    handshake_timeout_s: float = 10.0
    max_datagram: int = 1200
    admission: AdmissionLimits = field(default_factory=AdmissionLimits)

    @property
    def sweep_interval_s(self) -> float:
        """How often to look for expired peers: a fraction of the shortest timeout."""
        return min(5.0, max(0.02, min(self.idle_timeout_s, self.handshake_timeout_s) / 4))


RECEIVE_BUFFER = 4 << 20  # bytes; the kernel caps it at net.core.rmem_max


def widen_receive_buffer(transport: asyncio.BaseTransport) -> None:
    """Ask for a large receive buffer: a busy loop must not drop hundreds of peers' datagrams.

    At the default (~200 KB) 500 peers overflowed it (netstat "receive errors"), and each
    lost request cost its node a 2 s CoAP retransmission.
    """
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)


@dataclass(slots=True)
class _Listening:
    """Stands in for a session while a ClientHello waits for its cookie check."""

    address: Address
    device: str | None = None
    rejection: tuple[str, str] | None = None


class DtlsEndpoint(asyncio.DatagramProtocol):
    """Serves DTLS on one UDP socket and hands decrypted datagrams to a SessionHandler."""

    def __init__(self, context: SSL.Context, handler: SessionHandler, stats: AccessStats,
                 limits: PeerLimits) -> None:
        self._context = context
        self._handler = handler
        self._stats = stats
        self._limits = limits
        self._sessions: dict[Address, DtlsSession] = {}
        self._admission = HandshakeAdmission(limits.admission)
        self._serials = itertools.count(1)
        self._transport: asyncio.DatagramTransport | None = None
        self._lost: asyncio.Future[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, host: str, port: int, context: SSL.Context, handler: SessionHandler,
                   stats: AccessStats, limits: PeerLimits) -> DtlsEndpoint:
        """Bind host:port (0 picks a free port) and start expiring idle peers."""
        loop = asyncio.get_running_loop()
        self = cls(context, handler, stats, limits)
        await loop.create_datagram_endpoint(lambda: self, local_addr=(host, port))
        self._sweeper = loop.create_task(self._sweep(), name=f"dtls expiry {self.local_address}")
        return self

    @property
    def local_address(self) -> Address:
        """The bound socket address."""
        assert self._transport is not None
        address: Address = self._transport.get_extra_info("sockname")
        return address

    @property
    def sessions(self) -> list[DtlsSession]:
        """The current sessions, handshaking and open."""
        return list(self._sessions.values())

    async def close(self) -> None:
        """Drop every session, stop the expiry task and close the socket."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        for session in self.sessions:
            session.close("shutdown")
        if self._transport is not None and self._lost is not None:
            self._transport.close()
            await self._lost

    # asyncio.DatagramProtocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # the selector loop's datagram transport does not subclass DatagramTransport
        self._transport = cast(asyncio.DatagramTransport, transport)
        widen_receive_buffer(transport)
        self._lost = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        try:
            self._route(data, addr)
        except Exception as exc:  # noqa: BLE001 - one peer's bad datagram must not stop the socket
            self._stats.count("internal_error", f"{addr}: {exc!r}", logging.ERROR)

    def error_received(self, exc: Exception) -> None:
        self._stats.count("socket_error", str(exc))

    # routing

    def _route(self, data: bytes, addr: Address) -> None:
        session = self._sessions.get(addr)
        if is_client_hello(data):
            self._hello(data, addr, session)
        elif session is not None:
            session.receive(data)
        else:
            self._stats.count("unknown_peer" if looks_like_dtls(data) else "not_dtls", str(addr))

    def _hello(self, data: bytes, addr: Address, session: DtlsSession | None) -> None:
        """Give a ClientHello to its handshake, or check its cookie to start a new session."""
        random = client_hello_random(data)
        if session is not None and random == session.client_random:
            if session.state is SessionState.HANDSHAKING:
                session.receive(data)  # a retransmission OpenSSL answers itself
            return
        conn = SSL.Connection(self._context, None)
        conn.set_app_data(_Listening(addr))
        conn.set_accept_state()
        conn.bio_write(data)
        try:
            conn.DTLSv1_listen()
        except SSL.WantReadError:
            self._send_pending(conn, addr)  # the HelloVerifyRequest, no state kept
            return
        except SSL.Error as exc:
            self._stats.count("bad_client_hello", f"{addr}: {exc}")
            return
        self._admit(conn, addr, random, session)

    def _admit(self, conn: SSL.Connection, addr: Address, random: bytes | None,
               current: DtlsSession | None) -> None:
        if current is not None:
            current.close("session_replaced", level=logging.INFO)
        elif not self._make_room(addr):
            return
        session = DtlsSession(conn, addr, next(self._serials), random, self._send,
                              self._handler, self._ended, self._stats, self._limits.max_datagram,
                              opened=self._opened)
        self._sessions[addr] = session
        self._admission.started(addr)
        session.start()

    def _make_room(self, addr: Address) -> bool:
        """Apply the admission policy (admission.py); False when the handshake is refused."""
        verdict = self._admission.decide(addr)
        if verdict.refused is not None:
            self._stats.count(verdict.refused, f"{self._admission.half_open} half-open; "
                              f"refused {addr}", logging.WARNING)
            return False
        if verdict.evict is not None:
            self._evict(verdict.evict)
        if len(self._sessions) >= self._limits.max_peers:
            victim = self._admission.oldest_unknown()
            if victim is None:
                self._stats.count("peer_table_full",
                                  f"{len(self._sessions)} peers; refused {addr}", logging.WARNING)
                return False
            self._evict(victim)
        return True

    def _evict(self, address: Address) -> None:
        session = self._sessions.get(address)
        if session is not None:
            session.close("handshake_evicted", f"{address} made room", logging.INFO)
        else:  # cannot happen while the two tables agree; keep them agreeing if they do not
            self._admission.ended(address, authenticated=False)

    def _opened(self, session: DtlsSession) -> None:
        self._admission.ended(session.address, authenticated=True)

    def _ended(self, session: DtlsSession, was_open: bool) -> None:
        if self._sessions.get(session.address) is session:
            del self._sessions[session.address]
            if not was_open:
                self._admission.ended(session.address, authenticated=False)
        if was_open:
            self._handler.session_closed(session)

    def _send_pending(self, conn: SSL.Connection, addr: Address) -> None:
        with contextlib.suppress(SSL.WantReadError):
            self._send(conn.bio_read(self._limits.max_datagram * 4), addr)

    def _send(self, datagram: bytes, addr: Address) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(datagram, addr)

    async def _sweep(self) -> None:
        """Close handshakes that stall and sessions that went quiet."""
        while True:
            await asyncio.sleep(self._limits.sweep_interval_s)
            self._expire(time.monotonic())

    def _expire(self, now: float) -> None:
        for session in self.sessions:
            if session.state is SessionState.HANDSHAKING:
                if now - session.started > self._limits.handshake_timeout_s:
                    session.close("handshake_timeout", level=logging.INFO)
            elif now - session.last_active > self._limits.idle_timeout_s:
                session.close("idle_evicted")
