"""The gateway's device-access server: CoAP over DTLS on one UDP port, reports to a sink."""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import TracebackType

from aiocoap import Context, interfaces, resource

from tandem.gateway.access.coap_transport import SessionMessageInterface
from tandem.gateway.access.config import AccessConfig
from tandem.gateway.access.device_policy import DevicePolicy
from tandem.gateway.access.dtls import DtlsEndpoint
from tandem.gateway.access.dtls_context import CookieJar, server_context
from tandem.gateway.access.plain import PlainEndpoint
from tandem.gateway.access.readings import ReadingsResource
from tandem.gateway.access.session import Endpoint, SessionHandler
from tandem.gateway.access.stats import AccessStats
from tandem.gateway.reports import ReportSink
from tandem.wire.clock import now_ms
from tandem.wire.report import READINGS_PATH


class CoapDtlsServer:
    """Serves POST /r to devices holding a site certificate; start() binds, stop() releases."""

    def __init__(self, config: AccessConfig, sink: ReportSink, *,
                 stats: AccessStats | None = None,
                 clock_ms: Callable[[], int] = now_ms) -> None:
        self.config = config
        self.stats = stats or AccessStats()
        self.policy = DevicePolicy(frozenset(config.allowed_devices) or None,
                                   config.revoked_devices, config.device_resources)
        self._sink = sink
        self._clock_ms = clock_ms
        # Further resources by path (/c, /raw: gateway/nodes/services.py), added before start().
        self.resources: dict[tuple[str, ...], resource.Resource] = {}
        self._context: Context | None = None
        self._interface: SessionMessageInterface | None = None

    async def start(self) -> None:
        """Bind the socket and begin serving."""
        if self._context is not None:
            raise RuntimeError("server already started")
        site = resource.Site()
        site.add_resource([READINGS_PATH],
                          ReadingsResource(self._sink, self.policy, self.stats, self._clock_ms))
        for path, extra in self.resources.items():
            site.add_resource(path, extra)
        context = Context(serversite=site, loggername="tandem.gateway.access.coap")
        # aiocoap (pinned 0.4.17) has no public hook for a custom transport; tests cover this one.
        await context._append_tokenmanaged_messagemanaged_transport(self._make_interface)
        self._context = context

    async def stop(self) -> None:
        """Close the socket and drop every session; safe to call twice."""
        context, self._context, self._interface = self._context, None, None
        if context is not None:
            await context.shutdown()

    def drop_device(self, device: str) -> int:
        """Close the device's open DTLS sessions (after a revocation: it must handshake again)."""
        endpoint = self._interface.endpoint if self._interface is not None else None
        if not isinstance(endpoint, DtlsEndpoint):
            return 0
        mine = [s for s in endpoint.sessions if s.device == device]
        for session in mine:
            session.close("revoked_session_closed", f"{device} at {session.address}",
                          logging.WARNING)
        return len(mine)

    @property
    def port(self) -> int:
        """The bound UDP port (useful when configured as 0)."""
        port: int = self.endpoint.local_address[1]
        return port

    @property
    def endpoint(self) -> Endpoint:
        """The serving endpoint (a DtlsEndpoint unless plain CoAP is enabled)."""
        if self._interface is None:
            raise RuntimeError("server not started")
        return self._interface.endpoint

    async def __aenter__(self) -> CoapDtlsServer:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    async def _make_interface(self, mman: interfaces.MessageManager) -> SessionMessageInterface:
        self._interface = await SessionMessageInterface.create(mman, self._open_endpoint,
                                                               self.stats)
        return self._interface

    async def _open_endpoint(self, handler: SessionHandler) -> Endpoint:
        config = self.config
        if config.insecure_plain_coap:
            return await PlainEndpoint.open(config.host, config.port, handler, self.stats,
                                            config.max_peers)
        assert config.cert_pem and config.key_pem and config.ca_pem  # checked by AccessConfig
        context = server_context(config.cert_pem, config.key_pem, config.ca_pem, CookieJar(),
                                 self.policy.admits)
        return await DtlsEndpoint.open(config.host, config.port, context, handler, self.stats,
                                       config.limits)
