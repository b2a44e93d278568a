"""The CoAP resource nodes poll for commands (`GET /c?a=<last applied id>`, protocol section 3)."""

from __future__ import annotations

from typing import Protocol

from aiocoap import resource
from aiocoap.message import Message
from aiocoap.numbers.codes import Code

from tandem.gateway.access.coap_transport import SessionRemote
from tandem.gateway.access.device_policy import DevicePolicy
from tandem.gateway.access.stats import AccessStats
from tandem.wire.report import CONTENT_FORMAT_CBOR

COMMANDS_PATH = "c"
_MAX_ID = (1 << 32) - 1


class CommandSource(Protocol):
    """Where the commands for a node wait (gateway/nodes/commands.py)."""

    def poll(self, device: str, applied: int) -> bytes:
        """The next command for device as CBOR (b"" for none), having seen it applied `applied`."""
        ...


class CommandsResource(resource.Resource):  # type: ignore[misc]
    """Hands an authenticated node its next command."""

    def __init__(self, source: CommandSource, policy: DevicePolicy, stats: AccessStats) -> None:
        super().__init__()
        self._source = source
        self._policy = policy
        self._stats = stats

    async def needs_blockwise_assembly(self, request: Message) -> bool:
        # A command fits one datagram.
        return False

    async def render_get(self, request: Message) -> Message:
        """2.05 with the next command, or with an empty payload when there is none."""
        device = request.remote.device if isinstance(request.remote, SessionRemote) else None
        if device is None:
            return self._refuse(Code.UNAUTHORIZED, "no_identity", "no device identity")
        if not self._policy.permits(device, "/c"):
            return self._refuse(Code.FORBIDDEN, "device_forbidden", f"{device} /c")
        applied = _applied(request.opt.uri_query)
        if applied is None:
            return self._refuse(Code.BAD_REQUEST, "bad_command_poll",
                                f"{device}: {request.opt.uri_query}")
        body = self._source.poll(device, applied)
        return Message(code=Code.CONTENT, content_format=CONTENT_FORMAT_CBOR, payload=body)

    def _refuse(self, code: Code, cause: str, detail: str) -> Message:
        self._stats.count(cause, detail)
        return Message(code=code, payload=cause.encode())


def _applied(query: tuple[str, ...]) -> int | None:
    """The `a` of the query (0 when absent); None when malformed."""
    applied = 0
    for item in query:
        name, _, value = item.partition("=")
        if name != "a":
            continue  # forward compatible: other parameters are ignored
        if not value.isascii() or not value.isdigit() or int(value) > _MAX_ID:
            return None
        applied = int(value)
    return applied
