"""Test-only peers and harness for the device-access tests (no tests of its own).

A helpers module (not a test module): the access tests, tests/gateway/conftest.py
and other test modules import it as tests.gateway.access_peers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import re
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from aiocoap import CON, POST
from aiocoap.message import Message
from OpenSSL import SSL

from tandem.gateway.access import AccessConfig, CoapDtlsServer
from tandem.gateway.access.records import pack_datagrams
from tandem.gateway.reports import DeviceReport
from tandem.tools.pki import Identity, Role, SiteCA
from tandem.wire.report import CONTENT_FORMAT_CBOR, Report, encode_report

T = TypeVar("T")
COAP_CLIENT = "coap-client-openssl"
_MIDS = itertools.count(secrets.randbelow(30000))



@dataclass(frozen=True)
class Site:
    """A site PKI for tests: gateway and device identities, plus an outsider CA's device."""

    ca: SiteCA
    gateway: Identity
    device: Identity
    other_gateway: Identity
    stranger: Identity

    def config(self, **overrides: Any) -> AccessConfig:
        """A DTLS access config on a free loopback port with this site's gateway identity."""
        base = AccessConfig(host="127.0.0.1", port=0, cert_pem=self.gateway.cert_pem,
                            key_pem=self.gateway.key_pem, ca_pem=self.ca.cert_pem_path)
        return replace(base, **overrides)


def make_site(tmp: Path) -> Site:
    """Issue a site CA with a gateway, a device, a second gateway and a foreign CA's device."""
    ca = SiteCA.create(tmp / "pki", "acme")
    outsider = SiteCA.create(tmp / "other-pki", "evil")
    return Site(ca=ca, gateway=ca.issue("gw-01", Role.GATEWAY, ("127.0.0.1",)),
                device=ca.issue("node-01", Role.DEVICE),
                other_gateway=ca.issue("gw-02", Role.GATEWAY),
                stranger=outsider.issue("node-01", Role.DEVICE))


class RecordingSink:
    """A ReportSink that records what it takes; set `accepting` False to act full."""

    def __init__(self) -> None:
        self.items: list[DeviceReport] = []
        self.accepting = True
        self._lock = threading.Lock()

    async def submit(self, item: DeviceReport) -> bool:
        with self._lock:
            if not self.accepting:
                return False
            self.items.append(item)
            return True


class ServerThread:
    """Runs a CoapDtlsServer on its own event loop thread; stops it on exit, even on failure."""

    def __init__(self, config: AccessConfig, sink: RecordingSink) -> None:
        self.server = CoapDtlsServer(config, sink)
        self.leftover_tasks: set[asyncio.Task[Any]] | None = None
        self._loop = asyncio.new_event_loop()
        self._started: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, name="access-server", daemon=True)

    def __enter__(self) -> ServerThread:
        self._thread.start()
        self._started.result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=15)
        assert not self._thread.is_alive(), "server thread did not stop"

    @property
    def port(self) -> int:
        return self.server.port

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run a coroutine on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=timeout)

    def call(self, fn: Callable[[], T]) -> T:
        """Call fn on the server's loop thread (to read its state safely)."""
        async def wrapped() -> T:
            return fn()
        return self.run(wrapped())

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self.server.start())
        except BaseException as exc:
            self._started.set_exception(exc)
            self._loop.close()
            return
        self._started.set_result(None)
        try:
            self._loop.run_forever()
        finally:
            self._loop.run_until_complete(self.server.stop())
            self.leftover_tasks = asyncio.all_tasks(self._loop)
            for task in self.leftover_tasks:
                task.cancel()
            self._loop.run_until_complete(asyncio.sleep(0))
            self._loop.close()


