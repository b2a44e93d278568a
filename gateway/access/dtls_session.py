"""One peer's DTLS connection over memory BIOs, driven by its datagrams and a timer."""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable

from OpenSSL import SSL

from tandem.gateway.access.records import pack_datagrams
from tandem.gateway.access.session import Address, SessionHandler
from tandem.gateway.access.stats import AccessStats

_READ_SIZE = 16384
_NO_CERT = "peer did not return a certificate"


class SessionState(enum.Enum):
    """Where a session is in its life."""

    HANDSHAKING = "handshaking"
    OPEN = "open"
    CLOSED = "closed"


class DtlsSession:
    """A DTLS server connection to one peer address; `device` is set once the handshake is done."""

    scheme = "coaps"

    def __init__(self, conn: SSL.Connection, address: Address, serial: int,
                 client_random: bytes | None, transmit: Callable[[bytes, Address], None],
                 handler: SessionHandler, ended: Callable[[DtlsSession, bool], None],
                 stats: AccessStats, max_datagram: int,
                 opened: Callable[[DtlsSession], None] | None = None) -> None:
        self.address = address
        self.serial = serial
        self.client_random = client_random
        self.device: str | None = None
        self.rejection: tuple[str, str] | None = None
        self.state = SessionState.HANDSHAKING
        self.started = self.last_active = time.monotonic()
        self._conn: SSL.Connection | None = conn
        self._transmit = transmit
        self._handler = handler
        self._ended = ended
        self._opened = opened
        self._stats = stats
        self._max_datagram = max_datagram
        self._timer: asyncio.TimerHandle | None = None
        conn.set_app_data(self)
        conn.set_ciphertext_mtu(max_datagram)

    def __repr__(self) -> str:
        return f"<DtlsSession #{self.serial} {self.address} {self.state.value} {self.device}>"

    @property
    def is_open(self) -> bool:
        """True while application data can flow."""
        return self.state is SessionState.OPEN

    def start(self) -> None:
        """Continue the handshake from the ClientHello whose cookie was accepted."""
        self._handshake()

    def receive(self, datagram: bytes) -> None:
        """Feed one datagram from the peer."""
        if self.state is SessionState.CLOSED:
            return
        self._ssl.bio_write(datagram)
        if self.state is SessionState.HANDSHAKING:
            self._handshake()
        else:
            self._read_application_data()

    def send(self, data: bytes) -> bool:
        """Encrypt and send one datagram's worth of plaintext; False if the session cannot."""
        if not self.is_open:
            return False
        try:
            self._ssl.send(data)
        except SSL.Error as exc:
            self._stats.count("send_error", f"{self.address}: {exc}")
            return False
        self.last_active = time.monotonic()
        self._flush()
        return True

    def close(self, cause: str, detail: str = "", level: int = logging.DEBUG) -> None:
        """Forget the session without telling the peer (devices never send close_notify either)."""
        if self.state is SessionState.CLOSED:
            return
        was_open = self.is_open
        self.state = SessionState.CLOSED
        self._cancel_timer()
        # aiocoap keeps remotes for its dedup window (~247 s); let the SSL state go now.
        self._conn = None
        self._stats.count(cause, detail or f"{self.address} {self.device or ''}", level)
        self._ended(self, was_open)

    def _handshake(self) -> None:
        try:
            self._ssl.do_handshake()
        except SSL.WantReadError:
            self._flush()
            self._arm_timer()
            return
        except SSL.Error as exc:
            self._flush()  # carries the alert that tells the peer why
            self._fail(exc)
            return
        self._flush()
        self._cancel_timer()
        self.state = SessionState.OPEN
        self.last_active = time.monotonic()
        self._stats.count("handshake_ok", f"{self.device} at {self.address}", logging.DEBUG)
        if self._opened is not None:
            self._opened(self)
        self._read_application_data()

    def _fail(self, exc: SSL.Error) -> None:
        cause, detail = self.rejection or _classify(exc)
        self.close(cause, f"{self.address}: {detail}", logging.INFO)

    def _read_application_data(self) -> None:
        while self.is_open:
            try:
                data = self._ssl.recv(_READ_SIZE)
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:
                self.close("peer_closed")
            except SSL.Error as exc:
                self.close("session_error", f"{self.address}: {exc}", logging.INFO)
            else:
                self.last_active = time.monotonic()
                self._handler.session_data(self, data)
        self._flush()

    @property
    def _ssl(self) -> SSL.Connection:
        assert self._conn is not None, "session used after close"
        return self._conn

    def _flush(self) -> None:
        if self._conn is None:
            return
        pending = b""
        while True:
            try:
                pending += self._conn.bio_read(_READ_SIZE)
            except SSL.WantReadError:
                break
        for datagram in pack_datagrams(pending, self._max_datagram):
            self._transmit(datagram, self.address)

    def _arm_timer(self) -> None:
        self._cancel_timer()
        delay = self._ssl.DTLSv1_get_timeout()
        if delay is not None:
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self.state is not SessionState.HANDSHAKING:
            return
        try:
            self._ssl.DTLSv1_handle_timeout()
        except SSL.Error as exc:
            self._fail(exc)
            return
        self._flush()
        self._arm_timer()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _classify(exc: SSL.Error) -> tuple[str, str]:
    """Name the counter for a handshake failure that no verify callback explained."""
    text = str(exc)
    if _NO_CERT in text:
        return "no_client_cert", text
    return "handshake_failed", text
