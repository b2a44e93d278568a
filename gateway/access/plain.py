"""Plain CoAP over UDP, for development only: no encryption and no proven identity."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import cast

from tandem.gateway.access.session import Address, SessionHandler
from tandem.gateway.access.stats import AccessStats

_log = logging.getLogger("tandem.gateway.access")


@dataclass(eq=False, slots=True)
class PlainSession:
    """A peer address; its `device` is the address itself, since nothing is proven."""

    address: Address
    serial: int
    transport: asyncio.DatagramTransport = field(repr=False)
    scheme = "coap"

    @property
    def device(self) -> str:
        host, port = self.address[:2]
        return f"insecure:{host}:{port}"

    @property
    def is_open(self) -> bool:
        return not self.transport.is_closing()

    def send(self, data: bytes) -> bool:
        """Send a datagram unless the socket is closing."""
        if not self.is_open:
            return False
        self.transport.sendto(data, self.address)
        return True


class PlainEndpoint(asyncio.DatagramProtocol):
    """Serves plain UDP; remembers at most max_peers addresses, forgetting the least recent."""

    def __init__(self, handler: SessionHandler, stats: AccessStats, max_peers: int) -> None:
        self._handler = handler
        self._stats = stats
        self._max_peers = max_peers
        self._sessions: OrderedDict[Address, PlainSession] = OrderedDict()
        self._serials = itertools.count(1)
        self._transport: asyncio.DatagramTransport | None = None
        self._lost: asyncio.Future[None] | None = None

    @classmethod
    async def open(cls, host: str, port: int, handler: SessionHandler, stats: AccessStats,
                   max_peers: int) -> PlainEndpoint:
        """Bind host:port (0 picks a free port)."""
        self = cls(handler, stats, max_peers)
        await asyncio.get_running_loop().create_datagram_endpoint(lambda: self,
                                                                  local_addr=(host, port))
        _log.warning("serving INSECURE plain CoAP on %s: development only", self.local_address)
        return self

    @property
    def local_address(self) -> Address:
        """The bound socket address."""
        assert self._transport is not None
        address: Address = self._transport.get_extra_info("sockname")
        return address

    async def close(self) -> None:
        """Forget all peers and close the socket."""
        while self._sessions:
            _, session = self._sessions.popitem()
            self._handler.session_closed(session)
        if self._transport is not None and self._lost is not None:
            self._transport.close()
            await self._lost

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # the selector loop's datagram transport does not subclass DatagramTransport
        self._transport = cast(asyncio.DatagramTransport, transport)
        self._lost = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        try:
            self._handler.session_data(self._session(addr), data)
        except Exception as exc:  # noqa: BLE001 - one peer's bad datagram must not stop the socket
            self._stats.count("internal_error", f"{addr}: {exc!r}", logging.ERROR)

    def error_received(self, exc: Exception) -> None:
        self._stats.count("socket_error", str(exc))

    def _session(self, addr: Address) -> PlainSession:
        session = self._sessions.get(addr)
        if session is not None:
            self._sessions.move_to_end(addr)
            return session
        if len(self._sessions) >= self._max_peers:
            _, oldest = self._sessions.popitem(last=False)
            self._handler.session_closed(oldest)
        assert self._transport is not None
        session = self._sessions[addr] = PlainSession(addr, next(self._serials), self._transport)
        return session
