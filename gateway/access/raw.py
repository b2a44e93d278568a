"""The CoAP resource nodes POST raw snippets to (`/raw`, block-wise; docs/protocol.md section 4).

aiocoap reassembles the Block1 blocks (RFC 7959); before a block reaches its
spool this resource checks who sends it, that the whole transfer stays under
MAX_TRANSFER_BYTES (Size1 and every block's end) and, on the first block,
the device's rate of transfers. The reassembled body goes to the raw cache.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import Protocol

from aiocoap import resource
from aiocoap.message import Message
from aiocoap.numbers.codes import Code
from aiocoap.pipe import Pipe

from tandem.gateway.access.coap_transport import SessionRemote
from tandem.gateway.access.device_policy import DevicePolicy
from tandem.gateway.access.stats import AccessStats
from tandem.wire.clock import now_ms
from tandem.wire.errors import WireError
from tandem.wire.raw import MAX_TRANSFER_BYTES, RawSnippet, decode_node_body
from tandem.wire.report import CONTENT_FORMAT_CBOR

_WINDOW_S = 60.0  # the rate limit counts transfers started within this
_RETRY_AFTER_S = 1


class RawSink(Protocol):
    """Where reassembled snippets go (the raw cache)."""

    async def put(self, snippet: RawSnippet) -> None:
        """Keep snippet; raise when it cannot."""
        ...


class RawResource(resource.Resource):  # type: ignore[misc]
    """Accepts raw snippets from authenticated nodes, bounded in size and rate."""

    def __init__(self, sink: RawSink, policy: DevicePolicy, stats: AccessStats,
                 per_device_per_min: int = 6, max_bytes: int = MAX_TRANSFER_BYTES,
                 clock: Callable[[], float] = time.monotonic,
                 clock_ms: Callable[[], int] = now_ms) -> None:
        super().__init__()
        self._sink = sink
        self._policy = policy
        self._stats = stats
        self._per_min = per_device_per_min
        self._max_bytes = max_bytes
        self._clock = clock
        self._clock_ms = clock_ms
        self._starts: dict[str, collections.deque[float]] = {}

    async def render_to_pipe(self, pipe: Pipe) -> None:
        """Refuse a block that must not be spooled; hand the others to aiocoap's assembly."""
        refusal = self._guard(pipe.request)
        if refusal is not None:
            pipe.add_response(refusal, is_last=True)
            return
        await super().render_to_pipe(pipe)

    async def render_post(self, request: Message) -> Message:
        """The whole body has arrived: decode it and cache it."""
        device = request.remote.device
        try:
            snippet = decode_node_body(request.payload, device, self._clock_ms())
        except WireError as exc:
            return self._refuse(Code.BAD_REQUEST, f"bad_raw_{exc.reason}", exc.detail,
                                str(exc)[:80])
        try:
            await self._sink.put(snippet)
        except Exception as exc:  # noqa: BLE001 - a failing cache answers 5.03, never crashes
            self._stats.count("raw_unstored", f"{device}: {exc}")
            return Message(code=Code.SERVICE_UNAVAILABLE, max_age=_RETRY_AFTER_S)
        self._stats.count("raw_stored", f"{device}: {snippet.frames} frames")
        return Message(code=Code.CHANGED)

    def _guard(self, request: Message) -> Message | None:
        remote = request.remote
        device = remote.device if isinstance(remote, SessionRemote) else None
        if device is None:
            return self._refuse(Code.UNAUTHORIZED, "no_identity", "no device identity")
        if not self._policy.permits(device, "/raw"):
            return self._refuse(Code.FORBIDDEN, "device_forbidden", f"{device} /raw")
        if request.code != Code.POST:
            return None  # aiocoap answers 4.05
        if request.opt.content_format not in (None, CONTENT_FORMAT_CBOR):
            return self._refuse(Code.UNSUPPORTED_CONTENT_FORMAT, "bad_content_format",
                                f"{request.opt.content_format}")
        block = request.opt.block1
        end = len(request.payload) + (block.start if block is not None else 0)
        if end > self._max_bytes or (request.opt.size1 or 0) > self._max_bytes:
            reply = self._refuse(Code.REQUEST_ENTITY_TOO_LARGE, "raw_too_large",
                                 f"{device}: > {self._max_bytes} bytes")
            reply.opt.size1 = self._max_bytes
            return reply
        if block is None or block.block_number == 0:
            return self._rate_limited(device)
        return None

    def _rate_limited(self, device: str) -> Message | None:
        now = self._clock()
        starts = self._starts.setdefault(device, collections.deque())
        while starts and now - starts[0] >= _WINDOW_S:
            starts.popleft()
        if len(starts) >= self._per_min:
            self._stats.count("raw_rate_limited", device)
            wait = max(1, int(_WINDOW_S - (now - starts[0])) + 1)
            return Message(code=Code.TOO_MANY_REQUESTS, max_age=wait)
        starts.append(now)
        if len(self._starts) > 4 * 1024:  # forget devices that went quiet
            self._starts = {d: s for d, s in self._starts.items() if s and now - s[-1] < _WINDOW_S}
        return None

    def _refuse(self, code: Code, cause: str, detail: str, diagnostic: str = "") -> Message:
        self._stats.count(cause, detail)
        return Message(code=code, payload=(diagnostic or cause).encode())
