"""The gateway's one way to call the cloud: one trust rule and one timeout for every client.

Every HTTP client to the cloud (uplink, policy agent, raw requests,
enrolment) is made here. Trust: the cloud's certificate must chain to the
pinned site CA (`identity.ca`), unless `uplink.ca` names another CA file; the
system's CA store is never consulted, so a certificate a public CA issued for
the same name is refused. Timeout: `uplink.timeout_s`, for connect, read and
write alike. Plain `http://` URLs (tests, a local demo) use no TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from tandem.gateway.config import GatewayConfig


@dataclass(frozen=True)
class CloudEndpoint:
    """Where the cloud is, which CA vouches for it, how long a call may take."""

    url: str
    ca: Path
    timeout_s: float

    @classmethod
    def of(cls, config: GatewayConfig, url: str = "") -> CloudEndpoint:
        """The endpoint at url (default uplink.url) under the gateway's one trust rule."""
        return cls(url or config.uplink.url, config.uplink.ca or config.identity.ca,
                   config.uplink.timeout_s)

    def tls(self) -> ssl.SSLContext | bool:
        """TLS 1.2+ verifying against this endpoint's CA only; False for http://."""
        if self.url.startswith("http://"):
            return False
        context = ssl.create_default_context(cafile=str(self.ca))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    def async_client(self, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
        """An asyncio client for this endpoint (the caller closes it)."""
        return httpx.AsyncClient(base_url=self.url, verify=self.tls(), timeout=self.timeout_s,
                                 headers=headers)

    def client(self) -> httpx.Client:
        """A blocking client for this endpoint (enrolment; the caller closes it)."""
        return httpx.Client(base_url=self.url, verify=self.tls(), timeout=self.timeout_s)

    async def reachable(self) -> bool:
        """A cheap probe: does the cloud's host accept a TCP connection within the timeout?

        It costs the cloud one handshake and no request, so it can run far more often
        than a delivery attempt without loading a cloud that is down or recovering.
        """
        parts = urlsplit(self.url)
        port = parts.port or (80 if parts.scheme == "http" else 443)
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(parts.hostname, port), self.timeout_s)
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
