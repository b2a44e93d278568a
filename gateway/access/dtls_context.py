"""The OpenSSL context for the gateway's DTLS server: mutual X.509 against the site CA."""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from OpenSSL import SSL, crypto

from tandem.gateway.access.identity import IdentityError, device_identity
from tandem.gateway.access.session import Address

_DTLS_1_2 = 0xFEFD  # pyOpenSSL has no DTLS version constants
_MODE_NO_AUTO_CHAIN = 0x8  # keep the CA out of the server flight so it fits one datagram
_COOKIE_LEN = 16
_CIPHERS = b"ECDHE+ECDSA+AESGCM:ECDHE+ECDSA+CHACHA20:ECDHE+ECDSA+AESCCM"


class HandshakePeer(Protocol):
    """What the OpenSSL callbacks learn about and report on the peer of a connection."""

    address: Address
    device: str | None
    rejection: tuple[str, str] | None


class CookieJar:
    """Stateless DTLS cookies: an HMAC of the peer address under a per-process secret."""

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or os.urandom(32)

    def make(self, address: Address) -> bytes:
        """The cookie a peer at address must echo."""
        mac = hmac.new(self._secret, repr(address[:2]).encode(), hashlib.sha256)
        return mac.digest()[:_COOKIE_LEN]

    def check(self, address: Address, cookie: bytes) -> bool:
        """True if cookie was made for address."""
        return hmac.compare_digest(self.make(address), cookie)


def server_context(cert_pem: Path, key_pem: Path, ca_pem: Path, jar: CookieJar,
                   admits: Callable[[str], bool] | None = None) -> SSL.Context:
    """A DTLS 1.2 server context that demands a device certificate issued by the site CA.

    `admits(device)` False (a revoked device) ends the handshake with an alert.
    """
    ctx = SSL.Context(SSL.DTLS_SERVER_METHOD)
    ctx.set_min_proto_version(_DTLS_1_2)
    ctx.set_cipher_list(_CIPHERS)
    ctx.use_certificate_file(str(cert_pem))
    ctx.use_privatekey_file(str(key_pem))
    ctx.check_privatekey()
    # Only the site CA: no default paths, so no public CA can vouch for a device.
    ctx.load_verify_locations(str(ca_pem))
    # No CA names in the CertificateRequest: a device holds one certificate; the flight stays small.
    ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, _Verifier(admits))
    ctx.set_verify_depth(2)
    ctx.set_mode(_MODE_NO_AUTO_CHAIN)
    ctx.set_options(SSL.OP_NO_QUERY_MTU | SSL.OP_NO_TICKET | _no_renegotiation())
    ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    ctx.set_cookie_generate_callback(lambda conn: jar.make(_peer(conn).address))
    ctx.set_cookie_verify_callback(lambda conn, c: jar.check(_peer(conn).address, c))
    return ctx


class _Verifier:
    """Records why a chain is refused, and the device name of an accepted, admitted leaf."""

    def __init__(self, admits: Callable[[str], bool] | None) -> None:
        self._admits = admits

    def __call__(self, conn: SSL.Connection, cert: crypto.X509, errno: int, depth: int,
                 ok: int) -> bool:
        peer = _peer(conn)
        if not ok:
            peer.rejection = ("cert_rejected", f"depth {depth}: X509 error {errno}")
            return False
        if depth > 0:
            return True
        try:
            peer.device = device_identity(cert.to_cryptography())
        except IdentityError as exc:
            peer.rejection = (exc.reason, exc.detail)
            return False
        if self._admits is not None and not self._admits(peer.device):
            peer.rejection = ("device_revoked", f"{peer.device} is revoked")
            return False
        return True


def _peer(conn: SSL.Connection) -> HandshakePeer:
    peer: HandshakePeer = conn.get_app_data()
    return peer


def _no_renegotiation() -> int:
    return getattr(SSL, "OP_NO_RENEGOTIATION", 0) or 0
