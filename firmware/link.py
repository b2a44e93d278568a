# DTLS 1.2 client link to the gateway with mutual X.509 (mbedtls via `ssl`).
# Traps handled here (see FIELD-NOTES): the UDP socket is connect()ed and
# made non-blocking before wrap_socket, or a lost handshake datagram hangs the
# node; records are read with recv(n), one per call; cipher() must not be
# called before the handshake completes (it crashes the unix port).
import gc
import socket
import ssl
import time

from micropython import const

_MAX_DATAGRAM = const(1280)


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def make_context(cert_path, key_path, ca_path):
    # Raises OSError for a missing file, ValueError for unusable DER.
    ctx = ssl.SSLContext(ssl.PROTOCOL_DTLS_CLIENT)
    # The default here is CERT_NONE. (MicroPython's SSLContext has verify_mode;
    # the ESP32 stubs leave it out.)
    ctx.verify_mode = ssl.CERT_REQUIRED  # type: ignore[attr-defined]
    ctx.load_cert_chain(_read(cert_path), _read(key_path))
    ctx.load_verify_locations(cadata=_read(ca_path))
    return ctx


class DtlsLink:
    def __init__(self, ctx, host, port, server_name):
        self._ctx = ctx
        self._host = host
        self._port = port
        self._name = server_name
        self.sock = None
        self.up = False
        self.slowest_ms = 0  # longest call (a handshake step, on a board an ECC operation)

    def _took(self, t0):
        d = time.ticks_diff(time.ticks_ms(), t0)
        if d > self.slowest_ms:
            self.slowest_ms = d

    def open(self):
        # Starts a handshake; it progresses on each send() attempt.
        self.close()
        t0 = time.ticks_ms()
        ai = socket.getaddrinfo(self._host, self._port, 0, socket.SOCK_DGRAM)[0]
        raw = socket.socket(ai[0], socket.SOCK_DGRAM)
        try:
            raw.connect(ai[-1])
            raw.setblocking(False)
            self.sock = self._ctx.wrap_socket(
                raw, server_side=False, do_handshake_on_connect=False,
                server_hostname=self._name)
        except Exception:
            raw.close()
            raise
        finally:
            self._took(t0)

    def send(self, buf):
        # True once buf went out; False while the handshake is still running
        # (the write drives it). OSError/ValueError: the link failed.
        sock = self.sock
        if sock is None:
            raise OSError("link not open")
        t0 = time.ticks_ms()
        try:
            if sock.write(buf) is None:
                return False
        finally:
            self._took(t0)
        self.up = True
        return True

    def recv(self):
        # One decrypted datagram, or None when nothing is waiting.
        sock = self.sock
        if sock is None:
            return None
        t0 = time.ticks_ms()
        try:
            try:
                return sock.recv(_MAX_DATAGRAM)
            except MemoryError:
                # After a long outage the held reports fill the heap (seen in the soak as
                # a node crash). Fail the link instead: the caller drops the session, whose
                # TLS buffers are the largest thing it can free, keeps its reports, retries.
                gc.collect()
                raise OSError(12)  # ENOMEM
        finally:
            self._took(t0)

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass  # already broken; nothing left to release
        self.sock = None
        self.up = False