class DtlsClient:
    """A test-only DTLS 1.2 client on a connected UDP socket (pyOpenSSL over memory BIOs)."""

    def __init__(self, port: int, identity: Identity | None, ca_pem: Path | None,
                 host: str = "127.0.0.1", sock: socket.socket | None = None) -> None:
        ctx = SSL.Context(SSL.DTLS_CLIENT_METHOD)
        if identity is not None:
            ctx.use_certificate_file(str(identity.cert_pem))
            ctx.use_privatekey_file(str(identity.key_pem))
        if ca_pem is not None:
            ctx.load_verify_locations(str(ca_pem))
            ctx.set_verify(SSL.VERIFY_PEER, lambda conn, cert, err, depth, ok: bool(ok))
        ctx.set_options(SSL.OP_NO_QUERY_MTU)
        if sock is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.connect((host, port))
        self.sock = sock
        self.conn = SSL.Connection(ctx, None)
        self.conn.set_connect_state()
        self.conn.set_ciphertext_mtu(1200)
        self.sent: list[bytes] = []
        self.received: list[bytes] = []

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> DtlsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def handshake(self, timeout: float = 10.0) -> None:
        """Complete the handshake, retransmitting as OpenSSL asks; SSL.Error if refused."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.conn.do_handshake()
            except SSL.WantReadError:
                self._flush()
            else:
                self._flush()
                return
            if time.monotonic() > deadline:
                raise TimeoutError("handshake did not complete")
            wait = self.conn.DTLSv1_get_timeout() or 0.5
            data = self._recv_raw(min(wait, max(0.001, deadline - time.monotonic())))
            if data is None:
                self.conn.DTLSv1_handle_timeout()
            else:
                self.conn.bio_write(data)

    def send(self, plaintext: bytes) -> None:
        """Encrypt and send one datagram."""
        self.conn.send(plaintext)
        self._flush()

    def send_raw(self, datagram: bytes) -> None:
        """Send bytes as they are (to replay or inject)."""
        self.sock.send(datagram)

    def recv(self, timeout: float = 5.0) -> bytes | None:
        """The next decrypted datagram, or None on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.conn.recv(65535)
            except SSL.WantReadError:
                pass
            data = self._recv_raw(max(0.0, deadline - time.monotonic()))
            if data is None:
                return None
            self.conn.bio_write(data)

    def request(self, message: Message, timeout: float = 5.0) -> Message:
        """Send a CoAP message and return the reply with its message ID."""
        self.send(message.encode())
        return self.reply_to(message, timeout)

    def reply_to(self, message: Message, timeout: float = 5.0) -> Message:
        """Wait for the reply matching a sent message's ID."""
        deadline = time.monotonic() + timeout
        while True:
            data = self.recv(max(0.0, deadline - time.monotonic()))
            if data is None:
                raise TimeoutError(f"no reply to mid {message.mid}")
            reply = Message.decode(data)
            if reply.mid == message.mid:
                return reply

    def _flush(self) -> None:
        pending = b""
        while True:
            try:
                pending += self.conn.bio_read(65535)
            except SSL.WantReadError:
                break
        for datagram in pack_datagrams(pending, 1200):
            self.sent.append(datagram)
            self.sock.send(datagram)

    def _recv_raw(self, timeout: float) -> bytes | None:
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(65535)
        except TimeoutError:
            return None
        self.received.append(data)
        return data


def report_post(payload: bytes, mid: int | None = None, **options: Any) -> Message:
    """A CON POST /r as a node sends it."""
    message = Message(code=POST, uri_path=("r",), payload=payload, **options)
    message.mtype = CON
    message.mid = next(_MIDS) % 65536 if mid is None else mid
    message.token = secrets.token_bytes(4)
    if "content_format" not in options:
        message.opt.content_format = CONTENT_FORMAT_CBOR
    return message


def sample_report(seq: int = 1, **values: float) -> bytes:
    """The CBOR bytes of a report with the given channel values."""
    return encode_report(Report(seq=seq, boot=0xB007, t_ms=1_700_000_000_000,
                                values=values or {"temp": 21.5}))


@dataclass(frozen=True)
class CoapClientResult:
    """What libcoap's client printed: the response code (e.g. "2.04") and its output."""

    code: str | None
    returncode: int
    output: str


def libcoap_post(port: int, payload_file: Path, identity: Identity | None, ca_pem: Path,
                 timeout: float = 30.0) -> CoapClientResult:
    """POST a file to /r with libcoap's OpenSSL client (an independent DTLS implementation)."""
    args = [COAP_CLIENT, "-v", "6", "-B", "5", "-m", "post", "-t", str(CONTENT_FORMAT_CBOR),
            "-f", str(payload_file), "-C", str(ca_pem)]
    if identity is not None:
        args += ["-c", str(identity.cert_pem), "-j", str(identity.key_pem)]
    proc = subprocess.run([*args, f"coaps://127.0.0.1:{port}/r"], capture_output=True,
                          text=True, timeout=timeout, check=False)
    output = proc.stdout + proc.stderr
    match = re.search(r"t:ACK c:(\d\.\d\d)", output)
    return CoapClientResult(match.group(1) if match else None, proc.returncode, output)
