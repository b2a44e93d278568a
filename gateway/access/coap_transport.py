"""An aiocoap message transport over sessions: CoAP messages in and out of DTLS (or plain UDP)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiocoap import error, interfaces
from aiocoap.message import Message
from aiocoap.numbers.constants import TransportTuning
from aiocoap.util import hostportjoin

from tandem.gateway.access.session import Endpoint, Session, SessionHandler
from tandem.gateway.access.stats import AccessStats

OpenEndpoint = Callable[[SessionHandler], Awaitable[Endpoint]]


class SiteTuning(TransportTuning):  # type: ignore[misc]
    """CoAP timing for a site network: a datagram takes seconds at most, not RFC 7252's 100 s.

    MAX_LATENCY sets how long aiocoap's de-duplication remembers every CON and its
    response (EXCHANGE_LIFETIME): 247 s by default, 55 s here. At 1,200 reports/s the
    default held ~300k messages, ~500 MB (tools/bench/coap.py --soak). The nodes still
    retransmit within MAX_TRANSMIT_SPAN (45 s); a later repeat is caught by (boot, seq).
    """

    MAX_LATENCY = 4.0


SITE_TUNING = SiteTuning()


class SessionRemote(interfaces.EndpointAddress):  # type: ignore[misc]
    """A CoAP peer as seen through one session; equal only to itself within that session.

    A new DTLS session (a new epoch 0) gives a new remote, so aiocoap's message-ID
    deduplication and blockwise state never span sessions (RFC 7252 section 9.1.2).
    """

    __slots__ = ("_local", "interface", "session")

    is_multicast = False
    is_multicast_locally = False

    def __init__(self, session: Session, interface: SessionMessageInterface, local: str) -> None:
        self.session = session
        self.interface = interface
        self._local = local

    def __repr__(self) -> str:
        return f"<SessionRemote #{self.session.serial} {self.hostinfo} {self.device}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SessionRemote) and self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    @property
    def _key(self) -> tuple[Any, ...]:
        return (self.session.address, self.session.serial)

    @property
    def device(self) -> str | None:
        """The device identity the session proved (its certificate's CN)."""
        return self.session.device

    @property
    def scheme(self) -> str:
        return self.session.scheme

    @property
    def hostinfo(self) -> str:
        host, port = self.session.address[:2]
        return str(hostportjoin(host, port))

    @property
    def hostinfo_local(self) -> str:
        return self._local

    @property
    def uri_base(self) -> str:
        return f"{self.scheme}://{self.hostinfo}"

    @property
    def uri_base_local(self) -> str:
        return f"{self.scheme}://{self.hostinfo_local}"

    @property
    def blockwise_key(self) -> tuple[Any, ...]:
        return self._key

    @property
    def authenticated_claims(self) -> tuple[str, ...]:
        return (self.device,) if self.device else ()


class SessionMessageInterface(interfaces.MessageInterface):  # type: ignore[misc]
    """Decodes CoAP from session plaintext for aiocoap, and encodes its replies back.

    It serves only: sessions are opened by peers, so it never resolves a remote.
    """

    def __init__(self, mman: interfaces.MessageManager, stats: AccessStats) -> None:
        self._mman: interfaces.MessageManager | None = mman
        self._stats = stats
        self._remotes: dict[Session, SessionRemote] = {}
        self._endpoint: Endpoint | None = None
        self._local = ""

    @classmethod
    async def create(cls, mman: interfaces.MessageManager, open_endpoint: OpenEndpoint,
                     stats: AccessStats) -> SessionMessageInterface:
        """Open the endpoint with this interface as its session handler."""
        self = cls(mman, stats)
        self._endpoint = await open_endpoint(self)
        host, port = self._endpoint.local_address[:2]
        self._local = str(hostportjoin(host, port))
        return self

    @property
    def endpoint(self) -> Endpoint:
        """The endpoint this interface reads from."""
        assert self._endpoint is not None
        return self._endpoint

    # SessionHandler

    def session_data(self, session: Session, data: bytes) -> None:
        if self._mman is None:
            return
        try:
            message = Message.decode(data, remote=self._remote(session))
        except (error.UnparsableMessage, ValueError) as exc:
            # aiocoap 0.4.17 raises UnicodeDecodeError (a ValueError) for a string
            # option that is not UTF-8 (found by tools/fuzz/ingress.py)
            self._stats.count("decode_error", f"{session.address}: {exc!r}")
            return
        message.transport_tuning = SITE_TUNING
        self._mman.dispatch_message(message)

    def session_closed(self, session: Session) -> None:
        remote = self._remotes.pop(session, None)
        if remote is not None and self._mman is not None:
            self._mman.dispatch_error(error.LibraryShutdown("session closed"), remote)

    def _remote(self, session: Session) -> SessionRemote:
        remote = self._remotes.get(session)
        if remote is None:
            remote = self._remotes[session] = SessionRemote(session, self, self._local)
        return remote

    # MessageInterface

    def send(self, message: Message) -> None:
        remote = message.remote
        if not isinstance(remote, SessionRemote) or not remote.session.send(message.encode()):
            self._stats.count("reply_dropped", f"to {remote!r}")

    async def shutdown(self) -> None:
        self._mman = None
        if self._endpoint is not None:
            await self._endpoint.close()
        self._remotes.clear()

    async def determine_remote(self, message: Message) -> None:
        return None

    async def recognize_remote(self, remote: interfaces.EndpointAddress) -> bool:
        """True for remotes of this interface (aiocoap calls this when routing replies)."""
        return isinstance(remote, SessionRemote) and remote.interface is self
