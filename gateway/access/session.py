"""The interface between a datagram endpoint (DTLS or plain UDP) and the CoAP layer above it."""

from __future__ import annotations

from typing import Any, Protocol

Address = tuple[Any, ...]


class Session(Protocol):
    """One peer's channel: an address, a serial unique per endpoint, and who the peer is."""

    @property
    def address(self) -> Address: ...

    @property
    def serial(self) -> int: ...

    @property
    def device(self) -> str | None: ...

    @property
    def scheme(self) -> str: ...

    @property
    def is_open(self) -> bool: ...

    def send(self, data: bytes) -> bool:
        """Send one datagram of plaintext; False when the session can no longer carry it."""
        ...


class SessionHandler(Protocol):
    """The layer above an endpoint: receives the plaintext of authenticated sessions."""

    def session_data(self, session: Session, data: bytes) -> None:
        """One plaintext datagram from an open session."""

    def session_closed(self, session: Session) -> None:
        """The session will carry no more data (only called for sessions that were open)."""


class Endpoint(Protocol):
    """A bound socket serving sessions."""

    @property
    def local_address(self) -> Address: ...

    async def close(self) -> None:
        """Drop every session and close the socket."""
