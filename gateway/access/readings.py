"""The CoAP resource nodes POST reading reports to (`/r`, see wire.report)."""

from __future__ import annotations

from collections.abc import Callable

from aiocoap import resource
from aiocoap.message import Message
from aiocoap.numbers.codes import Code

from tandem.gateway.access.coap_transport import SessionRemote
from tandem.gateway.access.device_policy import DevicePolicy
from tandem.gateway.access.stats import AccessStats
from tandem.gateway.reports import DeviceReport, ReportSink
from tandem.wire.clock import now_ms
from tandem.wire.errors import WireError
from tandem.wire.report import (
    CONTENT_FORMAT_CBOR,
    MAX_REPORT_BYTES,
    check_time,
    decode_report,
)

_RETRY_AFTER_S = 1
_DIAGNOSTIC_MAX = 80  # a diagnostic payload stays well inside one datagram



class ReadingsResource(resource.Resource):  # type: ignore[misc]
    """Accepts a report from an authenticated device and hands it to the pipeline."""

    def __init__(self, sink: ReportSink, policy: DevicePolicy, stats: AccessStats,
                 clock_ms: Callable[[], int] = now_ms) -> None:
        super().__init__()
        self._sink = sink
        self._policy = policy
        self._stats = stats
        self._clock_ms = clock_ms

    async def needs_blockwise_assembly(self, request: Message) -> bool:
        # A report fits one datagram; assembling blocks would buffer unbounded input.
        return False

    async def render_post(self, request: Message) -> Message:
        """Answer 2.04 once the sink took the report, or say precisely why not."""
        device = request.remote.device if isinstance(request.remote, SessionRemote) else None
        if device is None:
            return self._refuse(Code.UNAUTHORIZED, "no_identity", "no device identity")
        if not self._policy.permits(device, "/" + "/".join(request.opt.uri_path)):
            return self._refuse(Code.FORBIDDEN, "device_forbidden", device)
        if request.opt.content_format != CONTENT_FORMAT_CBOR:  # absent too: docs/protocol.md
            return self._refuse(Code.UNSUPPORTED_CONTENT_FORMAT, "bad_content_format",
                                f"{request.opt.content_format}", "Content-Format must be 60")
        if request.opt.block1 is not None or len(request.payload) > MAX_REPORT_BYTES:
            return self._too_large()
        now_ms = self._clock_ms()
        try:
            report = decode_report(request.payload)
            check_time(report, now_ms)
        except WireError as exc:
            return self._refuse(Code.BAD_REQUEST, f"bad_report_{exc.reason}", exc.detail,
                                str(exc)[:_DIAGNOSTIC_MAX])
        if not await self._sink.submit(DeviceReport(device, report, now_ms)):
            self._stats.count("sink_full", device)
            return Message(code=Code.SERVICE_UNAVAILABLE, max_age=_RETRY_AFTER_S)
        return Message(code=Code.CHANGED)

    def _refuse(self, code: Code, cause: str, detail: str, diagnostic: str = "") -> Message:
        self._stats.count(cause, detail)
        return Message(code=code, payload=(diagnostic or cause).encode())

    def _too_large(self) -> Message:
        reply = self._refuse(Code.REQUEST_ENTITY_TOO_LARGE, "report_too_large",
                             f"> {MAX_REPORT_BYTES} bytes")
        reply.opt.size1 = MAX_REPORT_BYTES
        return reply
