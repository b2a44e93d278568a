"""An independent DTLS 1.2 + CoAP peer for testing the node without the gateway.

pyOpenSSL (OpenSSL) on the DTLS side and aiocoap's message codec on the CoAP
side, so the node is checked against other implementations than its own. One
thread, one UDP socket, memory BIOs, one session per client address. A test
chooses the replies with `handler(request) -> list of plaintext datagrams`.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiocoap import ACK, CHANGED, Message
from cryptography.x509.oid import NameOID
from OpenSSL import SSL

_MAX_DATAGRAM = 1200
_RECORD_HEADER = 13
_HANDSHAKE = 22
_CLIENT_HELLO = 1
_NO_AUTO_CHAIN = 0x8  # SSL_MODE_NO_AUTO_CHAIN: keep the server flight small

Handler = Callable[[Message], list[bytes]]


def coap_message(mtype: Any, code: Any, mid: int, token: bytes = b"",
                 payload: bytes = b"") -> Message:
    """A message with explicit type, MID and token (aiocoap's kwargs for them are deprecated)."""
    msg = Message(code=code, payload=payload)
    msg.mtype = mtype
    msg.mid = mid
    msg.token = token
    return msg


def reply(request: Message, code: Any, payload: bytes = b"") -> bytes:
    """Piggybacked response to request with code."""
    return bytes(coap_message(ACK, code, request.mid, request.token, payload).encode())


def ack_changed(request: Message) -> list[bytes]:
    """The gateway's usual answer: piggybacked 2.04 Changed."""
    return [reply(request, CHANGED)]


def split_records(data: bytes) -> list[bytes]:
    """Group DTLS records from a memory BIO into datagrams of at most 1200 bytes."""
    datagrams: list[bytes] = []
    current = b""
    pos = 0
    while pos + _RECORD_HEADER <= len(data):
        end = pos + _RECORD_HEADER + int.from_bytes(data[pos + 11:pos + 13], "big")
        record = data[pos:end]
        if current and len(current) + len(record) > _MAX_DATAGRAM:
            datagrams.append(current)
            current = b""
        current += record
        pos = end
    if current:
        datagrams.append(current)
    return datagrams


def _is_client_hello(data: bytes) -> bool:
    return len(data) > _RECORD_HEADER and data[0] == _HANDSHAKE and data[3:5] == b"\0\0" \
        and data[_RECORD_HEADER] == _CLIENT_HELLO


class DtlsCoapPeer:
    """A DTLS server thread on 127.0.0.1 that answers CoAP requests via handler."""

    def __init__(self, cert_pem: Path, key_pem: Path, ca_pem: Path,
                 handler: Handler = ack_changed, port: int = 0) -> None:
        self.handler = handler
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.sock.settimeout(0.05)
        self.port: int = self.sock.getsockname()[1]
        self._ctx = SSL.Context(SSL.DTLS_SERVER_METHOD)
        self._ctx.set_mode(_NO_AUTO_CHAIN)
        self._ctx.use_certificate_file(str(cert_pem))
        self._ctx.use_privatekey_file(str(key_pem))
        self._ctx.load_verify_locations(str(ca_pem))
        self._ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT,
                             lambda _c, _x, _e, _d, ok: bool(ok))
        self._sessions: dict[tuple[str, int], SSL.Connection] = {}
        self._established: set[tuple[str, int]] = set()
        self.requests: list[Message] = []
        self.others: list[Message] = []
        self.handshakes = 0
        self.handshake_failures: list[str] = []
        self.peer_names: list[str] = []
        self.paused = False  # drop every datagram, as if the gateway were unreachable
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> DtlsCoapPeer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop the thread and close the socket (no close_notify, like a crash)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self.sock.close()

    def wait(self, predicate: Callable[[DtlsCoapPeer], bool], timeout: float = 15.0) -> None:
        """Block until predicate(self) holds; AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"peer: condition not met in {timeout}s "
                                         f"({len(self.requests)} requests, "
                                         f"failures {self.handshake_failures})")
                self._cond.wait(min(left, 0.2))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            if self.paused:
                continue
            with self._cond:
                self._datagram(data, addr)
                self._cond.notify_all()

    def _datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        if addr not in self._sessions or (_is_client_hello(data) and addr in self._established):
            conn = SSL.Connection(self._ctx, None)
            conn.set_accept_state()
            conn.set_ciphertext_mtu(_MAX_DATAGRAM)
            self._sessions[addr] = conn
            self._established.discard(addr)
        conn = self._sessions[addr]
        conn.bio_write(data)
        try:
            if addr not in self._established:
                conn.do_handshake()
                self._established.add(addr)
                self.handshakes += 1
                cert = conn.get_peer_certificate()
                names = [] if cert is None else cert.to_cryptography().subject \
                    .get_attributes_for_oid(NameOID.COMMON_NAME)
                self.peer_names.append(str(names[0].value) if names else "")
            self._read_requests(conn)
        except SSL.WantReadError:
            pass
        except SSL.Error as e:
            self.handshake_failures.append(str(e))
            self._flush(conn, addr)  # the alert
            del self._sessions[addr]
            self._established.discard(addr)
            return
        self._flush(conn, addr)

    def _read_requests(self, conn: SSL.Connection) -> None:
        while True:
            plain = conn.recv(4096)  # WantReadError ends the loop
            try:
                request = Message.decode(plain)
            except Exception:
                continue
            if not request.code.is_request():
                self.others.append(request)  # e.g. the node's empty ACKs
                continue
            self.requests.append(request)
            for reply in self.handler(request):
                conn.send(reply)

    def _flush(self, conn: SSL.Connection, addr: tuple[str, int]) -> None:
        out = b""
        while True:
            try:
                out += conn.bio_read(65536)
            except SSL.WantReadError:
                break
        for datagram in split_records(out):
            self.sock.sendto(datagram, addr)
